"""`fs check`: verify the namespace in the metadata pool, read-only.

Walks every directory from the root (and the stray and snapshot directories),
counting the dentries that name each inode, then compares: every dentry names an
existing inode of the type it records, every directory is linked once with its
parent pointer right, link counts match (2 + subdirectories for directories), and
every inode record and directory object in the pool is reachable (no orphans).
"""

from __future__ import annotations

import json
import stat
from collections import Counter

from sds.common.errors import NotFound
from sds.mds import layout
from sds.mds.store import MetaStore
from sds.proto import mds_pb2


async def check_namespace(store: MetaStore, stray_dir: int) -> str:
    errors: list[str] = []
    refs: Counter[int] = Counter()
    subdirs: Counter[int] = Counter()
    records: dict[int, mds_pb2.InodeRecord] = {}
    try:
        records[layout.ROOT_INO] = await store.inode(layout.ROOT_INO)
    except NotFound:
        return json.dumps({"ok": False, "errors": ["the root inode is missing"]})
    queue = [layout.ROOT_INO]
    strays = await store.all_entries(stray_dir)
    while queue:
        parent = queue.pop()
        prec = records[parent]
        if prec.snapdir:
            await _visit(store, parent, prec.snapdir, "dir", records, errors, queue, subdirs,
                         snapdir=True)
        for name, ino, mode in await store.all_entries(parent):
            refs[ino] += 1
            await _visit(store, parent, ino, name, records, errors, queue, subdirs, mode=mode)
    for _name, ino, _mode in strays:
        try:
            rec = await store.inode(ino)
        except NotFound:
            errors.append(f"stray entry {ino:#x} names a missing inode")
            continue
        records.setdefault(ino, rec)
        if rec.attr.nlink != 0:
            errors.append(f"stray inode {ino:#x} has nlink {rec.attr.nlink}, expected 0")
    stray_inos = {ino for _, ino, _ in strays}
    for ino, rec in records.items():
        if layout.is_dir(rec.attr.mode):
            want = 2 + subdirs[ino]
        elif ino in stray_inos:
            continue
        else:
            want = refs[ino]
        if rec.attr.nlink != want:
            errors.append(f"inode {ino:#x} has nlink {rec.attr.nlink}, expected {want}")
    orphans = 0
    async for oid in store.meta.list_objects():
        if oid.startswith("dir.") and len(oid) == 20:
            ino = int(oid[4:], 16)
            if ino != stray_dir and (ino not in records
                                     or not layout.is_dir(records[ino].attr.mode)):
                errors.append(f"orphan directory object {oid}")
                orphans += 1
        elif layout.is_inode_shard(oid):
            for ino in await store.table_inos(oid):
                if ino not in records:
                    errors.append(f"orphan inode {ino:#x} (no dentry names it)")
                    orphans += 1
    dirs = sum(1 for r in records.values() if layout.is_dir(r.attr.mode))
    return json.dumps({"ok": not errors, "inodes": len(records), "directories": dirs,
                       "files": len(records) - dirs, "strays": len(strays),
                       "orphans": orphans, "errors": errors})


async def _visit(store: MetaStore, parent: int, ino: int, name: str,
                 records: dict[int, mds_pb2.InodeRecord], errors: list[str], queue: list[int],
                 subdirs: Counter[int], mode: int | None = None, snapdir: bool = False) -> None:
    try:
        rec = await store.inode(ino)
    except NotFound:
        errors.append(f"dentry '{name}' in directory {parent:#x} names missing inode {ino:#x}")
        return
    if mode is not None and stat.S_IFMT(rec.attr.mode) != stat.S_IFMT(mode):
        errors.append(f"dentry '{name}' in {parent:#x} records the wrong type for {ino:#x}")
    if not layout.is_dir(rec.attr.mode):
        records.setdefault(ino, rec)
        return
    if not snapdir:
        subdirs[parent] += 1
    if ino in records:
        errors.append(f"directory {ino:#x} is linked more than once")
        return
    if rec.parent != parent:
        errors.append(f"directory {ino:#x} names parent {rec.parent:#x}, is linked in "
                      f"{parent:#x}")
    records[ino] = rec
    queue.append(ino)
