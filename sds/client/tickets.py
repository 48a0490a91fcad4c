"""A client's service tickets: fetched from the monitors once, renewed before they expire.

The messenger handshake presents `get(service)` to OSDs, MDSs and the mgr instead of
proving knowledge of the entity key (see sds/common/tickets.py). Renewal replaces the
ticket for new connections only: open ones stay authenticated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sds.common import tickets
from sds.common.errors import SdsError

RENEW_AT = 0.75  # of a ticket's lifetime, as Ceph renews before expiry
RETRY_S = 1.0

MonCommand = Callable[[dict], Awaitable[dict]]


@dataclass(frozen=True)
class Held:
    ticket: bytes
    session_key: bytes
    expires: float
    issued: float

    def due(self, now: float) -> bool:
        return now >= self.issued + (self.expires - self.issued) * RENEW_AT


class TicketCache:
    """Tickets of one entity per service; `run()` keeps them fresh in the background."""

    def __init__(self, mon_command: MonCommand, entity_key: bytes,
                 clock: Callable[[], float] = time.time):
        self.mon_command = mon_command
        self.entity_key = entity_key
        self.clock = clock
        self.held: dict[str, Held] = {}
        self._fetching: dict[str, asyncio.Lock] = {}

    async def fetch(self, service: str) -> Held:
        now = self.clock()
        out = await self.mon_command({"prefix": "auth get-ticket", "service": service})
        key = tickets.open_session_key(self.entity_key, base64.b64decode(out["sealed_key"]))
        held = Held(base64.b64decode(out["ticket"]), key, float(out["expires"]), now)
        self.held[service] = held
        return held

    async def get(self, service: str) -> Held:
        """A ticket valid now: the cached one unless it is due for renewal (one fetch for
        all the connections that need it at once)."""
        async with self._fetching.setdefault(service, asyncio.Lock()):
            held = self.held.get(service)
            if held is None or held.due(self.clock()):
                held = await self.fetch(service)
            return held

    def forget(self, service: str) -> None:
        """The service refused our ticket as expired (renewal failed, or clocks differ):
        fetch a new one for the next connection."""
        self.held.pop(service, None)

    async def renew_due(self) -> list[str]:
        """Renew every held ticket past RENEW_AT of its life; returns the services renewed
        (a failed renewal keeps the old ticket until it really expires)."""
        renewed = []
        for service, held in list(self.held.items()):
            if held.due(self.clock()):
                with contextlib.suppress(SdsError):
                    await self.fetch(service)
                    renewed.append(service)
        return renewed

    async def run(self) -> None:
        while True:
            await self.renew_due()
            await asyncio.sleep(RETRY_S)
