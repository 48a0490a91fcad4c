"""The OSD daemon: serves client ops for the PGs it is primary of, replicates, peers.

Boot: open the store, listen, subscribe to the monitors (OSDMap and the auth database
used to verify peers), announce itself with `osd boot`, and follow every new map:
PGs whose acting set or membership changed start a new interval and peer again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from sds.client.monclient import MonClient
from sds.common.config import Config
from sds.common.daemon import Daemon
from sds.common.errors import (
    ChecksumError,
    ConnectionLost,
    CorruptMetadata,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Retry,
    SdsError,
)
from sds.common.fullness import Ratios, ratios_of
from sds.common.keyring import Keyring
from sds.common.limits import Limits
from sds.common.messenger import Connection, Messenger, Response
from sds.common.osdmap import find_osd, is_blocklisted, pool_by_id
from sds.crush.placement import parse_pg_name
from sds.osd import fullness, objcopy, ops, scrub
from sds.osd import peering_wire as wire
from sds.osd.inject import CommitFaults
from sds.osd.pg import PG, map_view
from sds.osd.pg_commands import COMMANDS as PG_COMMANDS
from sds.osd.store.base import Transaction
from sds.osd.store.durable import REBUILD_HINT, DurableStore
from sds.proto import maps_pb2, mon_pb2, osd_pb2
from sds.proto import messenger_pb2 as mpb

log = logging.getLogger("sds.osd")

MAP_CATCH_UP_S = 5.0
SUPERBLOCK = "superblock"  # collection of the OSD's own state: the last map it saw
MAP_KEY = b"osdmap"
PEERING_TICK_S = 0.25     # the peering core resends what went unanswered for 8 ticks
READER_THREADS = 4
USAGE_RECOUNT_S = 15.0


class OsdDaemon(Daemon):
    role = "osd"

    def __init__(self, config: Config, daemon_id: str):
        super().__init__(config, daemon_id)
        self.osd_id = int(daemon_id)
        self.entity = f"osd.{self.osd_id}"
        self.data_dir = config.resolve_path(config.get("data_dir") or self.entity)
        self.keyring = Keyring.load(config.resolve_path(config.get("keyring")))
        self.op_timeout = float(config.get("osd_op_timeout"))
        self.store: DurableStore | None = None
        self.messenger: Messenger | None = None
        self.monc: MonClient | None = None
        self.pgs: dict[tuple[int, int], PG] = {}
        self.purging: dict[tuple[int, int], asyncio.Future] = {}  # stray PGs being deleted
        self.perf = {"ops": 0, "writes": 0, "reads": 0, "bytes_in": 0, "bytes_out": 0,
                     "recovered_objects": 0}
        self.recovery_max_active = int(config.get("osd_recovery_max_active"))
        self.recovery_slots = asyncio.Semaphore(self.recovery_max_active)
        self.recovery_sleep = float(config.get("osd_recovery_sleep"))
        self.pg_log_max = int(config.get("osd_pg_log_max_entries"))
        self.limits = Limits.from_config(config)
        self.max_read = int(config.get("osd_max_read_size"))
        self.uuid = ""
        self._usage_cache: dict[str, tuple[int, int, int, float]] = {}
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="osd-read")
        self.device = fullness.DeviceWatch(self.data_dir, int(config.get("osd_full_reserve_bytes")))
        self._faults = CommitFaults(config.get("osd_inject_commit_failure"), self.data_dir)
        self.stopping = False  # set by stop(): from then on a map marking us down stands
        self.failed = ""  # why the OSD stops after a failed commit (then it commits nothing)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.device.keep_reserve(self.ratios())
        self.uuid = self._identity()
        self.store = DurableStore(self.data_dir / "store")
        self.messenger = Messenger(self.entity, self.keyring.key_of(self.entity),
                                   epoch=lambda: self.osdmap.epoch, config=self.config)
        self.monc = MonClient(self.config, self.messenger, on_osdmap=self._on_osdmap)
        self.monc.serve_tickets("osd")  # peers show osd tickets: we hold no entity keys
        for msg_type, handler in ((mpb.OSD_OP, self._on_op), (mpb.OSD_REPOP, self._on_repop),
                                  (mpb.OSD_PEERING, self._on_peering),
                                  (mpb.OSD_PG_PUSH, self._on_pg_push),
                                  (mpb.OSD_PG_PULL, self._on_pg_pull),
                                  (mpb.OSD_PG_SCRUB, self._on_pg_scrub),
                                  (mpb.OSD_PG_COMMAND, self._on_pg_command),
                                  (mpb.PING, self._on_ping)):
            self.messenger.register(msg_type, handler)
        self.addr = await self.messenger.listen(self.config.get("addr"))
        await self._resume()
        await self.monc.connect(timeout=60)
        await self._boot()
        for loop in (self._keep_mon_session(), self._report_stats(), self._heartbeat_loop(),
                     self._scrub_scheduler(), self._peering_ticker()):
            self.spawn(loop, forever=True)
        log.info("osd.%d up at %s, epoch %d", self.osd_id, self.addr, self.osdmap.epoch)

    def fatal(self, reason: str) -> None:
        """The in-memory state of a PG ran ahead of a store commit that failed: nothing
        more is committed, and the OSD stops; restarted, it peers again from what its
        store holds (sds.osd.peering drops a log hole such a failure can leave)."""
        if self.failed:
            return
        self.failed = reason
        log.critical("FATAL: %s; stopping osd.%d: restart it to peer again from its "
                     "committed state", reason, self.osd_id)
        self.fail(SdsError(f"stopped after a failed store commit: {reason}"))

    async def commit(self, txn: Transaction, step: str) -> None:
        """Commit a transaction of the PG pipeline (`step` as sds.osd.inject names it)."""
        if self.failed:  # not tried here: the client resends it to the next primary
            raise Retry(f"osd.{self.osd_id} is stopping after a failed store commit")
        self._faults.check(step)
        await self.store.apply(txn)

    async def stop(self) -> None:
        """Tell the monitors we are going away, so clients stop waiting for us (and do not
        boot again when the map that says so arrives)."""
        self.stopping = True
        if self.monc is not None and self.osdmap.epoch:
            with contextlib.suppress(SdsError, asyncio.TimeoutError):
                await asyncio.wait_for(self.monc.command(
                    {"prefix": "osd down", "ids": [self.osd_id]}, timeout=2.0), 3.0)
        await self.stop_tasks()
        if self.monc is not None:
            await self.monc.close()
        if self.messenger is not None:
            await self.messenger.close()
        self._readers.shutdown(wait=True)
        if self.store is not None:
            await self.store.close()

    async def _resume(self) -> None:
        """Start from the last map we saw, with a PG for every collection we hold: the
        subscription then brings every epoch since, so each PG learns the intervals it
        missed while we were down (a write acked by others meanwhile is never ignored)."""
        store = self.store
        if not store.collection_exists(SUPERBLOCK):
            await store.apply(Transaction().create_collection(SUPERBLOCK))
        try:
            raw = store.get_meta(SUPERBLOCK, MAP_KEY)
            if raw:
                osdmap = maps_pb2.OsdMap()
                osdmap.ParseFromString(raw)
                self.monc.resume_from(osdmap)
            for coll in store.list_collections():
                with contextlib.suppress(ValueError):
                    key = parse_pg_name(coll)
                    self.pgs[key] = PG(self, *key)
        except ChecksumError as e:  # peering state we cannot trust: never serve from it
            raise CorruptMetadata(f"{store.path}/db/data.mdb: {e}: "
                                  f"{REBUILD_HINT.format(dir=store.path)}") from e

    def _persist_map(self, osdmap: maps_pb2.OsdMap) -> None:
        txn = Transaction().set_meta(SUPERBLOCK, MAP_KEY, osdmap.SerializeToString())
        self.spawn(self._persist(txn))

    async def _persist(self, txn: Transaction) -> None:
        """Best effort: a map not saved is fetched again from the monitors at restart."""
        with contextlib.suppress(SdsError, OSError):
            await self.store.apply(txn)

    def _identity(self) -> str:
        path = self.data_dir / "uuid"
        if not path.exists():
            path.write_text(str(uuid.uuid4()))
        return path.read_text().strip()

    async def _boot(self) -> None:
        host = self.config.get("osd_host") or socket.gethostname()
        cmd = {"prefix": "osd boot", "id": self.osd_id, "addr": self.addr, "host": host,
               "weight": float(self.config.get("osd_weight")), "uuid": self.uuid}
        deadline = time.monotonic() + 60
        while not self.stopping:
            await self.monc.command(cmd, timeout=30)
            me = find_osd(self.osdmap, self.osd_id)
            if me is not None and me.up and me.addr == self.addr:
                return
            if time.monotonic() > deadline:
                raise SdsError("the monitors did not mark this OSD up")
            await self.monc.wait_for_map_change(1.0)

    async def _keep_mon_session(self) -> None:
        while True:
            with contextlib.suppress(SdsError):
                await self.monc.session(10.0)
                me = find_osd(self.osdmap, self.osd_id)
                if self.stopping:
                    return
                if me is not None and (not me.up or me.addr != self.addr):
                    log.warning("marked down in epoch %d while alive; booting again",
                                self.osdmap.epoch)
                    await self._boot()
            await asyncio.sleep(1.0)

    @property
    def osdmap(self) -> maps_pb2.OsdMap:
        return self.monc.osdmap if self.monc is not None else maps_pb2.OsdMap()

    def _pool_name(self, pool_id: int) -> str:
        """The name pool caps are written with ("" for a pool this map does not have)."""
        pool = next((p for p in self.osdmap.pools if p.id == pool_id), None)
        return pool.name if pool is not None else ""

    # -- maps and PGs ---------------------------------------------------------------------------
    def _on_osdmap(self, osdmap: maps_pb2.OsdMap) -> None:
        placement = self.monc.placement
        up_from = {o.id: o.up_from for o in osdmap.osds}
        up = frozenset(o.id for o in osdmap.osds if o.up)
        mine = set(placement.pgs_of_osd(self.osd_id))
        for pool in osdmap.pools:
            for ps in range(pool.pg_num):
                key = (pool.id, ps)
                if key in self.purging or (key not in mine and key not in self.pgs):
                    continue
                pg = self.pgs.get(key)
                if pg is None:
                    pg = self.pgs[key] = PG(self, pool.id, ps)
                pg.on_map(map_view(osdmap.epoch, placement.pg_up(pool.id, ps), up, up_from,
                                   pool.size, pool.min_size))
        live = {p.id for p in osdmap.pools}
        for key in [k for k in self.pgs if k[0] not in live]:
            self.pgs.pop(key).on_map(map_view(osdmap.epoch, [], up, {}, 0, 0))
        self._persist_map(osdmap)

    async def purge_stray(self, pg) -> None:
        """Take a stray PG out of the table while its copy is removed: until then no map
        or message reaches it (_replica_pg waits), then the current map may make us a
        member again."""
        key = (pg.pool_id, pg.ps)
        if self.pgs.get(key) is not pg or key in self.purging:
            return
        done = self.purging[key] = asyncio.get_running_loop().create_future()
        del self.pgs[key]
        try:
            await pg.remove_copy()
        finally:
            del self.purging[key]
            done.set_result(None)
            self.refresh_pgs()

    def refresh_pgs(self) -> None:
        """Give PGs created since the last map (or dropped and needed again) that map."""
        if self.osdmap.epoch:
            self._on_osdmap(self.osdmap)

    async def _peering_ticker(self) -> None:
        while True:
            await asyncio.sleep(PEERING_TICK_S)
            for pg in list(self.pgs.values()):
                pg.tick()

    async def call_osd(self, osd_id: int, msg_type: int, payload, data=None,
                       timeout: float = 10.0) -> Response:
        info = find_osd(self.osdmap, osd_id)
        if info is None or not info.up:
            raise ConnectionLost(f"osd.{osd_id} is not up")
        conn = await self.messenger.connect(info.addr, timeout=min(timeout, 3.0))
        return await conn.call(msg_type, payload, data, epoch=self.osdmap.epoch, timeout=timeout)

    async def send_osd(self, osd_id: int, msg_type: int, payload) -> None:
        """One-way message to another OSD; lost if it is unreachable (senders retry)."""
        info = find_osd(self.osdmap, osd_id)
        if info is None or not info.up:
            return
        try:
            conn = await self.messenger.connect(info.addr, timeout=3.0)
            await conn.send(msg_type, payload, epoch=self.osdmap.epoch)
        except SdsError as e:
            log.debug("message to osd.%d lost: %s", osd_id, e)

    def perf_add(self, **counts: int) -> None:
        for key, value in counts.items():
            self.perf[key] += value

    async def _pg_for(self, pool_id: int, ps: int, client_epoch: int) -> PG:
        """The PG if we are its primary under the newest map we can get, else Retry."""
        if client_epoch > self.osdmap.epoch:
            try:
                await self.monc.wait_for_epoch(client_epoch, MAP_CATCH_UP_S)
            except SdsError:
                # never act on a map older than the client's: we may no longer be primary
                raise Retry(f"osd.{self.osd_id} has map epoch {self.osdmap.epoch}, "
                            f"older than the client's {client_epoch}") from None
        pg = self.pgs.get((pool_id, ps))
        if pg is None or not pg.is_primary:
            raise Retry(f"osd.{self.osd_id} is not primary of {pool_id}.{ps:x} "
                        f"in epoch {self.osdmap.epoch}")
        return pg

    # -- handlers ---------------------------------------------------------------------------------
    async def _on_ping(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        return env.payload

    async def _on_op(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        op = osd_pb2.OsdOp()
        op.ParseFromString(env.payload)
        is_read = ops.is_read(op.code)
        conn.peer.require("osd", "r" if is_read else "w", pool=self._pool_name(op.pool))
        deadline = time.monotonic() + self.op_timeout
        self.limits.check_op(op, len(data))  # before the op reaches its PG (and its log)
        instance = conn.instance  # who sends the op is the session's, never the op's say
        if not instance:
            raise InvalidArgument("object ops need a client instance, named when the "
                                  "connection is set up")
        pg = await self._pg_for(op.pool, op.pg, env.epoch)
        await pg.admit(op, instance, deadline, full_try=conn.peer.allows_daemon("mds"))
        if is_read:
            reply, out = await pg.read(op, deadline)
            self.perf_add(reads=1, bytes_out=len(out))
            return reply, out
        return await pg.do_write(op, data, deadline, instance)

    def blocklisted(self, instance: str) -> bool:
        return is_blocklisted(self.osdmap, instance, time.time())

    def ratios(self) -> Ratios:
        return ratios_of(self.osdmap, self.config)

    def admit_write(self, op: osd_pb2.OsdOp, full_try: bool = False) -> None:
        """ENOSPC for a client write the cluster or this OSD's device has no room for;
        `full_try` for a session with the MDS daemon profile (fullness.check_write)."""
        ratios = self.ratios()
        self.device.make_room(ratios, self.store)
        fullness.check_write(op.code, self.osdmap.flags, ratios,
                             self.device.usage(fresh_above=ratios.nearfull), self.osd_id,
                             full_try)

    def admit_copy(self) -> None:
        """ENOSPC for a recovery/backfill copy into this OSD past backfillfull."""
        fullness.check_copy(self.ratios(), self.device.usage(), self.osd_id)

    async def in_reader(self, fn, *args):
        """Run a blocking store read in a reader thread (disk reads overlap, the loop serves)."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    async def _replica_pg(self, pool_id: int, ps: int, conn: Connection,
                          sender_epoch: int) -> PG:
        """The PG for OSD-to-OSD traffic, after catching up with the sender's map (so a
        stale primary's messages are judged against the interval we should be in)."""
        conn.peer.require_daemon("osd")  # replication traffic: OSDs only, by their caps
        if sender_epoch > self.osdmap.epoch:
            with contextlib.suppress(SdsError):
                await self.monc.wait_for_epoch(sender_epoch, MAP_CATCH_UP_S)
        while (pool_id, ps) in self.purging:
            await self.purging[(pool_id, ps)]
        pg = self.pgs.get((pool_id, ps))
        if pg is None:
            pg = self.pgs[(pool_id, ps)] = PG(self, pool_id, ps)
        return pg

    async def _on_repop(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        repop = osd_pb2.RepOp()
        repop.ParseFromString(env.payload)
        pg = await self._replica_pg(repop.pool, repop.pg, conn, env.epoch)
        self.device.make_room(self.ratios(), self.store)  # the primary admitted it: it must commit
        await pg.ensure_collection()
        return osd_pb2.RepOpReply(repaired=await pg.apply_repop(repop, data))

    async def _on_peering(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        pb = osd_pb2.PeeringMessage()
        pb.ParseFromString(env.payload)
        if pb.dst != self.osd_id or conn.peer.entity != f"osd.{pb.src}":
            raise PermissionDenied("peering message with a wrong sender or receiver")
        pg = await self._replica_pg(pb.pool, pb.pg, conn, env.epoch)
        pg.deliver(wire.message_from_pb(pb))

    async def _on_pg_push(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        state = osd_pb2.ObjectState()
        state.ParseFromString(env.payload)
        pg = await self._replica_pg(state.pool, state.pg, conn, env.epoch)
        await pg.install_copy(state, data)

    async def _on_pg_pull(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        state = osd_pb2.ObjectState()
        state.ParseFromString(env.payload)
        pg = await self._replica_pg(state.pool, state.pg, conn, env.epoch)
        if not self.store.collection_exists(pg.coll):
            raise NotFound(f"pg {pg.coll} is not on osd.{self.osd_id}")
        await pg.settle()
        length = min(state.length, self.max_read) if state.length else 0  # 0: whole (repair)
        return objcopy.read_copy(self.store, pg.coll, state.oid, pg.pool_id, pg.ps,
                                 state.offset, length, state.omap_after, self.max_read)

    async def _on_pg_scrub(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        req = osd_pb2.ScrubRequest()
        req.ParseFromString(env.payload)
        pg = await self._replica_pg(req.pool, req.pg, conn, env.epoch)
        return await self.in_reader(scrub.build_map, self.store, pg.coll, req.deep)

    async def _on_pg_command(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        req = osd_pb2.PgCommand()
        req.ParseFromString(env.payload)
        try:
            cmd = json.loads(req.cmd_json)
        except (ValueError, RecursionError):
            raise InvalidArgument("a PG command is a JSON object with a 'prefix'") from None
        desc = PG_COMMANDS.find(cmd)
        conn.peer.require(desc.access.service, desc.needs, pool=self._pool_name(req.pool))
        pg = await self._pg_for(req.pool, req.pg, env.epoch)
        out = await desc.fn(pg, desc.validate(cmd))
        return osd_pb2.PgCommandReply(out_json=json.dumps(out))

    async def _scrub_scheduler(self) -> None:
        """Light and deep scrubs of the PGs we are primary of, when they are due."""
        light = float(self.config.get("osd_scrub_interval"))
        deep = float(self.config.get("osd_deep_scrub_interval"))
        started = time.time()
        while True:
            await asyncio.sleep(min(light, deep, 60.0) / 4)
            for pg in list(self.pgs.values()):
                if not pg.is_primary or not pg.is_clean():
                    continue
                now = time.time()
                due_deep = now - (pg.last_deep_scrub or started) >= deep
                due_light = now - (pg.last_scrub or started) >= light
                if due_deep or due_light:
                    with contextlib.suppress(SdsError):
                        await pg.scrub(deep=due_deep)

    # -- heartbeats ----------------------------------------------------------------------------
    def heartbeat_peers(self) -> set[int]:
        """Up OSDs that share an acting set with us."""
        peers = {o for pg in self.pgs.values() if self.osd_id in pg.acting for o in pg.acting}
        up = {o.id for o in self.osdmap.osds if o.up}
        return (peers & up) - {self.osd_id}

    async def _heartbeat_loop(self) -> None:
        interval = float(self.config.get("osd_heartbeat_interval"))
        grace = float(self.config.get("osd_heartbeat_grace"))
        last_ok: dict[int, float] = {}
        while True:
            await asyncio.sleep(interval)
            peers = self.heartbeat_peers()
            now = time.monotonic()
            for peer in list(last_ok):
                if peer not in peers:
                    del last_ok[peer]
            for peer in peers:
                last_ok.setdefault(peer, now)
                self.spawn(self._ping(peer, interval, last_ok))
            for peer, seen in last_ok.items():
                if now - seen > grace:
                    self.spawn(self._report_failure(peer, now - seen))

    async def _ping(self, peer: int, timeout: float, last_ok: dict[int, float]) -> None:
        with contextlib.suppress(SdsError):
            await self.call_osd(peer, mpb.PING, b"", timeout=max(timeout, 1.0))
            if peer in last_ok:
                last_ok[peer] = time.monotonic()

    async def _report_failure(self, peer: int, silent_s: float) -> None:
        log.warning("osd.%d silent for %.1fs: reporting it to the monitors", peer, silent_s)
        with contextlib.suppress(SdsError):
            await self.monc.command({"prefix": "osd failure", "target": peer,
                                     "reporter": self.osd_id}, timeout=5.0)

    # -- statistics ---------------------------------------------------------------------------------
    def stats(self) -> mon_pb2.OsdStats:
        fs = self.store.statfs()
        dev = self.device.usage()
        st = mon_pb2.OsdStats(osd=self.osd_id, epoch=self.osdmap.epoch,
                              total_bytes=dev.total_bytes, used_bytes=dev.used_bytes,
                              avail_bytes=dev.avail_bytes, fs_id=dev.fs_id,
                              store_bytes=fs.get("used_bytes", 0),
                              num_objects=fs.get("objects", 0), ops=self.perf["ops"],
                              op_bytes_in=self.perf["bytes_in"],
                              op_bytes_out=self.perf["bytes_out"],
                              read_ops=self.perf["reads"], write_ops=self.perf["writes"],
                              recovered_objects=self.perf["recovered_objects"],
                              auth_failures=self.messenger.auth_failures())
        for (pool_id, ps), pg in sorted(self.pgs.items()):
            if not pg.is_primary:
                continue
            try:
                pool_by_id(self.osdmap, pool_id)
            except NotFound:
                continue
            objects, bytes_ = self._pg_usage(pg)
            total, done = pg.recovery_progress()
            st.pgs.add(pool=pool_id, pg=ps, state=pg.pg_state(),
                       num_objects=objects, num_bytes=bytes_, last_v=pg.head,
                       acting=pg.acting, reason=pg.reason or pg.core.why(),
                       inconsistent=sorted(pg.inconsistent), last_scrub=pg.last_scrub,
                       last_deep_scrub=pg.last_deep_scrub, recovery_total=total,
                       recovery_done=done)
        return st

    def forget_usage(self, coll: str) -> None:
        """A PG's content changed outside its log (a recovered copy): count it again."""
        self._usage_cache.pop(coll, None)

    def _pg_usage(self, pg: PG) -> tuple[int, int]:
        """(objects, bytes) of a PG: recounted when its log moved, at most every USAGE_RECOUNT_S
        (a full count under a write load would cost more than the writes)."""
        cached = self._usage_cache.get(pg.coll)
        now = time.monotonic()
        if cached is not None and (cached[0] == pg.head or now - cached[3] < USAGE_RECOUNT_S):
            return cached[1], cached[2]
        objects = bytes_ = 0
        if self.store.collection_exists(pg.coll):
            names, _ = self.store.list_objects(pg.coll, max_entries=1 << 30)
            objects = len(names)
            for name in names:
                with contextlib.suppress(SdsError):
                    bytes_ += self.store.stat(pg.coll, name).size
        self._usage_cache[pg.coll] = (pg.head, objects, bytes_, now)
        return objects, bytes_

    async def _report_stats(self) -> None:
        """Report at once after boot (a fresh cluster's first `df` need not wait an interval),
        then every interval. A device that cannot be sampled is logged once and skipped: the
        loop must outlive it, or the mgr would serve this OSD's last numbers forever."""
        interval = float(self.config.get("osd_stats_interval"))
        mgr_addr = self.config.get("mgr_addr")
        failing = False
        while True:
            with contextlib.suppress(OSError):  # the report below says why, once
                self.device.tend(self.ratios(), self.store)
            try:
                if mgr_addr:
                    conn = await self.messenger.connect(mgr_addr, timeout=2.0)
                    await conn.send(mpb.MON_STATS, self.stats())
                if failing:
                    log.info("statistics report works again")
                failing = False
            except SdsError as e:
                log.debug("stats report to mgr failed: %s", e)
            except OSError as e:
                if not failing:
                    log.warning("cannot sample the data device for statistics: %s "
                                "(retried every %gs, logged once)", e, interval)
                failing = True
            await asyncio.sleep(interval)


def create(config: Config, daemon_id: str) -> OsdDaemon:
    return OsdDaemon(config, daemon_id)
