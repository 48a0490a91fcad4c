"""The kernel-facing side of the mount: pyfuse3 request handlers mapped onto MDS requests
(namespace, attributes, sizes) and the striper (file data, straight to the OSDs).

Consistency model (close-to-open, like NFS and CephFS without caps):
- data written here is on its way to the OSDs when write() returns (sds.fs.writebehind)
  and on them, with its new size and mtime reported to the MDS (WRITE_DONE), when fsync
  or release return, or a REVOKE from the MDS is answered; flush (every close) waits for
  that too unless the close may be deferred (`_may_defer_close`: a small file, no quota,
  no failed write), as the kernel does not wait for release; reads on this mount wait
  for in-flight writes;
- open() fetches fresh attributes from the MDS: if the inode changed since this mount last
  saw it, the kernel's cached attributes and pages are dropped, so a file written and
  closed on another mount is read correctly after open;
- attributes and entries are cached by the kernel for at most ATTR_TIMEOUT_S (or the MDS
  lease); the MDS pushes INVALIDATE_DENTRY for a name changed elsewhere in a directory this
  mount holds a dentry lease on (sds/mds/leases.py), and REVOKE for files open here;
- attribute write-back: chmod/chown/utimens of a file this mount has open for writing are
  checked and applied here and reach the MDS with the data report (close, fsync, revoke);
  another mount sees them after that close, as it sees the data; an open here, or a
  SETATTR or open elsewhere (the MDS revokes this writer first), flushes them earlier.
O_APPEND: each append write (up to max_write, 1 MiB) is atomic across mounts: under an
MDS lock it is placed at the current size and reported before the next one, so concurrent
appenders on any mounts lose nothing (at ~4 MDS round trips per append). flock/fcntl
locks are local to one mount: pyfuse3 has no lock handlers.
Eviction (EVICTED from the MDS, or StaleSession/Blocklisted answers): open files fail with EIO;
with `reconnect` set (--recover-session clean) the mount continues as a new client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import os
import random
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pyfuse3

from sds.client.striper import Striper
from sds.common.errors import (
    Blocklisted,
    ConnectionLost,
    NoData,
    NotFound,
    NotPermitted,
    PermissionDenied,
    QuotaExceeded,
    Retry,
    SdsError,
    ShuttingDown,
    StaleSession,
    TimedOut,
    Unavailable,
)
from sds.fs.asynccreate import SpareInos, made_or_raise, new_file_attr
from sds.fs.errnos import to_errno
from sds.fs.inodes import Inode, InodeTable
from sds.fs.writebehind import WriteBehind
from sds.fsrules.attrs import WRITE_BACK_BITS
from sds.fsrules.layout import SNAPDIR
from sds.proto import mds_pb2

log = logging.getLogger("sds.fuse")

Req = mds_pb2.MdsRequest
ATTR_TIMEOUT_S = 1.0          # upper bound on kernel attr/entry caching, whatever the lease
READDIR_PAGE = 512            # entries per MDS READDIR; the kernel takes ~30 per call
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
BLOCK = 512                   # st_blocks unit
CAPABILITY_XATTR = b"security.capability"  # what the kernel asks before every write
APPEND_LOCK_WAIT_S = 5.0
STATFS_TIMEOUT_S = 3.0        # then statfs answers from the last known values
UNREACHABLE = (TimedOut, Unavailable, ConnectionLost, ShuttingDown)  # no MDS answered
DEFERRED_CLOSE_BYTES = 1 << 20  # close(2) waits for the data when more is in flight
DEFERRED_CLOSES = 64          # closes whose report may wait for release() at once
ASYNC_UNLINKS = 64            # unlinks answered here and not yet at the MDS, at most
ASYNC_CREATES = 256           # creates likewise
NAME_MAX = 255
# requests that change no attributes but those their reply carries
ATTR_KEEPING_OPS = {Req.LOOKUP, Req.GETATTR, Req.READLINK, Req.READDIR, Req.GETXATTR,
                    Req.LISTXATTR, Req.STATFS, Req.OPEN, Req.RELEASE, Req.FLOCK,
                    Req.WRITE_DONE, Req.CAPS_ACK, Req.QUOTA_GET}
QUOTA_ROOM_OPS = {Req.OPEN, Req.CREATE, Req.WRITE_DONE, Req.CAPS_ACK, Req.SETATTR}
FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE, FALLOC_ZERO_RANGE = 0x01, 0x02, 0x10
SETATTR_FIELDS = (  # SetattrFields flag, SET_* bit, InodeAttr field, EntryAttributes field
    ("update_size", mds_pb2.SET_SIZE, "size", "st_size"),
    ("update_mode", mds_pb2.SET_MODE, "mode", "st_mode"),
    ("update_uid", mds_pb2.SET_UID, "uid", "st_uid"),
    ("update_gid", mds_pb2.SET_GID, "gid", "st_gid"),
    ("update_atime", mds_pb2.SET_ATIME, "atime_ns", "st_atime_ns"),
    ("update_mtime", mds_pb2.SET_MTIME, "mtime_ns", "st_mtime_ns"),
    ("update_ctime", mds_pb2.SET_CTIME, "ctime_ns", "st_ctime_ns"),
)


class MdsLike:
    """What the operations need from `sds.client.mdsclient.MdsClient`."""

    async def request(self, req: mds_pb2.MdsRequest,
                      timeout: float | None = None) -> mds_pb2.MdsReply: ...

    async def sync(self, timeout: float | None = None) -> None:
        """Every change the MDS answered early is in its journal now."""

    replay_errors: list[SdsError]  # early-answered changes a new MDS refused to replay


def handler(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Answer every request: typed errors become their errno, anything else EIO (logged).

    In asyncio mode pyfuse3 never answers a request whose handler raised something other
    than FUSEError, which hangs the calling process for good."""

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        try:
            return await fn(*args)
        except pyfuse3.FUSEError:
            raise
        except Exception as e:  # noqa: BLE001 - the one place handler errors become errno
            code = to_errno(e)
            if not isinstance(e, SdsError | OSError) or code == errno.EIO:
                log.exception("%s%r failed", fn.__name__, args[1:3])
            else:
                log.debug("%s%r: %s", fn.__name__, args[1:3], e)
            raise pyfuse3.FUSEError(code) from None
    return wrapper


@dataclass
class Handle:
    """One open file description (what the kernel calls fh)."""

    inode: Inode
    flags: int
    caller: mds_pb2.Caller
    stale: bool = False  # opened before this mount was evicted: its I/O fails with EIO

    @property
    def append(self) -> bool:
        return bool(self.flags & os.O_APPEND)

    @property
    def writable(self) -> bool:
        return self.flags & os.O_ACCMODE != os.O_RDONLY


@dataclass
class DirHandle:
    """One opendir: the last page of entries fetched, so the kernel's many small readdir
    calls do not each cost an MDS round trip."""

    ino: int
    page: list[mds_pb2.Dentry]
    starts: dict[int, int]      # cookie a readdir may resume from -> index in page
    more: bool = True


def caller_of(ctx: pyfuse3.RequestContext | None, with_groups: bool = False) -> mds_pb2.Caller:
    if ctx is None:
        return mds_pb2.Caller()
    c = mds_pb2.Caller(uid=ctx.uid, gid=ctx.gid, umask=ctx.umask)
    if with_groups and ctx.uid != 0:
        try:
            c.groups.extend(sorted(pyfuse3.get_sup_groups(ctx.pid)))
        except (OSError, RuntimeError):
            pass  # the process is gone; its primary gid still counts
    return c


def times_to_now(new: mds_pb2.InodeAttr, mask: int) -> int:
    """pyfuse3 turns utimensat(UTIME_NOW) into explicit times, which only the owner may set;
    a writer may set "now". The kernel has already checked (default_permissions), so times
    within a second of now from a non-owner are sent as *_NOW, as the kernel meant them."""
    now = time.time_ns()
    for bit, now_bit, field in ((mds_pb2.SET_ATIME, mds_pb2.SET_ATIME_NOW, "atime_ns"),
                                (mds_pb2.SET_MTIME, mds_pb2.SET_MTIME_NOW, "mtime_ns")):
        if mask & bit and 0 <= now - getattr(new, field) < 1_000_000_000:
            mask = mask & ~bit | now_bit
    return mask


def note_quota_room(inode: Inode, reply: mds_pb2.MdsReply) -> None:
    """Where the file's byte quota stops its growth, as of this reply (None: no quota)."""
    inode.quota_end = reply.attr.size + reply.quota_room if reply.quota_limited else None


def fsname(name: bytes) -> str:
    return os.fsdecode(name)


class SdsOperations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False  # writes go through, so sizes are known at each write

    def __init__(self, mds: MdsLike, striper: Striper, root_ino: int, read_only: bool = False):
        super().__init__()
        self.mds = mds
        self.striper = striper
        self.read_only = read_only
        self.inodes = InodeTable(root_ino)
        self.handles: dict[int, Handle] = {}
        self.dirs: dict[int, DirHandle] = {}
        self._next_fh = 1
        self.evicted = False
        # set by the mount to recover from an eviction (a new client instance and session)
        self.reconnect: Callable[[], Awaitable[tuple[MdsLike, Striper]]] | None = None
        self._recovery = asyncio.Lock()
        self.lock_owner = random.getrandbits(63)  # this mount, as an MDS lock owner
        self.last_statfs: mds_pb2.StatFs | None = None
        self._tasks: set[asyncio.Task] = set()
        self.deferred: set[int] = set()  # handles closed whose report release() makes
        self.mds_unreachable = False     # the last MDS request failed to reach an MDS
        self.unlink_delay = 0.0          # client_inject_unlink_delay (testing)
        self.create_delay = 0.0          # client_inject_create_delay (testing)
        self.dir_caps: set[int] = set()  # directories this mount holds exclusively ...
        self._dir_cap_session = 0        # ... in this MDS session
        self._dir_revokes: Counter[int] = Counter()  # REVOKE_DIRs seen, per directory ...
        self._revokes_seen = 0                       # ... and in all
        # directories this mount made and holds the exclusive cap of: (session, the names
        # that may be in it: every name this mount added or tried to add there, whether
        # no quota applies to it)
        self.own_dirs: dict[int, tuple[int, set[str], bool]] = {}
        # unlinks answered here, not yet at the MDS: (directory, name) each
        self.unlinking: dict[asyncio.Future, tuple[int, str]] = {}
        # creates answered here, not yet at the MDS: (directory, name, inode) each
        self.creating: dict[asyncio.Future, tuple[int, str, int]] = {}
        self.spare_inos = SpareInos(self._alloc_inos)
        # the last failure of such an unlink or create, per directory, for its next fsyncdir
        self.dirop_errors: dict[int, Exception] = {}

    on_init: Callable[[], None] = staticmethod(lambda: None)

    def init(self) -> None:
        """FUSE INIT is being answered (must not raise): tell the mount process."""
        try:
            self.on_init()
        except Exception:  # noqa: BLE001
            log.exception("init hook failed")

    # -- helpers ------------------------------------------------------------------------
    async def call(self, op: int, ctx: pyfuse3.RequestContext | None = None,
                   caller: mds_pb2.Caller | None = None, timeout: float | None = None,
                   barrier: bool = True, **fields: Any) -> mds_pb2.MdsReply:
        """One MDS request; unlinks answered here already reach the MDS before it, so it
        sees this mount's changes in the order they were made (`barrier`)."""
        if self.evicted:
            raise pyfuse3.FUSEError(errno.EIO)
        if barrier and self.unlinking and not self._unaffected(op, fields):
            await self.settle_unlinks()
        if barrier and self.creating:
            await self._creates_before(op, fields)
        req = Req(op=op, caller=caller or caller_of(ctx), **fields)
        t0 = time.perf_counter()
        try:
            reply = await (self.mds.request(req, timeout) if timeout else self.mds.request(req))
        except SdsError as e:
            if isinstance(e, StaleSession | Blocklisted):  # our session was evicted
                self._evicted()
                raise pyfuse3.FUSEError(errno.EIO) from None
            self.mds_unreachable = isinstance(e, UNREACHABLE) or e.code == errno.ETIMEDOUT
            raise
        finally:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("mds %s ino=%d %.2f ms", Req.Op.Name(op), req.ino,
                          (time.perf_counter() - t0) * 1e3)
        if op not in ATTR_KEEPING_OPS:  # what it changed may be more than the reply says
            for ino in (req.ino, req.ino2):
                known = self.inodes.known(ino) if ino else None
                if known is not None:
                    known.attr_stale()
        self.mds_unreachable = False
        for attr in (reply.attr, reply.parent):
            known = self.inodes.known(attr.ino) if attr.ino else None
            if known is not None:
                known.update(attr)
        if op in QUOTA_ROOM_OPS and reply.attr.ino:
            known = self.inodes.known(reply.attr.ino)
            if known is not None:
                note_quota_room(known, reply)
        return reply

    async def _creates_before(self, op: int, fields: dict[str, Any]) -> None:
        """Creates answered here before this request, of the files or in the directories
        it names, reach the MDS before it (creates answered later need not: the wait
        ends); a lookup waits only for its name, a request naming no inode for all."""
        named = {fields.get("ino", 0), fields.get("ino2", 0)} - {0}
        if op == Req.LOOKUP:
            ahead = [f for f, (d, n, _) in self.creating.items()
                     if (d, n) == (fields["ino"], fields["name"])]
        elif named:
            ahead = [f for f, (d, _, ino) in self.creating.items() if d in named or ino in named]
        else:
            ahead = list(self.creating)
        if ahead:
            await asyncio.wait(ahead)

    def _unaffected(self, op: int, fields: dict[str, Any]) -> bool:
        """A lookup of another name, or a listing of another directory, shows nothing
        an unlink answered here and still on its way changes."""
        if op == Req.LOOKUP:
            return (fields["ino"], fields["name"]) not in self.unlinking.values()
        if op == Req.READDIR:
            return all(dir_ino != fields["ino"] for dir_ino, _ in self.unlinking.values())
        return False

    def _timeout(self, reply: mds_pb2.MdsReply | None) -> float:
        if reply is not None and reply.lease_ms:
            return min(reply.lease_ms / 1000, ATTR_TIMEOUT_S)
        return ATTR_TIMEOUT_S

    def entry(self, inode: Inode, timeout: float = ATTR_TIMEOUT_S) -> pyfuse3.EntryAttributes:
        a = inode.attr
        e = pyfuse3.EntryAttributes()
        e.st_ino = self.inodes.to_fuse(a.ino)
        e.generation = a.generation
        e.entry_timeout = timeout
        e.attr_timeout = timeout
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = a.rdev
        e.st_size = inode.size
        e.st_blksize = self.striper.stripe_size
        e.st_blocks = (inode.size + BLOCK - 1) // BLOCK
        e.st_atime_ns = a.atime_ns
        e.st_mtime_ns = max(a.mtime_ns, inode.written_mtime_ns) if inode.dirty else a.mtime_ns
        e.st_ctime_ns = max(a.ctime_ns, e.st_mtime_ns)
        return e

    def new_entry(self, reply: mds_pb2.MdsReply) -> pyfuse3.EntryAttributes:
        """The entry for the inode a reply is about; the kernel now holds one reference."""
        return self.entry(self.inodes.learn(reply.attr, lookups=1), self._timeout(reply))

    def inode(self, fuse_ino: int) -> Inode:
        inode = self.inodes.get(fuse_ino)
        if inode is None:  # not normally possible: the kernel only names inodes it looked up
            raise pyfuse3.FUSEError(errno.ESTALE)
        return inode

    def mds_ino(self, fuse_ino: int) -> int:
        return self.inodes.to_mds(fuse_ino)

    @property
    def max_file_size(self) -> int:
        return getattr(self.mds, "max_file_size", 1 << 63)

    def check_size(self, size: int) -> None:
        if size > self.max_file_size:
            raise pyfuse3.FUSEError(errno.EFBIG)

    def check_writable(self) -> None:
        if self.read_only:
            raise pyfuse3.FUSEError(errno.EROFS)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lookups and attributes -----------------------------------------------------------
    @handler
    async def lookup(self, parent, name, ctx):
        dir_ino, name = self.mds_ino(parent), fsname(name)
        if self._surely_absent(dir_ino, name):
            raise pyfuse3.FUSEError(errno.ENOENT)
        reply = await self.call(Req.LOOKUP, ctx, ino=dir_ino, name=name)
        return self.new_entry(reply)

    def _surely_absent(self, dir_ino: int, name: str) -> bool:
        """A miss answered here, sparing untar a round trip per new file: the directory
        was empty when this mount made it, and its exclusive cap (sds.mds.caps) was held
        since, so nobody else added a name; this mount's own additions are in its set.
        .snap is the MDS's to make; after a failed MDS request the cap may be lost."""
        own = self.own_dirs.get(dir_ino)
        if own is None:
            return False
        if own[0] != self.session_id or not self._holds_dir(dir_ino) or self.mds_unreachable:
            del self.own_dirs[dir_ino]
            return False
        return name not in own[1] and name != SNAPDIR

    def _may_add(self, dir_ino: int, name: str) -> None:
        """Before a request that may add `name` to a directory: no miss answered here for
        it from now on, whatever the outcome."""
        own = self.own_dirs.get(dir_ino)
        if own is not None:
            own[1].add(name)

    async def forget(self, inode_list):
        """Not a request: it must not raise, not even FUSEError."""
        try:
            for fuse_ino, n in inode_list:
                self.inodes.forget(fuse_ino, n)
        except Exception:  # noqa: BLE001
            log.exception("forget %r", inode_list)

    async def refresh(self, inode: Inode, ctx=None) -> mds_pb2.MdsReply | None:
        """Fresh attributes from the MDS; an unlinked inode still open keeps its last ones."""
        try:
            return await self.call(Req.GETATTR, ctx, ino=inode.ino)
        except NotFound:
            if inode.opens or inode.lookups:
                inode.attr.nlink = 0
                return None
            raise

    @handler
    async def getattr(self, fuse_ino, ctx):
        inode = self.inodes.get(fuse_ino)
        if inode is not None and inode.attr_fresh(ATTR_TIMEOUT_S) and (
                not self.unlinking or stat.S_ISDIR(inode.attr.mode)):  # (nlink of a file)
            # as fresh as the kernel's own cache would be: within the same bound
            return self.entry(inode, ATTR_TIMEOUT_S - (time.monotonic() - inode.fetched_at))
        if inode is None:
            reply = await self.call(Req.GETATTR, ctx, ino=self.mds_ino(fuse_ino))
            return self.entry(self.inodes.learn(reply.attr), self._timeout(reply))
        reply = await self.refresh(inode, ctx)
        return self.entry(inode, self._timeout(reply))

    @handler
    async def setattr(self, fuse_ino, attr, fields, fh, ctx):
        """One SETATTR; a size change makes the MDS cut the data objects before it replies."""
        self.check_writable()
        inode = self.inode(fuse_ino)
        caller = caller_of(ctx, with_groups=True)
        new, mask = mds_pb2.InodeAttr(), 0
        for wanted, bit, ours, theirs in SETATTR_FIELDS:
            if getattr(fields, wanted):
                setattr(new, ours, getattr(attr, theirs))
                mask |= bit
        if mask & (mds_pb2.SET_ATIME | mds_pb2.SET_MTIME) and ctx.uid not in (0, inode.attr.uid):
            mask = times_to_now(new, mask)
        if mask & mds_pb2.SET_SIZE:
            self.check_size(new.size)
            h = self.handles.get(fh) if fh is not None else None
            if h is not None and h.writable and not h.stale:
                mask |= mds_pb2.SET_BY_WRITER  # ftruncate: allowed whatever the mode now
        async with inode.lock:
            if mask and not mask & ~WRITE_BACK_BITS and inode.write_handles:
                # attribute write-back (tar: fchown, fchmod, futimens before close): checked
                # and applied here, sent with the next report, so no MDS round trip now
                if inode.pending_caller not in (None, caller):
                    await self._report_writes(inode, caller)
                inode.buffer_attrs(new, mask, caller)
                return self.entry(inode)
            # reported first: a later report must not undo a utimens or resurrect cut data
            await self._report_writes(inode, caller)
            if mask:
                await self.call(Req.SETATTR, caller=caller, ino=inode.ino, attr=new,
                                set_mask=mask)
            if fields.update_size:
                inode.attr.size = new.size  # even if the reply's attr was older than ours
        return self.entry(inode)

    async def _report_writes(self, inode: Inode, caller: mds_pb2.Caller | None = None,
                             drain: bool = True, lazy: bool = False) -> None:
        """WRITE_DONE for data written here since the last report (sizes live on the MDS),
        once it is all on the OSDs (raises the error of a failed write-behind), with the
        attribute changes buffered here (`lazy`: nobody waits for it, see MdsRequest)."""
        if inode.writes is not None and drain:
            await inode.writes.drain()
        if not inode.dirty and not inode.pending_mask:
            return
        seq = inode.write_seq
        attr, mask = inode.report()
        try:
            await self.call(Req.WRITE_DONE, caller=inode.pending_caller or caller,
                            ino=inode.ino, attr=attr, set_mask=mask, lazy=lazy)
        except QuotaExceeded:
            await self._drop_refused_growth(inode, seq)
            raise
        except (NotPermitted, PermissionDenied) as e:
            if not mask:
                raise
            # the MDS saw other attributes than this mount did: its answer stands
            log.warning("inode %d: buffered attribute change refused by the MDS: %s",
                        inode.ino, e)
            inode.mark_reported(inode.reported_seq, mask)
            await self.refresh(inode)
            return await self._report_writes(inode, caller, lazy=lazy)
        inode.mark_reported(seq, mask)

    async def _drop_refused_growth(self, inode: Inode, seq: int) -> None:
        """The MDS refused the new size (quota): remove the bytes past the size it keeps,
        so that growing the file later shows zeros, never the refused data."""
        await self.refresh(inode)
        end = inode.written_size
        inode.mark_reported(seq)
        if end > inode.attr.size:
            await self.striper.truncate(inode.ino, end, inode.attr.size)

    # -- namespace --------------------------------------------------------------------------
    async def _make(self, op: int, parent: int, name: bytes, ctx, **fields):
        self.check_writable()
        dir_ino, name = self.mds_ino(parent), fsname(name)
        self._may_add(dir_ino, name)
        revokes = self._revokes_seen  # of any directory: the new one has no count yet
        reply = await self.call(op, ctx, ino=dir_ino, name=name, **fields)
        if reply.dir_cap and self._revokes_seen == revokes:  # not revoked meanwhile
            self._hold_dir(reply.attr.ino)
            self.own_dirs[reply.attr.ino] = (self.session_id, set(), reply.creates_unlimited)
            if reply.creates_unlimited:
                self.spare_inos.prefetch(self.session_id)
        return self.new_entry(reply)

    @handler
    async def mknod(self, parent, name, mode, rdev, ctx):
        return await self._make(Req.MKNOD, parent, name, ctx, mode=mode, rdev=rdev)

    @handler
    async def mkdir(self, parent, name, mode, ctx):
        return await self._make(Req.MKDIR, parent, name, ctx, mode=mode | stat.S_IFDIR,
                                want_dir_cap=True)

    @handler
    async def symlink(self, parent, name, target, ctx):
        return await self._make(Req.SYMLINK, parent, name, ctx, value=bytes(target))

    @handler
    async def link(self, fuse_ino, new_parent, new_name, ctx):
        self.check_writable()
        self._may_add(self.mds_ino(new_parent), fsname(new_name))
        reply = await self.call(Req.LINK, ctx, ino=self.mds_ino(fuse_ino),
                                ino2=self.mds_ino(new_parent), name2=fsname(new_name))
        return self.new_entry(reply)

    @handler
    async def unlink(self, parent, name, ctx):
        """Answered here, the MDS told later, in a directory whose exclusive cap this
        mount holds (sds.mds.caps): nobody else sees the directory until this mount has
        sent its pending unlinks, and the kernel has checked the name, its type and the
        permissions already, so the MDS has no reason left to refuse. Else synchronous,
        asking for the cap."""
        self.check_writable()
        dir_ino = self.mds_ino(parent)
        if self._holds_dir(dir_ino) and len(self.unlinking) < ASYNC_UNLINKS:
            self._unlink_later(dir_ino, fsname(name), caller_of(ctx))
            return
        revokes = self._dir_revokes[dir_ino]
        reply = await self.call(Req.UNLINK, ctx, ino=dir_ino, name=fsname(name),
                                want_dir_cap=True)
        if reply.dir_cap and self._dir_revokes[dir_ino] == revokes:  # not revoked meanwhile
            self._hold_dir(dir_ino)

    def _hold_dir(self, dir_ino: int) -> None:
        if self._dir_cap_session != self.session_id:
            self.dir_caps.clear()
            self._dir_cap_session = self.session_id
        self.dir_caps.add(dir_ino)

    @property
    def session_id(self) -> int:
        return getattr(self.mds, "session_id", 0)

    def _holds_dir(self, dir_ino: int) -> bool:
        """Caps belong to a session: after a reconnect or failover they are gone."""
        return dir_ino in self.dir_caps and self._dir_cap_session == self.session_id

    def _unlink_later(self, dir_ino: int, name: str, caller: mds_pb2.Caller) -> None:
        async def send() -> None:
            try:
                made = [f for f, (d, n, _) in self.creating.items() if (d, n) == (dir_ino, name)]
                if made:  # created here and not yet at the MDS either
                    await asyncio.wait(made)
                if self.unlink_delay:  # testing: a window for another mount to look in
                    await asyncio.sleep(self.unlink_delay)
                await self.call(Req.UNLINK, caller=caller, ino=dir_ino, name=name,
                                barrier=False)
            except Exception as e:  # noqa: BLE001 - answered already: the log must tell
                log.warning("unlink of %r in directory %d, answered already, failed at the "
                            "MDS: %s", name, dir_ino, e)
                self.dirop_errors[dir_ino] = e

        task = asyncio.ensure_future(send())
        self.unlinking[task] = (dir_ino, name)
        task.add_done_callback(lambda t: self.unlinking.pop(t, None))

    async def settle_unlinks(self) -> None:
        """Wait until every unlink answered here has reached the MDS."""
        while self.unlinking:
            await asyncio.wait(list(self.unlinking))

    async def settle_dirops(self, dir_ino: int | None = None) -> None:
        """Wait until every unlink answered here, and every create (in `dir_ino`), has
        reached the MDS."""
        while True:
            ahead = [f for f, (d, _, _) in self.creating.items() if dir_ino in (None, d)]
            if not ahead and not self.unlinking:
                return
            await asyncio.wait(ahead + list(self.unlinking))

    @handler
    async def rmdir(self, parent, name, ctx):
        self.check_writable()
        reply = await self.call(Req.RMDIR, ctx, ino=self.mds_ino(parent), name=fsname(name))
        self.dir_caps.discard(reply.attr.ino)
        self.own_dirs.pop(reply.attr.ino, None)

    @handler
    async def rename(self, old_parent, old_name, new_parent, new_name, flags, ctx):
        self.check_writable()
        self._may_add(self.mds_ino(new_parent), fsname(new_name))
        await self.call(Req.RENAME, ctx, ino=self.mds_ino(old_parent), name=fsname(old_name),
                        ino2=self.mds_ino(new_parent), name2=fsname(new_name), flags=flags)

    @handler
    async def readlink(self, fuse_ino, ctx):
        return (await self.call(Req.READLINK, ctx, ino=self.mds_ino(fuse_ino))).value

    # -- directories --------------------------------------------------------------------------
    @handler
    async def opendir(self, fuse_ino, ctx):
        fh = self._new_fh()
        self.dirs[fh] = DirHandle(self.mds_ino(fuse_ino), [], {})
        return fh

    @handler
    async def readdir(self, fh, start_id, token):
        d = self.dirs[fh]
        cookie = start_id
        while True:
            at = d.starts.get(cookie)
            if at is None:
                if cookie and not d.more and d.page and cookie == d.page[-1].offset:
                    return  # the end, already known
                await self._fetch_page(d, cookie)
                at = d.starts.get(cookie)
                if at is None:
                    return  # an empty page: end of directory
            for dentry in d.page[at:]:
                if dentry.name in (".", ".."):
                    continue
                inode = self.inodes.learn(dentry.attr)
                if not pyfuse3.readdir_reply(token, os.fsencode(dentry.name),
                                             self.entry(inode), dentry.offset):
                    self.inodes.drop_if_unused(inode)
                    return
                inode.lookups += 1  # readdirplus: the kernel now holds a reference
            if not d.more or not d.page:
                return
            cookie = d.page[-1].offset

    async def _fetch_page(self, d: DirHandle, cookie: int) -> None:
        reply = await self.call(Req.READDIR, ino=d.ino, offset=cookie, max_entries=READDIR_PAGE)
        if self.unlinking and any(e.attr.nlink > 1 and not stat.S_ISDIR(e.attr.mode)
                                  for e in reply.entries):  # a link count still to drop?
            await self.settle_unlinks()
            reply = await self.call(Req.READDIR, ino=d.ino, offset=cookie,
                                    max_entries=READDIR_PAGE)
        d.page = list(reply.entries)
        d.more = reply.more
        d.starts = {cookie: 0}
        for i, dentry in enumerate(d.page[:-1]):
            d.starts[dentry.offset] = i + 1

    @handler
    async def releasedir(self, fh):
        self.dirs.pop(fh, None)

    @handler
    async def fsyncdir(self, fh, datasync):
        """Creates and unlinks answered here and changes the MDS answered early are made
        durable, and one that failed fails this fsync, as the kernel CephFS client reports
        a failed async dirop."""
        d = self.dirs.get(fh)
        await self.settle_dirops(d.ino if d is not None else None)
        failed = self.dirop_errors.pop(d.ino, None) if d is not None else None
        if failed is not None:
            raise failed if isinstance(failed, SdsError) else pyfuse3.FUSEError(errno.EIO)
        await self._sync_namespace()

    # -- files ---------------------------------------------------------------------------------
    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _file_info(self, inode: Inode, flags: int, caller: mds_pb2.Caller,
                   keep_cache: bool) -> pyfuse3.FileInfo:
        fh = self._new_fh()
        h = self.handles[fh] = Handle(inode, flags, caller)
        self.inodes.opened(inode)
        inode.write_handles += h.writable
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep_cache)

    @handler
    async def open(self, fuse_ino, flags, ctx):
        if flags & WRITE_FLAGS:
            self.check_writable()
        inode = self.inode(fuse_ino)
        caller = caller_of(ctx)
        seen = inode.attr.version
        if inode.pending_mask:  # the MDS checks this open against the buffered mode/owner
            async with inode.lock:
                await self._report_writes(inode, caller)
        if flags & os.O_TRUNC:  # the MDS truncates; writes still in flight must land first
            async with inode.lock:
                await self._report_writes(inode, caller)
                reply = await self.call(Req.OPEN, caller=caller, ino=inode.ino, flags=flags)
                inode.attr.size = 0
        else:
            reply = await self.call(Req.OPEN, caller=caller, ino=inode.ino, flags=flags)
        changed = reply.attr.version != seen
        if changed:
            # close-to-open: another mount may have written it; the kernel must ask again
            # for the size before reading (its page cache goes with keep_cache=False)
            self._invalidate_attr(fuse_ino)
        return self._file_info(inode, flags, caller, keep_cache=not changed)

    @handler
    async def create(self, parent, name, mode, flags, ctx):
        self.check_writable()
        caller = caller_of(ctx)
        dir_ino, name = self.mds_ino(parent), fsname(name)
        here = self._create_here(dir_ino, name, mode, flags, caller)
        if here is not None:
            return here
        self._may_add(dir_ino, name)
        reply = await self.call(Req.CREATE, caller=caller, ino=dir_ino, name=name, mode=mode,
                                flags=flags)
        entry = self.new_entry(reply)
        inode = self.inodes.get(entry.st_ino)
        assert inode is not None
        note_quota_room(inode, reply)
        # a new file has no extended attributes: spare the kernel's question at its first
        # write (cached as a miss would be; a setxattr here forgets it)
        inode.remember_absent_xattr(CAPABILITY_XATTR, ATTR_TIMEOUT_S)
        return self._file_info(inode, flags, caller, keep_cache=False), entry

    def _create_here(self, dir_ino: int, name: str, mode: int, flags: int,
                     caller: mds_pb2.Caller) -> tuple[pyfuse3.FileInfo, Any] | None:
        """Answered here, the MDS told later (an async create, as CephFS clients make
        them), sparing untar a round trip per file: in a directory this mount made and
        holds the exclusive cap of, with no quota above it, for a name surely absent
        there, under a number the MDS gave this session (sds.mds.delegations). The kernel
        has checked the permissions: nothing is left for the MDS to refuse. Until the MDS
        has it, requests about the file wait for it and its data for the OSDs waits too
        (no data without an inode); if it fails anyway, fsync and close fail with its
        error, as does the directory's fsync."""
        own = self.own_dirs.get(dir_ino)
        if own is None or not own[2] or len(self.creating) >= ASYNC_CREATES or \
                len(os.fsencode(name)) > NAME_MAX or not self._surely_absent(dir_ino, name):
            return None
        parent = self.inodes.known(dir_ino)
        ino = self.spare_inos.take(self.session_id) if parent is not None else None
        if ino is None:
            return None
        attr = new_file_attr(ino, mode, caller, parent.attr)
        self._may_add(dir_ino, name)
        # the directory's new times, as the MDS will set them (its reply brings the rest)
        parent.attr.mtime_ns = parent.attr.ctime_ns = attr.ctime_ns
        inode = self.inodes.learn(attr, lookups=1)
        made = asyncio.ensure_future(self._create_later(
            caller, ino=dir_ino, name=name, mode=mode, flags=flags | os.O_EXCL, new_ino=ino,
            attr=mds_pb2.InodeAttr(ctime_ns=attr.ctime_ns)))
        self.creating[made] = (dir_ino, name, ino)
        made.add_done_callback(lambda f: self._created(f, dir_ino, name))
        inode.made = made
        inode.remember_absent_xattr(CAPABILITY_XATTR, ATTR_TIMEOUT_S)
        return self._file_info(inode, flags, caller, keep_cache=False), self.entry(inode)

    async def _create_later(self, caller: mds_pb2.Caller, **fields: Any) -> mds_pb2.MdsReply:
        if self.create_delay:  # testing: a window in which only this mount knows the file
            await asyncio.sleep(self.create_delay)
        return await self.call(Req.CREATE, caller=caller, barrier=False, **fields)

    def _created(self, made: asyncio.Future, dir_ino: int, name: str) -> None:
        self.creating.pop(made, None)
        e = None if made.cancelled() else made.exception()
        if made.cancelled() or e is not None:
            log.warning("create of %r in directory %d, answered already, failed at the MDS: "
                        "%s", name, dir_ino, e or "cancelled")
            self.dirop_errors[dir_ino] = e or pyfuse3.FUSEError(errno.EIO)

    async def _alloc_inos(self, want: int) -> tuple[int, int]:
        reply = await self.call(Req.ALLOC_INOS, want_inos=want, barrier=False)
        return reply.ino_start, reply.ino_count

    @handler
    async def read(self, fh, off, size):
        inode = self.live_handle(fh).inode
        await self._settle(inode)  # read your own writes
        return await self.striper.read(inode.ino, off, size, inode.size)

    @staticmethod
    async def _settle(inode: Inode) -> None:
        """Wait for in-flight writes without taking their error (fsync/close report it)."""
        if inode.writes is not None:
            await inode.writes.settle()

    @handler
    async def write(self, fh, off, buf):
        h = self.live_handle(fh)
        inode = h.inode
        buf = self._within_max_size(off if not h.append else inode.size, buf)
        if not h.append:
            if inode.quota_end is not None and off + len(buf) > max(inode.quota_end, inode.size):
                buf = await self._within_quota(inode, h, off, buf)
            if inode.writes is None:
                inode.writes = WriteBehind(self.striper, inode.ino, made=inode.made)
            await inode.writes.write(off, buf)
            inode.note_write(off + len(buf))
            return len(buf)
        # the MDS lock may take a while (other mounts append too): wait for it outside
        # inode.lock, which a revoke from the MDS needs to flush
        async with inode.append_lock, self._append_lock(inode), inode.lock:
            await self._settle(inode)
            await self.refresh(inode)
            off = inode.size
            await self.striper.write(inode.ino, off, buf)
            inode.note_write(off + len(buf))
            await self._report_writes(inode, h.caller)  # the next appender anywhere sees it
        return len(buf)

    async def _within_quota(self, inode: Inode, h: Handle, off: int, buf: bytes) -> bytes:
        """The write would grow the file past what its byte quota allowed when last heard:
        report what was written (the MDS answers with the room left), then write what
        fits, or fail with EDQUOT, as CephFS clients check quotas in the write path."""
        async with inode.lock:
            await self._report_writes(inode, h.caller)
            if not inode.dirty and inode.quota_end is not None:
                await self.call(Req.WRITE_DONE, caller=h.caller, ino=inode.ino)
        end = inode.quota_end
        if end is None or off + len(buf) <= max(end, inode.size):
            return buf
        if off >= max(end, inode.size):
            raise pyfuse3.FUSEError(errno.EDQUOT)
        return buf[:max(end, inode.size) - off]

    def _within_max_size(self, off: int, buf: bytes) -> bytes:
        """As Linux: EFBIG at or past max_file_size, a short write up to it."""
        limit = self.max_file_size
        if off + len(buf) <= limit:
            return buf
        if off >= limit:
            raise pyfuse3.FUSEError(errno.EFBIG)
        return buf[:limit - off]

    @contextlib.asynccontextmanager
    async def _append_lock(self, inode: Inode):
        """An MDS lock around one append, so appends from several mounts never overlap.

        The MDS queues lock requests fairly. If the lock cannot be had in
        APPEND_LOCK_WAIT_S (a client died holding it), the append goes ahead unlocked
        rather than failing: logged, and still serialized within this mount."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + APPEND_LOCK_WAIT_S
        locked = False
        while not locked:
            try:
                await self.call(Req.FLOCK, ino=inode.ino, lock_type=fcntl.F_WRLCK,
                                owner=self.lock_owner, flags=mds_pb2.FLOCK_WAIT)
                locked = True
            except Retry:
                if loop.time() > deadline:
                    log.warning("append to inode %d without the MDS lock", inode.ino)
                    break
        try:
            yield
        finally:
            if locked:
                await self.call(Req.FLOCK, ino=inode.ino, lock_type=fcntl.F_UNLCK,
                                owner=self.lock_owner)

    @handler
    async def fallocate(self, fuse_ino, mode, off, length, fh):
        """fallocate(2) (installed by sds.fs.fallocate): mode 0 and KEEP_SIZE only set the
        size (objects are written lazily, so there is no space to reserve); PUNCH_HOLE
        and ZERO_RANGE make the range read as zeros. Growth is reported at once, so
        EFBIG and EDQUOT come from this call."""
        self.check_writable()
        h = self.handles.get(fh) if fh is not None else None
        if h is None or not h.writable:
            raise pyfuse3.FUSEError(errno.EBADF)
        h = self.live_handle(fh)
        known = FALLOC_KEEP_SIZE | FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE
        if mode & ~known or (mode & FALLOC_PUNCH_HOLE and mode != FALLOC_PUNCH_HOLE |
                             FALLOC_KEEP_SIZE):
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        if off < 0 or length <= 0:
            raise pyfuse3.FUSEError(errno.EINVAL)
        inode, end = h.inode, off + length
        grow = not mode & FALLOC_KEEP_SIZE and end > inode.size
        if grow:
            self.check_size(end)
        async with inode.lock:
            if inode.made is not None:  # no data ops before the MDS has the inode
                await made_or_raise(inode.made)
            await self._report_writes(inode, h.caller)  # what is in flight lands first
            zeroed = mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE) and off < inode.size
            if zeroed:  # past the size it is a hole already
                await self.striper.zero(inode.ino, off, min(end, inode.size) - off)
            if grow or zeroed:
                inode.note_write(end if grow else 0)
                await self._report_writes(inode, h.caller)

    @handler
    async def flush(self, fh):
        h = self.handles.get(fh)
        if h is not None and self._may_defer_close(h):
            self.deferred.add(fh)  # reported by release(), which close(2) does not wait for
            return
        await self._flush(fh)

    def _may_defer_close(self, h: Handle) -> bool:
        """close(2) of a small written file need not wait for its data and size report
        (POSIX promises durability at fsync only): release() reports them in the
        background, while the MDS still counts the file open for writing here, so another
        mount's open, stat or readdir of it revokes this mount first (close-to-open holds).
        Not deferred: O_SYNC/O_DSYNC files, files under a byte quota (EDQUOT belongs to
        close), files a write of which has failed (later failures reach close too), more
        than DEFERRED_CLOSE_BYTES in flight, DEFERRED_CLOSES closes already waiting, or
        any while the MDS's last answer was a failure to reach it (close reports that)."""
        writes = h.inode.writes
        return (h.writable and not h.stale and not self.evicted and not h.append
                and not self.mds_unreachable
                and not h.flags & (os.O_SYNC | os.O_DSYNC)
                and h.inode.quota_end is None
                and (writes is None or (not writes.failed and writes.error is None
                                        and writes.bytes <= DEFERRED_CLOSE_BYTES))
                and len(self.deferred) < DEFERRED_CLOSES)

    @handler
    async def fsync(self, fh, datasync):
        await self._flush(fh, datasync)
        h = self.handles.get(fh)
        await self._sync_namespace(h.inode if h is not None else None)

    async def _sync_namespace(self, inode: Inode | None = None) -> None:
        """fsync makes the file's name durable too: its create answered here reaches the
        MDS, creates the MDS answered early are waited for, and one a new MDS refused to
        replay fails it (EIO, once)."""
        if inode is not None and inode.made is not None:
            await made_or_raise(inode.made)
        await self.mds.sync()
        if self.mds.replay_errors:
            self.mds.replay_errors.clear()
            raise pyfuse3.FUSEError(errno.EIO)

    async def _flush(self, fh: int, datasync: bool = False) -> None:
        """Data is durable once the OSDs acked it; fdatasync reports to the MDS only when
        the size grew (a new mtime alone can wait for close, as fdatasync(2) allows)."""
        if fh not in self.handles:
            return
        h = self.live_handle(fh)
        inode = h.inode
        async with inode.lock:
            overwrite = inode.writes is not None and inode.size <= inode.attr.size
            if datasync and overwrite:
                await inode.writes.drain()
            elif overwrite and inode.dirty and not inode.pending_mask:
                # the size stays: the new mtime may reach the MDS while the data reaches
                # the OSDs (fsync returns once both are durable; nothing reads otherwise)
                await asyncio.gather(inode.writes.drain(),
                                     self._report_writes(inode, h.caller, drain=False))
            else:
                await self._report_writes(inode, h.caller)

    @handler
    async def release(self, fh):
        await self._release(fh)

    async def _release(self, fh: int) -> None:
        h = self.handles.pop(fh, None)
        if h is None:
            return
        if h.stale:  # the MDS forgot it when it evicted us
            self.inodes.closed(h.inode)
            return
        deferred = fh in self.deferred
        try:
            async with h.inode.lock:
                await self._report_writes(h.inode, h.caller, lazy=deferred)
        except Exception as e:
            if deferred:  # close(2) has returned: the log is all that is left to tell
                log.warning("inode %d: data written before close was not stored: %s",
                            h.inode.ino, e)
            raise
        finally:
            self.deferred.discard(fh)
            try:
                await self.call(Req.RELEASE, caller=h.caller, ino=h.inode.ino, lazy=deferred)
            finally:
                h.inode.write_handles -= h.writable
                self.inodes.closed(h.inode)

    # -- extended attributes, statfs, access -------------------------------------------------
    @staticmethod
    def check_xattr_name(name: bytes) -> None:
        """POSIX ACLs are not supported (enable_acl is off): say so, as ext4 with noacl does,
        so `cp -a` falls back to chmod instead of storing an ACL the kernel never applies."""
        if name.startswith(b"system.posix_acl_"):
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)

    @handler
    async def setxattr(self, fuse_ino, name, value, ctx):
        self.check_writable()
        self.check_xattr_name(name)
        self._forget_absent_xattrs(fuse_ino)
        await self.call(Req.SETXATTR, ctx, ino=self.mds_ino(fuse_ino), name=fsname(name),
                        value=bytes(value))

    @handler
    async def getxattr(self, fuse_ino, name, ctx):
        self.check_xattr_name(name)
        inode = self.inodes.get(fuse_ino)
        if inode is not None and inode.xattr_absent(name):
            raise pyfuse3.FUSEError(errno.ENODATA)
        try:
            return (await self.call(Req.GETXATTR, ctx, ino=self.mds_ino(fuse_ino),
                                    name=fsname(name))).value
        except NoData:
            if inode is not None:
                inode.remember_absent_xattr(name, ATTR_TIMEOUT_S)
            raise

    def _forget_absent_xattrs(self, fuse_ino: int) -> None:
        inode = self.inodes.get(fuse_ino)
        if inode is not None:
            inode.absent_xattrs.clear()

    @handler
    async def listxattr(self, fuse_ino, ctx):
        reply = await self.call(Req.LISTXATTR, ctx, ino=self.mds_ino(fuse_ino))
        return [os.fsencode(n) for n in reply.names]

    @handler
    async def removexattr(self, fuse_ino, name, ctx):
        self.check_writable()
        self._forget_absent_xattrs(fuse_ino)
        await self.call(Req.REMOVEXATTR, ctx, ino=self.mds_ino(fuse_ino), name=fsname(name))

    @handler
    async def statfs(self, ctx):
        """df must answer even without an MDS (kubelet polls it): the last known values
        then, after a short wait."""
        try:
            wait = STATFS_TIMEOUT_S if self.last_statfs is not None else None
            s = (await self.call(Req.STATFS, ctx, timeout=wait,
                                 ino=self.inodes.root_ino)).statfs
            self.last_statfs = s
        except SdsError as e:
            if self.last_statfs is None or e.code not in (errno.ETIMEDOUT, errno.EIO):
                raise
            log.info("statfs answered from the last known values: %s", e)
            s = self.last_statfs
        out = pyfuse3.StatvfsData()
        bsize = s.block_size or 4096
        out.f_bsize = out.f_frsize = bsize
        out.f_blocks = s.total_bytes // bsize
        out.f_bfree = out.f_bavail = s.free_bytes // bsize
        out.f_files = s.total_files
        out.f_ffree = out.f_favail = s.free_files
        out.f_namemax = s.name_max or 255
        return out

    @handler
    async def access(self, fuse_ino, mode, ctx):
        # only reached without default_permissions: check mode bits like the kernel would
        if mode & os.W_OK and self.read_only:
            return False
        inode = self.inodes.get(fuse_ino)
        if inode is None:
            return True
        a = inode.attr
        if ctx.uid == 0:
            return not (mode & os.X_OK) or bool(a.mode & 0o111) or stat.S_ISDIR(a.mode)
        shift = 6 if ctx.uid == a.uid else 3 if ctx.gid == a.gid else 0
        return (a.mode >> shift) & mode == mode

    # -- messages from the MDS -----------------------------------------------------------------
    def on_mds_message(self, msg: mds_pb2.MdsClientMessage) -> None:
        """REVOKE / INVALIDATE_DENTRY / EVICTED, delivered by the MdsClient."""
        self.spawn(self._on_mds_message(msg))

    async def _on_mds_message(self, msg: mds_pb2.MdsClientMessage) -> None:
        K = mds_pb2.MdsClientMessage
        try:
            if msg.kind == K.REVOKE:
                inode = self.inodes.known(msg.ino)
                if inode is not None:
                    inode.attr_stale()  # another mount opens or changes it
                if inode is None:
                    await self.call(Req.CAPS_ACK, ino=msg.ino)
                    return
                async with inode.lock:  # flush what was written here, as a WRITE_DONE would
                    await self._settle(inode)
                    seq, (attr, mask) = inode.write_seq, inode.report()
                    await self.call(Req.CAPS_ACK, ino=msg.ino, attr=attr, set_mask=mask,
                                    caller=inode.pending_caller or mds_pb2.Caller())
                    inode.mark_reported(seq, mask)
                self._invalidate_inode(self.inodes.to_fuse(msg.ino))
            elif msg.kind == K.REVOKE_DIR:  # another mount needs the directory
                self._dir_revokes[msg.ino] += 1
                self._revokes_seen += 1
                self.dir_caps.discard(msg.ino)
                self.own_dirs.pop(msg.ino, None)
                await self.settle_dirops(msg.ino)
                await self.call(Req.CAPS_ACK, ino=msg.ino)
            elif msg.kind == K.INVALIDATE_DENTRY:
                changed = self.inodes.known(msg.ino)
                if changed is not None:
                    changed.attr_stale()  # a name in it changed elsewhere: so did its times
                pyfuse3.invalidate_entry_async(self.inodes.to_fuse(msg.ino),
                                               os.fsencode(msg.name), ignore_enoent=True)
            elif msg.kind == K.EVICTED:
                self._evicted()
        except pyfuse3.FUSEError as e:  # evicted meanwhile: nothing left to answer
            log.info("MDS message %s for inode %d not answered: %s",
                     K.Kind.Name(msg.kind), msg.ino, e)
        except Exception:  # noqa: BLE001 - a background task: log, never die silently
            log.exception("handling MDS message %s", msg)

    def live_handle(self, fh: int) -> Handle:
        h = self.handles[fh]
        if h.stale or self.evicted:
            raise pyfuse3.FUSEError(errno.EIO)
        return h

    # -- eviction ------------------------------------------------------------------------------
    def _evicted(self) -> None:
        if not self.evicted:
            log.error("the MDS evicted this mount: files open now fail with EIO%s",
                      "; recovering with a new session" if self.reconnect else
                      " (mount again to continue)")
        self.evicted = True
        self.dir_caps.clear()
        self.own_dirs.clear()
        if self.reconnect is not None and not self._recovery.locked():
            self.spawn(self._recover())

    async def _recover(self) -> None:
        """recover_session=clean, as CephFS calls it: what this mount had open or buffered
        is lost (those files keep failing with EIO until closed); a new client instance,
        which no blocklist names, opens a new session and the mount works again."""
        async with self._recovery:
            if not self.evicted:
                return
            for h in self.handles.values():
                h.stale = True
            for inode in self.inodes:
                inode.drop_unreported()
            delay = 0.5
            while True:
                try:
                    self.mds, self.striper = await self.reconnect()
                    break
                except Exception as e:  # noqa: BLE001 - keep trying: the mount is useless otherwise
                    log.warning("recovering from eviction: %s; retrying in %.0fs", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
            self.evicted = False
            log.warning("recovered from eviction: new MDS session %d",
                        getattr(self.mds, "session_id", 0))

    def _invalidate_attr(self, fuse_ino: int) -> None:
        try:
            pyfuse3.invalidate_inode(fuse_ino, attr_only=True)
        except OSError as e:
            if e.errno != errno.ENOENT:
                log.warning("invalidate attributes of inode %d: %s", fuse_ino, e)

    def _invalidate_inode(self, fuse_ino: int) -> None:
        """Drop cached attributes and pages; in a thread, as the kernel may wait on pages."""
        def run() -> None:
            try:
                pyfuse3.invalidate_inode(fuse_ino)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning("invalidate inode %d: %s", fuse_ino, e)
        self.spawn(asyncio.get_running_loop().run_in_executor(None, run))

    async def shutdown(self) -> None:
        """Send pending unlinks, report unreported writes and close handles left open at
        unmount."""
        with contextlib.suppress(Exception):
            await self.settle_dirops()
        self.spare_inos.close()
        for fh in list(self.handles):
            try:
                await self._release(fh)
            except Exception:  # noqa: BLE001 - best effort at exit
                log.exception("releasing handle %d at unmount", fh)
        if not self.mds_unreachable:  # else the unmount would wait for no MDS
            with contextlib.suppress(Exception):
                await self.mds.sync(timeout=5.0)
        for task in list(self._tasks):
            task.cancel()

