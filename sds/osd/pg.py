"""One placement group on one OSD: its log, its interval, peering and the write pipeline.

Primary-copy replication: the primary orders writes (PG log version v), applies them
locally and on every replica of the acting set in parallel, and acks the client only
when all have committed. A new interval (acting set changed, or a member restarted)
makes the primary peer again: it asks every member for its PG info and log, takes the
longest history as authoritative, pulls what it lacks, pushes what the others lack,
and only then serves ops again. Full peering state machine and backfill tuning: issue 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from sds.common.errors import ConnectionLost, Retry, SdsError, TimedOut, Unavailable, from_code
from sds.crush.placement import pg_name
from sds.osd import logsync, ops, scrub
from sds.osd.pglog import PgLog
from sds.osd.store.base import Transaction
from sds.proto import messenger_pb2 as mpb
from sds.proto import osd_pb2

if TYPE_CHECKING:
    from sds.osd.daemon import OsdDaemon

log = logging.getLogger("sds.osd.pg")

PEER_RETRY_S = 0.5
REPOP_TIMEOUT_S = 10.0


class PG:
    def __init__(self, osd: OsdDaemon, pool_id: int, ps: int):
        self.osd = osd
        self.pool_id = pool_id
        self.ps = ps
        self.coll = pg_name(pool_id, ps)
        self.log = PgLog.load(osd.store, self.coll) if osd.store.collection_exists(self.coll) \
            else PgLog(self.coll)
        self.acting: list[int] = []
        self.interval: tuple = ()
        self.interval_epoch = 0
        self.state = "creating"
        self.reason = ""
        self.active = asyncio.Event()
        self.peering_task: asyncio.Task | None = None
        self.in_flight: dict[tuple[str, int], asyncio.Future] = {}
        self.object_locks: dict[str, list] = {}  # oid -> [lock, users]
        self.next_v = self.log.head + 1
        self.inconsistent: dict[str, scrub.Inconsistency] = {}
        self.last_scrub = 0.0
        self.last_deep_scrub = 0.0
        self.scrubbing = ""
        self.recovery_total = 0   # objects to recover in this interval, and how many are done
        self.recovery_done = 0
        self.created = False
        self._create_lock = asyncio.Lock()
        self._applying: set[asyncio.Task] = set()

    @property
    def is_primary(self) -> bool:
        return bool(self.acting) and self.acting[0] == self.osd.osd_id

    def replicas(self) -> list[int]:
        return [o for o in self.acting if o != self.osd.osd_id]

    # -- intervals ---------------------------------------------------------------------
    def on_map(self, acting: list[int], up_from: dict[int, int], epoch: int) -> None:
        """Start a new interval when the acting set or a member's incarnation changed."""
        interval = tuple((o, up_from.get(o, 0)) for o in acting)
        if interval == self.interval:
            return
        self.interval = interval
        self.interval_epoch = epoch
        self.acting = list(acting)
        self.active.clear()
        for fut in self.in_flight.values():
            if not fut.done():
                fut.set_exception(Retry(f"pg {self.coll} changed interval; resend"))
        self.in_flight.clear()
        if self.peering_task is not None:
            self.peering_task.cancel()
            self.peering_task = None
        log.debug("pg %s new interval %s in epoch %d", self.coll, interval, epoch)
        if self.is_primary:
            self.state = "peering"
            self.peering_task = asyncio.create_task(self._peer(interval))
        else:
            self.state = "replica" if self.osd.osd_id in acting else "stray"

    async def ensure_collection(self) -> None:
        """Create the PG's collection once, even when many messages race to do it."""
        if self.created:
            return
        async with self._create_lock:
            if not self.osd.store.collection_exists(self.coll):
                await self.osd.store.apply(Transaction().create_collection(self.coll))
            self.created = True

    # -- peering -------------------------------------------------------------------------
    async def _peer(self, interval: tuple) -> None:
        self.recovery_total = self.recovery_done = 0
        try:
            await self.ensure_collection()
            await self.settle()
            views = await self._gather_logs(interval)
            me = self.osd.osd_id
            auth = logsync.choose_authoritative(views, me)
            auth_view = views[auth]
            log.debug("pg %s peering: auth osd.%d last_update %s; members %s", self.coll, auth,
                      auth_view.last_update(),
                      {o: (v.last_update(), v.head, v.tail) for o, v in views.items()})
            if auth != me:  # the primary itself is behind or divergent: fix it first
                self.state = "peering+recovering"
                await self._sync_self(auth, auth_view, views[me])
            for peer, member in views.items():
                if peer != me:
                    sync = logsync.plan(auth_view, member)
                    log.debug("pg %s: osd.%d needs %s%s", self.coll, peer, sorted(sync.objects),
                              " (backfill)" if sync.backfill else "")
                    if sync.needed or member.head != auth_view.head:
                        self.state = "peering+backfilling" if sync.backfill else \
                            "peering+recovering"
                        await self._sync_peer(peer, sync)
            self.next_v = max(self.next_v, self.log.head + 1)
            self.state = "active"
            self.reason = ""
            self.active.set()
            log.debug("pg %s active at v%d acting %s", self.coll, self.log.head, self.acting)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # keep trying: a PG must never stay silently stuck
            log.warning("pg %s peering failed: %s", self.coll, e)
            self.reason = f"peering failed: {e}"
            await asyncio.sleep(PEER_RETRY_S)
            if self.interval == interval:
                self.peering_task = asyncio.create_task(self._peer(interval))

    def _commit(self, txn: Transaction, then) -> asyncio.Task:
        """Apply txn, then update memory (`then`); tracked so peering can wait for it."""
        async def run() -> None:
            await self.osd.store.apply(txn)
            then()
        task = asyncio.get_running_loop().create_task(run())
        self._applying.add(task)
        task.add_done_callback(self._applying.discard)
        return task

    async def settle(self) -> None:
        """Wait until every local write begun so far is committed and in the log."""
        if self._applying:
            await asyncio.wait(set(self._applying))

    def _own_view(self) -> logsync.LogView:
        names, _ = self.osd.store.list_objects(self.coll, max_entries=1 << 30)
        return logsync.LogView.of(self.log.head, self.log.tail, self.log.after(0), names)

    async def _gather_logs(self, interval: tuple) -> dict[int, logsync.LogView]:
        """Every member's log, head, tail and listing; waits for members that are silent."""
        views = {self.osd.osd_id: self._own_view()}
        for peer in self.replicas():
            while True:
                try:
                    reply = await self.osd.call_osd(peer, mpb.OSD_PG_QUERY, osd_pb2.PgQuery(
                        pool=self.pool_id, pg=self.ps, since_v=0, list_objects=True),
                        timeout=10.0)
                    q = reply.parse(osd_pb2.PgQueryReply)
                    views[peer] = logsync.LogView.of(q.info.last_v, q.info.log_tail_v, q.log,
                                                     list(q.objects))
                    break
                except (ConnectionLost, TimedOut, Retry) as e:
                    self.reason = f"waiting for osd.{peer} to answer peering: {e}"
                    await asyncio.sleep(PEER_RETRY_S)
        return views

    async def _sync_self(self, auth: int, auth_view: logsync.LogView,
                         mine: logsync.LogView) -> None:
        """Pull every object our log misses or diverges on, then adopt the authoritative log."""
        sync = logsync.plan(auth_view, mine)
        log.debug("pg %s: primary pulls %s from osd.%d", self.coll, sorted(sync.objects), auth)

        async def pull(oid: str) -> None:
            resp = await self.osd.call_osd(auth, mpb.OSD_PG_PULL, osd_pb2.ObjectState(
                pool=self.pool_id, pg=self.ps, oid=oid), timeout=30.0)
            await self.apply_object_state(resp.parse(osd_pb2.ObjectState), resp.data, [])
        await self._recover_all(sorted(sync.objects), pull)
        txn = Transaction()
        entries = list(auth_view.entries.values())
        self.log.replace(txn, entries, auth_view.head, auth_view.tail)
        await self._commit(txn, lambda: self.log.adopt(entries, auth_view.head, auth_view.tail))

    async def _sync_peer(self, peer: int, sync: logsync.SyncPlan) -> None:
        """Push what a member misses (or must roll back), then give it our log."""
        async def push(oid: str) -> None:
            state, data = self.object_state(oid)
            await self.osd.call_osd(peer, mpb.OSD_PG_PUSH, state, data, timeout=30.0)
        await self._recover_all(sorted(sync.objects), push)
        final = osd_pb2.ObjectState(pool=self.pool_id, pg=self.ps, oid="", exists=False,
                                    reset_log=True, log_head=self.log.head,
                                    log_tail=self.log.tail)
        final.log.extend(self.log.after(0))
        await self.osd.call_osd(peer, mpb.OSD_PG_PUSH, final, timeout=30.0)

    async def _recover_all(self, oids: list[str], recover_one) -> None:
        """Recover objects concurrently, within the OSD-wide osd_recovery_max_active bound."""
        self.recovery_total += len(oids)

        async def one(oid: str) -> None:
            async with self.osd.recovery_slots:
                await recover_one(oid)
            self.recovery_done += 1
            self.osd.perf_add(recovered_objects=1)
        await asyncio.gather(*(one(oid) for oid in oids))

    def object_state(self, oid: str) -> tuple[osd_pb2.ObjectState, bytes]:
        store = self.osd.store
        state = osd_pb2.ObjectState(pool=self.pool_id, pg=self.ps, oid=oid)
        if not store.exists(self.coll, oid):
            return state, b""
        st = store.stat(self.coll, oid)
        state.exists, state.mtime, state.version = True, st.mtime, st.version
        for name, value in sorted(store.getxattrs(self.coll, oid).items()):
            state.xattrs.add(key=name.encode(), value=value)
        start = b""
        while True:
            items, more = store.omap_list(self.coll, oid, start_after=start, max_entries=10000)
            for key, value in items:
                state.omap.add(key=key, value=value)
            if not more or not items:
                break
            start = items[-1][0]
        return state, store.read(self.coll, oid)

    async def apply_object_state(self, state: osd_pb2.ObjectState, data: memoryview,
                                 entries: list[osd_pb2.PgLogEntry]) -> None:
        """Replace an object with a pushed/pulled copy, recording the log entries given."""
        txn = Transaction()
        if state.oid:
            txn.remove(self.coll, state.oid)
            if state.exists:
                txn.touch(self.coll, state.oid, state.mtime, state.version)
                txn.write_full(self.coll, state.oid, data)
                for kv in state.xattrs:
                    txn.setxattr(self.coll, state.oid, kv.key.decode(), kv.value)
                if state.omap:
                    txn.omap_set(self.coll, state.oid, {kv.key: kv.value for kv in state.omap})
        if state.reset_log:
            self.log.replace(txn, entries, state.log_head, state.log_tail)

            def done() -> None:
                self.log.adopt(entries, state.log_head, state.log_tail)
        else:
            new = [e for e in entries if e.v > self.log.head or e.v not in self.log.entries]
            for entry in new:
                self.log.append(txn, entry)
            if entries:
                txn.set_meta(self.coll, b"head",
                             str(max(self.log.head, max(e.v for e in entries))).encode())

            def done() -> None:
                for entry in new:
                    self.log.remember(entry)
        await self._commit(txn, done)
        self.next_v = max(self.next_v, self.log.head + 1)

    # -- client ops -------------------------------------------------------------------------
    async def wait_active(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        try:
            await asyncio.wait_for(self.active.wait(), max(0.01, remaining))
        except TimeoutError:
            raise Unavailable(f"pg {self.coll} is {self.state}"
                              + (f": {self.reason}" if self.reason else "")) from None

    async def do_write(self, op: osd_pb2.OsdOp, data: memoryview, epoch: int,
                       deadline: float) -> osd_pb2.OsdOpReply:
        reqid = (op.client, op.tid)
        pending = self.in_flight.get(reqid)
        if pending is not None:  # a resend while the original is still in progress
            return await asyncio.shield(pending)
        done = self.log.by_reqid.get(reqid) if op.client else None
        if done is not None:  # a resend of an op that already completed
            return self._dup_reply(done)
        fut = asyncio.get_running_loop().create_future()
        if op.client:  # registered before queueing, so a resend waits for this one
            self.in_flight[reqid] = fut
        interval = self.interval
        try:
            async with self._object_lock(op.oid):
                if self.interval != interval or not self.active.is_set():
                    raise Retry(f"pg {self.coll} changed interval; resend")
                reply = await self._replicate(op, data, epoch, interval, deadline)
            if not fut.done():
                fut.set_result(reply)
            return reply
        except BaseException as e:
            if not fut.done():
                fut.set_exception(e if isinstance(e, Exception) else Retry("cancelled"))
                fut.exception()  # consumed here; waiters re-raise it
            raise
        finally:
            if self.in_flight.get(reqid) is fut:
                del self.in_flight[reqid]

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

    def _dup_reply(self, entry: osd_pb2.PgLogEntry) -> osd_pb2.OsdOpReply:
        if entry.result:
            raise from_code(entry.result, "request already failed")
        return osd_pb2.OsdOpReply(version=entry.v)

    async def _replicate(self, op, data, epoch, interval, deadline) -> osd_pb2.OsdOpReply:
        v = self.next_v
        self.next_v += 1
        txn = ops.build_write(self.osd.store, self.coll, op, data, time.time(), v)
        entry = osd_pb2.PgLogEntry(epoch=epoch, v=v, oid=op.oid, client=op.client, tid=op.tid,
                                   delete=op.code == osd_pb2.OsdOp.REMOVE)
        self.log.append(txn, entry)
        txn.set_meta(self.coll, b"head", str(v).encode())
        log.debug("pg %s write v%d e%d %s to %s", self.coll, v, epoch, op.oid, self.acting)
        wire_txn, segments = txn.to_wire()
        repop = osd_pb2.RepOp(pool=self.pool_id, pg=self.ps, entry=entry, txn=wire_txn)
        tasks = [self._commit(txn, lambda: self.log.remember(entry))]
        tasks += [self._send_repop(peer, repop, segments, interval, deadline)
                  for peer in self.replicas()]
        await asyncio.gather(*tasks)
        self.osd.perf_add(writes=1, bytes_in=len(data))
        return osd_pb2.OsdOpReply(version=v)

    async def _send_repop(self, peer: int, repop, segments, interval, deadline) -> None:
        """Deliver one repop, retrying until the replica commits or the interval ends."""
        while True:
            if self.interval != interval:
                raise Retry(f"pg {self.coll} changed interval; resend")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"pg {self.coll}: osd.{peer} did not commit the write in time")
            try:
                await self.osd.call_osd(peer, mpb.OSD_REPOP, repop, segments,
                                        timeout=min(remaining, REPOP_TIMEOUT_S))
                return
            except (ConnectionLost, TimedOut) as e:
                self.reason = f"waiting for osd.{peer}: {e}"
                await asyncio.sleep(min(PEER_RETRY_S, max(0.0, remaining)))

    async def apply_repop(self, repop: osd_pb2.RepOp, data: memoryview) -> None:
        if repop.entry.epoch < self.interval_epoch:
            raise Retry(f"pg {self.coll}: write from epoch {repop.entry.epoch} predates the "
                        f"interval that began in epoch {self.interval_epoch}")
        known = self.log.entries.get(repop.entry.v)
        if known is not None and logsync.same(known, repop.entry):
            return  # a resend we already applied
        txn = Transaction.from_wire(repop.txn, data)
        await self._commit(txn, lambda: self.log.remember(repop.entry))

    def query_reply(self, query: osd_pb2.PgQuery) -> osd_pb2.PgQueryReply:
        reply = osd_pb2.PgQueryReply()
        reply.info.pool, reply.info.pg = self.pool_id, self.ps
        reply.info.last_v, reply.info.log_tail_v = self.log.head, self.log.tail
        reply.log.extend(self.log.after(query.since_v))
        if query.list_objects and self.osd.store.collection_exists(self.coll):
            names, _ = self.osd.store.list_objects(self.coll, max_entries=1 << 30)
            reply.objects.extend(names)
        return reply

    def pg_state(self, pool_size: int, up_count: int) -> str:
        if self.state != "active":
            state = self.state
        elif len(self.acting) < pool_size:
            state = "active+undersized+degraded"
        else:
            state = "active+clean"
        if self.scrubbing:
            state += "+" + self.scrubbing
        if self.inconsistent:
            state += "+inconsistent"
        return state

    # -- scrub and repair ---------------------------------------------------------------------
    async def scrub(self, deep: bool) -> list[scrub.Inconsistency]:
        """Compare every member's copy of the PG; remembers and returns what differs."""
        if not self.is_primary:
            raise Retry(f"osd.{self.osd.osd_id} is not primary of {self.coll}")
        await self.wait_active(time.monotonic() + 30)
        interval = self.interval
        self.scrubbing = "scrubbing+deep" if deep else "scrubbing"
        try:
            maps = {self.osd.osd_id: await self.osd.in_reader(
                scrub.build_map, self.osd.store, self.coll, deep)}
            for peer in self.replicas():
                resp = await self.osd.call_osd(peer, mpb.OSD_PG_SCRUB, osd_pb2.ScrubRequest(
                    pool=self.pool_id, pg=self.ps, deep=deep), timeout=600)
                maps[peer] = resp.parse(osd_pb2.ScrubMap)
        finally:
            self.scrubbing = ""
        if self.interval != interval:
            raise Retry(f"pg {self.coll} changed interval during the scrub; scrub again")
        findings = scrub.compare(maps, self.osd.osd_id, deep)
        if deep or not findings:
            self.inconsistent = {f.oid: f for f in findings}
        else:  # a light scrub cannot clear what a deep scrub found
            self.inconsistent.update({f.oid: f for f in findings})
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
            async with self._object_lock(finding.oid):
                state, data = await self._fetch_copy(finding.oid, finding.good)
                for osd in finding.bad:
                    if osd == self.osd.osd_id:
                        await self.apply_object_state(state, memoryview(data), [])
                    else:
                        await self.osd.call_osd(osd, mpb.OSD_PG_PUSH, state, data, timeout=60)
            repaired.append(finding.as_dict())
        if repaired:
            await self.scrub(deep=True)
        return repaired

    async def _fetch_copy(self, oid: str, holders: list[int]) -> tuple[osd_pb2.ObjectState, bytes]:
        if self.osd.osd_id in holders:
            return self.object_state(oid)
        resp = await self.osd.call_osd(holders[0], mpb.OSD_PG_PULL, osd_pb2.ObjectState(
            pool=self.pool_id, pg=self.ps, oid=oid), timeout=60)
        return resp.parse(osd_pb2.ObjectState), bytes(resp.data)

    async def repair_on_read(self, oid: str) -> bool:
        """Our copy failed its checksum: replace it with a replica's copy of the same version."""
        version = self.osd.store.stat(self.coll, oid).version
        async with self._object_lock(oid):
            for peer in self.replicas():
                try:
                    state, data = await self._fetch_copy(oid, [peer])
                except SdsError as e:
                    log.warning("pg %s: osd.%d has no good copy of %s: %s", self.coll, peer,
                                oid, e)
                    continue
                if state.exists and state.version == version:
                    await self.apply_object_state(state, memoryview(data), [])
                    log.warning("pg %s: repaired %s from osd.%d after a checksum error",
                                self.coll, oid, peer)
                    return True
        self.inconsistent[oid] = scrub.Inconsistency(oid, [], {self.osd.osd_id: "checksum"})
        return False

    def query(self) -> dict:
        """Why the PG is in its state, for `sds pg PGID query`."""
        pool = self.osd.osdmap.pools
        size = next((p.size for p in pool if p.id == self.pool_id), 0)
        return {"pgid": self.coll, "state": self.pg_state(size, len(self.acting)),
                "acting": self.acting, "up": self.acting, "primary": self.osd.osd_id,
                "reason": self.reason, "interval_epoch": self.interval_epoch,
                "last_update": self.log.head, "log_tail": self.log.tail,
                "log_entries": len(self.log.entries),
                "last_scrub": self.last_scrub, "last_deep_scrub": self.last_deep_scrub,
                "inconsistent": [f.as_dict() for f in self.inconsistent.values()]}

