"""The purge queue's loop against an in-memory omap: it purges what is queued, drops
entries that do not decode instead of stopping, and keeps going after a purge raises."""

from __future__ import annotations

import asyncio

from sds.common.errors import NotFound
from sds.mds import purge
from sds.mds.purge import PurgeQueue, entry


class Omap:
    """The one queue object, as IoCtx's omap calls see it."""

    def __init__(self):
        self.kv: dict[bytes, bytes] = {}

    async def omap_set(self, oid: str, kv: dict[bytes, bytes]) -> None:
        self.kv.update(kv)

    async def omap_list(self, oid: str, max_entries: int):
        if not self.kv:
            raise NotFound(oid)
        keys = sorted(self.kv)[:max_entries]
        return [(k, self.kv[k]) for k in keys], len(self.kv) > len(keys)

    async def omap_rm(self, oid: str, keys: list[bytes]) -> None:
        for k in keys:
            self.kv.pop(k, None)


async def until(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached"
        await asyncio.sleep(0.01)


async def test_malformed_entries_are_dropped_and_a_failing_purge_is_retried(monkeypatch):
    monkeypatch.setattr(purge, "RETRY_S", 0.01)
    meta, purged, failures = Omap(), [], [1]

    async def delete(ino: int, size: int) -> None:
        if ino == 7 and failures:
            failures.pop()
            raise RuntimeError("a bug")
        purged.append((ino, size))

    q = PurgeQueue(meta, delete, lambda: 0.0)
    meta.kv[b"short"] = b"x"          # rot: neither key nor value decodes
    meta.kv[entry(9, 0)[0]] = b"abc"  # a value of the wrong length
    q.start()
    try:
        await q.add({5: 100, 7: 200})
        await until(lambda: not meta.kv)
        assert set(purged) == {(5, 100), (7, 200)}  # again after the failure: idempotent
        await q.add({8: 1})
        await until(lambda: (8, 1) in purged)
    finally:
        await q.stop()
