"""Failure bookkeeping of the monitors: who gets marked down, and when out."""

from sds.mon.failures import FailureTracker
from sds.proto import maps_pb2


def osdmap(up: dict[int, bool], flags=()) -> maps_pb2.OsdMap:
    m = maps_pb2.OsdMap(epoch=5, flags=list(flags))
    for i, is_up in up.items():
        m.osds.add(**{"id": i, "up": is_up, "in": True, "reweight": 0x10000})
    return m


def test_one_reporter_is_not_enough_when_two_are_required():
    t = FailureTracker(grace_s=5, min_reporters=2)
    m = osdmap({0: True, 1: True, 2: True, 3: True})
    t.report(3, 0, now=100)
    assert t.to_mark_down(m, now=100) == []
    t.report(3, 1, now=101)
    assert t.to_mark_down(m, now=101) == [3]


def test_old_reports_expire_and_down_reporters_do_not_count():
    t = FailureTracker(grace_s=5, min_reporters=2)
    m = osdmap({0: True, 1: True, 2: True})
    t.report(2, 0, now=100)
    t.report(2, 1, now=120)
    assert t.to_mark_down(m, now=120) == []     # the first report is older than 2 x grace
    t.report(2, 0, now=121)
    assert t.to_mark_down(osdmap({0: True, 1: False, 2: True}), now=121) == [2]  # 1 of 1 left


def test_small_cluster_needs_all_other_up_osds():
    t = FailureTracker(grace_s=5, min_reporters=2)
    m = osdmap({0: True, 1: True})
    t.report(1, 0, now=10)
    assert t.to_mark_down(m, now=10) == [1]


def test_down_out_interval_and_noout():
    t = FailureTracker(grace_s=5, min_reporters=2)
    m = osdmap({0: True, 1: False})
    t.observe(m, now=100)
    assert t.to_mark_out(m, now=105, interval_s=10) == []
    assert t.to_mark_out(m, now=110, interval_s=10) == [1]
    assert t.to_mark_out(osdmap({0: True, 1: False}, flags=["noout"]), now=200,
                         interval_s=10) == []
    t.observe(osdmap({0: True, 1: True}), now=111)   # it came back: the timer restarts
    t.observe(m, now=300)
    assert t.to_mark_out(m, now=305, interval_s=10) == []
    assert t.to_mark_out(m, now=310, interval_s=10) == [1]
