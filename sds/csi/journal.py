"""The controller's idempotency journal, one RADOS object with an omap in the
filesystem's metadata pool. A CreateVolume's request name is mapped to its volume id
*before* the subvolume is made, so a call interrupted at any point (plugin killed,
cluster hiccup) is finished by the retry with the same name instead of leaking a
second volume; snapshots are journalled the same way.

    name/<request name>     -> {"id", "state": reserved|ready, "request": {...}}
    vol/<volume id>         -> <request name>
    snapname/<request name> -> {"id", "state", "source"}
    snap/<snapshot id>      -> <request name>
"""

from __future__ import annotations

import json

from sds.client.rados import IoCtx
from sds.common.errors import NotFound

OBJECT = "csi.journal"
PAGE = 1000


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
    async def volume_by_name(self, name: str) -> dict | None:
        raw = await self._get(f"name/{name}")
        return json.loads(raw) if raw else None

    async def name_of_volume(self, volume_id: str) -> str | None:
        raw = await self._get(f"vol/{volume_id}")
        return raw.decode() if raw else None

    async def reserve_volume(self, name: str, volume_id: str, request: dict) -> None:
        entry = {"id": volume_id, "state": "reserved", "request": request}
        await self._set({f"name/{name}": json.dumps(entry).encode(),
                         f"vol/{volume_id}": name.encode()})

    async def volume_ready(self, name: str, entry: dict) -> None:
        entry = {**entry, "state": "ready"}
        await self._set({f"name/{name}": json.dumps(entry).encode()})

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
        entry = {"id": snapshot_id, "state": "reserved", "source": source}
        await self._set({f"snapname/{name}": json.dumps(entry).encode(),
                         f"snap/{snapshot_id}": name.encode()})
        return entry

    async def snapshot_ready(self, name: str, entry: dict) -> None:
        await self._set({f"snapname/{name}": json.dumps({**entry, "state": "ready"}).encode()})

    async def forget_snapshot(self, snapshot_id: str) -> None:
        raw = await self._get(f"snap/{snapshot_id}")
        await self._rm(f"snap/{snapshot_id}", *([f"snapname/{raw.decode()}"] if raw else []))

    async def snapshots(self) -> list[str]:
        return sorted(k for k, _ in await self._list("snap/"))
