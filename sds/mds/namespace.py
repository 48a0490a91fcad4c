"""The filesystem namespace: every MdsRequest op, with POSIX semantics and errnos.

A change is computed in memory as a `Tx` (copies of the inode records it touches plus
dentry and data ops), journaled as one event, then applied; one lock serialises
changes, so the records a Tx read cannot change under it. Reads are served from the
store's cache without the lock. Replies of changes are remembered by (client, tid)
(and rebuilt from the journal at start) so a resend after failover is answered once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable

from crc32c import crc32c

from sds.common.errors import (
    AlreadyExists,
    Busy,
    CrossDevice,
    FileTooBig,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NoData,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotPermitted,
    NotSupported,
    QuotaExceeded,
    Range,
    ReadOnly,
    SdsError,
    StaleSession,
    TooBig,
)
from sds.fsrules import perms
from sds.fsrules.attrs import OWNER_BITS, TIME_BITS, WRITE_BACK_BITS, set_attrs
from sds.fsrules.early import UNSAFE_OPS
from sds.fsrules.layout import SNAPDIR
from sds.mds import layout, quota, snapshots
from sds.mds.caps import Caps
from sds.mds.delegations import InoDelegations
from sds.mds.fsck import check_namespace
from sds.mds.journal import Journal
from sds.mds.leases import DentryLeases
from sds.mds.locks import FileLocks
from sds.mds.purge import PurgeQueue
from sds.mds.quota import quota_of, quota_statfs
from sds.mds.store import MetaStore
from sds.mds.tx import Tx, new_record, now_ns, touch
from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest
Rec = mds_pb2.InodeRecord
MetaOp = mds_pb2.MetaOp
STRAY_DIR = 0  # "dir.0000000000000000": unlinked inodes still open somewhere
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_VALUE_MAX = 64 * 1024
READDIR_MAX = 1000
COMPLETED_KEEP = 20_000
MAX_DEPTH = 4096
STAMP_SLACK_NS = 2_000_000_000  # an async create's own time is kept within this of ours
# reads whose answer shows only the inodes (and directory entries) the request names
NARROW_READS = {Req.LOOKUP, Req.GETATTR, Req.GETXATTR, Req.LISTXATTR, Req.READLINK,
                Req.READDIR}
CHANGED_AT_KEEP = 65536
# requests about a whole tree: every exclusive directory cap is revoked first
WHOLE_TREE_OPS = {Req.QUOTA_SET, Req.SNAP_CREATE, Req.CHECK}
READ_ONLY_OPS = {Req.LOOKUP, Req.GETATTR, Req.READLINK, Req.READDIR, Req.GETXATTR,
                 Req.LISTXATTR, Req.STATFS, Req.QUOTA_GET, Req.SNAP_LIST, Req.CHECK, Req.SYNC}
# the request field naming the directory whose entries the client may cache afterwards
# replies about a file that carry the room its byte quota leaves (the client's write path)
QUOTA_ROOM_OPS = {Req.OPEN, Req.CREATE, Req.WRITE_DONE, Req.CAPS_ACK, Req.SETATTR}
LEASED_DIR = {Req.LOOKUP: "ino", Req.READDIR: "ino", Req.CREATE: "ino", Req.MKNOD: "ino",
              Req.MKDIR: "ino", Req.SYMLINK: "ino", Req.LINK: "ino2", Req.RENAME: "ino2"}


def check_name(name: str) -> None:
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidArgument(f"invalid file name {name!r}")
    if len(name.encode()) > layout.NAME_MAX:
        raise NameTooLong(f"name longer than {layout.NAME_MAX} bytes")


class Namespace:
    def __init__(self, store: MetaStore, journal: Journal,
                 cluster_statfs: Callable[[], Awaitable[mds_pb2.StatFs]],
                 caps: Caps | None = None,
                 fence: Callable[[int], Awaitable[int]] | None = None,
                 lease_s: float = 1.0):
        self.store = store
        self.fence = fence  # blocklists a session's client on the OSDs; returns the epoch
        self.osd_epoch_barrier = 0
        self.max_file_size = layout.DEFAULT_MAX_FILE_SIZE  # EFBIG past it; the mons set it
        self.journal = journal
        self.cluster_statfs = cluster_statfs
        self.caps = caps or Caps(_no_client)
        self.lock = asyncio.Lock()
        self.opens: Counter[int] = Counter()
        self.carried: Counter[tuple[int, int]] = Counter()  # (session, ino): see retire_session
        # (client, tid) -> (reply, request digest) / (future, request digest)
        self.completed: OrderedDict[tuple[str, int], tuple[bytes, int]] = OrderedDict()
        self._changed_at: dict[int, int] = {}  # inode -> last journal event changing it
        self._added_at: dict[int, int] = {}  # directory -> last journal event adding a name
        self._session_seq: dict[int, int] = {}  # session -> its last event not yet durable
        self.inflight: dict[tuple[str, int], tuple[asyncio.Future, int]] = {}
        self.locks = FileLocks()
        self.leases = DentryLeases(lease_s)
        self._pushes: set[asyncio.Task] = set()
        self.replayed = 0
        self.delegations = InoDelegations()
        self.last_request = 0.0  # monotonic time of the latest request handled
        self.purges = PurgeQueue(store.meta, lambda ino, size: store.cut_data(ino, 0, size),
                                 lambda: self.last_request)
        store.purge_queue = self.purges  # replayed removals are queued too
        self.handlers = {
            Req.LOOKUP: self.lookup, Req.GETATTR: self.getattr, Req.SETATTR: self.setattr,
            Req.CREATE: self.create, Req.MKNOD: self.mknod, Req.MKDIR: self.mkdir,
            Req.SYMLINK: self.symlink, Req.LINK: self.link, Req.UNLINK: self.unlink,
            Req.RMDIR: self.rmdir, Req.RENAME: self.rename, Req.READLINK: self.readlink,
            Req.READDIR: self.readdir, Req.OPEN: self.open, Req.RELEASE: self.release,
            Req.WRITE_DONE: self.write_done, Req.CAPS_ACK: self.write_done,
            Req.SETXATTR: self.setxattr, Req.GETXATTR: self.getxattr,
            Req.LISTXATTR: self.listxattr, Req.REMOVEXATTR: self.removexattr,
            Req.STATFS: self.statfs, Req.QUOTA_SET: self.quota_set,
            Req.QUOTA_GET: self.quota_get, Req.SNAP_CREATE: self.snap_create,
            Req.SNAP_LIST: self.snap_list, Req.SNAP_REMOVE: self.snap_remove,
            Req.CHECK: self.check, Req.FLOCK: self.flock, Req.SYNC: self.sync,
            Req.ALLOC_INOS: self.alloc_inos,
        }

    # -- start-up --------------------------------------------------------------------------
    async def start(self) -> asyncio.Future:
        """Replay the journal (events after the applied mark), start its pipeline, and
        create the root if the filesystem is new. Returns the pipeline's failure future."""
        events, applied = await self.journal.load()
        for ev in events:
            if ev.client:
                self._remember(ev.client, ev.tid, ev.reply, ev.digest)
            if ev.seq > applied:
                await self.journal.replay(self._replay_apply, ev)
                self.replayed += 1
        await self.journal.replayed()
        failed = self.journal.start(self.store.apply)
        self.purges.start()
        # staged changes stay cached until RADOS has them: applied, and none set aside
        self.store.pinned = lambda: self.journal.applied_seq < self.journal.last_seq or \
            bool(self.journal.aside.events)
        try:
            await self.store.inode(layout.ROOT_INO)
        except NotFound:
            if await self.store.meta.exists(layout.layout1_root_oid()):
                raise NotSupported(
                    "this filesystem's metadata pool has an object per inode (layout 1); "
                    "this MDS reads the sharded inode table (layout 2): recreate the "
                    "filesystem, or run the MDS version that made it to copy its files "
                    "out") from None
            tx = Tx(self.store)
            root = new_record(layout.ROOT_INO, stat.S_IFDIR | 0o755, mds_pb2.Caller(), 0)
            root.attr.nlink = 2
            root.parent = layout.ROOT_INO
            tx.put(root)
            self._commit(tx)
            await self._settled()
        return failed

    async def _replay_apply(self, ops: list[MetaOp]) -> None:
        await self.store.apply(ops, replay=True)

    async def stop(self) -> None:
        await self.purges.stop()
        await self.journal.stop()

    def health(self) -> list[dict]:
        """What this MDS reports wrong in its beacons (MDS_... codes)."""
        return self.journal.health()

    async def _settled(self) -> None:
        """Wait until every staged change is applied to RADOS (before reading listings)."""
        await self.journal.wait_applied(self.journal.last_seq)

    async def _listable(self, dir_ino: int) -> None:
        """Wait until RADOS lists every name staged into `dir_ino`; names staged as
        removed may still be listed there: the cache filters them out (store.removed).
        Unlike `_settled`, a listing after many unlinks need not wait for their apply."""
        await self.journal.wait_applied(self._added_at.get(dir_ino, 0))

    async def purge_strays(self) -> int:
        """Remove unlinked inodes nobody re-opened after a failover."""
        purged = 0
        await self._settled()
        for _name, ino, _mode in await self.store.all_entries(STRAY_DIR):
            async with self.lock:
                if self.opens[ino] > 0:
                    continue
                tx = Tx(self.store)
                await self._purge(tx, ino)
                self._commit(tx)
                purged += 1
        return purged

    # -- dispatch ------------------------------------------------------------------------------
    async def handle(self, req: Req) -> mds_pb2.MdsReply:
        self.last_request = time.monotonic()  # the purge queue slows down meanwhile
        if req.session_id in self.caps.evicted:
            raise StaleSession(f"session {req.session_id} was evicted")
        key = (req.client_name, req.tid) if req.client_name and req.tid else None
        digest = request_digest(req)
        if key is not None:
            done = self.completed.get(key) or self.inflight.get(key)
            if done is not None and done[1] and done[1] != digest:
                raise InvalidArgument(f"request {req.tid} of client {req.client_name} was "
                                      "already used for a different request: refused")
            if key in self.completed:
                reply = mds_pb2.MdsReply()
                reply.ParseFromString(self.completed[key][0])
                return reply
            if key in self.inflight:
                return await asyncio.shield(self.inflight[key][0])
        handler = self.handlers.get(req.op)
        if handler is None:
            raise NotSupported(f"MDS op {req.op} is not supported")
        await self._revoke_dir_caps(req)
        if key is None or req.op in READ_ONLY_OPS:
            reply = await self._durably(handler, req)
            self._grant_lease(req)
            return reply
        fut = asyncio.get_running_loop().create_future()
        self.inflight[key] = (fut, digest)
        try:
            reply = await self._durably(handler, req)
            self._grant_lease(req)
            if req.op in QUOTA_ROOM_OPS:
                await self._quota_room(reply)
            self._remember(req.client_name, req.tid, reply.SerializeToString(), digest)
            fut.set_result(reply)
            return reply
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: only resends waiting on it re-raise
            raise
        finally:
            self.inflight.pop(key, None)

    async def _durably(self, handler, req: Req) -> mds_pb2.MdsReply:
        """Run a handler; answer (or fail) only once what it saw is in the journal, so
        no reply ever reveals a change a crash could still lose. An unsafe_ok change may
        show its own session's changes early, as that client replays them after a
        failover; never another session's (sds.client.mdsclient)."""
        reply = None
        try:
            reply = await handler(req)
            return reply
        finally:
            if req.unsafe_ok and req.op in UNSAFE_OPS:
                mine = self.journal.last_seq
                await self.journal.wait_durable(self._others_seq(req.session_id))
                if reply is not None and mine > self.journal.durable_seq:
                    reply.unsafe, reply.journal_seq = True, mine
            else:
                await self.journal.wait_durable(self._revealed_seq(req, reply),
                                                hurry=not req.lazy)

    def _others_seq(self, session: int) -> int:
        """The last journal event made by anyone but `session` (the MDS's own included)."""
        durable = self.journal.durable_seq
        for done in [s for s, seq in self._session_seq.items() if seq <= durable]:
            del self._session_seq[done]
        return max((seq for s, seq in self._session_seq.items() if s != session), default=0)

    def _revealed_seq(self, req: Req, reply: mds_pb2.MdsReply | None) -> int:
        """The last journal event whose change the answer to `req` may show. A lookup,
        getattr or xattr read shows only the inodes and the directory it names, so it
        waits for their last change, not for every change queued (a create's lookup
        need not wait for other files' size reports), a listing for its directory's and
        entries' (rm -rf's next directory need not wait for the last one's unlinks);
        anything else waits for all."""
        if req.op not in NARROW_READS or req.name == SNAPDIR:  # .snap may be made here
            return self.journal.last_seq
        inos = {req.ino, req.ino2}
        if reply is not None:
            inos |= {reply.attr.ino, reply.parent.ino}
            inos.update(e.attr.ino for e in reply.entries)
        return max(self._changed_at.get(ino, 0) for ino in inos)

    async def _revoke_dir_caps(self, req: Req) -> None:
        """Another session's exclusive cap on a directory this request names (or on the
        directory it removes or replaces, or on any, for whole-tree admin requests) is
        revoked first: its holder's pending unlinks land before this is served."""
        if req.op == Req.CAPS_ACK or not self.caps.dir_holders:
            return  # an ack never waits: it may be what a revoke waits for
        if req.op in WHOLE_TREE_OPS or req.op == Req.MKDIR and await self._in_snapshots(req.ino):
            dirs = set(self.caps.dir_holders)  # (mkdir .snap/NAME snapshots a tree)
        else:
            dirs = {req.ino, req.ino2}
            if req.op in (Req.RMDIR, Req.RENAME):
                for parent, name in ((req.ino, req.name), (req.ino2, req.name2)):
                    with contextlib.suppress(SdsError):
                        found = await self.store.lookup(parent, name) if name else None
                        if found is not None:
                            dirs.add(found[0])
        for dir_ino in dirs:
            if dir_ino and self.caps.dir_holder_other_than(dir_ino, req.session_id):
                for silent in await self.caps.revoke_dir(dir_ino, req.session_id):
                    await self.evict(silent)

    async def _in_snapshots(self, ino: int) -> bool:
        try:
            return (await self.store.inode(ino)).readonly
        except SdsError:
            return False

    def _grant_dir_cap(self, req: Req, reply: mds_pb2.MdsReply, dir_ino: int = 0) -> None:
        """An unlink (or a mkdir, for the directory it made) asked for the directory's
        exclusive cap: granted while no other session caches it (sds.mds.caps)."""
        dir_ino = dir_ino or req.ino
        others = bool(self.leases.others(dir_ino, req.session_id))
        if req.want_dir_cap and self.caps.may_grant_dir(dir_ino, req.session_id, others):
            self.caps.grant_dir(dir_ino, req.session_id)
            reply.dir_cap = True

    def _grant_lease(self, req: Req) -> None:
        """The client may now cache entries of the directory this request named."""
        field = LEASED_DIR.get(req.op)
        if field is not None:
            self.leases.grant(getattr(req, field), req.session_id)

    def _invalidate_dentries(self, ops: list[mds_pb2.MetaOp], session: int) -> None:
        """Tell other sessions caching a changed name to drop it (best effort)."""
        for op in ops:
            if op.kind not in (MetaOp.SET_DENTRY, MetaOp.RM_DENTRY):
                continue
            for other in self.leases.others(op.ino, session):
                self._push(other, mds_pb2.MdsClientMessage(
                    kind=mds_pb2.MdsClientMessage.INVALIDATE_DENTRY, ino=op.ino, name=op.name))

    def _push(self, session: int, msg: mds_pb2.MdsClientMessage) -> None:
        """Send a one-way message to a client in the background (best effort)."""
        async def send() -> None:
            with contextlib.suppress(SdsError):
                await self.caps.send(session, msg)

        task = asyncio.ensure_future(send())
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    def _remember(self, client: str, tid: int, reply: bytes, digest: int) -> None:
        self.completed[(client, tid)] = (reply, digest)
        while len(self.completed) > COMPLETED_KEEP:
            self.completed.popitem(last=False)

    def _commit(self, tx: Tx, req: Req | None = None,
                reply: mds_pb2.MdsReply | None = None) -> None:
        """Stage the changes in the cache and queue them for the journal (replies wait
        for the journal in `_durably`; the journal applies them to RADOS after that)."""
        ops = tx.all_ops()
        if not ops:
            return
        ev = mds_pb2.JournalEvent(ops=ops, stamp_ns=now_ns())
        if req is not None and req.client_name and req.tid and reply is not None:
            ev.client, ev.tid, ev.reply = req.client_name, req.tid, reply.SerializeToString()
            ev.digest = request_digest(req)
        self.store.stage(ops)
        seq = self.journal.submit(ev)
        if len(self._changed_at) > CHANGED_AT_KEEP:  # forget what is durable already
            durable = self.journal.durable_seq
            self._changed_at = {i: s for i, s in self._changed_at.items() if s > durable}
        if len(self._added_at) > CHANGED_AT_KEEP:  # forget what RADOS has already
            applied = self.journal.applied_seq
            self._added_at = {i: s for i, s in self._added_at.items() if s > applied}
        self._session_seq[req.session_id if req is not None else 0] = seq
        for op in ops:  # an inode's record, or a directory's entries
            self._changed_at[op.ino] = seq
            if op.kind == MetaOp.SET_DENTRY:
                self._added_at[op.ino] = seq
        self._invalidate_dentries(ops, req.session_id if req is not None else 0)

    # -- helpers ---------------------------------------------------------------------------------
    async def _dir(self, tx: Tx | None, ino: int) -> Rec:
        rec = await (tx.get(ino) if tx else self.store.inode(ino))
        if not layout.is_dir(rec.attr.mode):
            raise NotADirectory(f"inode {ino:#x} is not a directory")
        return rec

    async def _writable_dir(self, tx: Tx, ino: int, caller: mds_pb2.Caller) -> Rec:
        rec = await self._dir(tx, ino)
        if rec.readonly:
            raise ReadOnly("snapshots are read-only")
        perms.check(rec.attr, caller, perms.W | perms.X)
        return rec

    async def _child(self, parent: int, name: str) -> tuple[int, int]:
        found = await self.store.lookup(parent, name)
        if found is None:
            raise NotFound(f"'{name}' does not exist")
        return found

    async def _ancestors(self, tx: Tx, ino: int) -> list[Rec]:
        """The directory `ino` and its ancestors up to the root, nearest first."""
        out = []
        for _ in range(MAX_DEPTH):
            rec = await tx.get(ino)
            out.append(rec)
            if ino == layout.ROOT_INO or not rec.parent:
                return out
            ino = rec.parent
        raise InvalidArgument("directory tree deeper than supported")

    async def _realm(self, tx: Tx, dir_ino: int) -> int:
        """The nearest quota root above (or at) a directory, 0 when none."""
        return next((r.attr.ino for r in await self._ancestors(tx, dir_ino) if r.has_quota), 0)

    async def _charge(self, tx: Tx, dir_ino: int, files: int, nbytes: int) -> None:
        """Account files/bytes to every quota root above `dir_ino`; EDQUOT past a limit."""
        if not dir_ino:
            return
        for rec in await self._ancestors(tx, dir_ino):
            if not rec.has_quota:
                continue
            if files > 0 and rec.max_files and rec.used_files + files > rec.max_files:
                raise QuotaExceeded(f"file quota of inode {rec.attr.ino:#x} reached")
            if nbytes > 0 and rec.max_bytes and rec.used_bytes + nbytes > rec.max_bytes:
                raise QuotaExceeded(f"byte quota of inode {rec.attr.ino:#x} reached")
            rec.used_files = max(0, rec.used_files + files)
            rec.used_bytes = max(0, rec.used_bytes + nbytes)
            tx.put(rec)

    async def _quota_room(self, reply: mds_pb2.MdsReply) -> None:
        """How far the file of the reply may grow before a byte quota above it is reached:
        the client fails write(2) with EDQUOT there, keeping what fitted."""
        if not stat.S_ISREG(reply.attr.mode):
            return
        with contextlib.suppress(SdsError):  # no room known: the MDS still enforces it
            tx = Tx(self.store)
            rec = await tx.get(reply.attr.ino)
            if not rec.parent:
                return
            rooms = [a.max_bytes - min(a.used_bytes, a.max_bytes)
                     for a in await self._ancestors(tx, rec.parent)
                     if a.has_quota and a.max_bytes]
            if rooms:
                reply.quota_limited, reply.quota_room = True, min(rooms)

    def _save(self, tx: Tx, req: Req, rec: Rec) -> mds_pb2.MdsReply:
        """Stage the changed record and journal the request with its reply."""
        tx.put(rec)
        reply = self._reply(rec)
        self._commit(tx, req, reply)
        return reply

    def _reply(self, rec: Rec, parent: Rec | None = None) -> mds_pb2.MdsReply:
        reply = mds_pb2.MdsReply(attr=rec.attr, lease_ms=1000)
        if parent is not None:
            reply.parent.CopyFrom(parent.attr)
        return reply

    async def _make(self, tx: Tx, req: Req, mode: int, rdev: int = 0,
                    target: bytes = b"") -> tuple[Rec, Rec]:
        """A new inode linked as req.name in directory req.ino; (new, parent)."""
        check_name(req.name)
        parent = await self._writable_dir(tx, req.ino, req.caller)
        if await self.store.lookup(req.ino, req.name) is not None:
            raise AlreadyExists(f"'{req.name}' exists")
        await self._charge(tx, req.ino, 1, 0)
        rec = new_record(await self._new_ino(req), mode & ~(req.caller.umask & 0o777)
                         if not stat.S_ISLNK(mode) else mode, req.caller, req.ino, parent.attr,
                         at=self._client_stamp(req))
        rec.attr.rdev = rdev
        if target:
            rec.symlink = target
            rec.attr.size = len(target)
        if stat.S_ISDIR(mode):
            rec.attr.nlink = 2
            parent.attr.nlink += 1
        tx.put(rec)
        tx.link(req.ino, req.name, rec.attr.ino, rec.attr.mode)
        touch(parent)
        tx.put(parent)
        return rec, parent

    async def _new_ino(self, req: Req) -> int:
        """A fresh inode number; for an async create the one given to this client for it
        (sds.mds.delegations); for a replayed make the one its unsafe reply gave, as for
        an async create sent again to a new MDS: a number an earlier MDS handed out that
        names no inode (the client named its data objects after it)."""
        if req.new_ino and not req.replay_ino and \
                self.delegations.take(req.client_name, req.new_ino):
            return req.new_ino
        ino = req.replay_ino or req.new_ino
        if not ino:
            return await self.store.alloc_ino()
        if not await self.store.reusable_ino(ino):
            raise Busy(f"a create asks for inode {ino:#x}, which is not free for this client")
        return ino

    @staticmethod
    def _client_stamp(req: Req) -> int | None:
        """An async create's time as its client answered it, if near this MDS's clock."""
        if not req.new_ino or not req.attr.ctime_ns:
            return None
        return req.attr.ctime_ns if abs(req.attr.ctime_ns - now_ns()) < STAMP_SLACK_NS else None

    async def alloc_inos(self, req: Req) -> mds_pb2.MdsReply:
        want = min(req.want_inos, self.delegations.room(req.client_name))
        if not req.client_name or want <= 0:
            return mds_pb2.MdsReply()  # none now: the client's creates ask the MDS
        async with self.lock:
            first, count = await self.store.alloc_range(want)
        self.delegations.give(req.client_name, first, count)
        return mds_pb2.MdsReply(ino_start=first, ino_count=count)

    async def _made_already(self, req: Req) -> mds_pb2.MdsReply | None:
        """A replayed make the journal has already (the MDS failed after journaling it
        but before the client learnt so): answered as it was then."""
        ino = req.replay_ino or req.new_ino
        found = await self.store.lookup(req.ino, req.name) if ino else None
        if found is None or found[0] != ino:
            return None
        return self._reply(await self.store.inode(found[0]), await self.store.inode(req.ino))

    async def _drop_link(self, tx: Tx, rec: Rec, parent_ino: int) -> None:
        """One dentry of `rec` is gone: remove the inode with its last link (later, when
        it is still open: it waits in the stray directory)."""
        if layout.is_dir(rec.attr.mode):
            rec.attr.nlink = 0
        else:
            rec.attr.nlink = max(0, rec.attr.nlink - 1)
        touch(rec, mtime=False)
        if rec.attr.nlink > 0:
            tx.put(rec)
            return
        size = rec.attr.size if stat.S_ISREG(rec.attr.mode) else 0
        await self._charge(tx, rec.parent or parent_ino, -1, -size)
        if self.opens[rec.attr.ino] > 0:
            tx.put(rec)
            tx.link(STRAY_DIR, f"{rec.attr.ino:016x}", rec.attr.ino, rec.attr.mode)
        else:
            tx.remove(rec)

    async def _purge(self, tx: Tx, ino: int) -> None:
        tx.unlink(STRAY_DIR, f"{ino:016x}")
        try:
            rec = await tx.get(ino)
        except NotFound:
            return
        if rec.attr.nlink == 0:
            tx.remove(rec)

    async def _resolve(self, path: str) -> int:
        ino = layout.ROOT_INO
        for part in [p for p in path.split("/") if p and p != "."]:
            if part == SNAPDIR:
                rec = await self.store.inode(ino)
                if not rec.snapdir:
                    raise NotFound(f"{path}: no snapshots")
                ino = rec.snapdir
                continue
            await self._dir(None, ino)
            ino = (await self._child(ino, part))[0]
        return ino

    # -- reads --------------------------------------------------------------------------------------
    async def lookup(self, req: Req) -> mds_pb2.MdsReply:
        parent = await self._dir(None, req.ino)
        perms.check(parent.attr, req.caller, perms.X)
        if len(req.name.encode()) > layout.NAME_MAX:
            raise NameTooLong(f"name longer than {layout.NAME_MAX} bytes")
        if req.name == SNAPDIR and not parent.readonly:
            return self._reply(await self._snapdir(req.ino))
        if req.name == "..":
            return self._reply(await self.store.inode(parent.parent or layout.ROOT_INO))
        if req.name == ".":
            return self._reply(parent)
        ino, _ = await self._child(req.ino, req.name)
        await self._flush_writers([ino], req.session_id)
        return self._reply(await self.store.inode(ino))

    async def getattr(self, req: Req) -> mds_pb2.MdsReply:
        await self._flush_writers([req.ino], req.session_id)
        return self._reply(await self.store.inode(req.ino))

    async def _flush_writers(self, inos: list[int], session: int) -> None:
        """Attributes are about to be shown to `session`: other sessions with one of
        these files open for writing report their sizes first (a mount's close may not
        have reported yet, sds.fs.fuse_ops), so a file closed there is seen whole."""
        await asyncio.gather(*(self._revoke(ino, session, False) for ino in inos
                               if self.caps.conflicting(ino, session, False)))

    async def readlink(self, req: Req) -> mds_pb2.MdsReply:
        rec = await self.store.inode(req.ino)
        if not stat.S_ISLNK(rec.attr.mode):
            raise InvalidArgument("not a symbolic link")
        return mds_pb2.MdsReply(attr=rec.attr, value=rec.symlink)

    async def readdir(self, req: Req) -> mds_pb2.MdsReply:
        rec = await self._dir(None, req.ino)
        perms.check(rec.attr, req.caller, perms.R)
        limit = min(req.max_entries or READDIR_MAX, READDIR_MAX)
        await self._listable(req.ino)
        page, more, offset = [], True, req.offset
        while more and not page:  # a page of removed names only: the next one
            listed, more = await self.store.list_dir(req.ino, offset, limit)
            page = [e for e in listed if not self.store.removed(req.ino, e[0])]
            offset = listed[-1][3] if listed else offset
        await self._flush_writers([ino for _, ino, _, _ in page], req.session_id)
        records = await asyncio.gather(*(self.store.inode(ino) for _, ino, _, _ in page),
                                       return_exceptions=True)
        reply = mds_pb2.MdsReply(attr=rec.attr, more=more, lease_ms=1000)
        for (name, _ino, _mode, cookie), child in zip(page, records, strict=True):
            if isinstance(child, Rec):
                reply.entries.add(name=name, attr=child.attr, offset=cookie)
            elif not isinstance(child, NotFound):
                raise child
        return reply

    async def getxattr(self, req: Req) -> mds_pb2.MdsReply:
        rec = await self.store.inode(req.ino)
        if req.name.startswith("user."):
            perms.check(rec.attr, req.caller, perms.R)
        if req.name not in rec.xattrs:
            raise NoData(f"no attribute {req.name}")
        return mds_pb2.MdsReply(attr=rec.attr, value=rec.xattrs[req.name])

    async def listxattr(self, req: Req) -> mds_pb2.MdsReply:
        rec = await self.store.inode(req.ino)
        return mds_pb2.MdsReply(attr=rec.attr, names=sorted(rec.xattrs))

    async def statfs(self, req: Req) -> mds_pb2.MdsReply:
        tx = Tx(self.store)
        rec = await tx.get(req.ino or layout.ROOT_INO)
        start = rec.attr.ino if layout.is_dir(rec.attr.mode) else rec.parent
        for anc in await self._ancestors(tx, start or layout.ROOT_INO):
            if anc.has_quota and (anc.max_bytes or anc.max_files):
                return mds_pb2.MdsReply(statfs=quota_statfs(anc, await self.cluster_statfs()))
        return mds_pb2.MdsReply(statfs=await self.cluster_statfs())

    # -- changes -------------------------------------------------------------------------------------
    async def create(self, req: Req) -> mds_pb2.MdsReply:
        async with self.lock:
            tx = Tx(self.store)
            found = await self.store.lookup(req.ino, req.name) if req.name else None
            again = await self._made_already(req)
            if again is not None:
                self._opened(req, again.attr.ino, True)
                return again
            if found is not None:
                if req.flags & os.O_EXCL:
                    raise AlreadyExists(f"'{req.name}' exists")
                opened = Req()
                opened.CopyFrom(req)
                opened.ino = found[0]
                return await self._open_locked(opened)
            rec, parent = await self._make(tx, req, stat.S_IFREG | stat.S_IMODE(req.mode))
            reply = self._reply(rec, parent)
            self._commit(tx, req, reply)
            self._opened(req, rec.attr.ino, True)
            return reply

    async def mknod(self, req: Req) -> mds_pb2.MdsReply:
        mode = req.mode if stat.S_IFMT(req.mode) else stat.S_IFREG | req.mode
        if stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
            raise InvalidArgument("mknod makes files, fifos, sockets and devices")
        if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and not perms.is_root(req.caller):
            raise NotPermitted("only root makes device nodes")
        return await self._make_one(req, mode, rdev=req.rdev)

    async def mkdir(self, req: Req) -> mds_pb2.MdsReply:
        parent = await self.store.inode(req.ino)
        if parent.readonly and parent.parent and (await self.store.inode(parent.parent)).snapdir \
                == req.ino:  # mkdir .snap/NAME makes a snapshot, as in CephFS
            return await self._snap_create(parent.parent, req.name)
        reply = await self._make_one(req, stat.S_IFDIR | stat.S_IMODE(req.mode))
        self._grant_dir_cap(req, reply, reply.attr.ino)  # nobody else knows it yet
        if reply.dir_cap:
            reply.creates_unlimited = not any(
                a.has_quota for a in await self._ancestors(Tx(self.store), reply.attr.ino))
        return reply

    async def symlink(self, req: Req) -> mds_pb2.MdsReply:
        if not req.value:
            raise InvalidArgument("empty symlink target")
        return await self._make_one(req, stat.S_IFLNK | 0o777, target=req.value)

    async def _make_one(self, req: Req, mode: int, rdev: int = 0,
                        target: bytes = b"") -> mds_pb2.MdsReply:
        async with self.lock:
            again = await self._made_already(req)
            if again is not None:
                return again
            tx = Tx(self.store)
            rec, parent = await self._make(tx, req, mode, rdev, target)
            reply = self._reply(rec, parent)
            self._commit(tx, req, reply)
            return reply

    async def link(self, req: Req) -> mds_pb2.MdsReply:
        async with self.lock:
            tx = Tx(self.store)
            check_name(req.name2)
            rec = await tx.get(req.ino)
            if layout.is_dir(rec.attr.mode):
                raise NotPermitted("hard links to directories are not allowed")
            if rec.readonly:
                raise ReadOnly("snapshots are read-only")
            if rec.attr.nlink == 0:
                raise NotFound("the file was removed")
            parent = await self._writable_dir(tx, req.ino2, req.caller)
            if await self.store.lookup(req.ino2, req.name2) is not None:
                raise AlreadyExists(f"'{req.name2}' exists")
            if await self._realm(tx, req.ino2) != await self._realm(tx, rec.parent or req.ino2):
                raise CrossDevice("hard link across quota roots")
            rec.attr.nlink += 1
            touch(rec, mtime=False)
            touch(parent)
            tx.put(rec)
            tx.put(parent)
            tx.link(req.ino2, req.name2, rec.attr.ino, rec.attr.mode)
            reply = self._reply(rec, parent)
            self._commit(tx, req, reply)
            return reply

    async def unlink(self, req: Req) -> mds_pb2.MdsReply:
        return await self._remove(req, want_dir=False)

    async def rmdir(self, req: Req) -> mds_pb2.MdsReply:
        parent = await self.store.inode(req.ino)
        if parent.readonly and parent.parent and (await self.store.inode(parent.parent)).snapdir \
                == req.ino:  # rmdir .snap/NAME removes the snapshot
            return await self._snap_remove(parent.parent, req.name)
        return await self._remove(req, want_dir=True)

    async def _remove(self, req: Req, want_dir: bool) -> mds_pb2.MdsReply:
        if req.name in (".", ".."):
            raise InvalidArgument(f"cannot remove '{req.name}'") if req.name == "." else \
                NotEmpty("cannot remove '..'")
        async with self.lock:
            tx = Tx(self.store)
            parent = await self._writable_dir(tx, req.ino, req.caller)
            if req.replay_ino and await self._removed_already(req):
                return mds_pb2.MdsReply(parent=parent.attr)
            ino, mode = await self._child(req.ino, req.name)
            rec = await tx.get(ino)
            if want_dir and not layout.is_dir(rec.attr.mode):
                raise NotADirectory(f"'{req.name}' is not a directory")
            if not want_dir and layout.is_dir(rec.attr.mode):
                raise IsADirectory(f"'{req.name}' is a directory")
            perms.check_sticky(parent.attr, rec.attr, req.caller)
            if want_dir:
                await self._check_removable_dir(tx, rec)
                parent.attr.nlink -= 1
            tx.unlink(req.ino, req.name)
            await self._drop_link(tx, rec, req.ino)
            touch(parent)
            tx.put(parent)
            reply = self._reply(rec, parent)
            self._commit(tx, req, reply)
            if want_dir:
                self.caps.drop_dir(ino)
            else:
                self._grant_dir_cap(req, reply)
            return reply

    async def _removed_already(self, req: Req) -> bool:
        """A replayed removal whose name is gone, or names another inode now: the journal
        had it, or another client changed the name after the failover; either way there is
        nothing left of what the early reply removed, and nothing else is removed."""
        found = await self.store.lookup(req.ino, req.name)
        return found is None or found[0] != req.replay_ino

    async def _check_removable_dir(self, tx: Tx, rec: Rec) -> None:
        if rec.attr.ino == layout.ROOT_INO:
            raise Busy("the root cannot be removed")
        await self._listable(rec.attr.ino)
        if not await self.store.dir_empty(rec.attr.ino):
            raise NotEmpty("directory not empty")
        if rec.snapdir:
            await self._listable(rec.snapdir)
            if not await self.store.dir_empty(rec.snapdir):
                raise NotEmpty("directory has snapshots (remove them first)")
            tx.remove(await tx.get(rec.snapdir))

    async def rename(self, req: Req) -> mds_pb2.MdsReply:
        check_name(req.name2)
        if req.name in (".", ".."):
            raise InvalidArgument("cannot rename '.' or '..'")
        if req.flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or \
                req.flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise InvalidArgument("unknown rename flags")
        async with self.lock:
            tx = Tx(self.store)
            src_dir = await self._writable_dir(tx, req.ino, req.caller)
            dst_dir = await self._writable_dir(tx, req.ino2, req.caller)
            src_ino, _ = await self._child(req.ino, req.name)
            src = await tx.get(src_ino)
            dst_found = await self.store.lookup(req.ino2, req.name2)
            dst = await tx.get(dst_found[0]) if dst_found else None
            if req.flags & RENAME_NOREPLACE and dst is not None:
                raise AlreadyExists(f"'{req.name2}' exists")
            if req.flags & RENAME_EXCHANGE and dst is None:
                raise NotFound(f"'{req.name2}' does not exist")
            perms.check_sticky(src_dir.attr, src.attr, req.caller)
            if dst is not None:
                perms.check_sticky(dst_dir.attr, dst.attr, req.caller)
            if dst is not None and dst.attr.ino == src.attr.ino:
                return self._reply(src, dst_dir)  # two links of one inode: nothing to do
            if req.ino != req.ino2 and await self._realm(tx, req.ino) != \
                    await self._realm(tx, req.ino2):
                raise CrossDevice("rename across quota roots (copy instead)")
            if layout.is_dir(src.attr.mode):
                await self._not_into_itself(tx, src.attr.ino, req.ino2)
            if req.flags & RENAME_EXCHANGE:
                if layout.is_dir(dst.attr.mode):
                    await self._not_into_itself(tx, dst.attr.ino, req.ino)
                self._move(tx, dst, dst_dir, src_dir, req.name)
            else:
                if dst is not None:
                    await self._replace(tx, src, dst, dst_dir)
                tx.unlink(req.ino, req.name)
            self._move(tx, src, src_dir, dst_dir, req.name2)
            for rec in (src_dir, dst_dir):
                touch(rec)
                tx.put(rec)
            reply = self._reply(src, dst_dir)
            self._commit(tx, req, reply)
            return reply

    async def _not_into_itself(self, tx: Tx, moved: int, new_parent: int) -> None:
        if any(r.attr.ino == moved for r in await self._ancestors(tx, new_parent)):
            raise InvalidArgument("cannot move a directory into itself")

    async def _replace(self, tx: Tx, src: Rec, dst: Rec, dst_dir: Rec) -> None:
        if layout.is_dir(src.attr.mode) and not layout.is_dir(dst.attr.mode):
            raise NotADirectory("cannot replace a non-directory with a directory")
        if not layout.is_dir(src.attr.mode) and layout.is_dir(dst.attr.mode):
            raise IsADirectory("cannot replace a directory with a non-directory")
        if layout.is_dir(dst.attr.mode):
            await self._check_removable_dir(tx, dst)
            dst_dir.attr.nlink -= 1
        await self._drop_link(tx, dst, dst_dir.attr.ino)

    def _move(self, tx: Tx, rec: Rec, old_dir: Rec, new_dir: Rec, new_name: str) -> None:
        """Link `rec` as new_name in new_dir (the caller removed or reused its old dentry)."""
        tx.link(new_dir.attr.ino, new_name, rec.attr.ino, rec.attr.mode)
        if old_dir.attr.ino != new_dir.attr.ino:
            if layout.is_dir(rec.attr.mode):
                old_dir.attr.nlink -= 1
                new_dir.attr.nlink += 1
            if rec.parent == old_dir.attr.ino or layout.is_dir(rec.attr.mode):
                rec.parent = new_dir.attr.ino
        touch(rec, mtime=False)
        tx.put(rec)

    async def open(self, req: Req) -> mds_pb2.MdsReply:
        write = bool(perms.open_mask(req.flags) & perms.W)
        if req.name == "reopen":  # a client re-announcing its open file after a failover
            carried = (req.session_id, req.ino)
            if self.carried[carried] > 0:  # ... or a reconnect: this MDS counted it already
                self.carried[carried] -= 1
            else:
                self.opens[req.ino] += 1
                self.caps.opened(req.ino, req.session_id, True)
            return self._reply(await self.store.inode(req.ino))
        self._check_open(await self.store.inode(req.ino), req)
        await self._revoke(req.ino, req.session_id, write)
        if not req.flags & os.O_TRUNC:
            rec = await self.store.inode(req.ino)
            self._opened(req, rec.attr.ino, write)
            return self._reply(rec)
        async with self.lock:
            return await self._open_locked(req)

    def retire_session(self, old: int, new: int) -> None:
        """The client of session `old` reconnected to this MDS as `new` (its connection
        broke): its open files and unanswered revokes move over, so the old session is
        never evicted (which would fence the live client). It re-announces its opens;
        those are not counted twice."""
        for key in [k for k in self.carried if k[0] == old]:
            del self.carried[key]
        moved, resend = self.caps.transfer(old, new)
        for ino, count in moved.items():
            self.carried[(new, ino)] += count
        for ino in resend:  # the first REVOKE may have been lost with the old connection
            self._push(new, mds_pb2.MdsClientMessage(
                kind=mds_pb2.MdsClientMessage.REVOKE, ino=ino))

    def _opened(self, req: Req, ino: int, write: bool) -> None:
        self.opens[ino] += 1
        self.caps.opened(ino, req.session_id, write)

    async def _revoke(self, ino: int, session: int, write: bool) -> None:
        """Make other sessions flush and drop their caches of `ino`; evict the silent."""
        for silent in await self.caps.revoke(ino, session, write):
            await self.evict(silent)

    async def evict(self, session: int) -> None:
        """End a session that ignored a revoke: its open handles are released, after its
        client is fenced off the OSDs (it may still hold buffered writes)."""
        if self.fence is not None:
            self.osd_epoch_barrier = max(self.osd_epoch_barrier, await self.fence(session))
        dropped = self.caps.evict(session)
        with contextlib.suppress(SdsError):
            await self.caps.send(session, mds_pb2.MdsClientMessage(
                kind=mds_pb2.MdsClientMessage.EVICTED))
        for ino, count in dropped.items():
            for _ in range(count):
                await self._released(ino)

    def _check_open(self, rec: Rec, req: Req) -> None:
        mask = perms.open_mask(req.flags)
        if layout.is_dir(rec.attr.mode) and mask & perms.W:
            raise IsADirectory("cannot open a directory for writing")
        if rec.readonly and mask & perms.W:
            raise ReadOnly("snapshots are read-only")
        perms.check(rec.attr, req.caller, mask)

    async def _open_locked(self, req: Req) -> mds_pb2.MdsReply:
        tx = Tx(self.store)
        rec = await tx.get(req.ino)
        self._check_open(rec, req)
        if req.flags & os.O_TRUNC and stat.S_ISREG(rec.attr.mode) and rec.attr.size:
            await self._resize(tx, rec, 0)
            touch(rec)
            tx.put(rec)
        reply = self._reply(rec)
        self._commit(tx, req, reply)
        await self._cut(tx)
        self._opened(req, req.ino, bool(perms.open_mask(req.flags) & perms.W))
        return reply

    async def release(self, req: Req) -> mds_pb2.MdsReply:
        self.caps.released(req.ino, req.session_id)
        return await self._released(req.ino, req)

    async def _released(self, ino: int, req: Req | None = None) -> mds_pb2.MdsReply:
        """One open handle fewer; the last one of an unlinked file purges it."""
        self.opens[ino] -= 1
        if self.opens[ino] > 0:
            return mds_pb2.MdsReply()
        del self.opens[ino]
        self.locks.unlock_all(ino)
        async with self.lock:
            try:
                rec = await self.store.inode(ino)
            except NotFound:
                return mds_pb2.MdsReply()
            if rec.attr.nlink == 0 and not self.opens[ino]:
                tx = Tx(self.store)
                await self._purge(tx, ino)
                self._commit(tx, req, mds_pb2.MdsReply())
            return mds_pb2.MdsReply(attr=rec.attr)

    async def _resize(self, tx: Tx, rec: Rec, size: int) -> None:
        old = rec.attr.size
        await self._charge(tx, rec.parent, 0, size - old)
        if size < old:
            tx.cuts.append((rec.attr.ino, size, old))
            tx.data(MetaOp.CUT_DATA, rec.attr.ino, size, old)
        rec.attr.size = size

    async def _cut(self, tx: Tx) -> None:
        """Cut a truncated file's data objects once the new size is durable, and before
        the reply: the client may write past the new size right after it. (Its journal op,
        CUT_DATA, is applied only by a replay: the applied mark is written right after
        the apply, so a replay re-cuts only after a crash in that instant.)"""
        if tx.cuts:
            await self.journal.wait_durable(self.journal.last_seq)
            for ino, size, old in tx.cuts:
                await self.store.cut_data(ino, size, old)

    async def write_done(self, req: Req) -> mds_pb2.MdsReply:
        """Data written up to attr.size at attr.mtime_ns, and the client's buffered
        attribute changes (set_mask: mode, owner, times), applied after the write."""
        if req.op == Req.CAPS_ACK:  # an answer even if refused below; no revoke here (two
            # writers must not wait on each other)
            self.caps.acked(req.ino, req.session_id)
        changes = req.set_mask & WRITE_BACK_BITS
        async with self.lock:
            tx = Tx(self.store)
            rec = await tx.get(req.ino)
            if rec.readonly:
                raise ReadOnly("snapshots are read-only")
            # (with changes, attr.mtime_ns may be a utimens value: the size tells a write)
            wrote = bool(req.attr.size or (req.attr.mtime_ns and not changes))
            if not wrote and not changes:
                return self._reply(rec)
            if wrote:
                self._check_size(req.attr.size)
                if req.attr.size > rec.attr.size:
                    await self._resize(tx, rec, req.attr.size)
                touch(rec, at=req.attr.mtime_ns or None)
                rec.attr.mode &= ~perms.privileges_killed_by_write(rec.attr, req.caller)
            if changes:
                set_attrs(rec.attr, req.attr, changes, req.caller)
                touch(rec, mtime=False)
            return self._save(tx, req, rec)

    async def setattr(self, req: Req) -> mds_pb2.MdsReply:
        mask, new, caller = req.set_mask, req.attr, req.caller
        # a size change revokes every other holder; other changes the writers, whose
        # buffered attribute changes (write-back) must land first
        await self._revoke(req.ino, req.session_id, bool(mask & mds_pb2.SET_SIZE))
        async with self.lock:
            tx = Tx(self.store)
            rec = await tx.get(req.ino)
            attr = rec.attr
            if rec.readonly:
                raise ReadOnly("snapshots are read-only")
            set_attrs(attr, new, mask & (mds_pb2.SET_MODE | OWNER_BITS), caller)
            if mask & mds_pb2.SET_SIZE:
                if layout.is_dir(attr.mode):
                    raise IsADirectory("cannot truncate a directory")
                if not stat.S_ISREG(attr.mode):
                    raise InvalidArgument("only regular files have a size to set")
                if not mask & mds_pb2.SET_BY_WRITER:  # ftruncate: the open checked it
                    perms.check(attr, caller, perms.W)
                self._check_size(new.size)
                await self._resize(tx, rec, new.size)
                touch(rec)
            set_attrs(attr, new, mask & TIME_BITS, caller)
            touch(rec, mtime=False)
            tx.put(rec)
            reply = self._reply(rec)
            self._commit(tx, req, reply)
            await self._cut(tx)
            return reply

    def _check_size(self, size: int) -> None:
        if size > self.max_file_size:
            raise FileTooBig(f"size {size} is past the filesystem's max_file_size "
                             f"{self.max_file_size}")

    async def sync(self, req: Req) -> mds_pb2.MdsReply:
        """Nothing to do: the reply waits for every event so far (a client's fsync)."""
        return mds_pb2.MdsReply()

    async def setxattr(self, req: Req) -> mds_pb2.MdsReply:
        if not req.name or len(req.name.encode()) > 255:
            raise Range("bad attribute name length")
        if len(req.value) > XATTR_VALUE_MAX:
            raise TooBig("attribute value too large")
        return await self._xattr_change(req, remove=False)

    async def removexattr(self, req: Req) -> mds_pb2.MdsReply:
        return await self._xattr_change(req, remove=True)

    async def _xattr_change(self, req: Req, remove: bool) -> mds_pb2.MdsReply:
        async with self.lock:
            tx = Tx(self.store)
            rec = await tx.get(req.ino)
            if rec.readonly:
                raise ReadOnly("snapshots are read-only")
            if req.name.startswith("trusted.") and not perms.is_root(req.caller):
                raise NotPermitted("trusted.* attributes are root's")
            if req.name.startswith("user."):
                perms.check(rec.attr, req.caller, perms.W)
            else:
                perms.check_owner(rec.attr, req.caller)
            exists = req.name in rec.xattrs
            if remove or req.flags & XATTR_REPLACE:
                if not exists:
                    raise NoData(f"no attribute {req.name}")
            elif req.flags & XATTR_CREATE and exists:
                raise AlreadyExists(f"attribute {req.name} exists")
            if remove:
                del rec.xattrs[req.name]
            else:
                rec.xattrs[req.name] = req.value
            rec.attr.xattr_version += 1  # what mounts' caches of absent names are keyed on
            touch(rec, mtime=False)
            return self._save(tx, req, rec)

    async def flock(self, req: Req) -> mds_pb2.MdsReply:
        """Whole-file advisory locks by owner: a conflict answers EAGAIN, or with
        FLOCK_WAIT in flags queues fairly for a bounded time (sds/mds/locks.py)."""
        if req.lock_type == fcntl.F_UNLCK:
            self.locks.unlock(req.ino, req.owner)
        else:
            await self.locks.lock(req.ino, req.owner, req.lock_type,
                                  wait=bool(req.flags & mds_pb2.FLOCK_WAIT))
        return mds_pb2.MdsReply()

    # -- quotas ------------------------------------------------------------------------------------
    async def quota_set(self, req: Req) -> mds_pb2.MdsReply:
        ino = await self._resolve(req.path)
        async with self.lock:
            tx = Tx(self.store)
            rec = await self._dir(tx, ino)
            if rec.readonly:
                raise ReadOnly("snapshots are read-only")
            await self._settled()
            files, nbytes = await quota.usage(self.store, ino)
            rec.has_quota = bool(req.max_bytes or req.max_files)
            rec.max_bytes, rec.max_files = req.max_bytes, req.max_files
            rec.used_files, rec.used_bytes = files, nbytes
            touch(rec, mtime=False)
            tx.put(rec)
            reply = mds_pb2.MdsReply(attr=rec.attr, quota=quota_of(req.path, rec))
            self._commit(tx, req, reply)
            return reply

    async def quota_get(self, req: Req) -> mds_pb2.MdsReply:
        rec = await self.store.inode(await self._resolve(req.path))
        return mds_pb2.MdsReply(attr=rec.attr, quota=quota_of(req.path, rec))

    # -- snapshots ---------------------------------------------------------------------------------
    async def _snapdir(self, dir_ino: int) -> Rec:
        """The ".snap" directory of a directory, made the first time it is asked for."""
        rec = await self.store.inode(dir_ino)
        if rec.snapdir:
            return await self.store.inode(rec.snapdir)
        async with self.lock:
            tx = Tx(self.store)
            rec = await tx.get(dir_ino)
            if not rec.snapdir:
                snap = snapshots.new_snapdir(await self.store.alloc_ino(), rec)
                rec.snapdir = snap.attr.ino
                tx.put(snap)
                tx.put(rec)
                self._commit(tx)
        return await self.store.inode((await self.store.inode(dir_ino)).snapdir)

    async def snap_create(self, req: Req) -> mds_pb2.MdsReply:
        return await self._snap_create(await self._resolve(req.path), req.name)

    async def _snap_create(self, dir_ino: int, name: str) -> mds_pb2.MdsReply:
        """A consistent, read-only copy of the tree (metadata and data) under .snap/NAME,
        made under the namespace lock: no change lands halfway through it."""
        check_name(name)
        snapdir = await self._snapdir(dir_ino)
        async with self.lock:
            tx = Tx(self.store)
            source = await self._dir(tx, dir_ino)
            if source.readonly:
                raise ReadOnly("cannot snapshot inside a snapshot")
            if await self.store.lookup(snapdir.attr.ino, name) is not None:
                raise AlreadyExists(f"snapshot '{name}' exists")
            sdir = await tx.get(snapdir.attr.ino)
            await self._settled()
            copy = await snapshots.copy_tree(self.store, tx, source, sdir.attr.ino, {})
            copy.snap_created_ns = now_ns()
            tx.link(sdir.attr.ino, name, copy.attr.ino, copy.attr.mode)
            sdir.attr.nlink += 1
            touch(sdir)
            tx.put(sdir)
            reply = mds_pb2.MdsReply(attr=copy.attr)
            reply.snaps.add(name=name, snap_id=copy.attr.ino, created_ns=copy.snap_created_ns)
            self._commit(tx, None, reply)
            await self._settled()  # the data is copied before anyone may overwrite it
            return reply

    async def snap_list(self, req: Req) -> mds_pb2.MdsReply:
        rec = await self.store.inode(await self._resolve(req.path))
        reply = mds_pb2.MdsReply(attr=rec.attr)
        await self._settled()
        if rec.snapdir:
            for name, ino, _mode in await self.store.all_entries(rec.snapdir):
                snap = await self.store.inode(ino)
                reply.snaps.add(name=name, snap_id=ino, created_ns=snap.snap_created_ns)
        return reply

    async def snap_remove(self, req: Req) -> mds_pb2.MdsReply:
        return await self._snap_remove(await self._resolve(req.path), req.name)

    async def _snap_remove(self, dir_ino: int, name: str) -> mds_pb2.MdsReply:
        async with self.lock:
            tx = Tx(self.store)
            rec = await tx.get(dir_ino)
            if not rec.snapdir:
                raise NotFound(f"no snapshot '{name}'")
            ino, _ = await self._child(rec.snapdir, name)
            sdir = await tx.get(rec.snapdir)
            await self._settled()
            await snapshots.drop_tree(self.store, tx, await tx.get(ino), set())
            tx.unlink(rec.snapdir, name)
            sdir.attr.nlink -= 1
            touch(sdir)
            tx.put(sdir)
            self._commit(tx)
            return mds_pb2.MdsReply(attr=sdir.attr)

    # -- fsck --------------------------------------------------------------------------------------
    async def check(self, req: Req) -> mds_pb2.MdsReply:
        async with self.lock:
            await self._settled()
            report = await check_namespace(self.store, STRAY_DIR)
        return mds_pb2.MdsReply(report=report)


async def _no_client(session: int, msg: mds_pb2.MdsClientMessage) -> None:
    raise SdsError("no client connection to send to")


def request_digest(req: Req) -> int:
    """What a resend must repeat: the request without the fields a resend may change
    (its session after a reconnect); 0 is kept for "unknown" (events journaled before)."""
    same = Req()
    same.CopyFrom(req)
    same.session_id = 0
    same.unsafe_ok, same.replay_ino = False, 0  # a replay after failover sets these
    return crc32c(same.SerializeToString(deterministic=True)) or 1
