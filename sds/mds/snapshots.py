"""Snapshots: a read-only, consistent copy of a directory tree under DIR/.snap/NAME.

The mechanism is a full copy made under the namespace lock (so no change lands halfway
through it): every inode of the tree gets a read-only twin with a new inode number
(hard links inside the tree stay links), and file data objects are copied too. Clients
read a snapshot like any directory; every change inside one is EROFS. Simple and
obviously consistent; it costs the tree's size in time and space (no copy-on-write).
"""

from __future__ import annotations

import stat

from sds.mds import layout
from sds.mds.store import MetaStore
from sds.mds.tx import Tx, new_record
from sds.proto import mds_pb2

Rec = mds_pb2.InodeRecord
MetaOp = mds_pb2.MetaOp


def new_snapdir(ino: int, owner: Rec) -> Rec:
    """The ".snap" directory of `owner`: read-only, listed by nobody, found by LOOKUP."""
    snap = new_record(ino, stat.S_IFDIR | 0o555,
                      mds_pb2.Caller(uid=owner.attr.uid, gid=owner.attr.gid), owner.attr.ino)
    snap.attr.nlink = 2
    snap.readonly = True
    return snap


async def copy_tree(store: MetaStore, tx: Tx, src: Rec, parent: int, copied: dict[int, Rec]) -> Rec:
    """Copy `src` (recursively) as read-only inodes; hard links stay links."""
    if src.attr.ino in copied:
        rec = copied[src.attr.ino]
        rec.attr.nlink += 1
        return rec
    rec = Rec()
    rec.CopyFrom(src)
    rec.attr.ino = await store.alloc_ino()
    rec.parent, rec.readonly, rec.snapdir, rec.has_quota = parent, True, 0, False
    rec.max_bytes = rec.max_files = rec.used_bytes = rec.used_files = 0
    copied[src.attr.ino] = rec
    if layout.is_dir(src.attr.mode):
        rec.attr.nlink = 2
        for name, child_ino, _mode in await store.all_entries(src.attr.ino):
            child = await copy_tree(store, tx, await store.inode(child_ino),
                                          rec.attr.ino, copied)
            tx.link(rec.attr.ino, name, child.attr.ino, child.attr.mode)
            if layout.is_dir(child.attr.mode):
                rec.attr.nlink += 1
    else:
        rec.attr.nlink = 1
        if stat.S_ISREG(src.attr.mode) and src.attr.size:
            tx.data(MetaOp.COPY_DATA, src.attr.ino, src.attr.size, dst=rec.attr.ino)
    tx.put(rec)
    return rec


async def drop_tree(store: MetaStore, tx: Tx, rec: Rec, dropped: set[int]) -> None:
    dropped.add(rec.attr.ino)
    if layout.is_dir(rec.attr.mode):
        for _name, child, _mode in await store.all_entries(rec.attr.ino):
            if child not in dropped:  # hard links: one inode, several dentries
                await drop_tree(store, tx, await tx.get(child), dropped)
    tx.remove(rec)
