"""The MDS daemon: beacons to the monitors, and serves the namespace while active.

Every `mds_beacon_interval` it sends `mds beacon`; the reply says whether it is the
active MDS of a filesystem (and at which generation) or a standby. On promotion it
replays the filesystem's journal and starts serving; when told it is a standby again,
or when no beacon was acknowledged for most of `mds_beacon_grace` (the monitors may
have replaced it by then), it stops serving at once: requests get EHOSTDOWN and the
clients look for the new active MDS. The monitors only promote a standby after a full
grace period of silence, so two MDSs never serve one filesystem at the same time
(barring a beacon reply delayed by more than the margin).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

from sds.client.rados import Rados
from sds.common.config import Config
from sds.common.daemon import Daemon
from sds.common.errors import (
    Blocklisted,
    ConnectionLost,
    InvalidArgument,
    SdsError,
    Unavailable,
)
from sds.common.fencing import FENCE_PENDING, active_instance
from sds.common.keyring import Keyring
from sds.common.messenger import Connection
from sds.common.osdmap import is_blocklisted, pool_by_id
from sds.common.ratelimit import WARN_AT
from sds.mds import authz, layout
from sds.mds.caps import Caps
from sds.mds.journal import Journal
from sds.mds.namespace import Namespace
from sds.mds.store import MetaStore
from sds.proto import mds_pb2
from sds.proto import messenger_pb2 as mpb

log = logging.getLogger("sds.mds")

Req = mds_pb2.MdsRequest
LEASE_FRACTION = 0.6   # serve only while the last acknowledged beacon is this fresh
STATFS_CACHE_S = 2.0
STATS_WAIT_S = 10.0  # a statfs waits this long for the cluster's first statistics
STATS_POLL_S = 0.25
LEASE_MS = 1000
LEASE_MARGIN_S = 0.5


def auth_health(failures: dict[str, int]) -> list[dict]:
    """Beacon health entries for repeated failed authentications at this MDS. Counts are
    rounded down to a power of ten so the MDSMap changes only when the picture does."""
    out = []
    for addr, n in sorted(failures.items()):
        if n >= WARN_AT:
            floor = 10 ** (len(str(n)) - 1)
            out.append({"code": "MDS_AUTH_FAILURES",
                        "message": f"at least {floor} failed authentications from {addr}"})
    if len(out) > 2:  # beacon health is small (MAX_HEALTH entries in all)
        out[2:] = [{"code": "MDS_AUTH_FAILURES", "message": f"and {len(out) - 2} more addresses"}]
    return out


class MdsDaemon(Daemon):
    role = "mds"

    def __init__(self, config: Config, daemon_id: str):
        super().__init__(config, daemon_id)
        self.interval = float(config.get("mds_beacon_interval"))
        self.grace = float(config.get("mds_beacon_grace"))
        self.rados: Rados | None = None
        self.ns: Namespace | None = None
        self.fs: dict = {}
        self.generation = 0
        self.last_ack = 0.0
        self.sessions: dict[int, tuple[str, Connection]] = {}
        self._session_ids = itertools.count(1)
        self._statfs: tuple[float, mds_pb2.StatFs] | None = None

    async def start(self) -> None:
        keyring = Keyring.load(self.config.resolve_path(self.config.get("keyring")))
        entity = f"mds.{self.daemon_id}"
        self.rados = Rados(config=self.config, entity=entity, key=keyring.key_of(entity))
        self._instance_base = self.rados.client_id
        # the MDS accepts clients: they show mds tickets, verified with our service's secrets
        self.rados.monc.serve_tickets("mds")
        self.rados.messenger.register(mpb.MDS_REQUEST, self._on_request)
        self.addr = await self.rados.messenger.listen(self.config.get("addr"))
        await self.rados.connect(timeout=60)
        self.spawn(self._beacon_loop(), forever=True)
        log.info("mds.%s listening on %s", self.daemon_id, self.addr)

    async def stop(self) -> None:
        """Stop serving first, then tell the monitors, so a standby takes over at once."""
        await self.stop_tasks()
        ns, self.ns = self.ns, None
        self.sessions.clear()
        if ns is not None:
            await ns.stop()
        if self.rados is not None:
            if self.last_ack:
                with contextlib.suppress(SdsError, asyncio.TimeoutError):
                    await asyncio.wait_for(self.rados.mon_command(
                        {"prefix": "mds fail", "name": self.daemon_id}, timeout=2.0), 3.0)
            await self.rados.close()

    # -- role ---------------------------------------------------------------------------------
    async def _beacon_loop(self) -> None:
        cmd = {"prefix": "mds beacon", "name": self.daemon_id, "addr": self.addr}
        while True:
            cmd["instance"] = self._instance_base
            cmd["health"] = auth_health(self.rados.messenger.auth_failures()) + \
                (self.ns.health() if self.ns is not None else [])
            sent = time.monotonic()
            try:
                out = await self.rados.mon_command(cmd, timeout=max(self.interval * 2, 2.0))
            except SdsError as e:
                log.debug("beacon not acknowledged: %s", e)
                out = None
            if out is not None:
                self.last_ack = sent
                await self._follow(out)
            elif self.ns is not None and time.monotonic() - self.last_ack > \
                    self.grace * LEASE_FRACTION:
                self._demote("no beacon acknowledged recently: the monitors may have replaced it")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - sent)))

    async def _follow(self, out: dict) -> None:
        if out.get("role") != "active":
            self._demote("the monitors say this MDS is a standby")
            return
        generation = int(out.get("generation", 0))
        if self.ns is not None and generation == self.generation and out.get("fs") == \
                self.fs.get("fs"):
            self.ns.max_file_size = int(out.get("max_file_size", 0)) or self.ns.max_file_size
            return
        self._demote(f"generation changed to {generation}")
        try:
            await self._activate(out)
        except Exception as e:  # retried at the next beacon; the loop must live on
            log.error("could not take over filesystem %s: %s: %s", out.get("fs"),
                      type(e).__name__, e)
            self.ns = None

    def _demote(self, why: str) -> None:
        if self.ns is not None:
            log.warning("mds.%s stops serving %s: %s", self.daemon_id, self.fs.get("fs"), why)
            self.spawn(self.ns.stop())
        self.ns = None
        self.sessions.clear()

    def _on_journal_failure(self, ns: Namespace) -> None:
        """The journal could not be written or applied: drop the in-memory state; the next
        beacon (if still active) replays the journal from RADOS again."""
        if self.ns is ns:
            self._demote("the journal pipeline failed")

    async def _activate(self, out: dict) -> None:
        """Become the active MDS: replay the journal, then serve."""
        t0 = time.monotonic()
        rados = self.rados
        # a fresh client instance per activation: when the mons replace this MDS they
        # blocklist the instance it served with, never the one of a later activation
        rados.client_id = active_instance(self._instance_base, int(out.get("generation", 0)))
        barrier = int(out.get("osd_epoch_barrier", 0))
        if barrier >= FENCE_PENDING:  # the mons do not know the fencing epoch yet
            raise Unavailable("the OSD map epoch fencing the previous MDS is not known yet")
        await rados.wait_for_epoch(barrier)  # old MDS fenced
        if not any(p.id == out["metadata_pool"] for p in rados.osdmap.pools):
            await rados.wait_for_map_change(5.0)
        meta = rados.ioctx(pool_by_id(rados.osdmap, out["metadata_pool"]).name)
        data = rados.ioctx(pool_by_id(rados.osdmap, out["data_pool"]).name)
        store = MetaStore(meta, data, int(self.config.get("mds_cache_size")))
        store.inject_failure = self.config.get("mds_inject_apply_failure")
        caps = Caps(self._send, float(self.config.get("mds_revoke_timeout")))
        journal = Journal(meta, attempts=int(self.config.get("mds_apply_attempts")))
        journal.inject_delay = float(self.config.get("mds_inject_journal_delay"))
        # dentry leases outlive the client's cache by a margin: it starts caching later
        ns = Namespace(store, journal, self._cluster_statfs, caps, self._fence,
                       lease_s=LEASE_MS / 1000 + LEASE_MARGIN_S)
        ns.max_file_size = int(out.get("max_file_size", 0)) or ns.max_file_size
        failed = await ns.start()
        failed.add_done_callback(lambda _f: self._on_journal_failure(ns))
        self.fs, self.generation = dict(out), int(out.get("generation", 0))
        self.ns = ns
        log.warning("mds.%s active for %s (generation %d): replayed %d journal events in "
                    "%.3fs", self.daemon_id, out.get("fs"), self.generation, ns.replayed,
                    time.monotonic() - t0)
        self.spawn(self._purge_strays_later(ns))

    async def _purge_strays_later(self, ns: Namespace) -> None:
        """After a takeover clients re-announce open files; unlinked files nobody re-opened
        within a grace period are purged."""
        await asyncio.sleep(self.grace)
        if self.ns is ns:
            with contextlib.suppress(SdsError):
                purged = await ns.purge_strays()
                if purged:
                    log.info("purged %d stray inodes", purged)

    # -- requests -----------------------------------------------------------------------------
    async def _on_request(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        req = Req()
        req.ParseFromString(env.payload)
        conn.peer.require("mds", authz.need(req))
        if not conn.instance:
            raise InvalidArgument("MDS requests need a client instance, named when the "
                                  "connection is set up")
        req.client_name = conn.instance  # the session's identity, never the request's say
        ns = self.ns
        if ns is not None and time.monotonic() - self.last_ack > self.grace * LEASE_FRACTION:
            self._demote("no beacon acknowledged recently: the monitors may have replaced it")
            ns = None
        if ns is None:
            raise Unavailable(f"mds.{self.daemon_id} is not the active MDS")
        if req.op == Req.SESSION_OPEN:
            return self._open_session(conn, req)
        if req.op == Req.SESSION_CLOSE:
            self.sessions.pop(req.session_id, None)
            return mds_pb2.MdsReply(session_id=req.session_id)
        reply = await ns.handle(req)
        if self.ns is not ns:
            raise Unavailable(f"mds.{self.daemon_id} was replaced while serving the request")
        reply.osd_epoch_barrier = ns.osd_epoch_barrier
        reply.max_file_size = ns.max_file_size
        reply.durable_seq = ns.journal.durable_seq
        return reply

    def _open_session(self, conn: Connection, req: Req) -> mds_pb2.MdsReply:
        name = conn.instance
        if is_blocklisted(self.rados.osdmap, name, time.time()):
            raise Blocklisted(f"client {name} was evicted: mount again")
        session_id = (self.generation << 32) | next(self._session_ids)
        earlier = [sid for sid, (n, _conn) in self.sessions.items() if n == name]
        self.sessions[session_id] = (name, conn)
        for old in earlier:  # the same client reconnected (its connection broke)
            del self.sessions[old]
            self.ns.retire_session(old, session_id)
            log.info("client %s reconnected: session %d replaces %d", name, session_id, old)
        return mds_pb2.MdsReply(session_id=session_id, data_pool=self.fs["data_pool"],
                                stripe_size=layout.STRIPE, lease_ms=LEASE_MS,
                                max_file_size=self.ns.max_file_size)

    async def _fence(self, session_id: int) -> int:
        """Blocklist the session's client instance on the OSDs; the map epoch that does it."""
        name = self.sessions.get(session_id, ("", None))[0]
        if not name:
            return 0
        out = await self.rados.mon_command({"prefix": "osd blocklist add", "addr": name})
        log.warning("evicted client %s: blocklisted on the OSDs from epoch %s", name,
                    out.get("epoch"))
        return int(out.get("epoch", 0))

    async def _send(self, session_id: int, msg: mds_pb2.MdsClientMessage) -> None:
        """One-way message to a client session (revokes, eviction)."""
        found = self.sessions.get(session_id)
        if found is None or found[1].closed:
            raise ConnectionLost(f"session {session_id} has no connection")
        await found[1].send(mpb.MDS_CLIENT, msg)

    async def _cluster_statfs(self) -> mds_pb2.StatFs:
        """Capacity of the data pool from the monitors' `df`, cached for a moment. On a
        fresh cluster the mons have no statistics for the first seconds (they come from
        the mgr): wait for them rather than report a size of 0."""
        now = time.monotonic()
        if self._statfs is not None and now - self._statfs[0] < STATFS_CACHE_S:
            return self._statfs[1]
        deadline = now + STATS_WAIT_S
        while True:
            out = await self.rados.mon_command({"prefix": "df"})
            stats = out.get("stats", {})
            if (stats.get("stats_available", True) and int(stats.get("total_bytes", 0))) \
                    or time.monotonic() >= deadline:
                break
            await asyncio.sleep(STATS_POLL_S)
        stats = out.get("stats", {})
        pool = next((p["stats"] for p in out.get("pools", [])
                     if p.get("id") == self.fs.get("data_pool")), {})
        free = int(pool.get("max_avail", 0)) or int(stats.get("total_avail_bytes", 0))
        total = free + int(pool.get("stored", 0)) if pool else int(stats.get("total_bytes", 0))
        files = 1 << 32
        statfs = mds_pb2.StatFs(total_bytes=total, free_bytes=free, total_files=files,
                                free_files=max(0, files - int(stats.get("total_objects", 0))),
                                block_size=4096, name_max=layout.NAME_MAX)
        if total:  # never remember "no statistics yet"
            self._statfs = (time.monotonic(), statfs)
        return statfs


def create(config: Config, daemon_id: str) -> MdsDaemon:
    return MdsDaemon(config, daemon_id)
