"""MemoryStore: the in-memory twin of DurableStore, for unit and simulation tests.

Same semantics as every ObjectStore (see base.py). Atomicity comes from an undo log: each
object or meta key is saved before its first change in a transaction, and restored in
reverse order if any op fails. Each object keeps a CRC32C per 16 KiB block (DurableStore's
BLOCK), verified on every read of that block, so corruption tests run against both stores
(`_corrupt_for_test`).
`apply` never awaits, so a simulation stays deterministic.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from crc32c import crc32c

from sds.common.errors import (
    AlreadyExists,
    ChecksumError,
    InvalidArgument,
    NoData,
    NotEmpty,
    NotFound,
)
from sds.osd.store.base import ObjectStat, ObjectStore, Transaction, TxnOp

CSUM_BLOCK = 16 * 1024


class _Obj:
    __slots__ = ("data", "crcs", "mtime", "version", "xattrs", "omap")

    def __init__(self) -> None:
        self.data = bytearray()
        self.crcs: list[int] = []  # CRC32C of each CSUM_BLOCK-sized piece of data
        self.mtime = 0.0
        self.version = 0
        self.xattrs: dict[str, bytes] = {}
        self.omap: dict[bytes, bytes] = {}

    def copy(self) -> _Obj:
        o = _Obj()
        o.data = bytearray(self.data)
        o.crcs, o.mtime, o.version = list(self.crcs), self.mtime, self.version
        o.xattrs = dict(self.xattrs)
        o.omap = dict(self.omap)
        return o

    def reseal(self, lo: int = 0, hi: int | None = None) -> None:
        """Recompute the checksums of the blocks overlapping data[lo:hi]."""
        n = len(self.data)
        nblocks = -(-n // CSUM_BLOCK)
        del self.crcs[nblocks:]
        self.crcs.extend([0] * (nblocks - len(self.crcs)))
        hi = n if hi is None else min(hi, n)
        mv = memoryview(self.data)
        for b in range(lo // CSUM_BLOCK, -(-hi // CSUM_BLOCK)):
            self.crcs[b] = crc32c(mv[b * CSUM_BLOCK:(b + 1) * CSUM_BLOCK])

    def verify(self, lo: int, hi: int) -> None:
        mv = memoryview(self.data)
        for b in range(lo // CSUM_BLOCK, -(-hi // CSUM_BLOCK)):
            if crc32c(mv[b * CSUM_BLOCK:(b + 1) * CSUM_BLOCK]) != self.crcs[b]:
                raise ChecksumError(f"block {b}: data checksum mismatch")


class _Coll:
    __slots__ = ("objects", "meta")

    def __init__(self) -> None:
        self.objects: dict[str, _Obj] = {}
        self.meta: dict[bytes, bytes] = {}


class _Undo:
    """Per-transaction undo log."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []
        self.saved_objs: set[tuple[str, str]] = set()

    def rollback(self) -> None:
        for step in reversed(self.steps):
            step()


def _page(keys: list, start_after, max_entries: int, prefix=None) -> tuple[list, bool]:
    """Sorted `keys` after `start_after` (and >= prefix, starting with prefix)."""
    i = bisect.bisect_right(keys, start_after) if start_after else 0
    if prefix:
        i = max(i, bisect.bisect_left(keys, prefix))
    out = []
    while i < len(keys) and (not prefix or keys[i].startswith(prefix)):
        if len(out) >= max_entries:
            return out, True
        out.append(keys[i])
        i += 1
    return out, False


class MemoryStore(ObjectStore):
    def __init__(self, capacity_bytes: int = 1 << 40) -> None:
        self._colls: dict[str, _Coll] = {}
        self._capacity = capacity_bytes
        self._closed = False

    # -- apply -------------------------------------------------------------------------
    async def apply(self, txn: Transaction) -> None:
        self.apply_now(txn)

    def apply_now(self, txn: Transaction) -> None:
        """Synchronous apply (for simulations that must not yield)."""
        if self._closed:
            raise InvalidArgument("store is closed")
        undo = _Undo()
        try:
            for op, data in txn.items():
                self._do(op, data, undo)
        except BaseException:
            undo.rollback()
            raise

    def _coll(self, name: str) -> _Coll:
        c = self._colls.get(name)
        if c is None:
            raise NotFound(f"collection {name!r}")
        return c

    def _obj(self, op, undo: _Undo, create: bool) -> _Obj | None:
        c = self._coll(op.coll)
        oid = op.oid
        o = c.objects.get(oid)
        key = (op.coll, oid)
        if key not in undo.saved_objs and (o is not None or create):
            undo.saved_objs.add(key)
            old = o.copy() if o is not None else None

            def restore(c=c, oid=oid, old=old) -> None:
                if old is None:
                    c.objects.pop(oid, None)
                else:
                    c.objects[oid] = old

            undo.steps.append(restore)
        if o is None and create:
            o = c.objects[oid] = _Obj()
        return o

    def _do(self, op, data: memoryview | None, undo: _Undo) -> None:  # noqa: C901
        k = op.kind
        if k == TxnOp.NOOP:
            return
        if k == TxnOp.CREATE_COLLECTION:
            if op.coll in self._colls:
                raise AlreadyExists(f"collection {op.coll!r}")
            self._colls[op.coll] = _Coll()
            undo.steps.append(lambda n=op.coll: self._colls.pop(n, None))
        elif k == TxnOp.REMOVE_COLLECTION:
            c = self._coll(op.coll)
            if c.objects:
                raise NotEmpty(f"collection {op.coll!r}")
            del self._colls[op.coll]
            undo.steps.append(lambda n=op.coll, c=c: self._colls.__setitem__(n, c))
        elif k in (TxnOp.SET_META, TxnOp.RM_META):
            c = self._coll(op.coll)
            key = op.meta_key
            old = c.meta.get(key)
            undo.steps.append(
                lambda c=c, key=key, old=old: c.meta.pop(key, None)
                if old is None else c.meta.__setitem__(key, old)
            )
            if k == TxnOp.SET_META:
                c.meta[key] = op.value
            else:
                c.meta.pop(key, None)
        elif k == TxnOp.REMOVE:
            if self._obj(op, undo, create=False) is not None:
                del self._colls[op.coll].objects[op.oid]
        elif k in (TxnOp.RMXATTR, TxnOp.OMAP_RM, TxnOp.OMAP_CLEAR):
            o = self._obj(op, undo, create=False)
            if o is None:
                return
            if k == TxnOp.RMXATTR:
                o.xattrs.pop(op.name, None)
            elif k == TxnOp.OMAP_RM:
                for key in op.keys:
                    o.omap.pop(key, None)
            else:
                o.omap.clear()
        else:
            o = self._obj(op, undo, create=True)
            self._do_obj(o, op, data)

    @staticmethod
    def _do_obj(o: _Obj, op, data: memoryview | None) -> None:
        k = op.kind
        if k == TxnOp.TOUCH:
            o.mtime, o.version = op.mtime, op.version
        elif k == TxnOp.WRITE:
            if len(data):
                end = op.offset + len(data)
                old = len(o.data)
                if end > old:
                    o.data.extend(bytes(end - old))
                o.data[op.offset:end] = data
                o.reseal(min(old, op.offset), end)
        elif k == TxnOp.WRITE_FULL:
            o.data = bytearray(data)
            o.reseal()
        elif k == TxnOp.TRUNCATE:
            size, old = op.length, len(o.data)
            if size < old:
                del o.data[size:]
            else:
                o.data.extend(bytes(size - old))
            o.reseal(min(size, old) // CSUM_BLOCK * CSUM_BLOCK, max(size, old))
        elif k == TxnOp.SETXATTR:
            o.xattrs[op.name] = op.value
        elif k == TxnOp.OMAP_SET:
            for kv in op.kvs:
                o.omap[kv.key] = kv.value
        else:
            raise InvalidArgument(f"unknown op kind {k}")

    # -- reads -------------------------------------------------------------------------
    def _get(self, coll: str, oid: str) -> _Obj:
        o = self._coll(coll).objects.get(oid)
        if o is None:
            raise NotFound(f"object {coll}/{oid}")
        return o

    def read(self, coll: str, oid: str, offset: int = 0, length: int | None = None) -> bytes:
        o = self._get(coll, oid)
        end = len(o.data) if length is None else min(len(o.data), offset + length)
        if offset >= end:
            return b""
        try:
            o.verify(offset, end)
        except ChecksumError as e:
            raise ChecksumError(f"object {coll}/{oid}: {e}") from None
        return bytes(o.data[offset:end])

    def stat(self, coll: str, oid: str) -> ObjectStat:
        o = self._get(coll, oid)
        return ObjectStat(len(o.data), o.mtime, o.version)

    def exists(self, coll: str, oid: str) -> bool:
        c = self._colls.get(coll)
        return c is not None and oid in c.objects

    def getxattr(self, coll: str, oid: str, name: str) -> bytes:
        v = self._get(coll, oid).xattrs.get(name)
        if v is None:
            raise NoData(f"xattr {name!r}")
        return v

    def getxattrs(self, coll: str, oid: str) -> dict[str, bytes]:
        return dict(sorted(self._get(coll, oid).xattrs.items()))

    def omap_get(self, coll: str, oid: str, keys: list[bytes]) -> dict[bytes, bytes]:
        omap = self._get(coll, oid).omap
        return {k: omap[k] for k in keys if k in omap}

    def omap_list(self, coll, oid, start_after=b"", max_entries=1000, prefix=b""):
        omap = self._get(coll, oid).omap
        keys, more = _page(sorted(omap), start_after, max_entries, prefix)
        return [(k, omap[k]) for k in keys], more

    def list_objects(self, coll, start_after="", max_entries=1000):
        return _page(sorted(self._coll(coll).objects), start_after, max_entries)

    def list_collections(self) -> list[str]:
        return sorted(self._colls)

    def collection_exists(self, coll: str) -> bool:
        return coll in self._colls

    def get_meta(self, coll: str, key: bytes) -> bytes | None:
        return self._coll(coll).meta.get(key)

    def list_meta(self, coll, prefix=b"", start_after=b"", max_entries=None):
        meta = self._coll(coll).meta
        keys, _ = _page(sorted(meta), start_after, max_entries or (1 << 62), prefix)
        return [(k, meta[k]) for k in keys]

    def deep_scrub_object(self, coll: str, oid: str) -> int:
        return crc32c(self.read(coll, oid))

    def statfs(self) -> dict[str, int]:
        used = objects = 0
        for c in self._colls.values():
            objects += len(c.objects)
            used += sum(len(o.data) for o in c.objects.values())
        return {"total_bytes": self._capacity, "used_bytes": used, "objects": objects}

    async def close(self) -> None:
        self._closed = True

    # -- test hooks --------------------------------------------------------------------
    def _corrupt_for_test(self, coll: str, oid: str, offset: int) -> None:
        """Flip one stored byte without updating the checksum."""
        self._get(coll, oid).data[offset] ^= 0xFF
