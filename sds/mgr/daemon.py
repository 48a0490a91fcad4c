"""The manager daemon: gathers OSD statistics into one digest for the monitors.

OSDs send their PG states and usage every few seconds; the manager keeps the latest
report of each OSD, derives cluster-wide PG state counts, per-pool and per-OSD usage
and I/O rates, computes the PG, OSD, pool, scrub and fullness health checks
(sds.health.checks), and hands the digest with its checks to every monitor
(`mgr report`), where `sds status`, `sds df` and `sds health` read it.

Like Ceph's mgr balancer module it also runs `osd balance` every BALANCE_INTERVAL_S
while all PGs are active+clean, so PG counts per OSD stay within a few percent of
each OSD's weight share (the monitors compute the plan; see sds.crush.balancer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from sds.client.monclient import MonClient
from sds.common.config import Config
from sds.common.daemon import Daemon
from sds.common.errors import PermissionDenied, SdsError
from sds.common.keyring import Keyring
from sds.common.messenger import Connection, Messenger
from sds.crush.placement import pg_name
from sds.health import checks as health_checks
from sds.proto import messenger_pb2 as mpb
from sds.proto import mon_pb2

log = logging.getLogger("sds.mgr")

REPORT_INTERVAL_S = 2.0
STALE_AFTER_S = 30.0
BALANCE_INTERVAL_S = 10.0  # 0 disables automatic balancing
BALANCE_TIMEOUT_S = 20.0


def ready_to_balance(osdmap, digest: dict | None) -> bool:
    """True when the balancer may move PGs: a pool exists and every PG is active+clean
    (or no PG has been reported yet, e.g. right after pool creation)."""
    expected = {pg_name(p.id, pg) for p in osdmap.pools for pg in range(p.pg_num)}
    if not expected:
        return False
    reported = (digest or {}).get("pgs") or []
    if not reported:
        return True
    states = {p.get("pgid"): p.get("state") for p in reported}
    return all(states.get(pgid) == "active+clean" for pgid in expected)


def build_digest(reports: dict[int, tuple[float, mon_pb2.OsdStats]], previous: dict | None,
                 now: float, down: frozenset[int] = frozenset()) -> dict:
    """Cluster digest from the latest report of each OSD (read by the checks, the mons).

    A PG whose primary stopped reporting (or is marked down) keeps its last known state
    prefixed with "stale", like Ceph, until a live primary reports it."""
    pgs: dict[str, dict] = {}
    osds, pools = {}, {}
    totals = {"reads": 0, "writes": 0, "bytes_in": 0, "bytes_out": 0, "recovered": 0}
    for osd_id, (stamp, st) in sorted(reports.items()):
        if now - stamp > STALE_AFTER_S or osd_id in down:
            for pg in st.pgs:
                pgid = pg_name(pg.pool, pg.pg)
                if pgid not in pgs or pgs[pgid]["state"].startswith("stale"):
                    pgs[pgid] = _pg_row(osd_id, pg, stamp)
                    pgs[pgid]["state"] = "stale+" + pg.state.removeprefix("stale+")
            continue
        osds[str(osd_id)] = {"total_bytes": st.total_bytes, "used_bytes": st.used_bytes,
                             "avail_bytes": st.avail_bytes, "fs_id": st.fs_id,
                             "store_bytes": st.store_bytes,
                             "objects": st.num_objects, "num_pgs": len(st.pgs)}
        for key, value in (("reads", st.read_ops), ("writes", st.write_ops),
                           ("recovered", st.recovered_objects),
                           ("bytes_in", st.op_bytes_in), ("bytes_out", st.op_bytes_out)):
            totals[key] += value
        for pg in st.pgs:
            pgs[pg_name(pg.pool, pg.pg)] = _pg_row(osd_id, pg, stamp)
            usage = pools.setdefault(str(pg.pool), {"objects": 0, "bytes": 0})
            usage["objects"] += pg.num_objects
            usage["bytes"] += pg.num_bytes
    io = {"read_bytes_sec": 0.0, "write_bytes_sec": 0.0, "read_ops_sec": 0.0,
          "write_ops_sec": 0.0, "recovered_objects_sec": 0.0}
    if previous and now > previous["stamp"]:
        dt = now - previous["stamp"]
        prev = previous.get("totals", totals)

        def rate(key: str) -> float:
            return max(0, totals[key] - prev.get(key, 0)) / dt
        io = {"read_bytes_sec": rate("bytes_out"), "write_bytes_sec": rate("bytes_in"),
              "read_ops_sec": rate("reads"), "write_ops_sec": rate("writes"),
              "recovered_objects_sec": rate("recovered")}
    auth_failures = {f"osd.{osd_id}": dict(st.auth_failures)
                     for osd_id, (stamp, st) in sorted(reports.items())
                     if st.auth_failures and now - stamp <= STALE_AFTER_S}
    return {"stamp": now, "pgs": [pgs[k] for k in sorted(pgs)], "osds": osds, "pools": pools,
            "io": io, "totals": totals, "auth_failures": auth_failures}


def _pg_row(osd_id: int, pg: mon_pb2.PgStat, stamp: float) -> dict:
    return {"pgid": pg_name(pg.pool, pg.pg), "state": pg.state,
            "objects": pg.num_objects, "bytes": pg.num_bytes,
            "up": list(pg.acting), "acting": list(pg.acting),
            "primary": osd_id, "reason": pg.reason,
            "inconsistent": list(pg.inconsistent),
            "last_scrub": pg.last_scrub, "last_deep_scrub": pg.last_deep_scrub,
            "recovery_total": pg.recovery_total, "recovery_done": pg.recovery_done,
            "stamp": stamp}


class MgrDaemon(Daemon):
    role = "mgr"

    def __init__(self, config: Config, daemon_id: str):
        super().__init__(config, daemon_id)
        self.entity = f"mgr.{daemon_id}"
        self.keyring = Keyring.load(config.resolve_path(config.get("keyring")))
        self.reports: dict[int, tuple[float, mon_pb2.OsdStats]] = {}
        self.digest: dict | None = None
        self._pg_since: dict[str, tuple[str, float]] = {}
        self.messenger: Messenger | None = None
        self.monc: MonClient | None = None
        self._first_seen = asyncio.Event()  # an OSD reported for the first time

    async def start(self) -> None:
        self.messenger = Messenger(self.entity, self.keyring.key_of(self.entity),
                                   config=self.config)
        self.monc = MonClient(self.config, self.messenger)
        self.monc.serve_tickets("mgr")
        self.messenger.register(mpb.MON_STATS, self._on_stats)
        addr = self.config.get("mgr_addr") or self.config.get("addr")
        self.addr = await self.messenger.listen(addr)
        await self.monc.connect(timeout=60)
        self.spawn(self._report_loop(), forever=True)
        if BALANCE_INTERVAL_S > 0:
            self.spawn(self._balance_loop(), forever=True)

    async def stop(self) -> None:
        await self.stop_tasks()
        if self.monc is not None:
            await self.monc.close()
        if self.messenger is not None:
            await self.messenger.close()

    async def _on_stats(self, conn: Connection, env: mpb.Envelope, data: memoryview) -> None:
        conn.peer.require("mgr", power="osd")
        st = mon_pb2.OsdStats()
        st.ParseFromString(env.payload)
        if conn.peer.entity != f"osd.{st.osd}":
            raise PermissionDenied(f"{conn.peer.entity} may report statistics only as itself")
        if st.osd not in self.reports:
            self._first_seen.set()
        self.reports[st.osd] = (time.time(), st)

    def _stamp_state_changes(self, digest: dict) -> None:
        """Remember since when each PG has been in its state (for `pg dump_stuck`)."""
        seen = {}
        for pg in digest["pgs"]:
            state, since = self._pg_since.get(pg["pgid"], (None, digest["stamp"]))
            if state != pg["state"]:
                since = digest["stamp"]
            seen[pg["pgid"]] = (pg["state"], since)
            pg["state_since"] = since
        self._pg_since = seen

    async def _report_loop(self) -> None:
        """A digest every interval, and at once when an OSD reports for the first time: a
        fresh cluster's first `df` need not wait a whole interval for its statistics."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._first_seen.wait(), REPORT_INTERVAL_S)
            self._first_seen.clear()
            down = frozenset(o.id for o in self.monc.osdmap.osds if not o.up)
            self.digest = build_digest(self.reports, self.digest, time.time(), down)
            mine = self.messenger.auth_failures()
            if mine:  # the mgr's own port, next to its OSDs' (health AUTH_FAILURES)
                self.digest["auth_failures"][self.entity] = mine
            self._stamp_state_changes(self.digest)
            osdmap = self.monc.osdmap
            view = health_checks.MgrView(osdmap, self.digest, self.config)
            checks = health_checks.cluster_checks(view, lambda _osdmap: self.monc.placement)
            self.digest["health"] = [c.to_wire() for c in checks]
            self.digest["health_epoch"] = osdmap.epoch  # the map the checks judged by
            for addr in self.config.mon_addrs:
                with contextlib.suppress(SdsError):
                    conn = await self.messenger.connect(addr, timeout=1.0)
                    await conn.call(mpb.MON_COMMAND, mon_pb2.MonCommand(
                        cmd_json=json.dumps({"prefix": "mgr report", "digest": self.digest})),
                        timeout=2.0)

    async def _balance_loop(self) -> None:
        last_epoch = None
        while True:
            await asyncio.sleep(BALANCE_INTERVAL_S)
            osdmap = self.monc.osdmap
            # cheap when balanced: a map epoch already found balanced is not asked again
            if osdmap.epoch == last_epoch or not ready_to_balance(osdmap, self.digest):
                continue
            try:
                out = await self.monc.command({"prefix": "osd balance"},
                                              timeout=BALANCE_TIMEOUT_S)
            except SdsError as e:
                log.warning("balancer: osd balance failed: %s", e)
                continue
            if out.get("changes"):
                log.info("balancer: %d PG upmap changes (%s), max deviation %.3f -> %.3f, "
                         "epoch %s", out["changes"], ", ".join(out.get("pgs", [])[:20]),
                         out.get("max_deviation_before", 0), out.get("max_deviation_after", 0),
                         out.get("osdmap_epoch"))
                last_epoch = None
            else:
                last_epoch = osdmap.epoch


def create(config: Config, daemon_id: str) -> MgrDaemon:
    return MgrDaemon(config, daemon_id)
