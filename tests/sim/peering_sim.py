"""Deterministic simulator for PG peering and recovery (sds.osd.peering).

Built on tests/harness: one seeded World drives a fake clock, a network that loses,
duplicates, delays and so reorders messages, a monitor publishing OSD maps (crash -> marked
down after a delay, restart -> marked up with a new incarnation, flaps of live OSDs), and a
client writing and reading through the current primary. Each OSD is a harness.osd.OsdHost: a PeeringCore
with an in-memory object store (oid -> (version, content)) and a durable dict; a crash keeps
only those two. Writes are acked when every acting member applied them, as in the real OSD.

Checkers (TigerBeetle VOPR style):
  * after every event, on the OSD it touched: the store agrees with the log for every
    object not in the missing set, and every missing need lies above last_complete;
  * every read served by an active primary returns the last acked write or a later one,
    and never an object missing on the primary;
  * after healing (no faults, every OSD up): the PG reaches active+clean within bounded
    simulated time, every acting member holds the same objects, and every acked write is
    there (its content, or a later write).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from harness import world
from harness.osd import Held, OsdHost

from sds.osd.peering import ZERO, Entry, MapView, Message, PeeringCore, Ready, Recover

TICK_S = 0.1
REPOP_RETRY_S = 0.5
HEAL_DEADLINE_S = 120.0
MAX_EVENTS = 60_000


@dataclass
class Faults(world.Faults):
    flap: float = 0.0           # per chaos step: a live OSD is marked down for a while
    kill: float = 0.0           # per chaos step: crash a random OSD
    write: float = 0.7          # per chaos step
    read: float = 0.5

    @classmethod
    def draw(cls, rng: random.Random) -> Faults:
        return cls(loss=rng.choice([0.0, 0.02, 0.1, 0.25]), dup=rng.choice([0.0, 0.05, 0.2]),
                   delay_max_s=rng.choice([0.005, 0.05, 0.4]),
                   crash=rng.choice([0.0, 0.002, 0.01, 0.03]),
                   restart_max_s=rng.choice([0.5, 3.0, 8.0]),
                   flap=rng.choice([0.0, 0.02, 0.08]), kill=rng.choice([0.0, 0.03, 0.1]),
                   write=rng.choice([0.5, 0.9]), read=rng.choice([0.2, 0.6]))


@dataclass
class _Write:
    entry: Entry
    content: str | None
    epoch: int
    primary: int
    members: tuple[int, ...]
    acked: set[int]
    sent: float


class SafetyViolation(AssertionError):
    pass


class Sim(world.Simulation):
    faults_type = Faults
    max_events = MAX_EVENTS

    def __init__(self, seed: int, trace: bool = False):
        super().__init__(seed, trace)
        w, rng = self.world, self.rng
        self.n = rng.choice([3, 4, 5])
        self.size = 3
        self.min_size = rng.choice([1, 2, 2])
        self.log_max = rng.choice([3, 6, 30])
        self.max_active = rng.choice([1, 2, 4])
        self.oids = [f"obj{i}" for i in range(rng.choice([3, 8, 20]))]
        self.pref = list(range(self.n))
        rng.shuffle(self.pref)
        self.hosts = {o: self._host(o) for o in range(self.n)}
        self.up: set[int] = set()
        self.up_from: dict[int, int] = {}
        self.maps: list[MapView] = []
        self.acked: dict[str, tuple[tuple[int, int], str | None]] = {}
        self.writes: dict[tuple[int, tuple[int, int]], _Write] = {}
        self.busy_oids: set[str] = set()
        self.deletes: dict[str, list[tuple[int, int]]] = {}  # versions of issued deletes
        self.made = 0
        self.reads_served = 0
        w.log(f"seed={seed} n={self.n} pref={self.pref} min_size={self.min_size} "
              f"log_max={self.log_max} max_active={self.max_active} {self.faults}")
        for osd in range(self.n):
            self.up.add(osd)
            self.up_from[osd] = 1
            self.hosts[osd].boot()
        self.publish()
        for osd in range(self.n):
            w.schedule(rng.uniform(0, TICK_S), self._on_tick, osd)
        w.schedule(0.2, self._on_chaos)

    def _host(self, osd: int) -> OsdHost:
        host = OsdHost(osd, {"messages": self._send, "recover": lambda a: self._recover(osd, a)},
                       max_active=self.max_active, log_max=self.log_max, retry_ticks=5)
        return self.drive(host, lambda ready: self.check_node(osd), lambda: self.crash(osd))

    # ------------------------------------------------------------------ plumbing

    def _send(self, msg: Message) -> None:
        self.world.send(msg.src, msg.dst, self._on_core, msg)

    def _recover(self, osd: int, action: Recover) -> None:
        self.world.log(f"osd.{osd} recover {action.oid} {action.need} from osd.{action.source} "
                       f"to {action.targets}")
        self.world.send(osd, action.source, self._on_pull, action)

    def apply(self, osd: int, ready: Ready, change: tuple[str, Held | None] | None = None) -> None:
        self.hosts[osd].apply(ready, change)

    # ------------------------------------------------------------------ maps

    def publish(self) -> None:
        acting = tuple([o for o in self.pref if o in self.up][:self.size])
        view = MapView(len(self.maps) + 1, acting, frozenset(self.up), dict(self.up_from),
                       self.size, self.min_size)
        self.maps.append(view)
        self.world.log(f"map e{view.epoch} acting={list(acting)} up={sorted(self.up)}")
        for host in self.hosts.values():
            if host.core is not None:
                host.catch_up(self.maps)

    def crash(self, osd: int) -> None:
        host = self.hosts[osd]
        if host.core is None:
            return
        self.world.log(f"crash osd.{osd}")
        host.crash()
        self.world.schedule(self.rng.uniform(0.2, 1.5), self._on_markdown, osd, self.up_from[osd])
        self.world.schedule(self.rng.uniform(0.3, self.faults.restart_max_s), self.restart, osd)

    def restart(self, osd: int) -> None:
        host = self.hosts[osd]
        if host.core is not None:
            return
        self.world.log(f"start osd.{osd}")
        host.boot()
        self.check_node(osd)
        self.up.add(osd)
        self.up_from[osd] = len(self.maps) + 1  # boots with a new incarnation
        self.publish()

    # ------------------------------------------------------------------ events

    def _on_tick(self, osd: int) -> None:
        core = self.hosts[osd].core
        if core is not None:
            self.apply(osd, core.tick())
        self._retry_writes(osd)
        self.world.schedule(TICK_S, self._on_tick, osd)

    def _on_markdown(self, osd: int, up_from: int) -> None:
        if up_from == self.up_from.get(osd) and osd in self.up:
            self.up.discard(osd)
            self.publish()

    def _on_markup(self, osd: int) -> None:
        if osd not in self.up and self.hosts[osd].core is not None:
            self.up.add(osd)
            self.up_from[osd] = len(self.maps) + 1
            self.publish()

    def _on_core(self, osd: int, msg: Message) -> None:
        host = self.hosts[osd]
        if host.core is None:
            return
        if msg.kind == "scan":
            self._send(host.scan_reply(msg))
            return
        host.apply(host.core.step(msg))

    def _on_pull(self, osd: int, action: Recover) -> None:
        host = self.hosts[osd]
        if host.core is None:
            return
        held = host.store.get(action.oid)
        if not action.need.matches(held[0] if held else None):
            self.world.log(f"osd.{osd} cannot serve {action.oid} {action.need}: has {held}")
            return
        for target in action.targets:
            self.world.send(osd, target, self._on_push,
                            (action.oid, action.need, action.epoch, held))

    def _on_push(self, osd: int, data: tuple) -> None:
        host = self.hosts[osd]
        if host.core is not None:
            host.push(*data)

    # ------------------------------------------------------------------ client

    def _on_chaos(self) -> None:
        f, rng = self.faults, self.rng
        if rng.random() < f.write:
            for _ in range(rng.randint(1, 3)):
                self.client_write(rng.choice(self.oids), delete=rng.random() < 0.1)
        if rng.random() < f.read:
            self.client_read(rng.choice(self.oids))
        if rng.random() < f.kill:
            self.crash(rng.randrange(self.n))
        if rng.random() < f.flap:
            osd = rng.randrange(self.n)
            if osd in self.up and self.hosts[osd].core is not None:
                self.up.discard(osd)
                self.publish()
                self.world.schedule(rng.uniform(0.5, 5.0), self._on_markup, osd)
        self.world.schedule(rng.uniform(0.05, 0.3), self._on_chaos)

    def primary(self) -> tuple[int, PeeringCore] | None:
        acting = self.maps[-1].acting
        if not acting or self.hosts[acting[0]].core is None:
            return None
        return acting[0], self.hosts[acting[0]].core

    def client_write(self, oid: str, delete: bool = False) -> bool:
        found = self.primary()
        if found is None or oid in self.busy_oids:
            return False
        osd, core = found
        if not core.serves_io():
            return False
        if core.is_degraded(oid):
            self.apply(osd, core.need_object(oid))
            return False
        self.made += 1
        content = None if delete else f"{oid}#{self.made}"
        entry = self.hosts[osd].write(oid, f"client.{self.made}", content)
        self.world.log(f"osd.{osd} write {entry}")
        if delete:
            self.deletes.setdefault(oid, []).append(entry.version)
        members = core.interval.acting
        write = _Write(entry, content, core.interval.epoch, osd, members, {osd}, self.now)
        self.writes[(write.epoch, entry.version)] = write
        self.busy_oids.add(oid)
        self._send_repops(write)
        self._maybe_ack(write)
        return True

    def _send_repops(self, write: _Write) -> None:
        write.sent = self.now
        for member in write.members:
            if member not in write.acked:
                self.world.send(write.primary, member, self._on_repop, write)

    def _on_repop(self, osd: int, write: _Write) -> None:
        host = self.hosts[osd]
        core = host.core
        if core is None:
            return
        ready = host.replica_write(write.entry, write.epoch, write.content)
        if ready is not None and host.core is core:
            self.world.send(osd, write.primary, self._on_repop_ack, (write, osd))

    def _on_repop_ack(self, osd: int, data: tuple[_Write, int]) -> None:
        write, member = data
        if (write.epoch, write.entry.version) in self.writes:
            write.acked.add(member)
            self._maybe_ack(write)
    def _maybe_ack(self, write: _Write) -> None:
        core = self.hosts[write.primary].core
        key = (write.epoch, write.entry.version)
        if core is None or core.interval.epoch != write.epoch:
            self._drop_write(key)
        elif write.acked >= set(write.members):
            self.world.log(f"ack {write.entry} {write.content}")
            old = self.acked.get(write.entry.oid)
            assert old is None or old[0] < write.entry.version, (old, write.entry)
            self.acked[write.entry.oid] = (write.entry.version, write.content)
            self._drop_write(key)

    def _drop_write(self, key) -> None:
        write = self.writes.pop(key, None)
        if write is not None:
            self.busy_oids.discard(write.entry.oid)

    def _retry_writes(self, osd: int) -> None:
        for key, write in list(self.writes.items()):
            if write.primary != osd:
                continue
            core = self.hosts[osd].core
            if core is None or core.interval.epoch != write.epoch:
                self._drop_write(key)
            elif self.now - write.sent >= REPOP_RETRY_S:
                self._send_repops(write)

    def client_read(self, oid: str) -> None:
        found = self.primary()
        if found is None:
            return
        osd, core = found
        if not core.serves_io():
            return
        if core.is_missing(oid):
            self.apply(osd, core.need_object(oid))
            return
        self.reads_served += 1
        held = self.hosts[osd].store.get(oid)
        self._check_acked(osd, oid, held, "read")

    # ------------------------------------------------------------------ checks

    def _check_acked(self, osd: int, oid: str, held: Held | None, what: str) -> None:
        acked = self.acked.get(oid)
        if acked is None:
            return
        version, content = acked
        later_delete = any(v > version for v in self.deletes.get(oid, ()))
        ok = (held is not None and held[0] > version) or (
            held is None if content is None else held == (version, content)) or (
            held is None and later_delete)
        if not ok:
            raise SafetyViolation(f"{what} of {oid} on osd.{osd} gives {held}; "
                                  f"acked {version} {content!r} is lost")

    def check_node(self, osd: int) -> None:
        """The store agrees with the log except for missing objects; last_complete honest."""
        host = self.hosts[osd]
        core = host.core
        if core is None:
            return
        latest: dict[str, Entry] = {}
        for version in sorted(core.log):
            latest[core.log[version].oid] = core.log[version]
        for oid, entry in latest.items():
            if oid in core.missing:
                continue
            held = host.store.get(oid)
            expect = None if entry.delete else entry.version
            if (held[0] if held else None) != expect:
                raise SafetyViolation(f"osd.{osd} holds {oid} at {held} but its log says "
                                      f"{entry} and it is not in its missing set")
        lc = core.last_complete()
        if lc > core.last_update:
            raise SafetyViolation(f"osd.{osd} last_complete {lc} > last_update")
        for oid, need in core.missing.items():
            if need.version <= lc and need.version != ZERO:
                raise SafetyViolation(f"osd.{osd} last_complete {lc} but misses {oid} {need}")

    def heal(self) -> None:
        self.world.log("HEAL")
        self.set_faults(Faults(delay_max_s=0.05, write=0.0, read=0.0))
        for osd, host in self.hosts.items():
            if host.core is None:
                self.restart(osd)
        if set(self.hosts) - self.up:
            for osd in set(self.hosts) - self.up:
                self.up.add(osd)
                self.up_from[osd] = len(self.maps) + 1
            self.publish()

    def clean(self) -> bool:
        found = self.primary()
        return (found is not None and found[1].state_name() == "active+clean"
                and not self.writes)

    def check_final(self) -> None:
        acting = self.maps[-1].acting
        stores = {o: self.hosts[o].store for o in acting}
        first = stores[acting[0]]
        for osd, store in stores.items():
            core = self.hosts[osd].core
            assert not core.missing, (osd, core.missing)
            if store != first:
                raise SafetyViolation(f"osd.{osd} store {store} differs from primary "
                                      f"osd.{acting[0]} {first}")
        for oid in self.acked:
            self._check_acked(acting[0], oid, first.get(oid), "final state")


def run_seed(seed: int, fault_s: float = 12.0, trace: bool = False) -> Sim:
    sim = Sim(seed, trace=trace)
    with sim.world.tail_on_failure():
        sim.run_until(fault_s)
        sim.heal()
        deadline = sim.now + HEAL_DEADLINE_S
        while not sim.clean():
            if sim.now >= deadline:
                found = sim.primary()
                raise AssertionError(
                    f"not active+clean {HEAL_DEADLINE_S}s after healing: "
                    f"{found[1].state_name() if found else 'no primary'}: "
                    f"{found[1].why() if found else ''}")
            sim.run_until(sim.now + 0.5)
        sim.check_final()
        assert sim.client_write(sim.oids[0]), "a write after healing was refused"
        sim.run_until(sim.now + 2.0)
        assert not sim.writes, "a write after healing was not acked"
        sim.check_final()
    return sim
