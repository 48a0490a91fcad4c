"""Thousands of seeded fault-injection runs of the monitor consensus core.

Each seed is one self-describing run (see paxos_sim.Faults; the seed also fixes the number
of monitors, paxos_sim.mons_for): safety is checked after every step, liveness after
healing. A failure names its seed and the command that replays it with a trace tail:

    SDS_SIM_SEED=1234 pytest tests/sim/test_paxos_sim.py -k replay -s

SDS_SIM_SEEDS scales the number of seeds (default 2000 with 3 monitors, half that with 5).
"""

from __future__ import annotations

import pytest
from harness.replay import replay_seed, run_seeds, seed_count
from paxos_sim import SEED_BASE, run_seed

SEEDS = seed_count(2000)
CHUNK = 250
FIVE_MONS, ONE_MON = SEED_BASE, 2 * SEED_BASE  # first seeds of those cluster sizes


def _run_chunk(first: int, count: int) -> None:
    """Safety is checked at every step inside each run; here, that every run ended with
    its final value committed (the liveness half)."""
    sims = run_seeds(range(first, first + count), run_seed, "tests/sim/test_paxos_sim.py")
    assert len(sims) == count
    for seed, sim in zip(range(first, first + count), sims, strict=True):
        assert f"final-{seed}".encode() in sim.chosen.values(), f"seed {seed}"


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_three_mons(first: int) -> None:
    _run_chunk(first, min(CHUNK, SEEDS - first))


@pytest.mark.parametrize("first", range(FIVE_MONS, FIVE_MONS + SEEDS // 2, CHUNK))
def test_five_mons(first: int) -> None:
    _run_chunk(first, min(CHUNK, FIVE_MONS + SEEDS // 2 - first))


def test_single_mon() -> None:
    """A one-monitor cluster elects itself and commits alone (quorum of one)."""
    _run_chunk(ONE_MON, 50)


def test_replay() -> None:
    """Re-run one seed with a trace; a failure shows the last events of the run."""
    sim = run_seed(replay_seed(), trace=True)
    print("\n".join(list(sim.trace)[-50:]))
