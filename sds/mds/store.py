"""The MDS's view of the metadata pool: cached reads and idempotent applies.

The active MDS is the only writer of the metadata pool, so its cache (which shows
changes as soon as they are staged, before the journal applies them to RADOS) can
answer reads without asking the OSDs. Listings read RADOS, so they first wait until
the journal has applied what was staged. Deleted
inodes and absent dentries are cached as None (tombstones): a read that raced a
change can then never put an older value back (`_remember` only fills gaps).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from sds.client.rados import IoCtx
from sds.client.striper import Striper
from sds.common.errors import NotFound, SdsError
from sds.mds import layout
from sds.mds.purge import PurgeQueue
from sds.proto import mds_pb2

MetaOp = mds_pb2.MetaOp
PAGE = 1000
PARALLEL = 32
TABLE_WRITE_BYTES = 4 << 20


class MetaStore:
    def __init__(self, meta: IoCtx, data: IoCtx, cache_size: int = 200_000):
        self.meta = meta
        self.data = data
        self.cache_size = cache_size
        self.inodes: dict[int, mds_pb2.InodeRecord | None] = {}
        self.dentries: dict[tuple[int, str], tuple[int, int] | None] = {}
        self.complete: set[int] = set()  # directories whose every dentry is cached
        self._next_ino = 0
        self._ino_limit = 0
        self._first_own_ino = 0  # the first number this instance allocated (0: none yet)
        self.pinned: Callable[[], bool] = lambda: False  # changes staged but not applied
        # data objects copied at once across every apply: bounds memory to PARALLEL stripes
        self._copies = asyncio.Semaphore(PARALLEL)
        self.inject_failure = ""  # testing (mds_inject_apply_failure): applies naming it fail
        self.purge_queue: PurgeQueue | None = None  # removed files' data goes there

    # -- reads -----------------------------------------------------------------------
    def _remember(self, table: dict, key, value) -> None:
        if len(table) >= self.cache_size:
            if self.pinned():
                return  # staged entries must stay until applied
            table.clear()
            self.complete.clear()
        table.setdefault(key, value)

    async def inode(self, ino: int) -> mds_pb2.InodeRecord:
        """The record of `ino` (shared with the cache: copy before changing it)."""
        if ino in self.inodes:
            rec = self.inodes[ino]
        else:
            try:
                found = await self.meta.omap_get(layout.inode_shard_oid(ino),
                                                 [layout.inode_key(ino)])
            except NotFound:
                found = {}
            raw = found.get(layout.inode_key(ino))
            rec = layout.decode_record(raw) if raw is not None else None
            self._remember(self.inodes, ino, rec)
            rec = self.inodes.get(ino, rec)
        if rec is None:
            raise NotFound(f"inode {ino:#x} does not exist")
        return rec

    async def lookup(self, parent: int, name: str) -> tuple[int, int] | None:
        """(ino, mode) of the dentry `name` in directory `parent`, or None."""
        key = (parent, name)
        if key in self.dentries:
            return self.dentries[key]
        if parent in self.complete:
            return None
        try:
            found = await self.meta.omap_get(layout.dir_oid(parent), [layout.dentry_key(name)])
        except NotFound:
            found = {}
        value = next(iter(found.values()), None)
        entry = layout.decode_dentry(value) if value is not None else None
        self._remember(self.dentries, key, entry)
        return self.dentries.get(key, entry)

    async def list_dir(self, parent: int, offset: int = 0, max_entries: int = PAGE
                       ) -> tuple[list[tuple[str, int, int, int]], bool]:
        """[(name, ino, mode, cookie)] after cookie `offset`, in cookie order, and `more`."""
        try:
            items, more = await self.meta.omap_list(
                layout.dir_oid(parent), start_after=layout.resume_after(offset),
                max_entries=max_entries)
        except NotFound:
            return [], False
        out = []
        for key, value in items:
            ino, mode = layout.decode_dentry(value)
            out.append((layout.key_name(key), ino, mode, layout.cookie(layout.key_name(key))))
        return out, more

    async def all_entries(self, parent: int) -> list[tuple[str, int, int]]:
        entries, offset, more = [], 0, True
        while more:
            page, more = await self.list_dir(parent, offset)
            entries.extend((name, ino, mode) for name, ino, mode, _ in page)
            if page:
                offset = page[-1][3]
        return entries

    async def table_inos(self, shard_oid: str) -> list[int]:
        """Every inode number an inode-table shard holds a record of."""
        inos, after, more = [], b"", True
        while more:
            items, more = await self.meta.omap_list(shard_oid, start_after=after)
            inos.extend(layout.key_ino(key) for key, _ in items)
            if items:
                after = items[-1][0]
        return inos

    def removed(self, parent: int, name: str) -> bool:
        """The cache says `name` is gone from `parent` (perhaps not yet from RADOS)."""
        return (parent, name) in self.dentries and self.dentries[(parent, name)] is None

    async def dir_empty(self, parent: int) -> bool:
        """No entry left, counting those whose removal is staged but not applied as gone;
        the caller waited until RADOS has every entry added to `parent` (so the rmdir
        after an rm -rf waits for no apply)."""
        offset, more = 0, True
        while more:
            page, more = await self.list_dir(parent, offset)
            for name, _ino, _mode, _cookie in page:
                if await self.lookup(parent, name) is not None:
                    return False
            if page:
                offset = page[-1][3]
        return True

    # -- inode numbers ------------------------------------------------------------------
    async def alloc_ino(self) -> int:
        """A fresh inode number; the allocator object is advanced a batch at a time, so a
        crash only skips numbers, never hands one out twice."""
        if self._next_ino >= self._ino_limit:
            await self._reserve()
        ino = self._next_ino
        self._next_ino += 1
        return ino

    async def alloc_range(self, want: int) -> tuple[int, int]:
        """Up to `want` consecutive fresh numbers (fewer at the end of a reserved batch):
        (first, count), for a client to give new files itself."""
        if self._next_ino >= self._ino_limit:
            await self._reserve()
        first = self._next_ino
        count = min(want, self._ino_limit - first)
        self._next_ino += count
        return first, count

    async def _reserve(self, batch: int = 1024) -> None:
        try:
            start = int(await self.meta.read(layout.INOTABLE) or b"0")
        except NotFound:
            start = 0
        start = max(start, layout.FIRST_INO)
        await self.meta.write_full(layout.INOTABLE, str(start + batch).encode())
        self._next_ino, self._ino_limit = start, start + batch
        self._first_own_ino = self._first_own_ino or start

    async def reusable_ino(self, ino: int) -> bool:
        """May a replayed create take `ino` again? Only a number an earlier MDS handed out
        (below everything this one allocates, so never given twice) that names no inode."""
        if self._first_own_ino == 0:
            await self._reserve()  # learns where this instance's numbers start
        if not layout.FIRST_INO <= ino < self._first_own_ino:
            return False
        try:
            await self.inode(ino)
        except NotFound:
            return True
        return False

    # -- applying changes ------------------------------------------------------------------
    def stage(self, ops: list[MetaOp]) -> None:
        """Show a change in the cache at once; RADOS gets it when the journal applies it."""
        for op in ops:
            if op.kind == MetaOp.PUT_INODE:
                rec = mds_pb2.InodeRecord()
                rec.CopyFrom(op.record)
                if rec.attr.version == 1 and layout.is_dir(rec.attr.mode) and not rec.readonly:
                    self.complete.add(op.ino)  # a new, never changed directory: empty
                self.inodes[op.ino] = rec
            elif op.kind == MetaOp.DEL_INODE:
                self.inodes[op.ino] = None
            elif op.kind == MetaOp.SET_DENTRY:
                self.dentries[(op.ino, op.name)] = (op.dentry_ino, op.dentry_mode)
            elif op.kind == MetaOp.RM_DENTRY:
                self.dentries[(op.ino, op.name)] = None

    async def apply(self, ops: list[MetaOp], replay: bool = False) -> None:
        """Apply changes (of one or more events, in order); each op is absolute, so
        replaying one is harmless. Objects are written in parallel, each once: the last
        inode record, the final state of each dentry. Removed files' data is queued for
        the purge queue last, so a snapshot copy applied with it is taken first."""
        if self.inject_failure and any(op.name == self.inject_failure for op in ops):
            raise SdsError(f"injected apply failure (dentry '{self.inject_failure}')")
        by_object: dict[str, list[MetaOp]] = {}
        purges: dict[int, int] = {}
        for op in ops:
            if op.kind == MetaOp.CUT_DATA and not replay:
                continue
            if op.kind == MetaOp.PURGE_DATA and self.purge_queue is not None:
                purges[op.ino] = op.old_size
                continue
            by_object.setdefault(_object_of(op), []).append(op)
        await self._bounded([self._apply_object(group) for group in by_object.values()])
        if purges:
            await self.purge_queue.add(purges)

    async def _apply_object(self, ops: list[MetaOp]) -> None:
        first = ops[0]
        if first.kind in (MetaOp.PUT_INODE, MetaOp.DEL_INODE):
            await self._apply_inodes(ops)
        elif first.kind in (MetaOp.SET_DENTRY, MetaOp.RM_DENTRY, MetaOp.DEL_DIR):
            await self._apply_dir(first.ino, ops)
        else:
            for op in ops:
                if op.kind in (MetaOp.PURGE_DATA, MetaOp.CUT_DATA):
                    await self.cut_data(op.ino, op.size, op.old_size)
                elif op.kind == MetaOp.COPY_DATA:
                    await self.copy_data(op.ino, op.dentry_ino, op.size)

    async def _apply_inodes(self, ops: list[MetaOp]) -> None:
        """The last record of each inode of one shard, in one omap write (and removal)."""
        final: dict[int, MetaOp] = {op.ino: op for op in ops}
        shard = layout.inode_shard_oid(ops[0].ino)
        puts = {layout.inode_key(ino): layout.encode_record(op.record)
                for ino, op in final.items() if op.kind == MetaOp.PUT_INODE}
        gone = [layout.inode_key(ino) for ino, op in final.items()
                if op.kind == MetaOp.DEL_INODE]
        for chunk in _chunks(puts):
            await self.meta.omap_set(shard, chunk)
        if gone:
            with contextlib.suppress(NotFound):
                await self.meta.omap_rm(shard, gone)

    async def _apply_dir(self, ino: int, ops: list[MetaOp]) -> None:
        oid = layout.dir_oid(ino)
        if ops[-1].kind == MetaOp.DEL_DIR:  # inode numbers are never reused
            with contextlib.suppress(NotFound):
                await self.meta.remove(oid)
            return
        final: dict[bytes, bytes | None] = {}
        for op in ops:
            key = layout.dentry_key(op.name)
            final[key] = layout.encode_dentry(op.dentry_ino, op.dentry_mode) \
                if op.kind == MetaOp.SET_DENTRY else None
        sets = {k: v for k, v in final.items() if v is not None}
        gone = [k for k, v in final.items() if v is None]
        if sets:
            await self.meta.omap_set(oid, sets)
        if gone:
            with contextlib.suppress(NotFound):
                await self.meta.omap_rm(oid, gone)

    # -- file data -------------------------------------------------------------------------
    async def _bounded(self, coros) -> None:
        sem = asyncio.Semaphore(PARALLEL)

        async def run(coro):
            async with sem:
                await coro

        await asyncio.gather(*(run(c) for c in coros))

    async def cut_data(self, ino: int, size: int, old_size: int) -> None:
        """Make the data objects of `ino` hold nothing past `size` (old size `old_size`)."""
        striper = Striper(self.data, layout.STRIPE)
        if size == 0:
            await striper.remove_all(ino, old_size)
        else:
            await striper.truncate(ino, old_size, size)

    async def copy_data(self, src: int, dst: int, size: int) -> None:
        """Copy the data objects of `src` to `dst` (a snapshot's own copy)."""

        async def copy(index: int) -> None:
            async with self._copies:
                try:
                    data = await self.data.read(layout.data_oid(src, index), layout.STRIPE)
                except NotFound:
                    return
                await self.data.write_full(layout.data_oid(dst, index), data)

        striper = Striper(self.data, layout.STRIPE)
        await striper.each_object(src, 0, layout.data_objects(size) - 1, copy)


def _chunks(kvs: dict[bytes, bytes]):
    """Omap writes of at most TABLE_WRITE_BYTES each (records carry xattrs: 1,024 of them
    could make one op larger than an OSD takes)."""
    chunk: dict[bytes, bytes] = {}
    size = 0
    for key, value in kvs.items():
        if chunk and size + len(value) > TABLE_WRITE_BYTES:
            yield chunk
            chunk, size = {}, 0
        chunk[key] = value
        size += len(value)
    if chunk:
        yield chunk


def _object_of(op: MetaOp) -> str:
    if op.kind in (MetaOp.PUT_INODE, MetaOp.DEL_INODE):
        return layout.inode_shard_oid(op.ino)
    if op.kind in (MetaOp.SET_DENTRY, MetaOp.RM_DENTRY, MetaOp.DEL_DIR):
        return layout.dir_oid(op.ino)
    return f"data.{op.ino}"
