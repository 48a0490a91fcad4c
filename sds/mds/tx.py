"""One request's metadata changes, collected in memory before anything is written.

A `Tx` holds copies of the inode records a request read (changed ones are marked
dirty) and the dentry and data ops in order; `all_ops()` is what the journal records.
"""

from __future__ import annotations

import stat
import time

from sds.common.errors import NotFound
from sds.fsrules.attrs import new_attr
from sds.mds.store import MetaStore
from sds.proto import mds_pb2

Rec = mds_pb2.InodeRecord
MetaOp = mds_pb2.MetaOp


def now_ns() -> int:
    return time.time_ns()


def touch(rec: Rec, mtime: bool = True, ctime: bool = True, at: int | None = None) -> None:
    at = at or now_ns()
    if mtime:
        rec.attr.mtime_ns = at
    if ctime:
        rec.attr.ctime_ns = at
    rec.attr.version += 1


def new_record(ino: int, mode: int, caller: mds_pb2.Caller, parent: int,
               parent_attr: mds_pb2.InodeAttr | None = None, at: int | None = None) -> Rec:
    return Rec(attr=new_attr(ino, mode, caller, parent_attr, at or now_ns()), parent=parent)


class Tx:
    """The changes of one request, collected before anything is written."""

    def __init__(self, store: MetaStore):
        self.store = store
        self.seen: dict[int, Rec] = {}
        self.dirty: set[int] = set()
        self.deleted: set[int] = set()
        self.ops: list[MetaOp] = []
        self.cuts: list[tuple[int, int, int]] = []  # (ino, new size, old size) truncations

    async def get(self, ino: int) -> Rec:
        if ino in self.deleted:
            raise NotFound(f"inode {ino:#x} does not exist")
        if ino not in self.seen:
            rec = Rec()
            rec.CopyFrom(await self.store.inode(ino))
            self.seen[ino] = rec
        return self.seen[ino]

    def put(self, rec: Rec) -> Rec:
        self.seen[rec.attr.ino] = rec
        self.dirty.add(rec.attr.ino)
        return rec

    def delete(self, ino: int) -> None:
        self.deleted.add(ino)
        self.dirty.discard(ino)

    def link(self, parent: int, name: str, ino: int, mode: int) -> None:
        self.ops.append(MetaOp(kind=MetaOp.SET_DENTRY, ino=parent, name=name, dentry_ino=ino,
                               dentry_mode=stat.S_IFMT(mode)))

    def unlink(self, parent: int, name: str) -> None:
        self.ops.append(MetaOp(kind=MetaOp.RM_DENTRY, ino=parent, name=name))

    def data(self, kind: int, ino: int, size: int = 0, old_size: int = 0, dst: int = 0) -> None:
        self.ops.append(MetaOp(kind=kind, ino=ino, size=size, old_size=old_size, dentry_ino=dst))

    def remove(self, rec: Rec) -> None:
        """Delete an inode with what hangs off it: a directory's object, a file's data."""
        self.delete(rec.attr.ino)
        if stat.S_ISDIR(rec.attr.mode):
            self.data(MetaOp.DEL_DIR, rec.attr.ino)
        elif stat.S_ISREG(rec.attr.mode):
            self.data(MetaOp.PURGE_DATA, rec.attr.ino, 0, rec.attr.size)

    def all_ops(self) -> list[MetaOp]:
        puts = [MetaOp(kind=MetaOp.PUT_INODE, ino=i, record=self.seen[i]) for i in sorted(self.dirty)]
        dels = [MetaOp(kind=MetaOp.DEL_INODE, ino=i) for i in sorted(self.deleted)]
        return puts + self.ops + dels
