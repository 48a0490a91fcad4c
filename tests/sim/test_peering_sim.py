"""Thousands of seeded fault-injection runs of PG peering and recovery (sds.osd.peering).

Each seed is one self-describing run (see peering_sim.Faults): the store/log/missing
agreement and read-your-acked-writes are checked after every step, convergence to
active+clean with every acked write present after healing. A failure names its seed and
the command that replays it with a trace tail:

    SDS_SIM_SEED=1234 pytest tests/sim/test_peering_sim.py -k replay -s

SDS_SIM_SEEDS scales the number of seeds (default 2500).
"""

from __future__ import annotations

import pytest
from harness.replay import replay_seed, run_seeds, seed_count
from peering_sim import run_seed

SEEDS = seed_count(2500)
CHUNK = 250


@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_seeds(first: int) -> None:
    run_seeds(range(first, min(first + CHUNK, SEEDS)), run_seed, "tests/sim/test_peering_sim.py")


def test_sim_exercises_reads_and_faults() -> None:
    """The runs are not vacuous: reads are served and acked writes survive faults."""
    sims = [run_seed(seed) for seed in range(40)]
    assert sum(s.reads_served for s in sims) > 100
    assert sum(len(s.acked) for s in sims) > 100
    assert sum(len(s.maps) for s in sims) > 200  # many intervals


def test_replay() -> None:
    """Re-run one seed with a trace; a failure shows the last events of the run."""
    sim = run_seed(replay_seed(), trace=True)
    print("\n".join(list(sim.trace)[-80:]))
