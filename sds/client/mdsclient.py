"""The filesystem client's session with the active MDS.

It finds the active MDS of a filesystem through the monitors (`fs status`), opens a
session, and sends MdsRequests. Each request gets a tid that stays the same on every
resend and is unique within the Rados's client instance (the MDS's key for resends,
so two clients on one Rados never collide): when the connection breaks or the MDS is
replaced, the client waits for the (new) active MDS, re-opens its session, re-announces
its open files (so an unlinked-but-open file survives the failover) and resends; the
MDS answers a request it already executed from its journal instead of executing it twice.
Error replies raise the typed errors of sds.common.errors (their `code` is the errno).
Every request has a deadline (`timeout`, a mount's client_mount_timeout): past it, with
no active MDS reachable, it fails with ETIMEDOUT, never later; `abort()` fails every
pending and later request at once (EIO), so a mount can always exit.

With `early_replies` (a mount), creates, removals and setattrs may be answered before
the MDS's journal holds them (unsafe replies, as Ceph's MDS gives): the client keeps each
such request until a reply says the journal reached it, and replays the ones it still
keeps to the next MDS before anything else, each create asking for the inode number it
was given (its data objects are named after it), each removal naming the inode it
removed (so that it removes nothing another client put under the name meanwhile).
`sync()` waits for all of them (fsync, unmount); at most MAX_UNSAFE are kept, and a sync
follows SYNC_AFTER_S after the last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable

from sds.client.rados import IoCtx, Rados
from sds.common.errors import (
    ConnectionLost,
    NotFound,
    SdsError,
    ShuttingDown,
    StaleSession,
    TimedOut,
    Unavailable,
)
from sds.common.messenger import Connection
from sds.common.osdmap import pool_by_id
from sds.common.tasks import TaskSet
from sds.fsrules.early import REPLAY_INO_OPS, UNSAFE_OPS
from sds.proto import mds_pb2
from sds.proto import messenger_pb2 as mpb

log = logging.getLogger("sds.client.mdsclient")

Req = mds_pb2.MdsRequest
RETRYABLE = (ConnectionLost, TimedOut, Unavailable)
CALL_TIMEOUT_S = 60.0
WATCH_S = 2.0  # how long a request waits before checking that its MDS is still active
POLL_S = 0.25
MAX_UNSAFE = 512  # well below the MDS journal's kept events, which answer a replay as before
SYNC_AFTER_S = 1.0


class MdsClient:
    """`await MdsClient(rados, "sdsfs").open()`, then `await client.request(MdsRequest(...))`.

    `on_message(msg: MdsClientMessage)` is called for MDS -> client messages: on REVOKE
    the client flushes what it wrote and answers CAPS_ACK(ino, attr.size/mtime_ns), else
    it is evicted after mds_revoke_timeout (EVICTED; then requests of the old session
    fail with ESTALE and the next one opens a new session). Without a callback, revokes
    are acknowledged at once (for clients that cache nothing).
    `timeout` bounds how long a request waits for an active MDS across failovers.
    """

    def __init__(self, rados: Rados, fs_name: str | None = None, timeout: float = 300.0,
                 on_message: Callable[[mds_pb2.MdsClientMessage], None] | None = None,
                 early_replies: bool = False):
        self.rados = rados
        self.fs_name = fs_name
        self.timeout = timeout
        self.on_message = on_message
        self.client_name = rados.client_id
        self.session_id = 0
        self.data_pool = -1
        self.stripe_size = 4 << 20
        self.lease_ms = 0
        self.max_file_size = 1 << 63  # the filesystem's, from every MDS reply
        self.generation = 0
        self._conn: Connection | None = None
        self._opens: Counter[int] = Counter()
        self._reconnect_lock = asyncio.Lock()
        self._closed = False
        self._aborted: asyncio.Event | None = None
        self._acks = TaskSet("mds client")  # revoke acks sent while nothing is cached
        self.early_replies = early_replies
        # tid -> (journal seq, request, inode its reply gave): answered, not yet durable
        self._unsafe: OrderedDict[int, tuple[int, Req, int]] = OrderedDict()
        self._syncing: asyncio.Task | None = None
        self.replay_errors: list[SdsError] = []  # replays the next MDS refused (fsync: EIO)
        rados.messenger.register(mpb.MDS_CLIENT, self._on_client_message)

    async def open(self) -> MdsClient:
        await self._connect(None)
        return self

    async def __aenter__(self) -> MdsClient:
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def abort(self) -> None:
        """Fail every pending and later request with EIO now (the mount is going away)."""
        self._abort_event().set()

    def _abort_event(self) -> asyncio.Event:
        if self._aborted is None:
            self._aborted = asyncio.Event()
        return self._aborted

    def _check_aborted(self) -> None:
        if self._aborted is not None and self._aborted.is_set():
            raise ShuttingDown("the mount is shutting down")

    async def close(self) -> None:
        """End the session (best effort: the MDS also forgets silent sessions)."""
        if self._closed:
            return
        self._closed = True
        await self._acks.stop()
        if self._syncing is not None:
            self._syncing.cancel()
        if self._conn is not None and not self._conn.closed and not (
                self._aborted is not None and self._aborted.is_set()):
            with contextlib.suppress(SdsError, asyncio.TimeoutError):
                await self._conn.call(mpb.MDS_REQUEST, self._stamp(Req(op=Req.SESSION_CLOSE)),
                                      timeout=2.0)

    async def data_ioctx(self) -> IoCtx:
        """The IoCtx of the data pool, where file data lives as "<ino:016x>.<index:08x>"."""
        if self.data_pool < 0:
            await self.open()
        return self.rados.ioctx(pool_by_id(self.rados.osdmap, self.data_pool).name)

    # -- requests -----------------------------------------------------------------
    def _stamp(self, req: Req) -> Req:
        req.session_id = self.session_id
        req.client_name = self.client_name
        if not req.tid:
            req.tid = self.rados.next_tid()
        return req

    async def request(self, req: Req, timeout: float | None = None) -> mds_pb2.MdsReply:
        """Send one request to the active MDS, resending (same tid) across failovers."""
        self._stamp(req)
        if self.early_replies and req.op in UNSAFE_OPS and not req.replay_ino and \
                len(self._unsafe) < MAX_UNSAFE:
            req.unsafe_ok = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            self._check_aborted()
            conn = self._conn
            try:
                if conn is None or conn.closed:
                    raise ConnectionLost("no MDS session")
                req.session_id = self.session_id
                resp = await self._call_watching(conn, req, deadline)
            except RETRYABLE as e:
                if loop.time() >= deadline:
                    raise TimedOut(f"no active MDS answered {Req.Op.Name(req.op)} "
                                   f"in time: {e}") from None
                log.info("MDS request %s tid %d: %s; reconnecting", Req.Op.Name(req.op),
                         req.tid, e)
                await self._connect(conn, deadline)
                continue
            except SdsError as e:
                if isinstance(e, StaleSession):  # evicted: later requests get a new session
                    self._conn = None
                    self._opens.clear()
                raise
            reply = resp.parse(mds_pb2.MdsReply)
            self.max_file_size = reply.max_file_size or self.max_file_size
            if reply.osd_epoch_barrier > self.rados.osdmap.epoch:
                # an evicted client is fenced in that epoch: our data ops must not reach
                # an OSD that does not know it yet
                await self.rados.wait_for_epoch(reply.osd_epoch_barrier)
            self._track_open(req, reply)
            await self._note_durability(req, reply)
            return reply

    async def sync(self, timeout: float | None = None) -> None:
        """Wait until the MDS journal holds every change answered early."""
        if self._unsafe:
            await self.request(Req(op=Req.SYNC), timeout)

    async def _note_durability(self, req: Req, reply: mds_pb2.MdsReply) -> None:
        if req.session_id != self.session_id:  # answered by an MDS we have left since
            if reply.unsafe:  # which may have lost it: the current one gets it again
                await self.request(self._replay_of(req, reply.attr.ino))
            return
        if reply.unsafe:
            self._unsafe[req.tid] = (reply.journal_seq, req, reply.attr.ino)
            if self._syncing is None or self._syncing.done():
                self._syncing = asyncio.ensure_future(self._sync_later())
        # oldest first: replies come back nearly in journal order, so this stops at once
        # (one answered out of order waits for those ahead of it; a replay of a durable
        # change is answered as before)
        while self._unsafe:
            tid, (seq, _, _) = next(iter(self._unsafe.items()))
            if seq > reply.durable_seq:
                break
            del self._unsafe[tid]

    async def _sync_later(self) -> None:
        """Learn soon that the early answers are durable, so none waits for a replay long."""
        await asyncio.sleep(SYNC_AFTER_S)
        with contextlib.suppress(SdsError):
            await self.sync()

    @staticmethod
    def _replay_of(req: Req, ino: int) -> Req:
        again = Req()
        again.CopyFrom(req)
        again.unsafe_ok = False  # answered once the journal has it
        if req.op in REPLAY_INO_OPS:
            again.replay_ino = ino
        return again

    async def _replay_unsafe(self, conn: Connection, session_id: int) -> Counter[int]:
        """Send the early-answered requests again, in order, to a new session; returns the
        files each replayed create opened (already counted among the open files)."""
        opened: Counter[int] = Counter()
        if self._unsafe:
            log.info("replaying %d early-answered requests to MDS session %d",
                     len(self._unsafe), session_id)
        for tid, (_seq, req, ino) in sorted(self._unsafe.items(), key=lambda kv: kv[1][0]):
            again = self._replay_of(req, ino)
            again.session_id = session_id
            try:
                reply = (await conn.call(mpb.MDS_REQUEST, again, timeout=10.0)
                         ).parse(mds_pb2.MdsReply)
            except RETRYABLE:
                raise
            except SdsError as e:
                log.error("MDS replay of %s tid %d (inode %d) refused: %s",
                          Req.Op.Name(req.op), tid, ino, e)
                self.replay_errors.append(e)
            else:
                if req.op == Req.CREATE:
                    opened[reply.attr.ino] += 1
            del self._unsafe[tid]
        return opened

    async def _call_watching(self, conn: Connection, req: Req, deadline: float):
        """Send on `conn`; while no reply comes, check now and then whether the monitors
        replaced the MDS (a frozen MDS keeps its connections open but never answers)."""
        loop = asyncio.get_running_loop()
        call = asyncio.ensure_future(conn.call(
            mpb.MDS_REQUEST, req, timeout=max(0.1, min(CALL_TIMEOUT_S, deadline - loop.time()))))
        aborted = asyncio.ensure_future(self._abort_event().wait())
        try:
            while True:
                done, _ = await asyncio.wait({call, aborted}, timeout=WATCH_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                self._check_aborted()
                if done:
                    return call.result()
                if loop.time() >= deadline:
                    raise TimedOut(f"the MDS did not answer {Req.Op.Name(req.op)}")
                try:
                    _, addr, generation = await self.active(deadline - loop.time())
                except SdsError:
                    continue  # no answer about it: keep waiting for the reply
                if generation != self.generation or addr != conn.addr:
                    raise ConnectionLost(f"the active MDS is now {addr} (generation "
                                         f"{generation})")
        finally:
            aborted.cancel()
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call

    def _track_open(self, req: Req, reply: mds_pb2.MdsReply) -> None:
        if req.op in (Req.OPEN, Req.CREATE):
            self._opens[reply.attr.ino or req.ino] += 1
        elif req.op == Req.RELEASE:
            self._opens[req.ino] -= 1
            if self._opens[req.ino] <= 0:
                del self._opens[req.ino]

    # -- finding the active MDS -----------------------------------------------------------
    async def active(self, timeout: float | None = None) -> tuple[str, str, int]:
        """(fs name, address, generation) of the active MDS, as the monitors see it."""
        cmd = {"prefix": "fs status"}
        if self.fs_name:
            cmd["fs_name"] = self.fs_name
        out = await self.rados.mon_command(cmd, None if timeout is None else max(0.1, timeout))
        filesystems = out.get("filesystems") or []
        if not filesystems:
            raise NotFound(f"filesystem '{self.fs_name}' does not exist" if self.fs_name
                           else "no filesystem exists (create one with `sds fs new`)")
        fs = filesystems[0]
        if not fs.get("active"):
            raise Unavailable(f"filesystem '{fs['name']}' has no active MDS")
        return fs["name"], fs["active"]["addr"], int(fs.get("generation", 0))

    async def _connect(self, broken: Connection | None, deadline: float | None = None) -> None:
        """(Re)connect and open a session, unless another request already did."""
        loop = asyncio.get_running_loop()
        deadline = deadline or loop.time() + self.timeout
        try:  # another request may be reconnecting with a later deadline than ours
            await asyncio.wait_for(self._reconnect_lock.acquire(),
                                   max(0.01, deadline - loop.time()))
        except TimeoutError:
            raise TimedOut(f"no active MDS for filesystem "
                           f"'{self.fs_name or '(default)'}' in time") from None
        try:
            if self._conn is not None and self._conn is not broken and not self._conn.closed:
                return
            last: Exception | None = None
            while True:
                self._check_aborted()
                try:
                    await self._open_session(deadline)
                    return
                except (*RETRYABLE, NotFound) as e:
                    if isinstance(e, NotFound) and self._conn is None and broken is None:
                        raise
                    last = e
                if loop.time() >= deadline:
                    raise TimedOut(f"no active MDS for filesystem "
                                   f"'{self.fs_name or '(default)'}': {last}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._abort_event().wait(), POLL_S)
        finally:
            self._reconnect_lock.release()

    async def _open_session(self, deadline: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        left = max(0.1, deadline - loop.time()) if deadline is not None else 10.0
        fs_name, addr, generation = await self.active(left)
        conn = await self.rados.messenger.connect(addr, timeout=min(3.0, left))
        hello = self._stamp(Req(op=Req.SESSION_OPEN, name=self.client_name, tid=0))
        hello.tid = 0
        reply = (await conn.call(mpb.MDS_REQUEST, hello, timeout=min(10.0, left))
                 ).parse(mds_pb2.MdsReply)
        self.fs_name = fs_name
        self.session_id = reply.session_id
        self.data_pool = reply.data_pool
        self.stripe_size = reply.stripe_size or self.stripe_size
        self.lease_ms = reply.lease_ms
        self.max_file_size = reply.max_file_size or self.max_file_size
        self.generation = generation
        replayed = await self._replay_unsafe(conn, reply.session_id)
        for ino, count in list(self._opens.items()):
            for _ in range(count - replayed[ino]):  # re-announce open files so unlinked ones stay alive
                reopen = Req(op=Req.OPEN, ino=ino, flags=os.O_RDONLY, session_id=reply.session_id,
                             client_name=self.client_name, tid=self.rados.next_tid(), name="reopen")
                with contextlib.suppress(NotFound):
                    await conn.call(mpb.MDS_REQUEST, reopen, timeout=10.0)
        self._conn = conn
        log.info("MDS session %d with %s (fs %s, generation %d)", self.session_id, addr,
                 fs_name, generation)

    async def _on_client_message(self, conn: Connection, env: mpb.Envelope,
                                 data: memoryview) -> None:
        msg = mds_pb2.MdsClientMessage()
        msg.ParseFromString(env.payload)
        if self.on_message is not None:
            self.on_message(msg)
        elif msg.kind == mds_pb2.MdsClientMessage.REVOKE:  # nothing cached: ack at once
            ack = Req(op=Req.CAPS_ACK, ino=msg.ino)
            self._acks.spawn(self._ack(ack))

    async def _ack(self, ack: Req) -> None:
        with contextlib.suppress(SdsError):
            await self.request(ack, timeout=10.0)
