"""Deterministic simulator for the monitor consensus core (sds.mon.paxos).

Built on tests/harness: one seeded World drives a fake clock, a network that loses,
duplicates, delays and so reorders messages, partitions (pairs of ranks that cannot talk),
crashes and restarts (a restarted monitor is a new MonitorCore built from its durable dict
only), and clients proposing values at random monitors. The same seed replays the same run;
the seed also fixes the number of monitors (`mons_for`).

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

import random
from dataclasses import dataclass

from harness import world
from harness.host import Host

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
MONS_BY_BASE = {0: 3, 1: 5, 2: 1}  # seed // SEED_BASE -> number of monitors
SEED_BASE = 1_000_000


def mons_for(seed: int) -> int:
    """The seed names the cluster size too, so one variable replays any run."""
    return MONS_BY_BASE[seed // SEED_BASE]


@dataclass
class Faults(world.Faults):
    """Fault probabilities of one run; drawn from the seed so every run is self-describing."""

    long_delay: float | None = 0.0  # monitors' messages may arrive seconds late
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


class SafetyViolation(AssertionError):
    pass


class Sim(world.Simulation):
    """A cluster of MonitorCores on a simulated network and clock."""

    faults_type = Faults
    max_events = MAX_EVENTS

    def __init__(self, seed: int, n: int, trace: bool = False):
        super().__init__(seed, trace)
        w = self.world
        self.timing = Timing()
        self.ranks = list(range(n))
        self.hosts = {r: self._host(r) for r in self.ranks}
        self.applied = dict.fromkeys(self.ranks, 0)
        self.chosen: dict[int, bytes] = {}
        self._proposals = 0
        self._values_made = 0
        w.log(f"seed={seed} n={n} {self.faults}")
        for rank in self.ranks:
            self.restart(rank)
            w.schedule(w.rng.uniform(0, TICK_S), self._on_tick, rank)
        w.schedule(0.5, self._on_chaos)

    def _host(self, rank: int) -> Host:
        host = Host(lambda durable: MonitorCore(rank, self.ranks, durable, self.timing),
                    {"messages": self._send})
        return self.drive(host, lambda ready: self._check_commits(rank, ready),
                          lambda: self.crash(rank))

    @property
    def nodes(self) -> dict[int, MonitorCore | None]:
        return {r: h.core for r, h in self.hosts.items()}

    def apply(self, rank: int, ready: Ready) -> None:
        """Persist, check the commits, send (a crash may cut the sends short), check leases."""
        self.hosts[rank].apply(ready)
        self._check_leases()

    def _send(self, msg: Message) -> None:
        self.world.send(msg.src, msg.dst, self._on_deliver, msg)

    def _check_commits(self, rank: int, ready: Ready) -> None:
        for version, value in ready.committed:
            self.world.log(f"mon.{rank} commits v{version} {value!r}")
            if version != self.applied[rank] + 1:
                raise SafetyViolation(
                    f"mon.{rank} committed v{version} after v{self.applied[rank]}")
            if self.chosen.setdefault(version, value) != value:
                raise SafetyViolation(f"mon.{rank} committed v{version}={value!r} but "
                                      f"{self.chosen[version]!r} was committed before")
            if self.hosts[rank].durable.get(value_key(version)) != value:
                raise SafetyViolation(f"mon.{rank} reported v{version} before persisting it")
            self.applied[rank] = version

    def _check_leases(self) -> None:
        """A peon serving reads is never behind what its leader committed in that epoch."""
        now = self.world.now
        for rank, host in self.hosts.items():
            node = host.core
            if node is None or node.role != PEON or not node.readable(now):
                continue
            leader = self.hosts[node.leader].core
            if (leader is not None and leader.is_leader
                    and leader.election_epoch == node.election_epoch
                    and leader.last_committed > node.last_committed):
                raise SafetyViolation(f"mon.{rank} readable at v{node.last_committed} but its "
                                      f"leader committed v{leader.last_committed}")

    # --------------------------------------------------------------- events

    def _on_tick(self, rank: int) -> None:
        node = self.hosts[rank].core
        if node is not None:
            self.apply(rank, node.tick(self.world.now))
        self.world.schedule(TICK_S, self._on_tick, rank)

    def _on_deliver(self, rank: int, msg: Message) -> None:
        node = self.hosts[rank].core
        if node is None:
            return
        self.world.log(f"mon.{msg.dst} <- {msg.kind} from {msg.src} e{msg.election_epoch} "
                       f"pn{msg.pn} v{msg.version} lc{msg.last_committed}")
        self.apply(rank, node.step(msg, self.world.now))

    def _on_chaos(self) -> None:
        f, rng, w = self.faults, self.rng, self.world
        if rng.random() < f.propose:
            self._client_burst()
        if rng.random() < f.power_loss:
            for rank in rng.sample(self.ranks, len(self.ranks) // 2 + 1):
                if self.hosts[rank].core is not None:
                    self.crash(rank)
        if rng.random() < f.partition:
            self.partition()
        elif w.blocked and rng.random() < 0.1:
            w.join()
            w.log("heal partition")
        w.schedule(rng.uniform(0.1, 0.5), self._on_chaos)

    # --------------------------------------------------------------- actions

    def _leaders(self) -> list[int]:
        return [r for r, h in self.hosts.items() if h.core is not None and h.core.role == LEADER]

    def _client_burst(self) -> None:
        """Clients mostly find a (maybe stale) leader, sometimes hit a random monitor."""
        leaders = self._leaders()
        for _ in range(self.rng.randint(1, 3)):
            rank = self.rng.choice(leaders if leaders and self.rng.random() < 0.8 else self.ranks)
            self._values_made += 1
            self.propose_at(rank, f"c{self._values_made}".encode())

    def propose_at(self, rank: int, value: bytes) -> bool:
        node = self.hosts[rank].core
        if node is None:
            return False
        try:
            ready = node.propose(value, self.world.now)
        except (NotLeader, Busy):
            return False
        self._proposals += 1
        self.world.log(f"mon.{rank} propose {value!r}")
        self.apply(rank, ready)
        return True

    def crash(self, rank: int) -> None:
        self.world.log(f"crash mon.{rank}")
        self.hosts[rank].crash()
        self.world.schedule(self.rng.uniform(0.01, self.faults.restart_max_s),
                            self._on_restart, rank)

    def _on_restart(self, rank: int) -> None:
        if self.hosts[rank].core is None:
            self.restart(rank)

    def restart(self, rank: int) -> None:
        """A new process: only the durable dict survives; its state machine reloads from it."""
        self.world.log(f"start mon.{rank}")
        node = self.hosts[rank].boot()
        self.applied[rank] = node.last_committed
        for version in range(1, node.last_committed + 1):
            if node.committed_value(version) != self.chosen.get(version):
                raise SafetyViolation(f"mon.{rank} restarted with a wrong v{version}")
        self.apply(rank, node.start(self.world.now))

    def partition(self) -> None:
        """Random split; half of the time the leader is cut off with at most one peer."""
        side = {r for r in self.ranks if self.rng.random() < 0.5}
        leaders = self._leaders()
        if leaders and self.rng.random() < 0.5:
            side = {leaders[0], self.rng.choice(self.ranks)}
        self.world.partition(side, self.ranks)

    def heal(self) -> None:
        """End of the fault phase: no loss, no duplicates, short delays, everyone up."""
        self.world.log("HEAL")
        self.set_faults(Faults(delay_max_s=0.05, propose=0.0))
        self.world.join()
        for rank in self.ranks:
            if self.hosts[rank].core is None:
                self.restart(rank)

    # --------------------------------------------------------------- checks

    def leader(self) -> MonitorCore | None:
        leaders = [h.core for h in self.hosts.values() if h.core is not None
                   and h.core.role == LEADER and h.core.paxos_state == ACTIVE]
        return leaders[0] if len(leaders) == 1 else None

    def converged(self, value: bytes) -> bool:
        top = max(self.chosen, default=0)
        if value not in self.chosen.values():
            return False
        return all(h.core is not None and h.core.last_committed == top
                   for h in self.hosts.values())

    def check_final(self) -> None:
        top = max(self.chosen, default=0)
        assert sorted(self.chosen) == list(range(1, top + 1)), "chosen versions have a gap"
        for rank, host in self.hosts.items():
            for version, value in self.chosen.items():
                assert host.core.committed_value(version) == value, (rank, version)


def run_seed(seed: int, n: int | None = None, fault_s: float = 30.0,
             trace: bool = False) -> Sim:
    """Fault phase, then heal and require a fresh value to commit everywhere.

    With `trace`, a failure carries the trace tail as an exception note.
    """
    sim = Sim(seed, mons_for(seed) if n is None else n, trace=trace)
    with sim.world.tail_on_failure():
        sim.run_until(fault_s)
        sim.heal()
        _converge(sim, f"final-{seed}".encode())
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
