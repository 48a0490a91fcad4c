"""Focused scenarios for the PG peering/recovery core (sds.osd.peering), one rule each.

A tiny synchronous harness plays the driver on tests/harness (an OsdHost per OSD keeps its
store, oid -> (version, content), and durable dict, as in the simulator), delivers messages
in order without loss, answers scans from the store and runs Recover actions only when a
test asks, so intermediate states can be inspected.
"""

from __future__ import annotations

import pytest
from harness.host import FifoNet
from harness.osd import OsdHost

from sds.osd.peering import (
    MapView,
    Message,
    Need,
    NotActive,
    ObjectDegraded,
    PeeringCore,
    Ready,
    Recover,
)


class Harness:
    def __init__(self, n: int = 3, size: int = 3, min_size: int = 2, log_max: int = 100,
                 max_active: int = 8):
        self.n, self.size, self.min_size = n, size, min_size
        self.net = FifoNet(self._deliver)
        self.queue = self.net.queue
        self.recoveries: list[Recover] = []
        effects = {"messages": self.net.send, "recover": lambda r: self.recoveries.append(r)}
        self.hosts = {o: OsdHost(o, effects, log_max=log_max, max_active=max_active)
                      for o in range(n)}
        for host in self.hosts.values():
            host.boot()
        self.up_from = dict.fromkeys(range(n), 1)
        self.up = set(range(n))
        self.maps: list[MapView] = []

    @property
    def cores(self) -> dict[int, PeeringCore | None]:
        return {o: h.core for o, h in self.hosts.items()}

    @property
    def store(self) -> dict[int, dict]:
        return {o: h.store for o, h in self.hosts.items()}

    def apply(self, osd: int, ready: Ready, change=None) -> None:
        self.hosts[osd].apply(ready, change)

    def map(self, acting: list[int], deliver: bool = True) -> None:
        self.maps.append(MapView(len(self.maps) + 1, tuple(acting), frozenset(self.up),
                                 dict(self.up_from), self.size, self.min_size))
        for host in self.hosts.values():
            if host.core is not None:
                host.catch_up(self.maps)
        if deliver:
            self.deliver()

    def down(self, osd: int, acting: list[int]) -> None:
        self.up.discard(osd)
        self.map(acting)

    def crash(self, osd: int) -> None:
        self.hosts[osd].crash()

    def boot(self, osd: int, acting: list[int], deliver: bool = True) -> None:
        """(Re)start `osd` from its durable state with a new incarnation."""
        host = self.hosts[osd]
        if host.core is None:
            host.boot()
            host.catch_up(self.maps)
        self.up.add(osd)
        self.up_from[osd] = len(self.maps) + 1
        self.map(acting, deliver)

    def deliver(self) -> None:
        self.net.settle()

    def _deliver(self, msg: Message) -> None:
        host = self.hosts[msg.dst]
        if host.core is None:
            return
        if msg.kind == "scan":
            self.net.send(host.scan_reply(msg))
        else:
            host.apply(host.core.step(msg))

    def recover(self, limit: int | None = None) -> int:
        """Run queued recoveries (all, or the first `limit`), delivering the acks."""
        done = 0
        while self.recoveries and (limit is None or done < limit):
            action = self.recoveries.pop(0)
            held = self.hosts[action.source].store.get(action.oid)
            assert action.need.matches(held[0] if held else None), (action, held)
            for target in action.targets:
                if self.hosts[target].core is not None:
                    self.hosts[target].push(action.oid, action.need, action.epoch, held)
            done += 1
            self.deliver()
        return done

    def primary(self) -> PeeringCore:
        return self.cores[self.maps[-1].acting[0]]

    def write(self, oid: str, content: str | None, replicas: list[int] | None = None):
        """Client write through the primary; applied on `replicas` (default: all acting)."""
        osd = self.maps[-1].acting[0]
        entry = self.hosts[osd].write(oid, f"c.{content}", content)
        epoch = self.hosts[osd].core.interval.epoch
        members = [o for o in self.maps[-1].acting if o != osd]
        for replica in members if replicas is None else replicas:
            ready = self.hosts[replica].replica_write(entry, epoch, content)
            assert ready is not None and ready.persist
        return entry

    def contents(self, osd: int) -> dict[str, str]:
        return {oid: held[1] for oid, held in self.store[osd].items()}


def latest(core: PeeringCore, oid: str):
    """Version of the newest log entry of `oid` on `core`."""
    return max(v for v, e in core.log.items() if e.oid == oid)


def test_fresh_pg_activates_clean():
    h = Harness()
    h.map([0, 1, 2])
    p = h.primary()
    assert p.state_name() == "active+clean"
    assert p.why() == "active and clean" and p.progress() == (0, 0)
    assert h.cores[1].state_name() == "active"
    h.write("a", "a1")
    assert h.contents(0) == h.contents(1) == h.contents(2) == {"a": "a1"}


def test_creating_while_first_peering():
    h = Harness()
    h.map([0, 1, 2], deliver=False)
    assert h.primary().state_name() == "creating+peering"
    assert h.primary().why() == "waiting for osd.1, osd.2 to report their logs"


def test_replica_behind_recovers_exactly_the_changed_objects_from_the_log():
    h = Harness()
    h.map([0, 1, 2])
    for oid in "abcd":
        h.write(oid, oid + "1")
    h.down(1, [0, 2])
    h.write("b", "b2")
    h.write("c", None)
    h.boot(1, [0, 1, 2])
    p = h.primary()
    assert h.cores[1].missing == {"b": Need(latest(p, "b")),
                                  "c": Need(latest(p, "c"), delete=True)}
    assert "recovering" in p.state_name() and "degraded" in p.state_name()
    assert p.why() == "recovering 2 objects onto osd.1"
    assert p.progress() == (2, 0)
    h.recover()
    assert p.state_name() == "active+clean" and p.progress() == (2, 2)
    assert h.contents(1) == h.contents(0) == {"a": "a1", "b": "b2", "d": "d1"}


def test_replica_without_log_overlap_is_backfilled():
    h = Harness(log_max=3)
    h.map([0, 1, 2])
    h.write("gone", "g1")
    h.write("same", "s1")
    h.down(1, [0, 2])
    for i in range(5):
        h.write(f"new{i}", "n")
    h.write("gone", None)
    h.boot(1, [0, 1, 2])
    p = h.primary()
    assert "backfill" in p.state_name() and "degraded" in p.state_name()
    assert set(h.cores[1].missing) == {f"new{i}" for i in range(5)} | {"gone"}
    assert "backfilling 6 objects onto osd.1" in p.why()
    h.recover()
    assert p.state_name() == "active+clean"
    assert h.contents(1) == h.contents(0)
    assert "gone" not in h.store[1]


def test_primary_behind_recovers_itself_first():
    h = Harness(max_active=1)
    h.map([0, 1, 2])
    h.write("x", "x1")
    h.down(0, [1, 2])
    h.write("x", "x2")
    h.write("y", "y2")
    h.boot(0, [0, 1, 2])
    p = h.primary()
    assert p.is_missing("x") and p.is_missing("y")
    assert len(h.recoveries) == 1
    first = h.recoveries[0]
    assert 0 in first.targets and first.source in (1, 2)
    with pytest.raises(ObjectDegraded):
        p.write("x")
    h.recover()
    assert not p.is_missing("x") and p.state_name() == "active+clean"
    assert h.contents(0) == {"x": "x2", "y": "y2"}


def test_divergent_entries_on_a_returning_osd_are_rolled_back():
    h = Harness()
    h.map([0, 1, 2])
    h.write("x", "x1")
    h.write("x", "x-lost", replicas=[])      # only the old primary applied these:
    h.write("z", "z-lost", replicas=[])      # never acked, the history forks here
    h.down(0, [1, 2])
    h.write("y", "y2")
    h.boot(0, [1, 2, 0])                      # returns as a replica
    p = h.primary()
    assert h.cores[0].missing == {"x": Need(latest(h.cores[1], "x")),
                                  "y": Need(latest(p, "y")),
                                  "z": Need((0, 0), delete=True)}
    h.recover()
    assert p.state_name() == "active+clean"
    assert h.contents(0) == h.contents(1) == {"x": "x1", "y": "y2"}


def test_crash_mid_recovery_keeps_the_missing_set():
    h = Harness(max_active=1)
    h.map([0, 1, 2])
    h.down(1, [0, 2])
    for oid in "abc":
        h.write(oid, oid)
    h.boot(1, [0, 1, 2])
    assert set(h.cores[1].missing) == {"a", "b", "c"}
    h.recover(limit=1)
    left = set(h.cores[1].missing)
    assert len(left) == 2
    lc = h.cores[1].last_complete()
    assert all(need.version > lc for need in h.cores[1].missing.values())
    h.crash(1)
    h.recoveries.clear()
    h.down(1, [0, 2])
    h.boot(1, [0, 1, 2])
    assert set(h.cores[1].missing) == left  # restored from durable state, nothing claimed
    h.recover()
    assert h.primary().state_name() == "active+clean"
    assert h.cores[1].last_complete() == h.cores[1].last_update


def test_incomplete_when_the_only_holders_of_the_newest_writes_are_down():
    h = Harness()
    h.map([0, 1, 2])
    h.down(0, [1, 2])
    h.write("w", "acked")                     # acked by osd.1 and osd.2 only
    h.crash(1)
    h.crash(2)
    h.up -= {1, 2}
    h.boot(0, [0])
    p = h.primary()
    assert "incomplete" in p.state_name() and not p.serves_io()
    assert p.why().startswith("incomplete: newest writes may be only on down osd.1, osd.2")
    h.boot(1, [0, 1])
    assert p.state_name() == "active+recovering+undersized+degraded"
    assert p.is_missing("w")
    h.recover()
    assert h.contents(0) == {"w": "acked"}


def test_state_names_for_min_size_and_undersized():
    h = Harness()
    h.map([0, 1, 2])
    h.down(2, [0, 1])
    p = h.primary()
    assert p.state_name() == "active+undersized+degraded" and p.serves_io()
    assert p.why() == "undersized: 2 of 3 copies"
    h.down(1, [0])
    assert p.state_name() == "undersized+degraded+peered" and not p.serves_io()
    assert "client I/O blocked" in p.why()
    with pytest.raises(NotActive):
        p.write("a")
    p.inconsistent = p.stale = True
    assert p.state_name() == "stale+undersized+degraded+inconsistent+peered"


def test_need_object_jumps_the_recovery_queue():
    h = Harness(max_active=1)
    h.map([0, 1, 2])
    h.down(2, [0, 1])
    for oid in "abcdef":
        h.write(oid, oid)
    h.boot(2, [0, 1, 2])
    p = h.primary()
    assert [r.oid for r in h.recoveries] == ["a"]
    assert p.is_degraded("f") and not p.is_missing("f")
    h.apply(0, p.need_object("f"))
    assert [r.oid for r in h.recoveries] == ["a", "f"]
    h.recoveries = h.recoveries[1:]
    h.recover(limit=1)
    assert not p.is_degraded("f")
    h.write("f", "f2")                        # no longer blocked


def test_recovery_concurrency_is_bounded():
    h = Harness(max_active=2)
    h.map([0, 1, 2])
    h.down(1, [0, 2])
    for i in range(10):
        h.write(f"o{i}", "v")
    h.boot(1, [0, 1, 2])
    assert len(h.recoveries) == 2
    for _ in range(8):
        h.recover(limit=1)
        assert len(h.recoveries) <= 2
    h.recover()
    assert h.primary().state_name() == "active+clean"
    assert h.primary().progress() == (10, 10)


def test_new_interval_restarts_peering_and_stale_replies_are_ignored():
    h = Harness()
    h.map([0, 1, 2], deliver=False)
    old_queries = list(h.queue)
    h.queue.clear()
    replies = []
    for q in old_queries:
        replies += h.cores[q.dst].step(q).messages
    h.down(2, [0, 1])                         # new interval before the replies arrive
    p = h.primary()
    assert p.state_name() == "active+undersized+degraded"
    before = (p.state_name(), p.why())
    for reply in replies:
        assert reply.epoch != p.interval.epoch
        ready = p.step(reply)
        assert not ready.messages and not ready.persist
    assert (p.state_name(), p.why()) == before


def test_lost_messages_are_resent_on_tick():
    h = Harness()
    h.map([0, 1, 2], deliver=False)
    h.queue.clear()                           # every query lost
    p = h.primary()
    for _ in range(p.retry_ticks):
        h.apply(0, p.tick())
    assert {m.dst for m in h.queue} == {1, 2}
    h.deliver()
    assert p.state_name() == "active+clean"


def test_a_lost_commit_before_a_fatal_stop_is_recovered_after_restart():
    """osd.1's commit of one write failed while the next one (same store batch) succeeded;
    it stops and restarts: its log has a hole, and peering re-fetches what follows it."""
    h = Harness()
    h.map([0, 1, 2])
    h.write("a", "a1")
    entry_b = h.write("b", "b1", replicas=[2])
    lost = h.cores[1].replica_write(entry_b, h.primary().interval.epoch)
    assert lost is not None and lost.persist  # the memory moved; its commit is dropped
    h.write("c", "c1")
    h.crash(1)                                 # the fatal stop
    h.down(1, [0, 2])
    h.boot(1, [0, 1, 2])
    restarted = h.cores[1]
    assert restarted.is_missing("b") and restarted.is_missing("c")
    h.recover()
    assert h.primary().state_name() == "active+clean"
    assert h.contents(1) == h.contents(0) == {"a": "a1", "b": "b1", "c": "c1"}
    assert PeeringCore(1, dict(h.hosts[1].durable)).last_update == h.cores[0].last_update
