"""Rate-limited logging and per-address failure accounting for hostile peers.

Why: a peer that fails a thousand times a second must cost us neither a thousand log
lines nor a thousand full-price answers. Events are counted per key and reported as
one summary line per interval; failed authentications back off per address and then
ban the (address, entity) pair for a short time. All tables are bounded, so random
names or addresses cannot grow them without limit.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 4096
WARN_AT = 10   # failures from one address within the window that make a health warning
CLIP = 64


def clip(text: str | bytes, limit: int = CLIP) -> str:
    """A peer-supplied string made safe to log or echo: bounded and printable."""
    if isinstance(text, bytes):
        text = text[:limit * 4].decode("utf-8", "replace")
    shown = text[:limit].encode("unicode_escape").decode("ascii")[:limit * 2]
    return shown if len(text) <= limit else f"{shown}...({len(text)} chars)"


def _bounded_set(table: OrderedDict, key, value) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_KEYS:
        table.popitem(last=False)


class SummaryLog:
    """Logs the first event of a key at once, then one summary per `interval` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 level: int = logging.WARNING, clock: Callable[[], float] = time.monotonic):
        self.logger, self.interval, self.level, self.clock = logger, interval, level, clock
        self._keys: OrderedDict[tuple, list] = OrderedDict()   # key -> [since, count, text]

    def event(self, key: tuple, text: str) -> None:
        """Record one event; `text` describes it and is only formatted when logged."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is None:
            self.logger.log(self.level, "%s", text)
            _bounded_set(self._keys, key, [now, 0, text])
            return
        entry[1] += 1
        entry[2] = text
        if now - entry[0] >= self.interval:
            self.flush_key(key, now)

    def flush_key(self, key: tuple, now: float | None = None) -> None:
        entry = self._keys.get(key)
        if entry is None:
            return
        now = self.clock() if now is None else now
        since, count, text = entry
        if count:
            self.logger.log(self.level, "%s (%d more like it in the last %.0f s)",
                            text, count, now - since)
        entry[0], entry[1] = now, 0

    def flush(self) -> None:
        for key in list(self._keys):
            self.flush_key(key)


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    reported_at: float = 0.0
    unreported: int = 0
    banned_until: float = 0.0


class AuthThrottle:
    """Back-off and bans for failed authentications, per peer address.

    After `free` failures from an address within `window` seconds, each further failure
    is answered only after a delay that doubles up to `max_delay`. After `ban_after`
    failures for one entity from one address, that pair is refused outright (without
    checking the proof, so guessing is pointless) for `ban_s` seconds. Bans are per
    (address, entity) so that one hostile tenant behind a shared address (a NAT, or
    loopback in a local cluster) cannot lock every other entity out.
    """

    def __init__(self, logger: logging.Logger, window: float = 60.0, free: int = 5,
                 max_delay: float = 2.0, ban_after: int = 20, ban_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger, self.window, self.free = logger, window, free
        self.max_delay, self.ban_after, self.ban_s, self.clock = max_delay, ban_after, ban_s, clock
        self._addrs: OrderedDict[str, _Failures] = OrderedDict()
        self._pairs: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        self.total_failures = 0

    def _trim(self, f: _Failures, now: float) -> None:
        cut = now - self.window
        if f.times and f.times[0] < cut:
            f.times = [t for t in f.times if t >= cut]

    def banned(self, addr: str, entity: str) -> bool:
        f = self._pairs.get((addr, entity))
        return f is not None and f.banned_until > self.clock()

    def failed(self, addr: str, entity: str) -> float:
        """Count one failure; returns the seconds to wait before answering it."""
        now = self.clock()
        self.total_failures += 1
        per_addr = self._addrs.get(addr) or _Failures()
        _bounded_set(self._addrs, addr, per_addr)
        self._trim(per_addr, now)
        per_addr.times.append(now)
        if len(per_addr.times) > 4 * self.ban_after:   # memory bound; the count stays high
            del per_addr.times[:len(per_addr.times) - 4 * self.ban_after]
        pair = self._pairs.get((addr, entity)) or _Failures()
        _bounded_set(self._pairs, (addr, entity), pair)
        self._trim(pair, now)
        pair.times.append(now)
        del pair.times[:-self.ban_after]
        if len(pair.times) >= self.ban_after and pair.banned_until <= now:
            pair.banned_until = now + self.ban_s
            self.logger.warning("banning %s from %s for %.0f s after %d failed "
                                "authentications in %.0f s", clip(entity), addr, self.ban_s,
                                len(pair.times), self.window)
        pair.unreported += 1
        if pair.reported_at == 0.0:
            self.logger.warning("failed authentication for %s from %s (further failures "
                                "are summarised every %.0f s)", clip(entity), addr, self.window)
            pair.reported_at, pair.unreported = now, 0
        elif now - pair.reported_at >= self.window:
            self._report(addr, entity, pair, now)
        excess = len(per_addr.times) - self.free
        return 0.0 if excess <= 0 else min(self.max_delay, 0.05 * 2 ** min(excess, 16))

    def _report(self, addr: str, entity: str, f: _Failures, now: float) -> None:
        self.logger.warning("%d failed attempts for %s from %s in the last %.0f s",
                            f.unreported, clip(entity), addr, now - f.reported_at)
        f.reported_at, f.unreported = now, 0

    def report_due(self) -> bool:
        """Log the summaries whose interval is over; True while some are still pending."""
        now = self.clock()
        pending = False
        for (addr, entity), f in list(self._pairs.items()):
            if f.unreported and now - f.reported_at >= self.window:
                self._report(addr, entity, f, now)
            pending = pending or bool(f.unreported)
        return pending

    def recent(self) -> dict[str, int]:
        """Failures per address within the window (what an AUTH health check shows)."""
        now = self.clock()
        out = {}
        for addr, f in self._addrs.items():
            self._trim(f, now)
            if f.times:
                out[addr] = len(f.times)
        return out

    def bans(self) -> list[tuple[str, str]]:
        now = self.clock()
        return [k for k, f in self._pairs.items() if f.banned_until > now]
