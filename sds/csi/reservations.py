"""Which controller process is making a volume: the journal entry of a CreateVolume in
progress names its owner (a random id per plugin process) and a heartbeat the owner
bumps with a compare-and-set every `lease_s / 4` seconds.

Two controllers serving one cluster (a Deployment with two replicas, or a new leader
while the old one lives on) therefore never make the same volume twice: the one that
finds a live reservation of another gets ABORTED and the CO retries. A reservation whose
heartbeat this process has seen unchanged for `lease_s` seconds (its own monotonic
clock: no clocks are compared across hosts) belongs to a dead controller and is taken
over with a compare-and-set, so a retry after a kill -9 finishes the volume.

A controller stalled for longer than the lease loses it: its heartbeat's compare-and-set
fails, and so does its final one (its CreateVolume answers ABORTED), so the volume is
made by whoever holds the reservation. The one thing not covered is fencing the stalled
controller's in-flight filesystem requests (Ceph would blocklist it); they act on the
inode of the half-made copy, which the new owner removes and remakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sds.common.errors import Aborted, CompareFailed
from sds.csi.journal import Entry, Journal

log = logging.getLogger("sds.csi.reservations")
LEASE_S = 20.0
FORGET_AFTER_S = 600.0  # observations of reservations nobody asks about again


@dataclass
class _Seen:
    raw: bytes
    since: float


class Reservation:
    """A name/ entry this controller owns while it makes the volume; the heartbeat keeps
    it, `ready()` or `release()` ends it (both CompareFailed when it was lost)."""

    def __init__(self, journal: Journal, name: str, entry: Entry):
        self.journal, self.name, self.entry = journal, name, entry
        self._lock = asyncio.Lock()  # the heartbeat and the final swap compare one entry
        self.lost = False

    @property
    def volume_id(self) -> str:
        return self.entry.id

    async def beat(self) -> None:
        async with self._lock:
            if self.lost:
                return
            value = {**self.entry.value, "beat": self.entry.value.get("beat", 0) + 1}
            try:
                self.entry = await self.journal.swap_volume(self.name, self.entry, value)
            except CompareFailed:
                self.lost = True
                log.warning("volume %s: another controller took over the reservation",
                            self.name)

    async def ready(self) -> None:
        async with self._lock:
            self._check()
            value = {k: v for k, v in self.entry.value.items() if k not in ("owner", "beat")}
            self.entry = await self.journal.swap_volume(self.name, self.entry,
                                                        {**value, "state": "ready"})

    async def release(self) -> None:
        async with self._lock:
            self._check()
            await self.journal.release_volume(self.name, self.entry)

    def _check(self) -> None:
        if self.lost:
            raise CompareFailed(f"volume {self.name}: the reservation was taken over")


class Reservations:
    def __init__(self, lease_s: float = LEASE_S, owner: str | None = None):
        self.lease_s = lease_s
        self.owner = owner or uuid.uuid4().hex
        self._seen: dict[str, _Seen] = {}

    def _abandoned(self, name: str, entry: Entry) -> bool:
        """Whether ENTRY, another controller's, has stood unchanged for a whole lease as
        far as this process has watched it (the first sight starts the watch)."""
        now = time.monotonic()
        for key in [k for k, s in self._seen.items() if now - s.since > FORGET_AFTER_S]:
            del self._seen[key]
        seen = self._seen.get(name)
        if seen is None or seen.raw != entry.raw:
            self._seen[name] = _Seen(entry.raw, now)
            return False
        return now - seen.since >= self.lease_s

    async def _acquire(self, journal: Journal, name: str, entry: Entry | None,
                       fresh: Callable[[], dict]) -> Entry:
        mine = {"state": "reserved", "owner": self.owner, "beat": 0}
        try:
            if entry is None:
                return await journal.claim_volume(name, {**fresh(), **mine})
            value = entry.value
            if (value.get("state") == "reserved" and value.get("owner") != self.owner
                    and not self._abandoned(name, entry)):
                raise Aborted(f"volume {name} is being made by another controller "
                              f"({value.get('owner')}); retry")
            # ours from an earlier failed call, a dead controller's, or a ready entry
            # whose subvolume has gone: keep its id, make the volume again
            if value.get("owner") not in (None, self.owner):
                log.warning("volume %s: taking over the reservation of controller %s",
                            name, value["owner"])
            return await journal.swap_volume(name, entry, {**value, **mine})
        except CompareFailed:
            raise Aborted(f"volume {name}: another controller changed its reservation "
                          "just now; retry") from None

    @contextlib.asynccontextmanager
    async def own(self, journal: Journal, name: str, entry: Entry | None,
                  fresh: Callable[[], dict]) -> AsyncIterator[Reservation]:
        """Own NAME's reservation (claiming it with `fresh()` when there is none) while the
        body makes the volume; Aborted when another live controller owns it."""
        res = Reservation(journal, name, await self._acquire(journal, name, entry, fresh))
        self._seen.pop(name, None)

        async def heartbeat() -> None:
            while not res.lost:
                await asyncio.sleep(self.lease_s / 4)
                with contextlib.suppress(Exception):  # a missed beat: the next one
                    await res.beat()

        task = asyncio.create_task(heartbeat())
        try:
            yield res
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
