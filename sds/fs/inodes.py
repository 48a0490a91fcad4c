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

from sds.fsrules.attrs import OWNER_BITS, set_attrs
from sds.fsrules.layout import ROOT_INO
from sds.proto import mds_pb2

if TYPE_CHECKING:
    from sds.fs.writebehind import WriteBehind

FUSE_ROOT = 1
MTIME_BITS = mds_pb2.SET_MTIME | mds_pb2.SET_MTIME_NOW
ATIME_BITS = mds_pb2.SET_ATIME | mds_pb2.SET_ATIME_NOW


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
    made: asyncio.Future | None = None  # its create, answered here, on its way to the MDS
    write_handles: int = 0         # handles of this mount open for writing
    # attribute write-back: mode/owner/time changes made here while open for writing,
    # not yet sent to the MDS (they go with the next WRITE_DONE), and by whom
    pending_mask: int = 0
    pending: mds_pb2.InodeAttr = field(default_factory=mds_pb2.InodeAttr)
    pending_caller: mds_pb2.Caller | None = None
    absent_xattrs: set[bytes] = field(default_factory=set)
    absent_key: tuple[int, float] = (-1, 0.0)  # (xattr version, expiry) they were seen at
    quota_end: int | None = None   # a byte quota lets the file grow to here (None: no quota)
    fetched_at: float = field(default_factory=time.monotonic)  # attr as of an MDS reply then

    def attr_fresh(self, within: float) -> bool:
        """The MDS said these attributes less than `within` seconds ago, and nothing this
        mount knows of changed them since: a getattr may be answered from here (the
        kernel asks again after each of its own writes and creates)."""
        return time.monotonic() - self.fetched_at < within

    def attr_stale(self) -> None:
        """A change made here or elsewhere that no reply described: ask the MDS next."""
        self.fetched_at = float("-inf")

    def xattr_absent(self, name: bytes) -> bool:
        """Known not to exist: the kernel asks for security.capability on every write.
        Keyed on the xattr version, not the inode's: an fsync'd write's size report
        changes the inode and would otherwise cost the next write an MDS round trip."""
        version, expiry = self.absent_key
        return name in self.absent_xattrs and version == self.attr.xattr_version \
            and time.monotonic() < expiry

    def remember_absent_xattr(self, name: bytes, ttl: float) -> None:
        if self.absent_key[0] != self.attr.xattr_version:
            self.absent_xattrs.clear()
        self.absent_key = (self.attr.xattr_version, time.monotonic() + ttl)
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
        self.pending_mask &= ~MTIME_BITS  # the write is newer than a buffered utimens

    def mark_reported(self, seq: int, mask: int = 0) -> None:
        """Writes up to `seq` (and the buffered changes `mask`) reached the MDS; once all
        writes have, its size is the truth."""
        self.reported_seq = max(self.reported_seq, seq)
        self.pending_mask &= ~mask
        if not self.pending_mask:
            self.pending_caller = None
        if not self.dirty:
            self.written_size = 0

    def buffer_attrs(self, new: mds_pb2.InodeAttr, mask: int,
                     caller: mds_pb2.Caller) -> None:
        """Apply a mode/owner/time change here, now, with the MDS's rules (raising as it
        would); it reaches the MDS with the next report of this file."""
        attr = mds_pb2.InodeAttr()
        attr.CopyFrom(self.attr)
        set_attrs(attr, new, mask, caller)
        self.attr = attr
        for bits, other in ((MTIME_BITS, mask & MTIME_BITS), (ATIME_BITS, mask & ATIME_BITS)):
            if other:  # the latest of "to now" and "to this time" wins
                self.pending_mask &= ~bits
        self.pending_mask |= mask
        self.pending_caller = caller
        if mask & MTIME_BITS:
            self.written_mtime_ns = 0  # stat shows the time set, not the last write's
        self.pending.CopyFrom(attr)

    def report(self) -> tuple[mds_pb2.InodeAttr, int]:
        """What a WRITE_DONE / CAPS_ACK carries: the written size and mtime (if any
        writes are unreported) and the buffered changes with their mask."""
        mask = self.pending_mask
        attr = mds_pb2.InodeAttr(ino=self.ino)
        if mask:
            attr.CopyFrom(self.pending)
            attr.size = 0
        if self.dirty:
            attr.size = self.written_size
            if not mask & mds_pb2.SET_MTIME:
                attr.mtime_ns = self.written_mtime_ns
        return attr, mask

    def drop_unreported(self) -> None:
        """Forget writes and attribute changes the MDS never got (after an eviction)."""
        if self.writes is not None:
            self.writes.cancel()
            self.writes = None
        self.reported_seq = self.write_seq
        self.written_size = self.written_mtime_ns = 0
        self.pending_mask, self.pending_caller = 0, None
        self.write_handles = 0

    def update(self, attr: mds_pb2.InodeAttr) -> None:
        """Take newer attributes; replies may arrive out of order, versions decide.
        Changes buffered here stay on top until the MDS has them."""
        if attr.ino == self.ino and attr.version >= self.attr.version:
            self.attr = attr
            self.fetched_at = time.monotonic()
            if self.pending_mask:
                self._overlay(attr)

    def _overlay(self, attr: mds_pb2.InodeAttr) -> None:
        mask, p = self.pending_mask, self.pending
        if mask & (mds_pb2.SET_MODE | OWNER_BITS):
            attr.mode, attr.uid, attr.gid = p.mode, p.uid, p.gid
        if mask & ATIME_BITS:
            attr.atime_ns = p.atime_ns
        if mask & MTIME_BITS:
            attr.mtime_ns = p.mtime_ns


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

