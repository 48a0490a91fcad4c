"""Deterministic simulator for PG peering and recovery (sds.osd.peering).

One seeded random.Random drives a fake clock, a network that loses, duplicates, delays and
so reorders messages, a monitor publishing OSD maps (crash -> marked down after a delay,
restart -> marked up with a new incarnation, flaps of live OSDs), and a client writing and
reading through the current primary. Each OSD is a driver around a PeeringCore with an
in-memory object store (oid -> (version, content)) and a durable dict; a crash keeps only
those two. Writes are acked when every acting member applied them, as in the real OSD.

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

import heapq
import random
from dataclasses import dataclass, field

from sds.osd.peering import ZERO, Entry, MapView, Message, Need, PeeringCore, Ready

TICK_S = 0.1
REPOP_RETRY_S = 0.5
HEAL_DEADLINE_S = 120.0
MAX_EVENTS = 60_000
TRACE_TAIL = 300

Held = tuple[tuple[int, int], str]  # (version, content) of a stored object


@dataclass
class Faults:
    loss: float = 0.0
    dup: float = 0.0
    delay_max_s: float = 0.01
    crash: float = 0.0          # per Ready that persists something
    restart_max_s: float = 3.0
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


@dataclass(order=True)
class _Event:
    time: float
    seq: int
    kind: str = field(compare=False)
    osd: int = field(compare=False)
    data: object = field(compare=False, default=None)


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


class Node:
    def __init__(self) -> None:
        self.store: dict[str, Held] = {}
        self.durable: dict[str, bytes] = {}
        self.core: PeeringCore | None = None


class Sim:
    def __init__(self, seed: int, trace: bool = False):
        rng = self.rng = random.Random(seed)
        self.faults = Faults.draw(rng)
        self.n = rng.choice([3, 4, 5])
        self.size = 3
        self.min_size = rng.choice([1, 2, 2])
        self.log_max = rng.choice([3, 6, 30])
        self.max_active = rng.choice([1, 2, 4])
        self.oids = [f"obj{i}" for i in range(rng.choice([3, 8, 20]))]
        self.pref = list(range(self.n))
        rng.shuffle(self.pref)
        self.now = 0.0
        self.trace: list[str] | None = [] if trace else None
        self._events: list[_Event] = []
        self._seq = 0
        self.nodes = {o: Node() for o in range(self.n)}
        self.up: set[int] = set()
        self.up_from: dict[int, int] = {}
        self.maps: list[MapView] = []
        self.acked: dict[str, tuple[tuple[int, int], str | None]] = {}
        self.writes: dict[tuple[int, tuple[int, int]], _Write] = {}
        self.busy_oids: set[str] = set()
        self.deletes: dict[str, list[tuple[int, int]]] = {}  # versions of issued deletes
        self.made = 0
        self.reads_served = 0
        self._log(f"seed={seed} n={self.n} pref={self.pref} min_size={self.min_size} "
                  f"log_max={self.log_max} max_active={self.max_active} {self.faults}")
        for osd in range(self.n):
            self.up.add(osd)
            self.up_from[osd] = 1
            self.nodes[osd].core = self._new_core(osd)
        self.publish()
        for osd in range(self.n):
            self._schedule(rng.uniform(0, TICK_S), "tick", osd)
        self._schedule(0.2, "chaos", -1)

    # ------------------------------------------------------------------ plumbing

    def _log(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:8.3f} {line}")

    def _schedule(self, delay: float, kind: str, osd: int, data: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._events, _Event(self.now + delay, self._seq, kind, osd, data))

    def _new_core(self, osd: int) -> PeeringCore:
        return PeeringCore(osd, dict(self.nodes[osd].durable), max_active=self.max_active,
                           log_max=self.log_max, retry_ticks=5)

    def _net(self, kind: str, dst: int, data: object) -> None:
        f = self.faults
        if self.rng.random() < f.loss:
            return
        for _ in range(2 if self.rng.random() < f.dup else 1):
            self._schedule(self.rng.uniform(0.0005, f.delay_max_s), kind, dst, data)

    def apply(self, osd: int, ready: Ready, change: tuple[str, Held | None] | None = None):
        """What a driver does: object change + persist atomically, then send and recover."""
        node = self.nodes[osd]
        if change is not None:
            oid, held = change
            if held is None:
                node.store.pop(oid, None)
            else:
                node.store[oid] = held
        for key, value in ready.persist.items():
            if value is None:
                node.durable.pop(key, None)
            else:
                node.durable[key] = value
        self.check_node(osd)
        crash = bool(ready.persist) and self.rng.random() < self.faults.crash
        messages, recover = ready.messages, ready.recover
        if crash:
            messages = messages[:self.rng.randint(0, len(messages))]
            recover = recover[:self.rng.randint(0, len(recover))]
        for msg in messages:
            self._net("core", msg.dst, msg)
        for action in recover:
            self._log(f"osd.{osd} recover {action.oid} {action.need} from osd.{action.source} "
                      f"to {action.targets}")
            self._net("pull", action.source, action)
        if crash:
            self.crash(osd)

    # ------------------------------------------------------------------ maps

    def publish(self) -> None:
        acting = tuple([o for o in self.pref if o in self.up][:self.size])
        view = MapView(len(self.maps) + 1, acting, frozenset(self.up), dict(self.up_from),
                       self.size, self.min_size)
        self.maps.append(view)
        self._log(f"map e{view.epoch} acting={list(acting)} up={sorted(self.up)}")
        for osd, node in self.nodes.items():
            if node.core is not None:
                self.catch_up(osd)

    def catch_up(self, osd: int) -> None:
        core = self.nodes[osd].core
        for view in self.maps[core.map_epoch:]:
            self.apply(osd, core.advance_map(view))
            if self.nodes[osd].core is not core:
                return  # crashed while catching up

    def crash(self, osd: int) -> None:
        node = self.nodes[osd]
        if node.core is None:
            return
        self._log(f"crash osd.{osd}")
        node.core = None
        self._schedule(self.rng.uniform(0.2, 1.5), "markdown", osd, self.up_from[osd])
        self._schedule(self.rng.uniform(0.3, self.faults.restart_max_s), "restart", osd)

    def restart(self, osd: int) -> None:
        node = self.nodes[osd]
        if node.core is not None:
            return
        self._log(f"start osd.{osd}")
        node.core = self._new_core(osd)
        self.check_node(osd)
        self.up.add(osd)
        self.up_from[osd] = len(self.maps) + 1  # boots with a new incarnation
        self.publish()

    # ------------------------------------------------------------------ events

    def run_until(self, end: float) -> None:
        while self._events and self._events[0].time <= end:
            event = heapq.heappop(self._events)
            if event.seq > MAX_EVENTS:
                raise AssertionError(f"more than {MAX_EVENTS} events: message storm")
            self.now = event.time
            getattr(self, f"_on_{event.kind}")(event)
        self.now = end

    def _on_tick(self, event: _Event) -> None:
        osd = event.osd
        core = self.nodes[osd].core
        if core is not None:
            self.apply(osd, core.tick())
        self._retry_writes(osd)
        self._schedule(TICK_S, "tick", osd)

    def _on_markdown(self, event: _Event) -> None:
        if event.data == self.up_from.get(event.osd) and event.osd in self.up:
            self.up.discard(event.osd)
            self.publish()

    def _on_markup(self, event: _Event) -> None:
        if event.osd not in self.up and self.nodes[event.osd].core is not None:
            self.up.add(event.osd)
            self.up_from[event.osd] = len(self.maps) + 1
            self.publish()

    def _on_restart(self, event: _Event) -> None:
        self.restart(event.osd)

    def _on_core(self, event: _Event) -> None:
        msg: Message = event.data
        core = self.nodes[event.osd].core
        if core is None:
            return
        if msg.kind == "scan":  # answered by the driver from its store
            objects = {oid: held[0] for oid, held in self.nodes[event.osd].store.items()}
            self._net("core", msg.src, Message("scan_reply", msg.dst, msg.src, msg.epoch,
                                               objects=objects))
            return
        self.apply(event.osd, core.step(msg))

    def _on_pull(self, event: _Event) -> None:
        node = self.nodes[event.osd]
        action = event.data
        if node.core is None:
            return
        held = node.store.get(action.oid)
        if not action.need.matches(held[0] if held else None):
            self._log(f"osd.{event.osd} cannot serve {action.oid} {action.need}: has {held}")
            return
        for target in action.targets:
            self._net("push", target, (action.oid, action.need, action.epoch, held))

    def _on_push(self, event: _Event) -> None:
        oid, need, epoch, held = event.data
        core = self.nodes[event.osd].core
        if core is None:
            return
        ready = core.on_push(oid, need, epoch)
        if ready is not None:
            self.apply(event.osd, ready, (oid, held) if ready.persist else None)

    # ------------------------------------------------------------------ client

    def _on_chaos(self, event: _Event) -> None:
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
            if osd in self.up and self.nodes[osd].core is not None:
                self.up.discard(osd)
                self.publish()
                self._schedule(rng.uniform(0.5, 5.0), "markup", osd)
        self._schedule(rng.uniform(0.05, 0.3), "chaos", -1)

    def primary(self) -> tuple[int, PeeringCore] | None:
        acting = self.maps[-1].acting
        if not acting or self.nodes[acting[0]].core is None:
            return None
        return acting[0], self.nodes[acting[0]].core

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
        held = self.nodes[osd].store.get(oid)
        entry, ready = core.write(oid, f"client.{self.made}", delete, held[0] if held else None)
        self._log(f"osd.{osd} write {entry}")
        if delete:
            self.deletes.setdefault(oid, []).append(entry.version)
        members = core.interval.acting
        write = _Write(entry, content, core.interval.epoch, osd, members, {osd}, self.now)
        self.writes[(write.epoch, entry.version)] = write
        self.busy_oids.add(oid)
        self.apply(osd, ready, (oid, None if delete else (entry.version, content)))
        self._send_repops(write)
        self._maybe_ack(write)
        return True

    def _send_repops(self, write: _Write) -> None:
        write.sent = self.now
        for member in write.members:
            if member not in write.acked:
                self._net("repop", member, write)

    def _on_repop(self, event: _Event) -> None:
        write: _Write = event.data
        core = self.nodes[event.osd].core
        if core is None:
            return
        ready = core.replica_write(write.entry, write.epoch)
        if ready is None:
            return
        held = None if write.content is None else (write.entry.version, write.content)
        self.apply(event.osd, ready, (write.entry.oid, held) if ready.persist else None)
        if self.nodes[event.osd].core is core:
            self._net("repop_ack", write.primary, (write, event.osd))

    def _on_repop_ack(self, event: _Event) -> None:
        write, member = event.data
        if (write.epoch, write.entry.version) in self.writes:
            write.acked.add(member)
            self._maybe_ack(write)

    def _maybe_ack(self, write: _Write) -> None:
        core = self.nodes[write.primary].core
        key = (write.epoch, write.entry.version)
        if core is None or core.interval.epoch != write.epoch:
            self._drop_write(key)
        elif write.acked >= set(write.members):
            self._log(f"ack {write.entry} {write.content}")
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
            core = self.nodes[osd].core
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
        held = self.nodes[osd].store.get(oid)
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
        node = self.nodes[osd]
        core = node.core
        if core is None:
            return
        latest: dict[str, Entry] = {}
        for version in sorted(core.log):
            latest[core.log[version].oid] = core.log[version]
        for oid, entry in latest.items():
            if oid in core.missing:
                continue
            held = node.store.get(oid)
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
        self._log("HEAL")
        self.faults = Faults(delay_max_s=0.05, write=0.0, read=0.0)
        for osd, node in self.nodes.items():
            if node.core is None:
                self.restart(osd)
        if set(self.nodes) - self.up:
            for osd in set(self.nodes) - self.up:
                self.up.add(osd)
                self.up_from[osd] = len(self.maps) + 1
            self.publish()

    def clean(self) -> bool:
        found = self.primary()
        return (found is not None and found[1].state_name() == "active+clean"
                and not self.writes)

    def check_final(self) -> None:
        acting = self.maps[-1].acting
        stores = {o: self.nodes[o].store for o in acting}
        first = stores[acting[0]]
        for osd, store in stores.items():
            core = self.nodes[osd].core
            assert not core.missing, (osd, core.missing)
            if store != first:
                raise SafetyViolation(f"osd.{osd} store {store} differs from primary "
                                      f"osd.{acting[0]} {first}")
        for oid in self.acked:
            self._check_acked(acting[0], oid, first.get(oid), "final state")


def run_seed(seed: int, fault_s: float = 12.0, trace: bool = False) -> Sim:
    sim = Sim(seed, trace=trace)
    try:
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
    except AssertionError as exc:
        if sim.trace is not None:
            exc.add_note("\n".join(sim.trace[-TRACE_TAIL:]))
        raise
    return sim


__all__ = ["Need", "Sim", "run_seed"]
