"""A process of a pure core, and the lossless network of the hand-driven unit scenarios."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

Effects = Mapping[str, Callable[[Any], object]]


class Host:
    """One process of a core: `durable` survives a crash; the core (None while down) does
    not, and `boot` rebuilds it from a copy of `durable`, as a restarted daemon does."""

    def __init__(self, make: Callable[[dict], Any], effects: Effects,
                 durable: dict | None = None):
        self.make = make
        self.effects = effects
        self.durable: dict = dict(durable or {})
        self.core: Any = None
        self.check: Callable[[Any], object] | None = None
        self.cut: Callable[[list[list]], list[list] | None] | None = None
        self.on_crash: Callable[[], object] = self.crash

    def boot(self) -> Any:
        self.core = self.make(dict(self.durable))
        return self.core

    def crash(self) -> None:
        self.core = None

    def apply(self, ready: Any) -> None:
        """Carry out a Ready as the daemon does: persist first, then each effect list.

        `effects` maps the Ready's effect lists (messages, committed, recover...), in the
        order the daemon carries them out, to what handles one item. `check(ready)` runs
        once the writes are durable. A simulator sets `cut` (World.crash_cut), which may
        decide that the process dies after persisting with only a prefix of each list
        carried out; then `on_crash` runs.
        """
        durable = self.durable
        for key, value in ready.persist.items():
            if value is None:
                durable.pop(key, None)
            else:
                durable[key] = value
        if self.check is not None:
            self.check(ready)
        effects = self.effects
        lists = [getattr(ready, name) for name in effects]
        kept = self.cut(lists) if self.cut is not None and ready.persist else None
        for handle, items in zip(effects.values(), lists if kept is None else kept,
                                 strict=True):
            for item in items:
                handle(item)
        if kept is not None:
            self.on_crash()


class FifoNet:
    """Messages in send order, no loss: `drop` filters them when sent; `settle` delivers
    until quiet, so a unit scenario can look at every intermediate state it wants."""

    def __init__(self, deliver: Callable[[Any], object]):
        self.deliver = deliver
        self.queue: deque = deque()
        self.drop: Callable[[Any], bool] = lambda msg: False

    def send(self, msg: Any) -> None:
        if not self.drop(msg):
            self.queue.append(msg)

    def settle(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            self.deliver(self.queue.popleft())
        raise AssertionError("network never settled")
