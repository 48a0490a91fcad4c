"""The one test harness for the pure cores (sds.mon.paxos, sds.osd.peering).

Both simulators (tests/sim) and the hand-driven unit harnesses (tests/unit/test_paxos.py,
test_peering.py) build on it, so a driver rule or a fault is written once:

  * `world.World`: a seeded virtual clock and random.Random, an event queue, a network
    that loses, duplicates, delays (so reorders) and partitions messages, crash points
    inside a Ready, and a bounded trace tail attached to a failure;
  * `host.Host`: one process of a core: its durable dict survives a crash, the core is
    rebuilt from it on restart, and `Host.apply` carries out a Ready as the daemon does;
    `host.FifoNet`: the lossless FIFO network of the unit scenarios;
  * `osd.OsdHost`: the OSD's part of a Ready (object store, scans, pushes, writes);
  * `replay`: SDS_SIM_SEED, the one variable that replays a failed seed with its trace.

It imports nothing from sds except the cores it drives (osd.py), so it stays a harness.
"""
