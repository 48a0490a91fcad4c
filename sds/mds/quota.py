"""Directory quotas: what a quota root reports, and what a tree uses."""

from __future__ import annotations

import stat

from sds.mds.store import MetaStore
from sds.proto import mds_pb2

Rec = mds_pb2.InodeRecord


async def usage(store: MetaStore, ino: int) -> tuple[int, int]:
    """(inodes, bytes of regular files) below a directory, counted from RADOS."""
    files = nbytes = 0
    for _name, child, mode in await store.all_entries(ino):
        files += 1
        if stat.S_ISDIR(mode):
            sub = await usage(store, child)
            files, nbytes = files + sub[0], nbytes + sub[1]
        elif stat.S_ISREG(mode):
            nbytes += (await store.inode(child)).attr.size
    return files, nbytes


def quota_of(path: str, rec: Rec) -> mds_pb2.Quota:
    return mds_pb2.Quota(path=path, max_bytes=rec.max_bytes, max_files=rec.max_files,
                         used_bytes=rec.used_bytes, used_files=rec.used_files)


def quota_statfs(rec: Rec, cluster: mds_pb2.StatFs) -> mds_pb2.StatFs:
    """statfs inside a quota root: the quota is the size (df in a pod shows the PVC)."""
    out = mds_pb2.StatFs()
    out.CopyFrom(cluster)
    if rec.max_bytes:
        out.total_bytes = rec.max_bytes
        out.free_bytes = min(max(0, rec.max_bytes - rec.used_bytes), cluster.free_bytes
                             or rec.max_bytes)
    if rec.max_files:
        out.total_files = rec.max_files
        out.free_files = max(0, rec.max_files - rec.used_files)
    return out
