"""Focused tests of the monitor consensus core; each names the rule it checks.

Rules come from Ceph's monitor design (ElectionLogic, Paxos.cc) and the Paxos paper; the
scenarios are driven by hand on a lossless FIFO network so each one is easy to follow; the
monitors are tests/harness Hosts, so a Ready is carried out as in the Paxos simulator.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness.host import FifoNet, Host

from sds.common.errors import Retry
from sds.mon import paxos_wire
from sds.mon.paxos import (
    ACTIVE,
    ELECTING,
    KEY_ACCEPTED_PN,
    KEY_LAST_COMMITTED,
    KEY_UNCOMMITTED_PN,
    KEY_UNCOMMITTED_V,
    KEY_UNCOMMITTED_VALUE,
    LEADER,
    PEON,
    Message,
    MonitorCore,
    NotLeader,
    Ready,
    Timing,
    value_key,
)
from sds.mon.store import MonStore

T = Timing()


class Net:
    """Monitors on a lossless FIFO network (harness.host.FifoNet); `drop` filters messages
    when they are sent, `down` monitors get nothing."""

    def __init__(self, n: int, durable: dict[int, dict[str, bytes]] | None = None):
        self.ranks = list(range(n))
        self.net = FifoNet(self._deliver)
        self.queue = self.net.queue
        self.committed: dict[int, list[tuple[int, bytes]]] = {r: [] for r in self.ranks}
        self.hosts = {r: self._host(r, (durable or {}).get(r)) for r in self.ranks}
        self.down: set[int] = set()
        self.now = 0.0

    def _host(self, rank: int, durable: dict[str, bytes] | None) -> Host:
        host = Host(lambda state: MonitorCore(rank, self.ranks, state),
                    {"committed": self.committed[rank].append, "messages": self.net.send},
                    durable)
        host.boot()
        return host

    @property
    def nodes(self) -> dict[int, MonitorCore]:
        return {r: h.core for r, h in self.hosts.items()}

    @property
    def durable(self) -> dict[int, dict[str, bytes]]:
        return {r: h.durable for r, h in self.hosts.items()}

    @property
    def drop(self) -> Callable[[Message], bool]:
        return self.net.drop

    @drop.setter
    def drop(self, drop: Callable[[Message], bool]) -> None:
        self.net.drop = drop

    def apply(self, rank: int, ready: Ready) -> None:
        self.hosts[rank].apply(ready)

    def _deliver(self, msg: Message) -> None:
        if msg.dst not in self.down:
            self.apply(msg.dst, self.hosts[msg.dst].core.step(msg, self.now))

    def start(self, *ranks: int) -> None:
        for rank in ranks or self.ranks:
            self.apply(rank, self.hosts[rank].core.start(self.now))

    def settle(self, limit: int = 10_000) -> None:
        """Deliver until the network is quiet."""
        self.net.settle(limit)

    def advance(self, seconds: float, step: float = 0.1) -> None:
        """Move the clock, ticking every live monitor and delivering as we go."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for rank in self.ranks:
                if rank not in self.down:
                    self.apply(rank, self.hosts[rank].core.tick(self.now))
            self.settle()

    def restart(self, rank: int) -> MonitorCore:
        node = self.hosts[rank].boot()
        self.down.discard(rank)
        self.apply(rank, node.start(self.now))
        return node

    def propose(self, rank: int, value: bytes) -> None:
        self.apply(rank, self.hosts[rank].core.propose(value, self.now))
        self.settle()


def elected(n: int = 3, durable=None) -> Net:
    net = Net(n, durable)
    net.start()
    net.settle()
    return net


def log(net: Net, rank: int) -> list[bytes]:
    node = net.nodes[rank]
    return [node.committed_value(v) for v in range(1, node.last_committed + 1)]


def committed_state(values: list[bytes], **extra: bytes) -> dict[str, bytes]:
    """Durable dict of a monitor that committed `values` as versions 1..n."""
    state = {value_key(v): value for v, value in enumerate(values, 1)}
    state |= {KEY_LAST_COMMITTED: str(len(values)).encode(),
              "paxos/first_committed": b"1" if values else b"0"}
    return state | extra


# ------------------------------------------------------------------ election


def test_lowest_rank_wins_and_epoch_becomes_even():
    """Ceph election: the lowest rank among those that answer wins; even epoch = stable."""
    net = elected(3)
    assert [n.role for n in net.nodes.values()] == [LEADER, PEON, PEON]
    assert all(n.leader == 0 and n.quorum == [0, 1, 2] for n in net.nodes.values())
    assert all(n.election_epoch % 2 == 0 for n in net.nodes.values())
    assert all(n.readable(net.now) for n in net.nodes.values())


def test_lowest_rank_of_the_responding_majority_wins():
    """With rank 0 down, rank 1 wins with a majority quorum after the election timeout."""
    net = Net(3)
    net.down.add(0)
    net.start(1, 2)
    net.settle()
    assert net.nodes[1].role == ELECTING  # not everyone acked: wait for the timeout
    net.advance(T.election_timeout + 0.1)
    assert net.nodes[1].is_leader and net.nodes[1].quorum == [1, 2]
    assert net.nodes[2].leader == 1


def test_no_leader_without_majority():
    """A minority can never elect a leader: 1 of 3 keeps electing, epochs stay odd."""
    net = Net(3)
    net.down |= {1, 2}
    net.start(0)
    net.advance(10)
    assert net.nodes[0].role == ELECTING and net.nodes[0].election_epoch % 2 == 1


def test_stale_election_epoch_ignored():
    """A victory from an older epoch cannot change the leader."""
    net = elected(3)
    peon = net.nodes[2]
    epoch = peon.election_epoch
    stale = Message("victory", src=1, dst=2, election_epoch=epoch - 2, quorum=[1, 2])
    assert peon.step(stale, net.now).messages == []
    assert peon.leader == 0 and peon.election_epoch == epoch


def test_monitor_outside_quorum_forces_reelection():
    """Ceph: a proposal from a monitor outside a stable quorum triggers a new election."""
    net = Net(3)
    net.down.add(2)
    net.start(0, 1)
    net.advance(T.election_timeout + 0.1)
    assert net.nodes[0].quorum == [0, 1]
    net.restart(2)
    net.advance(T.election_timeout + 0.5)
    assert net.nodes[0].is_leader and net.nodes[0].quorum == [0, 1, 2]


# ------------------------------------------------------------------ paxos


def test_commit_reaches_every_monitor_in_order():
    """begin/accept/commit: values commit in proposal order with versions from 1."""
    net = elected(3)
    for value in (b"a", b"b", b"c"):
        net.apply(0, net.nodes[0].propose(value, net.now))  # queued behind the first
    net.settle()
    for rank in net.ranks:
        assert net.committed[rank] == [(1, b"a"), (2, b"b"), (3, b"c")]
        assert log(net, rank) == [b"a", b"b", b"c"]


def test_propose_on_peon_raises_not_leader():
    """Only the leader proposes; NotLeader is a Retry and names the leader."""
    net = elected(3)
    with pytest.raises(NotLeader) as info:
        net.nodes[1].propose(b"x", net.now)
    assert isinstance(info.value, Retry) and info.value.leader == 0


def test_commit_waits_for_whole_quorum():
    """Like Ceph, a value commits only once every quorum member accepted it."""
    net = elected(3)
    net.drop = lambda m: m.kind == "accept" and m.src == 2
    net.propose(0, b"x")
    assert net.nodes[0].last_committed == 0
    net.drop = lambda m: False
    net.advance(T.lease_renew + 0.1)  # begin is resent to the silent peon
    assert [net.nodes[r].last_committed for r in net.ranks] == [1, 1, 1]


def test_uncommitted_value_is_reproposed_by_new_leader():
    """Paxos P2c: a new leader must finish the highest-pn value accepted at lc+1."""
    accepted = {KEY_ACCEPTED_PN: b"101", KEY_UNCOMMITTED_PN: b"101",
                KEY_UNCOMMITTED_V: b"1", KEY_UNCOMMITTED_VALUE: b"maybe-chosen"}
    net = elected(3, durable={2: accepted})
    assert [log(net, r) for r in net.ranks] == [[b"maybe-chosen"]] * 3
    assert net.nodes[0].accepted_pn > 101


def test_highest_pn_uncommitted_value_wins():
    """Among different accepted values for one version, recovery picks the highest pn."""
    def unc(pn: int, value: bytes) -> dict[str, bytes]:
        return {KEY_ACCEPTED_PN: str(pn).encode(), KEY_UNCOMMITTED_PN: str(pn).encode(),
                KEY_UNCOMMITTED_V: b"1", KEY_UNCOMMITTED_VALUE: value}
    net = elected(3, durable={1: unc(101, b"older"), 2: unc(202, b"newer")})
    assert log(net, 0) == [b"newer"]


def test_stale_pn_begin_ignored():
    """A peon that promised pn p never accepts a begin with a lower pn."""
    net = elected(3)
    peon = net.nodes[1]
    low = Message("begin", src=0, dst=1, election_epoch=peon.election_epoch,
                  pn=peon.accepted_pn - 1, version=1, value=b"old")
    assert peon.step(low, net.now).messages == []
    assert peon.status()["paxos_state"] == ACTIVE


def test_duplicated_messages_are_harmless():
    """Every message delivered twice still yields one commit per version."""
    net = elected(3)
    real_apply = net.apply

    def apply_twice(rank: int, ready: Ready) -> None:
        real_apply(rank, ready)
        net.queue.extend(ready.messages)

    net.apply = apply_twice
    net.propose(0, b"x")
    net.propose(0, b"y")
    assert all(net.committed[r][-2:] == [(1, b"x"), (2, b"y")] for r in net.ranks)


def test_lagging_peon_caught_up_on_recovery():
    """Collect/last: a peon behind the leader receives the committed values it lacks."""
    ahead = committed_state([b"a", b"b", b"c"])
    net = elected(3, durable={0: ahead, 1: ahead})
    assert log(net, 2) == [b"a", b"b", b"c"]
    assert net.committed[2] == [(1, b"a"), (2, b"b"), (3, b"c")]


def test_leader_caught_up_from_peon_on_recovery():
    """Last carries the committed values the new leader lacks."""
    net = elected(3, durable={2: committed_state([b"a", b"b"])})
    assert log(net, 0) == [b"a", b"b"]
    net.propose(0, b"c")
    assert log(net, 1) == [b"a", b"b", b"c"]


def test_peon_that_missed_a_commit_is_caught_up_by_lease_ack():
    """A lease_ack reporting an old last_committed gets the missing values back."""
    net = elected(3)
    net.drop = lambda m: m.kind == "commit" and m.dst == 2
    net.propose(0, b"x")
    assert net.nodes[2].last_committed == 0 and not net.nodes[2].readable(net.now)
    net.drop = lambda m: False
    net.advance(T.lease_renew + 0.1)
    assert log(net, 2) == [b"x"] and net.nodes[2].readable(net.now)


# ------------------------------------------------------------------ leases


def test_peon_reads_need_a_valid_lease():
    """A peon is readable only while it holds a lease, and not during an update."""
    net = elected(3)
    peon = net.nodes[1]
    assert peon.readable(net.now)
    assert not peon.readable(peon.lease_expire)
    net.drop = lambda m: m.kind == "accept"
    net.propose(0, b"x")
    assert not peon.readable(net.now)


def test_lease_expiry_triggers_election():
    """A peon that hears nothing from its leader until the lease expires calls an election."""
    net = elected(3)
    net.down.add(0)
    net.advance(T.lease + 0.2)
    assert net.nodes[1].election_epoch % 2 == 1 or net.nodes[1].is_leader
    net.advance(T.election_timeout + 0.5)
    assert net.nodes[1].is_leader and net.nodes[1].quorum == [1, 2]


def test_leader_missing_lease_acks_calls_election():
    """A leader missing a peon's lease acks for a whole lease period re-forms the quorum."""
    net = elected(3)
    epoch = net.nodes[0].election_epoch
    net.drop = lambda m: m.src == 2 or m.dst == 2
    net.advance(T.lease + T.election_timeout + 0.5)
    assert net.nodes[0].election_epoch > epoch
    assert net.nodes[0].is_leader and net.nodes[0].quorum == [0, 1]


# ------------------------------------------------------------------ durability


def test_restart_keeps_committed_state_and_moves_epoch_on():
    """A restarted monitor rebuilds from durable state only, and never reuses an epoch."""
    net = elected(3)
    net.propose(0, b"x")
    epoch = net.nodes[1].election_epoch
    node = net.restart(1)
    assert node.last_committed == 1 and node.committed_value(1) == b"x"
    assert node.election_epoch > epoch and node.role == ELECTING
    net.settle()
    net.propose(net.nodes[0].leader, b"y")
    assert [log(net, r) for r in net.ranks] == [[b"x", b"y"]] * 3


def test_whole_cluster_restart_loses_nothing():
    """Accepted-but-uncommitted values survive a full restart and then commit."""
    net = elected(3)
    net.drop = lambda m: m.kind == "commit"
    net.propose(0, b"x")  # committed on the leader only
    for rank in net.ranks:
        net.down.add(rank)
    net.queue.clear()
    net.drop = lambda m: False
    for rank in (1, 2, 0):
        net.restart(rank)
    net.settle()
    assert [log(net, r) for r in net.ranks] == [[b"x"]] * 3


def test_promise_persisted_before_last_is_sent():
    """The durable accepted_pn is part of the same Ready as the `last` reply."""
    net = Net(3)
    net.start()
    while net.queue:
        msg = net.queue.popleft()
        ready = net.nodes[msg.dst].step(msg, net.now)
        if any(m.kind == "last" for m in ready.messages):
            assert int(ready.persist[KEY_ACCEPTED_PN]) == msg.pn
            return
        net.queue.extend(ready.messages)
    raise AssertionError("no last sent")


# ------------------------------------------------------------------ wire and store


def test_wire_round_trip():
    msg = Message("last", src=1, dst=0, election_epoch=6, pn=301, version=7, last_committed=6,
                  first_committed=1, value=b"v", values={5: b"five", 6: b"six"},
                  uncommitted_pn=201, uncommitted_version=7, uncommitted_value=b"u",
                  quorum=[0, 1, 2], lease_expire=12.5)
    assert paxos_wire.decode(paxos_wire.encode(msg)) == msg
    assert paxos_wire.decode(paxos_wire.encode(Message("lease", 0, 2))) == Message("lease", 0, 2)


def test_store_round_trip(tmp_path):
    with MonStore(tmp_path / "mon") as store:
        store.write({"a": b"1", "b": b"2"})
        store.write({"a": None, "c": b"3"})
        store.put("osdmap/1", b"map")
        assert store.get("b") == b"2" and store.get("a") is None
    with MonStore(tmp_path / "mon") as store:
        assert store.load() == {"b": b"2", "c": b"3", "osdmap/1": b"map"}


def test_core_restarts_from_store(tmp_path):
    """What the driver does: persist each Ready in MonStore, rebuild the core from load()."""
    net = elected(1)
    net.propose(0, b"x")
    with MonStore(tmp_path / "mon") as store:
        store.write(dict(net.durable[0]))
        node = MonitorCore(0, [0], store.load())
    assert node.committed_value(1) == b"x" and node.last_committed == 1
