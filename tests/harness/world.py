"""A seeded world for a simulator: virtual clock, RNG, event queue, faulty network, trace.

One random.Random drives everything, so a seed replays the same run: the order of every
draw is part of the contract (a change here changes which run each seed is).
"""

from __future__ import annotations

import contextlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

TRACE_TAIL = 300  # lines kept, and attached to a failure
MIN_DELAY_S = 0.0005
LONG_DELAY_S = 4.0


@dataclass
class Faults:
    """What the world itself injects; a simulator subclasses it with its own chaos and a
    `draw(rng)` classmethod. `long_delay` None draws no number at all (not even for
    "no"), so a simulator without stale messages keeps the runs its seeds always had."""

    loss: float = 0.0           # per message
    dup: float = 0.0            # per message: delivered twice
    delay_max_s: float = 0.01   # uniform delay, so also reordering
    long_delay: float | None = None  # per copy: up to LONG_DELAY_S later (a stale message)
    crash: float = 0.0          # per Ready that persists: die after persisting it
    restart_max_s: float = 3.0  # a crashed process restarts within this



class World:
    """Clock, RNG and event queue of one run, with the network between its nodes.

    Events are (time, seq, fn, args): `seq` breaks ties in scheduling order and counts the
    events, so a message storm fails fast (`max_events`) instead of running forever.
    """

    def __init__(self, seed: int, trace: bool = False, max_events: int = 50_000):
        self.rng = random.Random(seed)
        self.faults = Faults()
        self.now = 0.0
        self.max_events = max_events
        self.blocked: set[frozenset[int]] = set()
        self.trace: deque[str] | None = deque(maxlen=TRACE_TAIL) if trace else None
        self._events: list[tuple[float, int, Callable[..., object], tuple]] = []
        self._seq = 0

    # ------------------------------------------------------------------ clock and events

    def log(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.now:9.3f} {line}")

    def schedule(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (self.now + delay, self._seq, fn, args))

    def run_until(self, end: float) -> None:
        assert end >= self.now
        events = self._events
        while events and events[0][0] <= end:
            self.now, seq, fn, args = heapq.heappop(events)
            if seq > self.max_events:
                raise AssertionError(f"more than {self.max_events} events: message storm")
            fn(*args)
        self.now = end

    @contextlib.contextmanager
    def tail_on_failure(self) -> Iterator[None]:
        """A failure inside carries the trace tail as a note (when tracing)."""
        try:
            yield
        except AssertionError as exc:
            if self.trace is not None:
                exc.add_note("\n".join(self.trace))
            raise

    # ------------------------------------------------------------------ network

    def send(self, src: int, dst: int, deliver: Callable[[int, object], object],
             data: object) -> None:
        """Lose, duplicate or delay `data` per the faults; `deliver(dst, data)` on arrival
        unless src and dst are partitioned then."""
        f, rng = self.faults, self.rng
        if rng.random() < f.loss:
            return
        for _ in range(2 if rng.random() < f.dup else 1):
            delay = rng.uniform(MIN_DELAY_S, f.delay_max_s)
            if f.long_delay is not None and rng.random() < f.long_delay:
                delay += rng.uniform(0, LONG_DELAY_S)
            self.schedule(delay, self._arrive, src, dst, deliver, data)

    def _arrive(self, src: int, dst: int, deliver: Callable[[int, object], object],
                data: object) -> None:
        if not (self.blocked and frozenset((src, dst)) in self.blocked):
            deliver(dst, data)

    def partition(self, side: set[int], everyone: list[int]) -> None:
        """Nothing crosses between `side` and the others until `join`."""
        self.blocked = {frozenset((a, b)) for a in side for b in everyone if b not in side}
        self.log(f"partition {sorted(side)} | {sorted(set(everyone) - side)}")

    def join(self) -> None:
        self.blocked.clear()

    # ------------------------------------------------------------------ crashes

    def crash_cut(self, effects: list[list]) -> list[list] | None:
        """Whether a process dies right after persisting a Ready (None: it lives) and, if so,
        the prefix of each effect list it got out before dying."""
        if self.rng.random() >= self.faults.crash:
            return None
        return [items[:self.rng.randint(0, len(items))] for items in effects]


class Simulation:
    """What every simulator has: a World for its seed, faults drawn from that seed first,
    and hosts whose crash points the World decides."""

    faults_type: type[Faults] = Faults
    max_events = 50_000

    def __init__(self, seed: int, trace: bool = False):
        self.world = world = World(seed, trace, self.max_events)
        self.rng = world.rng
        self.trace = world.trace
        world.faults = self.faults = self.faults_type.draw(world.rng)

    @property
    def now(self) -> float:
        return self.world.now

    def run_until(self, end: float) -> None:
        self.world.run_until(end)

    def set_faults(self, faults: Faults) -> None:
        self.world.faults = self.faults = faults

    def drive(self, host: Any, check: Callable[[Any], object],
              on_crash: Callable[[], object]) -> Any:
        """Check each of `host`'s Readys once persisted; let the World crash it mid-Ready."""
        host.check, host.cut, host.on_crash = check, self.world.crash_cut, on_crash
        return host
