"""Deterministic simulator for the monitor consensus core (sds.mon.paxos).

One seeded random.Random drives everything: a fake clock, a network that loses, duplicates,
delays and so reorders messages, partitions (pairs of ranks that cannot talk), crashes and
restarts (a restarted monitor is a new MonitorCore built from its durable dict only), and
clients proposing values at random monitors. The same seed always replays the same run.

Checkers run after every Ready (TigerBeetle VOPR / FoundationDB style):
  * agreement: a version is only ever committed with one value, on every node and across
    restarts (tracked in `chosen`);
  * order and durability: each node commits versions in order 1, 2, 3... and has persisted
    a committed value before reporting it, so its log is always a prefix of `chosen`;
  * leases: a peon that may serve reads is not behind what its leader committed in the
    same election epoch (leases are not fenced across epochs, as in Ceph: see paxos.py);
and after healing, liveness: a leader is elected, a fresh value commits, and every node's
log converges to `chosen` within bounded simulated time.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from sds.common.errors import Busy
from sds.mon.paxos import (
    ACTIVE,
    LEADER,
    PEON,
    Message,
    MonitorCore,
    NotLeader,
    Ready,
    Timing,
    value_key,
)

TICK_S = 0.1
HEAL_DEADLINE_S = 60.0
MAX_EVENTS = 50_000  # per run: a message storm is a bug, not a slow test
TRACE_TAIL = 300


@dataclass
class Faults:
    """Fault probabilities of one run; drawn from the seed so every run is self-describing."""

    loss: float = 0.0           # per message
    dup: float = 0.0            # per message
    delay_max_s: float = 0.01   # uniform delay, so also reordering
    long_delay: float = 0.0     # per message: delayed up to 4 s more (a stale message later)
    crash: float = 0.0          # per Ready: crash right after persisting and sending it
    restart_max_s: float = 3.0  # a crashed monitor restarts within this
    partition: float = 0.0      # per chaos step
    power_loss: float = 0.0     # per chaos step: crash a random majority at once
    propose: float = 0.5        # per chaos step

    @classmethod
    def draw(cls, rng: random.Random) -> Faults:
        return cls(loss=rng.choice([0.0, 0.02, 0.1, 0.3]), dup=rng.choice([0.0, 0.05, 0.2]),
                   delay_max_s=rng.choice([0.005, 0.05, 0.5]),
                   long_delay=rng.choice([0.0, 0.01, 0.05]),
                   crash=rng.choice([0.0, 0.002, 0.01, 0.03, 0.1]),
                   restart_max_s=rng.choice([0.5, 3.0, 10.0, 20.0]),
                   partition=rng.choice([0.0, 0.02, 0.1]), propose=rng.choice([0.3, 0.8]),
                   power_loss=rng.choice([0.0, 0.0, 0.01, 0.03]))


@dataclass(order=True)
class _Event:
    time: float
    seq: int
    kind: str = field(compare=False)
    rank: int = field(compare=False)
    msg: Message | None = field(compare=False, default=None)


class SafetyViolation(AssertionError):
    pass


class Sim:
    """A cluster of MonitorCores on a simulated network and clock."""

    def __init__(self, seed: int, n: int, faults: Faults | None = None, trace: bool = False):
        self.rng = random.Random(seed)
        self.faults = faults or Faults.draw(self.rng)
        self.timing = Timing()
        self.ranks = list(range(n))
        self.now = 0.0
        self.durable: dict[int, dict[str, bytes]] = {r: {} for r in self.ranks}
        self.nodes: dict[int, MonitorCore | None] = {r: None for r in self.ranks}
        self.applied = dict.fromkeys(self.ranks, 0)
        self.chosen: dict[int, bytes] = {}
        self.blocked: set[frozenset[int]] = set()
        self.trace: list[str] | None = [] if trace else None
        self._events: list[_Event] = []
        self._seq = 0
        self._proposals = 0
        self._values_made = 0
        self._log(f"seed={seed} n={n} {self.faults}")
        for rank in self.ranks:
            self.restart(rank)
            self._schedule(self.rng.uniform(0, TICK_S), "tick", rank)
        self._schedule(0.5, "chaos", -1)

    # --------------------------------------------------------------- plumbing

    def _log(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:9.3f} {line}")

    def _schedule(self, delay: float, kind: str, rank: int, msg: Message | None = None) -> None:
        self._seq += 1
        heapq.heappush(self._events, _Event(self.now + delay, self._seq, kind, rank, msg))

    def apply(self, rank: int, ready: Ready) -> None:
        """What a driver does with a Ready: persist, check, then send."""
        store = self.durable[rank]
        for key, value in ready.persist.items():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        for version, value in ready.committed:
            self._check_commit(rank, version, value)
        messages = ready.messages
        crash = bool(ready.persist) and self.rng.random() < self.faults.crash
        if crash:  # the process dies after persisting, having sent only some messages
            messages = messages[:self.rng.randint(0, len(messages))]
        for msg in messages:
            self._send(msg)
        if crash:
            self.crash(rank)
        self._check_leases()

    def _check_commit(self, rank: int, version: int, value: bytes) -> None:
        self._log(f"mon.{rank} commits v{version} {value!r}")
        if version != self.applied[rank] + 1:
            raise SafetyViolation(f"mon.{rank} committed v{version} after v{self.applied[rank]}")
        if self.chosen.setdefault(version, value) != value:
            raise SafetyViolation(f"mon.{rank} committed v{version}={value!r} but "
                                  f"{self.chosen[version]!r} was committed before")
        if self.durable[rank].get(value_key(version)) != value:
            raise SafetyViolation(f"mon.{rank} reported v{version} before persisting it")
        self.applied[rank] = version

    def _check_leases(self) -> None:
        """A peon serving reads is never behind what its leader committed in that epoch."""
        for rank, node in self.nodes.items():
            if node is None or node.role != PEON or not node.readable(self.now):
                continue
            leader = self.nodes[node.leader]
            if (leader is not None and leader.is_leader
                    and leader.election_epoch == node.election_epoch
                    and leader.last_committed > node.last_committed):
                raise SafetyViolation(f"mon.{rank} readable at v{node.last_committed} but its "
                                      f"leader committed v{leader.last_committed}")

    def _send(self, msg: Message) -> None:
        f = self.faults
        if self.rng.random() < f.loss:
            return
        copies = 2 if self.rng.random() < f.dup else 1
        for _ in range(copies):
            delay = self.rng.uniform(0.0005, f.delay_max_s)
            if self.rng.random() < f.long_delay:
                delay += self.rng.uniform(0, 4.0)
            self._schedule(delay, "deliver", msg.dst, msg)

    def _cut(self, a: int, b: int) -> bool:
        return frozenset((a, b)) in self.blocked

    # --------------------------------------------------------------- events

    def run_until(self, end: float) -> None:
        assert end >= self.now
        while self._events and self._events[0].time <= end:
            event = heapq.heappop(self._events)
            if event.seq > MAX_EVENTS:
                raise AssertionError(f"more than {MAX_EVENTS} events: message storm")
            self.now = event.time
            getattr(self, f"_on_{event.kind}")(event)
        self.now = end

    def _on_tick(self, event: _Event) -> None:
        node = self.nodes[event.rank]
        if node is not None:
            self.apply(event.rank, node.tick(self.now))
        self._schedule(TICK_S, "tick", event.rank)

    def _on_deliver(self, event: _Event) -> None:
        msg, node = event.msg, self.nodes[event.rank]
        if node is None or self._cut(msg.src, msg.dst):
            return
        self._log(f"mon.{msg.dst} <- {msg.kind} from {msg.src} e{msg.election_epoch} "
                  f"pn{msg.pn} v{msg.version} lc{msg.last_committed}")
        self.apply(event.rank, node.step(msg, self.now))

    def _on_chaos(self, event: _Event) -> None:
        f, rng = self.faults, self.rng
        if rng.random() < f.propose:
            self._client_burst()
        if rng.random() < f.power_loss:
            for rank in rng.sample(self.ranks, len(self.ranks) // 2 + 1):
                if self.nodes[rank] is not None:
                    self.crash(rank)
        if rng.random() < f.partition:
            self.partition()
        elif self.blocked and rng.random() < 0.1:
            self.blocked.clear()
            self._log("heal partition")
        self._schedule(rng.uniform(0.1, 0.5), "chaos", -1)

    # --------------------------------------------------------------- actions

    def _client_burst(self) -> None:
        """Clients mostly find a (maybe stale) leader, sometimes hit a random monitor."""
        leaders = [r for r, n in self.nodes.items() if n is not None and n.role == LEADER]
        for _ in range(self.rng.randint(1, 3)):
            rank = self.rng.choice(leaders if leaders and self.rng.random() < 0.8 else self.ranks)
            self._values_made += 1
            self.propose_at(rank, f"c{self._values_made}".encode())

    def propose_at(self, rank: int, value: bytes) -> bool:
        node = self.nodes[rank]
        if node is None:
            return False
        try:
            ready = node.propose(value, self.now)
        except (NotLeader, Busy):
            return False
        self._proposals += 1
        self._log(f"mon.{rank} propose {value!r}")
        self.apply(rank, ready)
        return True

    def crash(self, rank: int) -> None:
        self._log(f"crash mon.{rank}")
        self.nodes[rank] = None
        self._schedule(self.rng.uniform(0.01, self.faults.restart_max_s), "restart", rank)

    def _on_restart(self, event: _Event) -> None:
        if self.nodes[event.rank] is None:
            self.restart(event.rank)

    def restart(self, rank: int) -> None:
        """A new process: only the durable dict survives; its state machine reloads from it."""
        self._log(f"start mon.{rank}")
        node = MonitorCore(rank, self.ranks, dict(self.durable[rank]), self.timing)
        self.nodes[rank] = node
        self.applied[rank] = node.last_committed
        for version in range(1, node.last_committed + 1):
            if node.committed_value(version) != self.chosen.get(version):
                raise SafetyViolation(f"mon.{rank} restarted with a wrong v{version}")
        self.apply(rank, node.start(self.now))

    def partition(self) -> None:
        """Random split; half of the time the leader is cut off with at most one peer."""
        side = {r for r in self.ranks if self.rng.random() < 0.5}
        leaders = [r for r, n in self.nodes.items() if n is not None and n.role == LEADER]
        if leaders and self.rng.random() < 0.5:
            side = {leaders[0], self.rng.choice(self.ranks)}
        self.blocked = {frozenset((a, b)) for a in side for b in self.ranks if b not in side}
        self._log(f"partition {sorted(side)} | {sorted(set(self.ranks) - side)}")

    def heal(self) -> None:
        """End of the fault phase: no loss, no duplicates, short delays, everyone up."""
        self._log("HEAL")
        self.faults = Faults(delay_max_s=0.05, propose=0.0)
        self.blocked.clear()
        for rank in self.ranks:
            if self.nodes[rank] is None:
                self.restart(rank)

    # --------------------------------------------------------------- checks

    def leader(self) -> MonitorCore | None:
        leaders = [n for n in self.nodes.values()
                   if n is not None and n.role == LEADER and n.paxos_state == ACTIVE]
        return leaders[0] if len(leaders) == 1 else None

    def converged(self, value: bytes) -> bool:
        top = max(self.chosen, default=0)
        if value not in self.chosen.values():
            return False
        return all(n is not None and n.last_committed == top for n in self.nodes.values())

    def check_final(self) -> None:
        top = max(self.chosen, default=0)
        assert sorted(self.chosen) == list(range(1, top + 1)), "chosen versions have a gap"
        for rank, node in self.nodes.items():
            for version, value in self.chosen.items():
                assert node.committed_value(version) == value, (rank, version)


def run_seed(seed: int, n: int, fault_s: float = 30.0, trace: bool = False) -> Sim:
    """Fault phase, then heal and require a fresh value to commit everywhere.

    With `trace`, a failure carries the last TRACE_TAIL simulator events as an exception note.
    """
    sim = Sim(seed, n, trace=trace)
    try:
        sim.run_until(fault_s)
        sim.heal()
        _converge(sim, f"final-{seed}".encode())
    except AssertionError as exc:
        if sim.trace is not None:
            exc.add_note("\n".join(sim.trace[-TRACE_TAIL:]))
        raise
    return sim


def _converge(sim: Sim, final: bytes) -> None:
    """Liveness: within HEAL_DEADLINE_S a leader commits `final` and every log converges."""
    proposed_at = None
    deadline = sim.now + HEAL_DEADLINE_S
    while not sim.converged(final):
        if sim.now >= deadline:
            raise AssertionError(f"no convergence {HEAL_DEADLINE_S}s after healing: "
                                 f"{[n.status() for n in sim.nodes.values()]}")
        leader = sim.leader()
        retry = proposed_at is None or sim.now - proposed_at > 10.0
        if leader is not None and retry and sim.propose_at(leader.rank, final):
            proposed_at = sim.now
        sim.run_until(sim.now + 0.25)
    sim.check_final()
