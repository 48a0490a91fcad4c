"""One placement group on one OSD: the driver of its peering core, and its write pipeline.

The peering and recovery decisions are made by the pure state machine in
sds/osd/peering.py (`PeeringCore`); this class feeds it maps, messages, ticks and local
events, and carries out what it returns (`Ready`): persist its state in the PG's
collection meta (atomically with the object change of the same event), then send its
messages and run its recoveries. The PG serves client I/O as soon as it is active:
recovery and backfill run in the background, bounded by the OSD-wide
`osd_recovery_max_active`; an op on an object that an acting member still misses asks
the core to recover that object first and waits for it.

Primary-copy replication: the primary orders each write (core.write gives its (epoch, v)
log entry), applies it locally and on every acting replica in parallel, and acks the
client once all have committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from crc32c import crc32c

from sds.common.errors import (
    Blocklisted,
    ChecksumError,
    ConnectionLost,
    InvalidArgument,
    NoSpace,
    Retry,
    SdsError,
    TimedOut,
    Unavailable,
)
from sds.crush.placement import pg_name
from sds.osd import objcopy, ops, precheck, scrub
from sds.osd import peering_wire as wire
from sds.osd.fullness import TOOFULL
from sds.osd.peering import (
    ACTIVE,
    MISSING_PREFIX,
    PRIMARY,
    MapView,
    Message,
    PeeringCore,
    Ready,
    Recover,
)
from sds.osd.pg_context import PGContext
from sds.osd.store.base import Transaction
from sds.proto import messenger_pb2 as mpb
from sds.proto import osd_pb2

log = logging.getLogger("sds.osd.pg")

PEERING_PREFIX = b"peering/"
REPOP_TIMEOUT_S = 10.0
RETRY_S = 0.5
REORDER_RETRY_S = 0.002   # a replica got this write before an earlier one: resend soon
COPY_TIMEOUT_S = 60.0


class PG:
    def __init__(self, ctx: PGContext, pool_id: int, ps: int):
        self.ctx = ctx
        self.pool_id = pool_id
        self.ps = ps
        self.coll = pg_name(pool_id, ps)
        self.created = ctx.store.collection_exists(self.coll)
        durable = {}
        if self.created:
            durable = {k.decode(): v for k, v in ctx.store.list_meta(
                self.coll, prefix=PEERING_PREFIX, max_entries=1 << 30)}
        self.core = PeeringCore(ctx.osd_id, durable, max_active=ctx.recovery_max_active,
                                log_max=ctx.pg_log_max)
        self.reason = ""   # what a client op waits for, beyond what the core says
        self.in_flight: dict[tuple[str, int], asyncio.Future] = {}
        self.object_locks: dict[str, list] = {}  # oid -> [lock, users]
        # objects whose local copy is being replaced part by part (repair): reads wait; a
        # copy that failed halfway stays here (-> the version it was to have) and is never
        # served until a whole copy is installed
        self._torn: dict[str, int] = {}
        self.inconsistent: dict[str, scrub.Inconsistency] = {}
        self.last_scrub = 0.0
        self.last_deep_scrub = 0.0
        self.scrubbing = ""
        self._create_lock = asyncio.Lock()
        self._applying: set[asyncio.Task] = set()
        self._recovering: dict[str, asyncio.Task] = {}
        self._installing: dict[str, asyncio.Task] = {}  # recovered copies being committed
        self._writes: set[asyncio.Task] = set()
        self._progress = asyncio.Event()   # set (and replaced) whenever the core moved
        self._reqids: dict[str, tuple] = {}   # "<instance>:<tid>" -> (version, digest)
        self._digests: dict[tuple[str, int], int] = {}  # of the ops in flight
        self._indexed_log: dict | None = None

    # -- what the core says ---------------------------------------------------------------
    @property
    def acting(self) -> list[int]:
        return list(self.core.interval.acting) if self.core.interval else []

    @property
    def interval_epoch(self) -> int:
        return self.core.interval.epoch if self.core.interval else 0

    @property
    def is_primary(self) -> bool:
        return self.core.role == PRIMARY

    @property
    def head(self) -> int:
        """The newest log version, packed: changes whenever the PG's content changed."""
        return wire.pack(self.core.last_update)

    def replicas(self) -> list[int]:
        return [o for o in self.acting if o != self.ctx.osd_id]

    def is_active(self) -> bool:
        return self.core.serves_io()

    def is_clean(self) -> bool:
        return self.is_active() and "clean" in self.core.state_name().split("+")

    # -- driving the core ---------------------------------------------------------------------
    def on_map(self, view: MapView) -> None:
        if view.epoch <= self.core.map_epoch:
            return
        before = self.interval_epoch
        ready = self.core.advance_map(view)
        if self.interval_epoch != before:
            self._end_interval()
        self._run(ready)

    def _end_interval(self) -> None:
        """Ops and recoveries of the old interval stop: clients resend to the new primary."""
        for fut in self.in_flight.values():
            if not fut.done():
                fut.set_exception(Retry(f"pg {self.coll} changed interval; resend"))
                fut.exception()
        self.in_flight.clear()
        self._digests.clear()
        for task in self._recovering.values():
            task.cancel()
        self._recovering.clear()
        self.reason = ""
        self._moved()

    def _moved(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    def tick(self) -> None:
        if self.is_primary:
            self._run(self.core.tick())

    def deliver(self, msg: Message) -> None:
        """A peering message for this PG (from another OSD or from ourselves)."""
        log.debug("pg %s: %s from osd.%d (interval %d; ours %d, %s)", self.coll, msg.kind,
                  msg.src, msg.epoch, self.interval_epoch, self.core.role)
        if msg.kind == "scan":
            self._track(self._answer_scan(msg))
        else:
            self._run(self.core.step(msg))

    async def _purge(self) -> None:
        """Delete this stray copy: the acting set holds everything and we are not in it."""
        await self.settle()
        if self.core.role == PRIMARY or self.ctx.osd_id in self.acting:
            return
        await self.ctx.purge_stray(self)

    async def remove_copy(self) -> None:
        """Remove the PG's objects and collection here (purge_stray calls it, once no map
        or message reaches this PG any more)."""
        store = self.ctx.store
        if store.collection_exists(self.coll):
            txn = Transaction()
            names, _ = store.list_objects(self.coll, max_entries=1 << 30)
            for name in names:
                txn.remove(self.coll, name)
            txn.remove_collection(self.coll)
            await store.apply(txn)
            log.info("pg %s: removed the stray copy (%d objects)", self.coll, len(names))

    def _run(self, ready: Ready, txn: Transaction | None = None,
             step: str = "peering") -> asyncio.Task:
        """Persist the core's changes (with `txn`), then send its messages, start its
        recoveries. Tracked, and FIFO: the store commits in submission order. The core's
        memory already moved on, so the commit must happen: await the task only through
        asyncio.shield (cancelling an awaiter would cancel a task that has not started).
        If the commit fails anyway, the core is ahead of the store: the OSD stops (and
        restarted, peers from what was committed); nothing is sent or acked for it."""
        txn = txn if txn is not None else Transaction()
        if log.isEnabledFor(logging.DEBUG):
            missing = sorted((k[len(MISSING_PREFIX):], v is not None)
                             for k, v in ready.persist.items() if k.startswith(MISSING_PREFIX))
            if missing:
                log.debug("pg %s: missing set changes %s", self.coll, missing[:20])
        for key, value in ready.persist.items():
            if value is None:
                txn.rm_meta(self.coll, key.encode())
            else:
                txn.set_meta(self.coll, key.encode(), value)

        async def run() -> None:
            if txn.ops:
                try:
                    await self.ensure_collection()
                    await self.ctx.commit(txn, step)
                except Exception as e:
                    if ready.persist:
                        self.ctx.fatal(f"pg {self.coll}: a {step} commit failed after the "
                                       f"PG's state moved on: {e}")
                    raise
            for msg in ready.messages:
                self._send(msg)
            for rec in ready.recover:
                self._start_recovery(rec)
            if ready.purge:
                self._track(self._purge())
            self._moved()
        return self._track(run())

    def _track(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._applying.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self._applying.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pg %s: %s", self.coll, task.exception())

    async def settle(self) -> None:
        """Wait until every local change begun so far is committed (not counting the
        caller's own task)."""
        others = self._applying - {asyncio.current_task()}
        if others:
            await asyncio.wait(others)

    def _send(self, msg: Message) -> None:
        if msg.dst == self.ctx.osd_id:
            asyncio.get_running_loop().call_soon(self.deliver, msg)
            return
        pb = wire.message_to_pb(msg, self.pool_id, self.ps)
        self.ctx.spawn(self.ctx.send_osd(msg.dst, mpb.OSD_PEERING, pb))

    async def _answer_scan(self, msg: Message) -> None:
        """Backfill asks for our object listing with versions."""
        await self.settle()
        objects = {}
        if self.ctx.store.collection_exists(self.coll):
            names, _ = self.ctx.store.list_objects(self.coll, max_entries=1 << 30)
            for name in names:
                with contextlib.suppress(SdsError):
                    objects[name] = wire.unpack(self.ctx.store.stat(self.coll, name).version)
        self._send(Message("scan_reply", self.ctx.osd_id, msg.src, msg.epoch, objects=objects))

    async def ensure_collection(self) -> None:
        """Create the PG's collection once, even when many messages race to do it."""
        if self.created:
            return
        async with self._create_lock:
            if not self.ctx.store.collection_exists(self.coll):
                await self.ctx.store.apply(Transaction().create_collection(self.coll))
            self.created = True

    # -- recovery ---------------------------------------------------------------------------
    def _start_recovery(self, rec: Recover) -> None:
        running = self._recovering.get(rec.oid)
        if running is not None and not running.done():
            return  # the copy under way will satisfy the core (or fail, and be retried)
        self._recovering[rec.oid] = asyncio.get_running_loop().create_task(self._recover(rec))

    async def _recover(self, rec: Recover) -> None:
        """Copy one object from its source to every target the core named."""
        slots = contextlib.nullcontext() if rec.urgent else self.ctx.recovery_slots
        try:
            async with slots:
                def wanted(state: osd_pb2.ObjectState) -> bool:
                    if rec.need.matches(wire.unpack(state.version) if state.exists else None):
                        return True
                    log.warning("pg %s: osd.%d holds %s at %s, not %s; retrying later",
                                self.coll, rec.source, rec.oid, wire.unpack(state.version),
                                rec.need)
                    return False

                async def push(state, data, last, meta) -> None:
                    await self._push_part(rec.targets, state, data, last, meta, rec)
                if not await self._stream_copy(rec.oid, rec.source, push, wanted):
                    return
                if self.ctx.recovery_sleep and not rec.urgent:
                    await asyncio.sleep(self.ctx.recovery_sleep)
            self.ctx.perf_add(recovered_objects=len(rec.targets))
            if self.reason.startswith(TOOFULL):
                self.reason = ""
        except (SdsError, OSError) as e:
            if isinstance(e, NoSpace) and str(e).startswith(TOOFULL):
                self.reason = str(e)  # shown in health detail until a copy gets through
            log.info("pg %s: recovery of %s failed (%s); the core retries it", self.coll,
                     rec.oid, e)
        finally:
            if self._recovering.get(rec.oid) is asyncio.current_task():
                del self._recovering[rec.oid]

    async def _stream_copy(self, oid: str, source: int, push,
                           accept: Callable[[osd_pb2.ObjectState], bool]) -> bool:
        """Copy `oid` from `source` part by part (osd_max_read_size each: one part in
        memory, whatever the object's size) into `push(state, data, last, meta)`; False if
        `accept` refuses the first part's state. Recovery and repair both copy this way."""
        part = self.ctx.max_read
        state, data = await self._fetch(oid, source, 0, part)
        if not accept(state):
            return False
        version, xattrs, omap_more = state.version, list(state.xattrs), state.omap_more
        after = b""
        while True:
            data_last = not state.exists or state.offset + len(data) >= state.size
            if not data_last and not data:
                raise SdsError(f"{oid} shrank while being copied")
            after = state.omap[-1].key if state.omap else after
            await push(state, data, data_last and not omap_more, xattrs)
            if data_last:
                break
            state, data = await self._fetch(oid, source, state.offset + len(data), part)
            if not state.exists or state.version != version:
                raise SdsError(f"{oid} changed while being copied")
        while omap_more:  # the rest of the omap, page by page, before the last part
            state, _ = await self._fetch(oid, source, omap_after=after)
            if not state.exists or state.version != version or not state.omap:
                raise SdsError(f"{oid} changed while being copied")
            after, omap_more = state.omap[-1].key, state.omap_more
            await push(state, b"", not omap_more, xattrs)
        return True

    @staticmethod
    def _as_part(state: osd_pb2.ObjectState, data, last: bool, xattrs: list,
                 rec: Recover | None = None):
        """One part of a copy as it is installed: a recovery's (`rec`, tracked by peering)
        or a repair's; None for a part in the middle that holds only zeros (the first part
        empties the object, the last sets its size: holes stay holes)."""
        zeros = len(data) and data == bytes(len(data))  # calloc'd: cheap to compare
        if zeros and not last and state.offset:
            return None
        if rec is not None:
            state.need.CopyFrom(wire.need_to_pb(rec.oid, rec.need))
            state.interval = rec.epoch
        state.recovery, state.partial = rec is not None, not last
        del state.xattrs[:]  # the omap page a part carries stays with it
        if last:
            state.xattrs.extend(xattrs)
        return state, (b"" if zeros and state.offset else data)

    async def _push_part(self, targets, state: osd_pb2.ObjectState, data, last: bool,
                         xattrs: list, rec: Recover | None = None) -> None:
        """Send one part of a copy (_as_part) to every target."""
        part = self._as_part(state, data, last, xattrs, rec)
        if part is None:
            return
        state, data = part
        for target in targets:
            if target == self.ctx.osd_id:
                await self.install_copy(state, memoryview(data))
            else:
                await self.ctx.call_osd(target, mpb.OSD_PG_PUSH, state, data,
                                        timeout=COPY_TIMEOUT_S)

    async def _fetch(self, oid: str, source: int, offset: int = 0, length: int = 0,
                     omap_after: bytes = b"") -> tuple[osd_pb2.ObjectState, bytes]:
        """The object's state and data from `source` (all of it, the part asked, or the
        omap page after `omap_after`)."""
        if source == self.ctx.osd_id:
            return objcopy.read_copy(self.ctx.store, self.coll, oid, self.pool_id, self.ps,
                                     offset, length, omap_after, self.ctx.max_read)
        resp = await self.ctx.call_osd(source, mpb.OSD_PG_PULL, osd_pb2.ObjectState(
            pool=self.pool_id, pg=self.ps, oid=oid, offset=offset, length=length,
            omap_after=omap_after), timeout=COPY_TIMEOUT_S)
        return resp.parse(osd_pb2.ObjectState), bytes(resp.data)

    async def install_copy(self, state: osd_pb2.ObjectState, data) -> None:
        """A pushed copy: for recovery, only if the core still wants exactly it (and then
        with the core's bookkeeping in the same transaction); for repair, always."""
        if state.recovery:
            self.ctx.admit_copy()
        txn = Transaction()
        if not state.recovery:
            await asyncio.shield(self._run(Ready(), objcopy.stage_copy(txn, self.coll, state,
                                                                      data)))
            return
        if state.partial:  # data only, into an object still missing here (never served)
            if self.core.wants_copy(state.oid, wire.need_from_pb(state.need), state.interval):
                await asyncio.shield(self._run(
                    Ready(), objcopy.stage_copy(txn, self.coll, state, data), "push"))
            return
        ready = self.core.on_push(state.oid, wire.need_from_pb(state.need), state.interval)
        if ready is None:
            return  # stale or unwanted
        if ready.persist:
            objcopy.stage_copy(txn, self.coll, state, data)
        # the core already counts the object as present: ops on it wait for this commit
        task = self._installing[state.oid] = self._run(ready, txn, "push")
        self.ctx.forget_usage(self.coll)
        try:
            await asyncio.shield(task)
        finally:
            if self._installing.get(state.oid) is task:
                del self._installing[state.oid]

    async def _wait_recovered(self, oid: str, deadline: float, degraded: bool) -> None:
        """Block an op until `oid` is present here (reads) or on every acting member
        (writes), asking the core to recover it ahead of everything else."""
        interval = self.interval_epoch
        while self.core.is_degraded(oid) if degraded else self.core.is_missing(oid):
            if self.interval_epoch != interval or self.core.phase != ACTIVE:
                raise Retry(f"pg {self.coll} changed interval; resend")
            self._run(self.core.need_object(oid))
            await self._wait_progress(deadline, lambda: f"pg {self.coll}: {oid} is still "
                                      f"being recovered: {self.core.why()}")
        installing = self._installing.get(oid)
        if installing is not None:
            await asyncio.shield(installing)

    # -- client ops ---------------------------------------------------------------------------
    async def admit(self, op: osd_pb2.OsdOp, instance: str, deadline: float,
                    full_try: bool = False) -> None:
        """The one admission point of a client op (after the OSD found us its primary):
        a blocklisted client is refused; a read waits until the PG knows its authoritative
        data (a peered PG reads even below min_size); a write needs room on the cluster
        and the device (`full_try`: a session with the MDS daemon profile), at least
        min_size acting members, and an active PG. The core refuses a write anyway if the
        PG stopped serving since."""
        if self.ctx.blocklisted(instance):
            raise Blocklisted(f"client {instance} is blocklisted (evicted or replaced)")
        self.ctx.perf_add(ops=1)
        if ops.is_read(op.code):
            await self.wait_active(deadline, peered=True)
            return
        self.ctx.admit_write(op, full_try)
        await self._wait_min_size(deadline)
        await self.wait_active(deadline)

    async def _wait_min_size(self, deadline: float) -> None:
        """Block a write while fewer than min_size replicas are up; never under-replicate."""
        while True:
            view = self.core.interval
            if view is not None and len(view.acting) >= view.min_size:
                return
            size, min_size = (view.size, view.min_size) if view is not None else (0, 1)
            reason = (f"pg {self.coll} has {len(self.acting)} of its {size} replicas up "
                      f"(osd {', '.join(map(str, self.acting))}), fewer than min_size "
                      f"{min_size}")
            self.reason = reason
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"{reason}: op refused after waiting "
                                  f"{self.ctx.op_timeout:g}s for replicas to come back")
            with contextlib.suppress(TimeoutError):  # a new map moves the core
                await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))
            if not self.is_primary:
                raise Retry(f"osd.{self.ctx.osd_id} is no longer primary of {self.coll}")

    async def wait_active(self, deadline: float, peered: bool = False) -> None:
        """Until the PG serves writes, or with `peered` just knows its authoritative data."""
        while not (self.core.phase == ACTIVE if peered else self.is_active()):
            if not self.is_primary:
                raise Retry(f"osd.{self.ctx.osd_id} is no longer primary of {self.coll}")
            await self._wait_progress(deadline, lambda: f"pg {self.coll} is "
                                      f"{self.core.state_name()}: "
                                      f"{self.reason or self.core.why()}")

    async def _wait_progress(self, deadline: float, why: Callable[[], str]) -> None:
        """Wait (at most 1 s) for the core to move on; past the deadline, fail with why()."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Unavailable(why())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), min(remaining, 1.0))

    async def read(self, op: osd_pb2.OsdOp, deadline: float):
        """Serve a read; an object we still miss is recovered first."""
        if op.code == osd_pb2.OsdOp.LIST:
            return self._list(op)
        await self._wait_recovered(op.oid, deadline, degraded=False)
        if op.oid in self._torn:  # being repaired here part by part, or left torn
            async with self._object_lock(op.oid):
                pass
            if op.oid in self._torn and not await self.repair_on_read(op.oid):
                raise ChecksumError(f"{op.oid}: a repair from a replica failed halfway; "
                                    "no good copy is reachable now (retry, or repair the PG)")
        return await self._read_object(op)

    async def _read_object(self, op: osd_pb2.OsdOp):
        """Small reads run inline, large ones in reader threads. Bytes that fail their
        checksum are never returned: the object is repaired from a replica and read again."""
        store, max_read = self.ctx.store, self.ctx.max_read
        try:
            if op.code == osd_pb2.OsdOp.READ and ops.is_large_read(store, self.coll, op):
                try:
                    return await self.ctx.in_reader(ops.execute_read, store, self.coll, op,
                                                    max_read)
                except ChecksumError:
                    pass  # maybe rewritten under the reader's snapshot: look again inline
            return ops.execute_read(store, self.coll, op, max_read)
        except ChecksumError as e:
            log.warning("pg %s: %s failed its checksum: %s", self.coll, op.oid[:200], e)
            if not await self.repair_on_read(op.oid, str(e)):
                raise
            return ops.execute_read(store, self.coll, op, max_read)

    def _list(self, op: osd_pb2.OsdOp):
        """Objects of the PG, counting the ones we still miss as the authority has them."""
        if not self.core.missing:
            return ops.execute_read(self.ctx.store, self.coll, op)
        names, _ = self.ctx.store.list_objects(self.coll, max_entries=1 << 30)
        gone = {o for o, n in self.core.missing.items() if n.delete}
        coming = {o for o, n in self.core.missing.items() if not n.delete}
        listing = sorted((set(names) - gone) | coming)
        after = [n for n in listing if n > op.oid] if op.oid else listing
        limit = op.max or 1000
        reply = osd_pb2.OsdOpReply(names=after[:limit], more=len(after) > limit)
        return reply, b""

    async def do_write(self, op: osd_pb2.OsdOp, data: memoryview, deadline: float,
                       instance: str) -> osd_pb2.OsdOpReply:
        """Apply a client write once: a resend (same instance and tid) gets the original's
        answer; a different op under a used request id is refused, never acked."""
        reqid = (instance, op.tid)
        digest = crc32c(data, crc32c(op.SerializeToString(deterministic=True)))
        pending = self.in_flight.get(reqid)
        if pending is not None:  # a resend while the original is still in progress
            self._same_op(reqid, self._digests.get(reqid), digest)
            return await asyncio.shield(pending)
        done = self._logged(wire.reqid(instance, op.tid))
        if done is not None:  # a resend of an op that already completed
            self._same_op(reqid, done[1], digest)
            return osd_pb2.OsdOpReply(version=wire.pack(done[0]))
        fut = asyncio.get_running_loop().create_future()
        if instance and op.tid:  # registered before queueing, so a resend waits for this one
            self.in_flight[reqid] = fut
            self._digests[reqid] = digest
        # a write, once begun, finishes even if the client's connection (and with it this
        # handler) goes away: half a write would leave replicas refusing the next ones
        task = asyncio.get_running_loop().create_task(
            self._write(op, data, deadline, fut, reqid, digest))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(fut)

    @staticmethod
    def _same_op(reqid: tuple[str, int], known: int | None, digest: int) -> None:
        if known is not None and known != digest:
            raise InvalidArgument(f"request {reqid[1]} of client {reqid[0]} was already used "
                                  "for a different op: refused (a tid names one op)")

    async def _write(self, op: osd_pb2.OsdOp, data: memoryview, deadline: float,
                     fut: asyncio.Future, reqid: tuple[str, int], digest: int) -> None:
        interval = self.interval_epoch
        try:
            async with self._object_lock(op.oid):
                await self._wait_recovered(op.oid, deadline, degraded=True)
                if self.interval_epoch != interval or not self.is_active():
                    raise Retry(f"pg {self.coll} changed interval; resend")
                reply = await self._replicate(op, data, deadline, reqid, digest)
            if not fut.done():
                fut.set_result(reply)
        except BaseException as e:
            if not fut.done():
                fut.set_exception(e if isinstance(e, Exception) else Retry("cancelled"))
                fut.exception()  # consumed here; waiters re-raise it
            if not isinstance(e, Exception):
                raise
        finally:
            if self.in_flight.get(reqid) is fut:
                del self.in_flight[reqid]
                self._digests.pop(reqid, None)

    def _logged(self, reqid: str) -> tuple[tuple, int | None] | None:
        """(version, op digest) of a logged write with this request id, if the log still
        has it. A log entry's reqid is "<instance>:<tid>#<digest>" (wire.reqid)."""
        if not reqid:
            return None
        log_ = self.core.log
        if self._indexed_log is not log_:  # the core adopted another log: index it again
            self._reqids = {}
            for v, e in log_.items():
                if e.reqid:
                    self._index(e.reqid, v)
            self._indexed_log = log_
        found = self._reqids.get(reqid)
        if found is None:
            return None
        entry = log_.get(found[0])
        if entry is None or wire.split_reqid(entry.reqid)[0] != reqid:
            return None
        return found

    def _index(self, logged_reqid: str, version: tuple) -> None:
        base, digest = wire.split_reqid(logged_reqid)
        self._reqids[base] = (version, digest)

    @contextlib.asynccontextmanager
    async def _object_lock(self, oid: str):
        """Writes to one object are applied in order; the lock lives while it is used."""
        entry = self.object_locks.get(oid)
        if entry is None:
            entry = self.object_locks[oid] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self.object_locks[oid]

    def _prepare(self, op, data) -> tuple:
        """(prior version, new version, transaction) of a write: reads only."""
        store = self.ctx.store
        prior = wire.unpack(store.stat(self.coll, op.oid).version) \
            if store.exists(self.coll, op.oid) else None
        version = self.core.next_version()
        txn = ops.build_write(store, self.coll, op, data, time.time(), wire.pack(version),
                              self.ctx.limits)
        precheck.check_before_write(store, txn)
        return prior, version, txn

    async def _replicate(self, op, data, deadline, reqid, digest) -> osd_pb2.OsdOpReply:
        await self.ensure_collection()
        if op.oid in self._torn and not await self.repair_on_read(
                op.oid, "a repair failed halfway", locked=True):  # never write onto it
            raise ChecksumError(f"{op.oid[:200]}: a repair from a replica failed halfway; "
                                "no good copy is reachable now (retry, or repair the PG)")
        try:
            prior, version, txn = self._prepare(op, data)
        except ChecksumError as e:  # our copy is damaged: repair it first (we hold the lock)
            log.warning("pg %s: %s failed its checksum before a write: %s", self.coll,
                        op.oid[:200], e)
            if not await self.repair_on_read(op.oid, str(e), locked=True):
                raise
            prior, version, txn = self._prepare(op, data)
        # no await from here to core.write: the version we stamp is the one it assigns
        entry, ready = self.core.write(op.oid, wire.reqid(*reqid, digest),
                                       op.code == osd_pb2.OsdOp.REMOVE, prior)
        assert entry.version == version, (entry.version, version)
        if entry.reqid:
            self._index(entry.reqid, entry.version)
        log.debug("pg %s write %s %s to %s", self.coll, entry.version, op.oid, self.acting)
        wire_txn, segments = txn.to_wire()
        repop = osd_pb2.RepOp(pool=self.pool_id, pg=self.ps, txn=wire_txn,
                              entry=wire.entry_to_pb(entry), interval=self.interval_epoch)
        tasks = [asyncio.shield(self._run(ready, txn, "write"))]
        tasks += [self._send_repop(peer, repop, segments, deadline) for peer in self.replicas()]
        await asyncio.gather(*tasks)
        self.ctx.perf_add(writes=1, bytes_in=len(data))
        return osd_pb2.OsdOpReply(version=wire.pack(entry.version))

    async def _send_repop(self, peer: int, repop, segments, deadline) -> None:
        """Deliver one repop, retrying until the replica commits or the interval ends."""
        interval = repop.interval
        while True:
            if self.interval_epoch != interval:
                raise Retry(f"pg {self.coll} changed interval; resend")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"pg {self.coll}: osd.{peer} did not commit the write in time")
            try:
                resp = await self.ctx.call_osd(peer, mpb.OSD_REPOP, repop, segments,
                                               timeout=min(remaining, REPOP_TIMEOUT_S))
                repaired = resp.parse(osd_pb2.RepOpReply).repaired
                if repaired:
                    why = f"{repaired}; replaced by osd.{self.ctx.osd_id}'s copy on write"
                    self.mark_inconsistent(scrub.Inconsistency(
                        repop.entry.oid, [self.ctx.osd_id], {peer: why}))
                return
            except Retry:  # out of order, or the replica is not in our interval yet
                await asyncio.sleep(REORDER_RETRY_S)
            except (ConnectionLost, TimedOut) as e:
                self.reason = f"waiting for osd.{peer}: {e}"
                await asyncio.sleep(min(RETRY_S, max(0.0, remaining)))

    async def apply_repop(self, repop: osd_pb2.RepOp, data: memoryview) -> str:
        """Apply the primary's write; "" or, when our copy of the object failed its
        checksums (checked before the core takes the write: its commit must not fail),
        why it was replaced by the primary's whole copy at the write's version."""
        entry = wire.entry_from_pb(repop.entry)
        txn = Transaction.from_wire(repop.txn, data)
        damage = ""
        if self.core.takes_write(entry, repop.interval):
            try:
                precheck.check_before_write(self.ctx.store, txn)
            except ChecksumError as e:
                damage = str(e)
                log.warning("pg %s: %s failed its checksum before write %s: %s; taking the "
                            "primary's whole copy", self.coll, entry.oid[:200], entry.version, e)
                txn = await self._whole_copy(entry.oid, self.acting[0], wire.pack(entry.version))
        ready = self.core.replica_write(entry, repop.interval)
        if ready is None:
            raise Retry(f"pg {self.coll} on osd.{self.ctx.osd_id} cannot take write "
                        f"{entry.version} of interval {repop.interval} now")
        if not ready.persist:
            return ""  # a resend we already applied
        await asyncio.shield(self._run(ready, txn, "repop"))
        return damage

    async def _whole_copy(self, oid: str, source: int, version: int) -> Transaction:
        """The replacement of our copy of `oid` by `source`'s at `version`, as one
        transaction (all its parts: bounded by osd_max_object_size), so it commits
        atomically with the log entry of the write that brought it."""
        txn = Transaction()

        async def stage(state, data, last, xattrs) -> None:
            part = self._as_part(state, data, last, xattrs)
            if part is not None:
                objcopy.stage_copy(txn, self.coll, *part)

        def wanted(state: osd_pb2.ObjectState) -> bool:
            return state.exists and state.version == version
        if not await self._stream_copy(oid, source, stage, wanted):
            raise Retry(f"pg {self.coll}: osd.{source} does not hold {oid[:200]} at the "
                        "version of the write yet")
        return txn

    def pg_state(self) -> str:
        state = self.core.state_name()
        if self.scrubbing:
            state += "+" + self.scrubbing
        if self.inconsistent and "inconsistent" not in state:
            state += "+inconsistent"
        return state

    def recovery_progress(self) -> tuple[int, int]:
        return self.core.progress()

    # -- scrub and repair ---------------------------------------------------------------------
    async def scrub(self, deep: bool) -> list[scrub.Inconsistency]:
        """Compare every member's copy of the PG; remembers and returns what differs."""
        if not self.is_primary:
            raise Retry(f"osd.{self.ctx.osd_id} is not primary of {self.coll}")
        await self.wait_active(time.monotonic() + 30)
        if not self.is_clean():
            raise Unavailable(f"pg {self.coll} is {self.core.state_name()}: scrub it once "
                              "it is clean")
        interval = self.interval_epoch
        self.scrubbing = "scrubbing+deep" if deep else "scrubbing"
        try:
            await self.settle()
            maps = {self.ctx.osd_id: await self.ctx.in_reader(
                scrub.build_map, self.ctx.store, self.coll, deep)}
            for peer in self.replicas():
                resp = await self.ctx.call_osd(peer, mpb.OSD_PG_SCRUB, osd_pb2.ScrubRequest(
                    pool=self.pool_id, pg=self.ps, deep=deep), timeout=600)
                maps[peer] = resp.parse(osd_pb2.ScrubMap)
        finally:
            self.scrubbing = ""
        if self.interval_epoch != interval:
            raise Retry(f"pg {self.coll} changed interval during the scrub; scrub again")
        findings = scrub.compare(maps, self.ctx.osd_id, deep)
        if deep or not findings:
            self.inconsistent = {f.oid: f for f in findings}
        else:  # a light scrub cannot clear what a deep scrub found
            self.inconsistent.update({f.oid: f for f in findings})
        self.core.set_inconsistent(bool(self.inconsistent))
        now = time.time()
        self.last_scrub = now
        if deep:
            self.last_deep_scrub = now
        if findings:
            log.warning("pg %s %sscrub: %d inconsistent objects: %s", self.coll,
                        "deep-" if deep else "", len(findings),
                        ", ".join(f.oid for f in findings[:10]))
        return findings

    async def repair(self) -> list[dict]:
        """Deep-scrub, then overwrite every bad copy with the authoritative one."""
        findings = await self.scrub(deep=True)
        repaired = []
        for finding in findings:
            if not finding.good:
                continue  # no readable copy anywhere: nothing to repair from
            source = self.ctx.osd_id if self.ctx.osd_id in finding.good else finding.good[0]
            async with self._object_lock(finding.oid):
                version = 0
                with contextlib.suppress(SdsError):
                    version = self.ctx.store.stat(self.coll, finding.oid).version
                await self._repair_copy(finding.oid, source, sorted(finding.bad), version)
            repaired.append(finding.as_dict())
        if repaired:
            await self.scrub(deep=True)
        return repaired

    async def repair_on_read(self, oid: str, why: str = "checksum", locked: bool = False,
                             ) -> bool:
        """Our copy failed its checksum (data or metadata): replace it with a replica's copy
        of the same version, or of the newest version the replicas hold when our onode is
        what cannot be read; copied in parts (_repair_copy). Either way the PG stays
        inconsistent until a deep scrub."""
        try:
            version = self._torn.get(oid) or self.ctx.store.stat(self.coll, oid).version
        except ChecksumError:
            version = None
        async with contextlib.nullcontext() if locked else self._object_lock(oid):
            wanted = {peer: version for peer in self.replicas()}
            if version is None:  # the newest version a replica holds, asked for first
                found = {}
                for peer in wanted:
                    try:
                        state, _ = await self._fetch(oid, peer, 0, 1)
                    except SdsError as e:
                        log.warning("pg %s: osd.%d has no good copy of %s: %s", self.coll,
                                    peer, oid[:200], e)
                        continue
                    if state.exists:
                        found[peer] = state.version
                wanted = dict(sorted(found.items(), key=lambda kv: -kv[1]))
            source = None
            for peer, want in wanted.items():
                try:
                    if await self._repair_copy(
                            oid, peer, [self.ctx.osd_id], want,
                            accept=lambda state, w=want: state.exists and state.version == w):
                        source = peer
                        break
                except SdsError as e:
                    log.warning("pg %s: osd.%d has no good copy of %s: %s", self.coll, peer,
                                oid[:200], e)
            if source is not None:
                log.warning("pg %s: repaired %s from osd.%d after: %s", self.coll, oid[:200],
                            source, why)
                bad = f"{why}; repaired from osd.{source} on read"
                self.mark_inconsistent(scrub.Inconsistency(oid, [source],
                                                           {self.ctx.osd_id: bad}))
            else:
                self.mark_inconsistent(scrub.Inconsistency(oid, [], {self.ctx.osd_id: why}))
        return source is not None

    def mark_inconsistent(self, finding: scrub.Inconsistency) -> None:
        """A copy was found bad outside a scrub (and repaired, or not): the PG shows
        inconsistent until a deep scrub finds every copy good."""
        self.inconsistent[finding.oid] = finding
        self.core.set_inconsistent(True)

    async def _repair_copy(self, oid: str, source: int, targets: list[int], version: int,
                           accept: Callable[[osd_pb2.ObjectState], bool] = lambda s: True
                           ) -> bool:
        """Overwrite `targets`' copies of `oid` with `source`'s, in parts. While our own
        copy is among them it is torn (reads wait, and after a failure halfway it is never
        served: repair_on_read tries again, for `version`)."""
        local = self.ctx.osd_id in targets
        if local:
            self._torn[oid] = version
        copied = wrote = False

        async def push(state, data, last, meta) -> None:
            nonlocal wrote
            wrote = True
            await self._push_part(targets, state, data, last, meta)
        try:
            copied = await self._stream_copy(oid, source, push, accept)
            return copied
        finally:
            if local and (copied or not wrote):  # whole again, or never touched
                self._torn.pop(oid, None)

    def query(self) -> dict:
        """Why the PG is in its state, for `sds pg PGID query`."""
        total, done = self.core.progress()
        return {"pgid": self.coll, "state": self.pg_state(),
                "acting": self.acting, "up": self.acting, "primary": self.ctx.osd_id,
                "reason": self.reason or self.core.why(), "interval_epoch": self.interval_epoch,
                "last_update": list(self.core.last_update),
                "log_tail": list(self.core.log_tail), "log_entries": len(self.core.log),
                "missing_here": len(self.core.missing),
                "recovery": {"objects_total": total, "objects_done": done},
                "last_scrub": self.last_scrub, "last_deep_scrub": self.last_deep_scrub,
                "inconsistent": [f.as_dict() for f in self.inconsistent.values()]}


def map_view(epoch: int, acting: list[int], up: frozenset[int], up_from: dict[int, int],
             size: int, min_size: int) -> MapView:
    """What one map says about a PG, as the core wants it (incarnations of members only)."""
    return MapView(epoch, tuple(acting), up, {o: up_from.get(o, 0) for o in acting}, size,
                   min_size)
