"""Log comparison for peering: recovery of missing writes, rollback of divergent ones."""

from sds.osd.logsync import LogView, choose_authoritative, plan
from sds.proto import osd_pb2


def e(epoch, v, oid, tid=None):
    return osd_pb2.PgLogEntry(epoch=epoch, v=v, oid=oid, client="c", tid=tid or v)


def view(entries, tail=0, objects=None):
    head = max((x.v for x in entries), default=tail)
    return LogView.of(head, tail, entries, objects)


def test_identical_logs_need_nothing():
    log = [e(5, 1, "a"), e(5, 2, "b")]
    assert not plan(view(log), view(log)).needed


def test_member_behind_recovers_exactly_the_newer_objects():
    auth = view([e(5, 1, "a"), e(5, 2, "b"), e(6, 3, "c"), e(6, 4, "b")])
    member = view([e(5, 1, "a"), e(5, 2, "b")])
    assert plan(auth, member).objects == {"b", "c"}


def test_newer_epoch_wins_over_higher_version_and_divergence_is_rolled_back():
    # the old primary, cut off in epoch 5, kept writing v3..v5 that were never acked;
    # the new interval (epoch 7) wrote v3 for another object
    stale = view([e(5, 1, "a"), e(5, 2, "b"), e(5, 3, "x"), e(5, 4, "y"), e(5, 5, "x")])
    fresh = view([e(5, 1, "a"), e(5, 2, "b"), e(7, 3, "z", tid=99)])
    views = {0: stale, 1: fresh}
    assert choose_authoritative(views, primary=0) == 1
    assert plan(fresh, stale).objects == {"x", "y", "z"}


def test_no_overlap_means_backfill_of_both_listings():
    auth = view([e(9, 50, "a")], tail=40, objects=["a", "b"])
    member = view([e(2, 10, "old")], tail=0, objects=["old", "b"])
    p = plan(auth, member)
    assert p.backfill and p.objects == {"a", "b", "old"}


def test_primary_wins_ties():
    log = [e(5, 1, "a")]
    assert choose_authoritative({2: view(log), 0: view(log)}, primary=2) == 2
