"""The controller's idempotency journal, one RADOS object with an omap in the
filesystem's metadata pool. A CreateVolume's request name is mapped to its volume id
*before* the subvolume is made, so a call interrupted at any point (plugin killed,
cluster hiccup) is finished by the retry with the same name instead of leaking a
second volume; snapshots are journalled the same way.

    name/<request name>     -> {"id", "state": reserved|ready, "request": {...},
                                "owner", "beat"}   (owner and beat while reserved)
    vol/<volume id>         -> <request name>
    snapname/<request name> -> {"id", "state", "source"}
    snap/<snapshot id>      -> <request name>

Every change of a name/ or snapname/ entry is a compare-and-set on the OSD (omap guards:
the key absent, or holding exactly the bytes last read), so two controller processes
serving one cluster cannot both claim a name: the loser gets CompareFailed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sds.client.rados import IoCtx
from sds.common.errors import CompareFailed, NotFound

OBJECT = "csi.journal"
PAGE = 1000


@dataclass(frozen=True)
class Entry:
    """A journal entry as read: its value and the exact bytes a compare-and-set compares."""

    value: dict
    raw: bytes

    @property
    def id(self) -> str:
        return self.value["id"]


def _encode(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


class Journal:
    def __init__(self, ioctx: IoCtx):
        self.ioctx = ioctx

    async def _get(self, key: str) -> bytes | None:
        try:
            found = await self.ioctx.omap_get(OBJECT, [key.encode()])
        except NotFound:
            return None
        return found.get(key.encode())

    async def _set(self, kvs: dict[str, bytes]) -> None:
        await self.ioctx.omap_set(OBJECT, {k.encode(): v for k, v in kvs.items()})

    async def _rm(self, *keys: str) -> None:
        try:
            await self.ioctx.omap_rm(OBJECT, [k.encode() for k in keys])
        except NotFound:
            pass

    async def _list(self, prefix: str) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        after = b""
        while True:
            try:
                page, more = await self.ioctx.omap_list(OBJECT, start_after=after,
                                                        max_entries=PAGE,
                                                        prefix=prefix.encode())
            except NotFound:
                return out
            out += [(k.decode()[len(prefix):], v) for k, v in page]
            if not more or not page:
                return out
            after = page[-1][0]

    # -- volumes ---------------------------------------------------------------------------
    async def volume_entry(self, name: str) -> Entry | None:
        raw = await self._get(f"name/{name}")
        return Entry(json.loads(raw), raw) if raw else None

    async def name_of_volume(self, volume_id: str) -> str | None:
        raw = await self._get(f"vol/{volume_id}")
        return raw.decode() if raw else None

    async def claim_volume(self, name: str, value: dict) -> Entry:
        """Reserve NAME for value["id"]; CompareFailed when NAME is taken already."""
        raw = _encode(value)
        key = f"name/{name}".encode()
        await self.ioctx.omap_set(OBJECT, {key: raw, f"vol/{value['id']}".encode(): name.encode()},
                                  absent=[key])
        return Entry(value, raw)

    async def swap_volume(self, name: str, old: Entry, value: dict) -> Entry:
        """Replace OLD (exactly as read) by VALUE; CompareFailed when it changed since."""
        raw = _encode(value)
        key = f"name/{name}".encode()
        await self.ioctx.omap_set(OBJECT, {key: raw}, expect={key: old.raw})
        return Entry(value, raw)

    async def release_volume(self, name: str, old: Entry) -> None:
        """Drop the reservation OLD (exactly as read) and its id; CompareFailed when it
        changed since (someone else owns it now: leave it to them)."""
        key = f"name/{name}".encode()
        try:
            await self.ioctx.omap_rm(OBJECT, [key, f"vol/{old.id}".encode()],
                                     expect={key: old.raw})
        except NotFound:
            raise CompareFailed(f"journal entry {name} is gone") from None

    async def forget_volume(self, volume_id: str) -> None:
        name = await self.name_of_volume(volume_id)
        await self._rm(f"vol/{volume_id}", *([f"name/{name}"] if name else []))

    async def volumes(self) -> list[str]:
        return sorted(k for k, _ in await self._list("vol/"))

    # -- snapshots -------------------------------------------------------------------------
    async def snapshot_by_name(self, name: str) -> dict | None:
        raw = await self._get(f"snapname/{name}")
        return json.loads(raw) if raw else None

    async def reserve_snapshot(self, name: str, snapshot_id: str, source: str) -> dict:
        """Reserve NAME for the snapshot; when another controller reserved it first, its
        entry (the snapshot both then make is one and the same)."""
        entry = {"id": snapshot_id, "state": "reserved", "source": source}
        key = f"snapname/{name}".encode()
        try:
            await self.ioctx.omap_set(OBJECT, {key: _encode(entry),
                                               f"snap/{snapshot_id}".encode(): name.encode()},
                                      absent=[key])
        except CompareFailed:
            found = await self.snapshot_by_name(name)
            if found is None:
                raise
            return found
        return entry

    async def snapshot_ready(self, name: str, entry: dict) -> None:
        await self._set({f"snapname/{name}": json.dumps({**entry, "state": "ready"}).encode()})

    async def forget_snapshot(self, snapshot_id: str) -> None:
        raw = await self._get(f"snap/{snapshot_id}")
        await self._rm(f"snap/{snapshot_id}", *([f"snapname/{raw.decode()}"] if raw else []))

    async def snapshots(self) -> list[str]:
        return sorted(k for k, _ in await self._list("snap/"))
