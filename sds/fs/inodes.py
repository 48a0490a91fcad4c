"""The client's inode table: what the kernel holds references to, and unreported writes.

An inode stays here while the kernel has a lookup reference or a file handle is open on
it, not merely while a name points at it: the kernel may send requests for an inode
after its last unlink (unlink-while-open, setattr after unlink), and it says when it is
done with one by forget(). FUSE inode 1 is the mount's root, which is an arbitrary MDS
inode when mounting a subdirectory, so numbers are translated at this boundary only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sds.mds.layout import ROOT_INO
from sds.proto import mds_pb2

if TYPE_CHECKING:
    from sds.fs.writebehind import WriteBehind

FUSE_ROOT = 1


@dataclass
class Inode:
    ino: int                       # MDS inode number
    attr: mds_pb2.InodeAttr
    lookups: int = 0               # kernel references (lookup/create/readdirplus minus forget)
    opens: int = 0                 # open file handles of this mount
    written_size: int = 0          # end of data written here but not yet reported
    written_mtime_ns: int = 0
    write_seq: int = 0             # bumped by every local write; flush clears only what it saw
    reported_seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # appends, truncates, flushes
    # this mount's appenders queue here before asking the MDS for its (per-mount) lock
    append_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    writes: WriteBehind | None = None  # data on its way to the OSDs (created on first write)
    absent_xattrs: set[bytes] = field(default_factory=set)
    absent_key: tuple[int, float] = (-1, 0.0)  # (attr version, expiry) they were seen at

    def xattr_absent(self, name: bytes) -> bool:
        """Known not to exist: the kernel asks for security.capability on every write."""
        version, expiry = self.absent_key
        return name in self.absent_xattrs and version == self.attr.version \
            and time.monotonic() < expiry

    def remember_absent_xattr(self, name: bytes, ttl: float) -> None:
        if self.absent_key[0] != self.attr.version:
            self.absent_xattrs.clear()
        self.absent_key = (self.attr.version, time.monotonic() + ttl)
        self.absent_xattrs.add(name)

    @property
    def dirty(self) -> bool:
        return self.write_seq != self.reported_seq

    @property
    def size(self) -> int:
        """What this mount knows the size to be: the MDS's, or further if written here."""
        return max(self.attr.size, self.written_size) if self.dirty else self.attr.size

    def note_write(self, end: int) -> None:
        self.written_size = max(self.written_size, end)
        self.written_mtime_ns = time.time_ns()
        self.write_seq += 1

    def mark_reported(self, seq: int) -> None:
        """Writes up to `seq` reached the MDS; once all have, its size is the truth."""
        self.reported_seq = max(self.reported_seq, seq)
        if not self.dirty:
            self.written_size = 0

    def update(self, attr: mds_pb2.InodeAttr) -> None:
        """Take newer attributes; replies may arrive out of order, versions decide."""
        if attr.ino == self.ino and attr.version >= self.attr.version:
            self.attr = attr


class InodeTable:
    def __init__(self, root_ino: int = ROOT_INO):
        self.root_ino = root_ino
        self._inodes: dict[int, Inode] = {}

    # -- number translation: swap the MDS root and the mounted root ------------------
    def to_fuse(self, ino: int) -> int:
        if ino == self.root_ino:
            return FUSE_ROOT
        if ino == FUSE_ROOT:
            return self.root_ino
        return ino

    def to_mds(self, fuse_ino: int) -> int:
        return self.to_fuse(fuse_ino)  # the swap is its own inverse

    # -- lifetime ----------------------------------------------------------------------
    def get(self, fuse_ino: int) -> Inode | None:
        return self._inodes.get(self.to_mds(fuse_ino))

    def known(self, ino: int) -> Inode | None:
        """By MDS inode number."""
        return self._inodes.get(ino)

    def learn(self, attr: mds_pb2.InodeAttr, lookups: int = 0) -> Inode:
        """Record attributes from an MDS reply; `lookups` kernel references are added."""
        inode = self._inodes.get(attr.ino)
        if inode is None or inode.attr.generation != attr.generation and not inode.opens:
            inode = self._inodes[attr.ino] = Inode(attr.ino, attr)
        else:
            inode.update(attr)
        inode.lookups += lookups
        return inode

    def forget(self, fuse_ino: int, n: int) -> None:
        inode = self.get(fuse_ino)
        if inode is None:
            return
        inode.lookups = max(0, inode.lookups - n)
        self.drop_if_unused(inode)

    def opened(self, inode: Inode) -> None:
        inode.opens += 1

    def closed(self, inode: Inode) -> None:
        inode.opens = max(0, inode.opens - 1)
        self.drop_if_unused(inode)

    def drop_if_unused(self, inode: Inode) -> None:
        if inode.lookups == 0 and inode.opens == 0 and not inode.dirty \
                and inode.ino != self.root_ino:
            self._inodes.pop(inode.ino, None)

    def __len__(self) -> int:
        return len(self._inodes)

    def __iter__(self):
        return iter(list(self._inodes.values()))
