"""Thousands of seeded fault-injection runs of the monitor consensus core.

Each seed is one self-describing run (see paxos_sim.Faults): safety is checked after every
step, liveness after healing. A failure names its seed and the command that replays it with
a trace of the last events:

    SDS_SIM_SEED=1234 SDS_SIM_MONS=3 pytest tests/sim/test_paxos_sim.py -k replay -s

SDS_SIM_SEEDS scales the number of seeds (default 2000 with 3 monitors, half that with 5).
"""

from __future__ import annotations

import os

import pytest
from paxos_sim import run_seed

SEEDS = int(os.environ.get("SDS_SIM_SEEDS", "2000"))
CHUNK = 250
FIVE_MON_BASE = 1_000_000  # distinct seeds for the 5-monitor runs


def _run_chunk(first: int, count: int, mons: int) -> None:
    for seed in range(first, first + count):
        try:
            run_seed(seed, mons)
        except AssertionError as exc:
            pytest.fail(f"seed {seed} with {mons} mons failed: {exc}\n"
                        f"replay: SDS_SIM_SEED={seed} SDS_SIM_MONS={mons} "
                        f"pytest tests/sim/test_paxos_sim.py -k replay -s", pytrace=False)


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_three_mons(first: int) -> None:
    _run_chunk(first, min(CHUNK, SEEDS - first), 3)


@pytest.mark.parametrize("first", range(FIVE_MON_BASE, FIVE_MON_BASE + SEEDS // 2, CHUNK))
def test_five_mons(first: int) -> None:
    _run_chunk(first, min(CHUNK, FIVE_MON_BASE + SEEDS // 2 - first), 5)


def test_single_mon() -> None:
    """A one-monitor cluster elects itself and commits alone (quorum of one)."""
    _run_chunk(0, 50, 1)


def test_replay() -> None:
    """Re-run one seed with a trace; a failure shows the last events of the run."""
    if "SDS_SIM_SEED" not in os.environ:
        pytest.skip("set SDS_SIM_SEED (and SDS_SIM_MONS) to replay one run")
    seed, mons = int(os.environ["SDS_SIM_SEED"]), int(os.environ.get("SDS_SIM_MONS", "3"))
    sim = run_seed(seed, mons, trace=True)
    print("\n".join(sim.trace[-50:]))
