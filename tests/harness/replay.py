"""Seeds for the simulators, and the one variable that replays a failed one.

    SDS_SIM_SEED=N pytest tests/sim/test_paxos_sim.py -k replay -s

re-runs seed N with its trace; a failure carries the last events (world.TRACE_TAIL).
SDS_SIM_SEEDS=N sets how many seeds a simulator runs (each states its default).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import pytest

SEED_VAR = "SDS_SIM_SEED"
SEEDS_VAR = "SDS_SIM_SEEDS"


def seed_count(default: int) -> int:
    return int(os.environ.get(SEEDS_VAR, str(default)))


def run_seeds(seeds: Iterable[int], run: Callable[[int], object], test_file: str,
              what: str = "") -> list:
    """Run each seed; the first failure names it and the command that replays it.
    Returns what each run returned, in seed order."""
    results = []
    for seed in seeds:
        try:
            results.append(run(seed))
        except AssertionError as exc:
            pytest.fail(f"seed {seed}{what} failed: {exc}\n"
                        f"replay: {SEED_VAR}={seed} pytest {test_file} -k replay -s",
                        pytrace=False)
    return results


def replay_seed() -> int:
    """The seed to replay; skips the test when none is set."""
    if SEED_VAR not in os.environ:
        pytest.skip(f"set {SEED_VAR} to replay one run")
    return int(os.environ[SEED_VAR])
