"""Monitor consensus core: Ceph-style election plus multi-Paxos with leases.

This module is a pure state machine in the style of etcd-io/raft: inputs are boot (`start`),
clock ticks (`tick`), protocol messages (`step`) and client values (`propose`); every call
returns a `Ready` holding the durable writes, outgoing messages and newly committed values.
There are no sockets, sleeps, threads or randomness, so the same inputs always give the same
outputs and the simulator in tests/sim can drive a whole cluster deterministically.

Election (Ceph ElectionLogic, "classic" strategy)
    Election epochs are odd while electing and even while a quorum is stable. A monitor that
    starts an election moves to a fresh odd epoch and proposes itself to every rank; a monitor
    defers (acks) to any proposer with a lower rank than itself and than whoever it acked so
    far. The candidate wins when every rank acked, or at the election timeout when a majority
    did; it then bumps the epoch to even and sends `victory` with the quorum (the ackers).
    Election only provides liveness: two leaders in one epoch are possible in rare message
    orders, and safety never depends on it.

Paxos (Ceph Paxos.cc)
    Recovery: the new leader picks a proposal number `pn` above every pn it has seen (pn =
    k*100 + rank, so leaders never share one) and sends `collect`. Each peon promises (durably
    raises `accepted_pn`) and answers `last` with its pn, last_committed, the committed values
    the leader lacks, and its accepted-but-uncommitted value. Once the whole quorum promised,
    the leader ships committed values to the peons that are behind, and re-proposes the
    uncommitted value with the highest pn found at version last_committed+1 under its own pn.

    Update: one proposal in flight; `begin` -> peons durably accept -> `accept` -> when the
    whole quorum accepted, the leader commits and sends `commit`. Like Ceph we wait for ALL of
    the quorum, not just a majority of it: the quorum is itself a majority of all monitors, so
    this is at least a majority of all monitors (Paxos safety), and it also means that no
    quorum member still holds a read lease on the previous state when a value commits (a peon
    drops its lease on `begin`). A peon that stops answering stalls the proposal until
    `proposal_timeout`, after which the leader calls an election that forms a quorum without
    it. Further client values wait in a bounded queue.

    Leases: an active leader sends `lease` every `lease_renew` seconds; a peon that is up to
    date may serve reads until the lease expires. A peon that hears nothing from its leader
    until its lease expires, or a leader missing a peon's `lease_ack` for a whole lease period,
    calls a new election. Lease expiry is absolute time on the leader's clock, so monitors
    must have roughly synchronised clocks (as in Ceph); the peon also caps it at its own
    now + lease. Within one election epoch a peon with a lease is never behind its leader
    (it drops the lease on `begin`, and refuses one while lagging or holding a newer
    accepted value). As in Ceph, leases are not fenced across epochs: a peon cut off from
    everyone but its old leader may serve reads up to one lease period old while a new
    quorum already commits. Writes are never affected.

Catch-up: committed values are final, so any message carrying them (`last`, `begin`,
`commit`) is applied whatever its epoch, in version order from last_committed+1. A leader
learns each peon's last_committed from `last`, `accept` and `lease_ack` and answers a
lagging peon with a `commit` carrying up to CATCHUP_MAX_VALUES missing values; a peon whose
last_committed is below the leader's one does not take the lease (it cannot serve reads).
No version is ever trimmed here: first_committed is 1 once anything commits.

Durable layout (all values bytes; integers are decimal ASCII):
    paxos/election_epoch, paxos/accepted_pn, paxos/last_committed, paxos/first_committed,
    paxos/uncommitted_pn, paxos/uncommitted_v, paxos/uncommitted_value (absent = none),
    paxos/v/<version as 20 zero-padded digits> -> committed value.
The driver must make `Ready.persist` durable before sending `Ready.messages`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sds.common.errors import Busy, Retry

PN_STRIDE = 100  # pn = k * PN_STRIDE + rank: ranks must be below this
CATCHUP_MAX_VALUES = 500  # committed values per catch-up message
MAX_QUEUED_PROPOSALS = 1024

KEY_EPOCH = "paxos/election_epoch"
KEY_ACCEPTED_PN = "paxos/accepted_pn"
KEY_LAST_COMMITTED = "paxos/last_committed"
KEY_FIRST_COMMITTED = "paxos/first_committed"
KEY_UNCOMMITTED_PN = "paxos/uncommitted_pn"
KEY_UNCOMMITTED_V = "paxos/uncommitted_v"
KEY_UNCOMMITTED_VALUE = "paxos/uncommitted_value"
VALUE_PREFIX = "paxos/v/"

# Roles (Monitor level) and Paxos states (meaningful for leader and peon).
ELECTING, LEADER, PEON = "electing", "leader", "peon"
RECOVERING, ACTIVE, UPDATING = "recovering", "active", "updating"


def value_key(version: int) -> str:
    """Durable key of a committed value; zero padding keeps LMDB key order = version order."""
    return f"{VALUE_PREFIX}{version:020d}"


def _enc(n: int) -> bytes:
    return str(n).encode()


class NotLeader(Retry):
    """Only the leader accepts proposals; `leader` is the current one if known."""

    def __init__(self, leader: int | None):
        super().__init__(f"not the leader (leader is {leader})")
        self.leader = leader


@dataclass
class Timing:
    """Protocol timeouts in seconds; the simulator uses the same defaults."""

    election_timeout: float = 2.0
    lease: float = 3.0
    lease_renew: float = 1.0
    proposal_timeout: float = 5.0


@dataclass
class Message:
    """One protocol message; plain data so the driver can encode it (see paxos_wire)."""

    kind: str
    src: int
    dst: int
    election_epoch: int = 0
    pn: int = 0
    version: int = 0
    last_committed: int = 0
    first_committed: int = 0
    value: bytes = b""
    values: dict[int, bytes] = field(default_factory=dict)
    uncommitted_pn: int = 0
    uncommitted_version: int = 0
    uncommitted_value: bytes = b""
    quorum: list[int] = field(default_factory=list)
    lease_expire: float = 0.0


@dataclass
class Ready:
    """Effects of one call: persist first, then send, then apply `committed` in order."""

    persist: dict[str, bytes | None] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    committed: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class _Uncommitted:
    pn: int
    version: int
    value: bytes


class MonitorCore:
    """Election + Paxos for one monitor; see the module docstring for the protocol."""

    def __init__(self, rank: int, ranks: list[int], durable: dict[str, bytes],
                 timing: Timing | None = None):
        assert rank in ranks and len(set(ranks)) == len(ranks), (rank, ranks)
        assert all(0 <= r < PN_STRIDE for r in ranks), ranks
        self.rank = rank
        self.ranks = sorted(ranks)
        self.timing = timing or Timing()
        self._ready = Ready()
        self._load(durable)
        self._queue: deque[bytes] = deque()
        self._become_electing(0.0)

    # ------------------------------------------------------------------ durable state

    def _load(self, durable: dict[str, bytes]) -> None:
        """Rebuild the durable half of the state; everything else restarts from scratch."""
        def num(key: str) -> int:
            return int(durable.get(key, b"0"))

        self.election_epoch = num(KEY_EPOCH)
        self.accepted_pn = num(KEY_ACCEPTED_PN)
        self.last_committed = num(KEY_LAST_COMMITTED)
        self.first_committed = num(KEY_FIRST_COMMITTED)
        self._values = {int(k[len(VALUE_PREFIX):]): v for k, v in durable.items()
                        if k.startswith(VALUE_PREFIX)}
        self._uncommitted: _Uncommitted | None = None
        if KEY_UNCOMMITTED_VALUE in durable:
            self._uncommitted = _Uncommitted(num(KEY_UNCOMMITTED_PN), num(KEY_UNCOMMITTED_V),
                                             durable[KEY_UNCOMMITTED_VALUE])
        assert all(v in self._values for v in range(self.first_committed or 1,
                                                     self.last_committed + 1))

    def _persist(self, key: str, value: bytes | None) -> None:
        self._ready.persist[key] = value

    def _set_epoch(self, epoch: int) -> None:
        if epoch != self.election_epoch:
            assert epoch > self.election_epoch, (epoch, self.election_epoch)
            self.election_epoch = epoch
            self._persist(KEY_EPOCH, _enc(epoch))

    def _promise(self, pn: int) -> None:
        """Never again accept a pn below `pn`: durable before the reply leaves."""
        if pn > self.accepted_pn:
            self.accepted_pn = pn
            self._persist(KEY_ACCEPTED_PN, _enc(pn))

    def _set_uncommitted(self, unc: _Uncommitted | None) -> None:
        self._uncommitted = unc
        if unc is None:
            for key in (KEY_UNCOMMITTED_PN, KEY_UNCOMMITTED_V, KEY_UNCOMMITTED_VALUE):
                self._persist(key, None)
            return
        assert unc.version == self.last_committed + 1, (unc, self.last_committed)
        self._persist(KEY_UNCOMMITTED_PN, _enc(unc.pn))
        self._persist(KEY_UNCOMMITTED_V, _enc(unc.version))
        self._persist(KEY_UNCOMMITTED_VALUE, unc.value)

    def _store_committed(self, values: dict[int, bytes]) -> None:
        """Append committed values that extend our log contiguously; ignore the rest."""
        start = self.last_committed
        while self.last_committed + 1 in values:
            version = self.last_committed + 1
            self._values[version] = values[version]
            self._persist(value_key(version), values[version])
            self._ready.committed.append((version, values[version]))
            self.last_committed = version
        if self.last_committed == start:
            return
        self._persist(KEY_LAST_COMMITTED, _enc(self.last_committed))
        if self.first_committed == 0:
            self.first_committed = 1
            self._persist(KEY_FIRST_COMMITTED, _enc(1))
        if self._uncommitted and self._uncommitted.version <= self.last_committed:
            self._set_uncommitted(None)

    def _values_after(self, version: int) -> dict[int, bytes]:
        """Committed values a peer at `version` lacks, bounded per message."""
        end = min(self.last_committed, version + CATCHUP_MAX_VALUES)
        return {v: self._values[v] for v in range(max(version, 0) + 1, end + 1)}

    # ------------------------------------------------------------------ public API

    @property
    def is_leader(self) -> bool:
        return self.role == LEADER

    def start(self, now: float) -> Ready:
        """Boot: always begin with an election (volatile state is gone)."""
        self._ready = Ready()
        self._start_election(now)
        return self._take()

    def tick(self, now: float) -> Ready:
        """Fire whichever timeout of the current role has passed; call every ~0.1 s."""
        self._ready = Ready()
        if self.role == ELECTING:
            self._tick_electing(now)
        elif self.role == LEADER:
            self._tick_leader(now)
        elif now >= self._deadline:
            self._start_election(now)
        return self._take()

    def step(self, msg: Message, now: float) -> Ready:
        """Handle one message; unknown kinds and stale or misaddressed messages are dropped."""
        self._ready = Ready()
        handler = self._HANDLERS.get(msg.kind)
        if handler is not None and msg.dst == self.rank and msg.src in self.ranks:
            handler(self, msg, now)
        return self._take()

    def propose(self, value: bytes, now: float) -> Ready:
        """Queue `value` for commit; raises NotLeader on a non-leader, Busy if the queue is full."""
        if self.role != LEADER:
            raise NotLeader(self.leader)
        if len(self._queue) >= MAX_QUEUED_PROPOSALS:
            raise Busy("paxos proposal queue full")
        self._ready = Ready()
        self._queue.append(value)
        self._propose_next(now)
        return self._take()

    def readable(self, now: float) -> bool:
        """True when local reads see the latest committed state: a leader past recovery
        (its in-flight value is not committed yet), or a peon holding a valid lease."""
        if self.role == LEADER:
            return self.paxos_state in (ACTIVE, UPDATING)
        return self.role == PEON and self.paxos_state == ACTIVE and now < self.lease_expire

    def committed_value(self, version: int) -> bytes | None:
        return self._values.get(version)

    def status(self) -> dict:
        return {
            "rank": self.rank, "state": self.role, "paxos_state": self.paxos_state,
            "leader": self.leader, "quorum": list(self.quorum),
            "election_epoch": self.election_epoch, "accepted_pn": self.accepted_pn,
            "last_committed": self.last_committed, "first_committed": self.first_committed,
            "lease_expire": self.lease_expire, "queued": len(self._queue),
        }

    def _take(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        return ready

    def _send(self, kind: str, dst: int, **fields) -> None:
        assert dst != self.rank
        self._ready.messages.append(Message(kind, self.rank, dst, self.election_epoch, **fields))

    def _majority(self, members) -> bool:
        return len(members) * 2 > len(self.ranks)

    # ------------------------------------------------------------------ election

    def _become_electing(self, now: float) -> None:
        """Drop every volatile leader/peon duty; queued proposals are lost (clients retry)."""
        self.role, self.paxos_state = ELECTING, ""
        self.leader: int | None = None
        self.quorum: list[int] = []
        self.lease_expire = 0.0
        self._deadline = now + self.timing.election_timeout
        self._electing_me = False
        self._acked_me: set[int] = set()
        self._leader_acked: int | None = None
        self._queue.clear()

    def _start_election(self, now: float) -> None:
        """Move to a fresh odd epoch, so acks from any earlier round cannot count."""
        self._set_epoch(self.election_epoch + (1 if self.election_epoch % 2 == 0 else 2))
        self._become_electing(now)
        self._campaign(now)

    def _campaign(self, now: float) -> None:
        self._electing_me, self._acked_me = True, {self.rank}
        self._leader_acked = None
        self._deadline = now + self.timing.election_timeout
        for peer in self.ranks:
            if peer != self.rank:
                self._send("propose_election", peer)
        if len(self._acked_me) == len(self.ranks):
            self._victory(now)

    def _tick_electing(self, now: float) -> None:
        if now < self._deadline:
            return
        if self._electing_me and self._majority(self._acked_me):
            self._victory(now)
        else:
            self._start_election(now)

    def _handle_propose(self, msg: Message, now: float) -> None:
        if msg.election_epoch % 2 == 0:
            return  # malformed: proposals are only made in odd epochs
        if msg.election_epoch < self.election_epoch:
            self._handle_old_propose(msg, now)
            return
        if msg.election_epoch > self.election_epoch:
            self._set_epoch(msg.election_epoch)
            self._become_electing(now)
        if self.rank < msg.src:
            if self._electing_me:
                self._send("propose_election", msg.src)  # it may have missed ours
            elif self._leader_acked is None:
                self._campaign(now)
        elif self._leader_acked is None or msg.src <= self._leader_acked:
            self._defer(msg.src, now)

    def _handle_old_propose(self, msg: Message, now: float) -> None:
        """A monitor outside our stable quorum wants in: re-elect so it can join (Ceph)."""
        if self.role in (LEADER, PEON) and msg.src not in self.quorum:
            self._start_election(now)
        elif self._electing_me:
            self._send("propose_election", msg.src)

    def _defer(self, candidate: int, now: float) -> None:
        """Ack `candidate`; wait twice the election timeout for its victory, so that a
        candidate that started its timer when we did gets to declare it first."""
        if self._leader_acked != candidate:
            self._deadline = now + 2 * self.timing.election_timeout
        self._electing_me, self._acked_me = False, set()
        self._leader_acked = candidate
        self._send("ack_election", candidate)

    def _handle_ack(self, msg: Message, now: float) -> None:
        if msg.election_epoch > self.election_epoch and msg.election_epoch % 2 == 1:
            self._set_epoch(msg.election_epoch)
            self._become_electing(now)
            self._campaign(now)
            return
        if msg.election_epoch != self.election_epoch or not self._electing_me:
            return
        self._acked_me.add(msg.src)
        if len(self._acked_me) == len(self.ranks):
            self._victory(now)

    def _victory(self, now: float) -> None:
        assert self._electing_me and self._majority(self._acked_me)
        self._set_epoch(self.election_epoch + 1)
        quorum = sorted(self._acked_me)
        self._become_electing(now)
        self.role, self.leader, self.quorum = LEADER, self.rank, quorum
        for peer in self._peons():
            self._send("victory", peer, quorum=list(quorum))
        self._leader_init(now)

    def _handle_victory(self, msg: Message, now: float) -> None:
        epoch = msg.election_epoch
        if epoch % 2 == 1 or epoch < self.election_epoch or not self._majority(msg.quorum):
            return
        if epoch == self.election_epoch and self.role != ELECTING:
            return  # duplicate, or a rival leader of this epoch: first one wins
        self._set_epoch(epoch)
        self._become_electing(now)
        if self.rank not in msg.quorum:
            return  # left out: our election timeout will call a new election
        self.role, self.leader, self.quorum = PEON, msg.src, sorted(msg.quorum)
        self.paxos_state = RECOVERING
        self._deadline = now + self.timing.proposal_timeout

    # ------------------------------------------------------------------ leader paxos

    def _peons(self) -> list[int]:
        return [r for r in self.quorum if r != self.rank]

    def _from_quorum(self, msg: Message) -> bool:
        return (self.role == LEADER and msg.election_epoch == self.election_epoch
                and msg.src in self.quorum)

    def _leader_init(self, now: float) -> None:
        self._pn_seen = self.accepted_pn
        self._peer_lc: dict[int, int] = {}
        self._ack_at = {peer: now for peer in self._peons()}
        self._pending: _Uncommitted | None = None
        self._accepted: set[int] = set()
        self._collect(now)

    def _collect(self, now: float) -> None:
        """Phase 1 with a pn above any we know of; our own uncommitted value is a candidate."""
        self.paxos_state = RECOVERING
        self.pn = (max(self._pn_seen, self.accepted_pn) // PN_STRIDE + 1) * PN_STRIDE + self.rank
        self._promise(self.pn)
        self._promised = {self.rank}
        self._candidates: list[_Uncommitted] = []
        if self._uncommitted:
            self._candidates.append(self._uncommitted)
        self._deadline = now + self.timing.proposal_timeout
        self._resend_at = now + self.timing.lease_renew
        for peer in self._peons():
            self._send_collect(peer)
        self._maybe_finish_recovery(now)

    def _send_collect(self, peer: int) -> None:
        self._send("collect", peer, pn=self.pn, last_committed=self.last_committed,
                   first_committed=self.first_committed, quorum=list(self.quorum))

    def _handle_last(self, msg: Message, now: float) -> None:
        if not self._from_quorum(msg) or self.paxos_state != RECOVERING:
            return
        self._store_committed(msg.values)
        self._ack_at[msg.src] = now
        if msg.pn > self.pn:
            self._pn_seen = max(self._pn_seen, msg.pn)
            self._collect(now)  # someone promised a higher pn: outbid it
            return
        if msg.pn < self.pn or msg.src in self._promised:
            return  # reply to an older collect, or a duplicate
        self._peer_lc[msg.src] = msg.last_committed
        if msg.last_committed > self.last_committed:
            self._send_collect(msg.src)  # its values came in chunks: ask for the rest
            return
        if msg.uncommitted_pn:
            self._candidates.append(_Uncommitted(
                msg.uncommitted_pn, msg.uncommitted_version, msg.uncommitted_value))
        self._promised.add(msg.src)
        self._maybe_finish_recovery(now)

    def _maybe_finish_recovery(self, now: float) -> None:
        """With the whole quorum promised: catch peons up, then finish the last round."""
        if not self._promised.issuperset(self.quorum):
            return
        assert self._majority(self._promised)
        for peer in self._peons():
            self._catch_up(peer)
        wanted = [c for c in self._candidates if c.version == self.last_committed + 1]
        if wanted:
            self._begin(max(wanted, key=lambda c: c.pn).value, now)
        else:
            self._become_active(now)

    def _catch_up(self, peer: int) -> None:
        known = self._peer_lc.get(peer, 0)
        if known >= self.last_committed:
            return
        lease = self.lease_expire if self.paxos_state == ACTIVE else 0.0
        self._send("commit", peer, values=self._values_after(known),
                   last_committed=self.last_committed, lease_expire=lease)

    def _become_active(self, now: float) -> None:
        self.paxos_state = ACTIVE
        self._extend_lease(now)
        self._propose_next(now)

    def _propose_next(self, now: float) -> None:
        if self.paxos_state == ACTIVE and self._queue:
            self._begin(self._queue.popleft(), now)

    def _begin(self, value: bytes, now: float) -> None:
        """Phase 2 for version last_committed+1: accept it ourselves, then ask the quorum."""
        self.paxos_state = UPDATING
        self._pending = _Uncommitted(self.pn, self.last_committed + 1, value)
        self._set_uncommitted(self._pending)
        self._accepted = {self.rank}
        self._deadline = now + self.timing.proposal_timeout
        self._resend_at = now + self.timing.lease_renew
        for peer in self._peons():
            self._send_begin(peer)
        self._maybe_commit(now)

    def _send_begin(self, peer: int) -> None:
        known = self._peer_lc.get(peer, 0)
        catch_up = self._values_after(known) if known < self.last_committed else {}
        self._send("begin", peer, pn=self.pn, version=self._pending.version,
                   value=self._pending.value, last_committed=self.last_committed,
                   values=catch_up)

    def _handle_accept(self, msg: Message, now: float) -> None:
        if not self._from_quorum(msg) or self.paxos_state != UPDATING:
            return
        self._ack_at[msg.src] = now
        self._peer_lc[msg.src] = max(self._peer_lc.get(msg.src, 0), msg.last_committed)
        if msg.pn == self.pn and msg.version == self._pending.version:
            self._accepted.add(msg.src)
            self._maybe_commit(now)

    def _maybe_commit(self, now: float) -> None:
        if not self._accepted.issuperset(self.quorum):
            return
        assert self._majority(self._accepted)
        done, self._pending = self._pending, None
        self._store_committed({done.version: done.value})
        value = self._values[done.version]  # equal to done.value unless Paxos is broken
        for peer in self._peons():
            self._send("commit", peer, values={done.version: value},
                       last_committed=self.last_committed)
        self._become_active(now)

    def _extend_lease(self, now: float) -> None:
        self.lease_expire = now + self.timing.lease
        self._renew_at = now + self.timing.lease_renew
        for peer in self._peons():
            self._send_lease(peer)

    def _send_lease(self, peer: int) -> None:
        self._send("lease", peer, last_committed=self.last_committed,
                   first_committed=self.first_committed, lease_expire=self.lease_expire)

    def _resend(self, now: float) -> None:
        """Repeat collect/begin to silent peons: both are idempotent, and a lost message
        would otherwise cost a whole proposal_timeout and an election."""
        self._resend_at = now + self.timing.lease_renew
        if self.paxos_state == RECOVERING:
            for peer in sorted(set(self._peons()) - self._promised):
                self._send_collect(peer)
        else:
            for peer in sorted(set(self._peons()) - self._accepted):
                self._send_begin(peer)

    def _handle_lease_ack(self, msg: Message, now: float) -> None:
        if not self._from_quorum(msg):
            return
        self._ack_at[msg.src] = now
        self._peer_lc[msg.src] = msg.last_committed
        self._catch_up(msg.src)  # carries the lease it refused while behind

    def _tick_leader(self, now: float) -> None:
        if self.paxos_state != ACTIVE:
            if now >= self._deadline:
                self._start_election(now)  # a peon stopped answering: re-form the quorum
            elif now >= self._resend_at:
                self._resend(now)
            return
        if any(now - at >= self.timing.lease for at in self._ack_at.values()):
            self._start_election(now)
        elif now >= self._renew_at:
            self._extend_lease(now)

    # ------------------------------------------------------------------ peon paxos

    def _from_leader(self, msg: Message) -> bool:
        return (self.role == PEON and msg.election_epoch == self.election_epoch
                and msg.src == self.leader)

    def _handle_collect(self, msg: Message, now: float) -> None:
        if msg.election_epoch > self.election_epoch and self.rank in msg.quorum:
            self._handle_victory(msg, now)  # the victory was lost; collect carries the quorum
        if not self._from_leader(msg):
            return
        self.paxos_state, self.lease_expire = RECOVERING, 0.0
        self._deadline = now + self.timing.proposal_timeout
        self._promise(msg.pn)
        unc = self._uncommitted or _Uncommitted(0, 0, b"")
        self._send("last", msg.src, pn=self.accepted_pn, last_committed=self.last_committed,
                   first_committed=self.first_committed,
                   values=self._values_after(msg.last_committed),
                   uncommitted_pn=unc.pn, uncommitted_version=unc.version,
                   uncommitted_value=unc.value)

    def _handle_begin(self, msg: Message, now: float) -> None:
        self._store_committed(msg.values)
        if not self._from_leader(msg) or msg.pn < self.accepted_pn:
            return
        if msg.version != self.last_committed + 1:
            return  # cannot accept past a gap; the leader times out and recovers us
        self.paxos_state, self.lease_expire = UPDATING, 0.0  # no reads while updating
        self._deadline = now + self.timing.proposal_timeout
        self._promise(msg.pn)
        self._set_uncommitted(_Uncommitted(msg.pn, msg.version, msg.value))
        self._send("accept", msg.src, pn=msg.pn, version=msg.version,
                   last_committed=self.last_committed)

    def _handle_commit(self, msg: Message, now: float) -> None:
        self._store_committed(msg.values)  # committed values are final, whoever sent them
        if not self._from_leader(msg):
            return
        self._deadline = max(self._deadline, now + self.timing.proposal_timeout)
        if msg.lease_expire:
            self._take_lease(msg, now)

    def _handle_lease(self, msg: Message, now: float) -> None:
        if not self._from_leader(msg):
            return
        self._deadline = now + self.timing.lease
        self._take_lease(msg, now)
        self._send("lease_ack", msg.src, last_committed=self.last_committed,
                   lease_expire=msg.lease_expire)

    def _take_lease(self, msg: Message, now: float) -> None:
        """Serve reads only at the leader's state: not while lagging behind its
        last_committed, nor while holding a newer accepted value (the lease was sent
        before that begin and arrived late)."""
        newer = self._uncommitted and self._uncommitted.version > msg.last_committed
        if self.last_committed >= msg.last_committed and not newer:
            self.paxos_state = ACTIVE
            self.lease_expire = min(msg.lease_expire, now + self.timing.lease)
            self._deadline = self.lease_expire  # silence from here on means trouble

    _HANDLERS = {
        "propose_election": _handle_propose,
        "ack_election": _handle_ack,
        "victory": _handle_victory,
        "collect": _handle_collect,
        "last": _handle_last,
        "begin": _handle_begin,
        "accept": _handle_accept,
        "commit": _handle_commit,
        "lease": _handle_lease,
        "lease_ack": _handle_lease_ack,
    }
