"""The cluster's health as the manager sees it: PG, OSD, pool, scrub and fullness checks.

Pure functions of a `ClusterView` (the OSDMap, the manager's digest, the config), so
the manager computes them on every report and sends them with its digest, and the
monitors, who add only what they alone see (monitors, MDS, authentication, the mgr
itself), compute the same from a digest that came without them (a mgr of an older
version). The check type is sds.common.health.HealthCheck.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sds.common import fullness as fu
from sds.common import osdmap as om
from sds.common.config import Config
from sds.common.health import ERR, WARN, HealthCheck, plural
from sds.crush import builder
from sds.crush.placement import PlacementTable, pg_name
from sds.proto import maps_pb2

Placement = Callable[[maps_pb2.OsdMap], PlacementTable]


class ClusterView(Protocol):
    """What the checks read; the mon's MonView is one, the mgr's MgrView another."""

    osdmap: maps_pb2.OsdMap
    digest: dict | None  # the manager's digest (schema in sds.mgr.daemon.build_digest)
    config: Config


@dataclass
class MgrView:
    osdmap: maps_pb2.OsdMap
    digest: dict | None
    config: Config


def up_in(osdmap: maps_pb2.OsdMap) -> set[int]:
    return {o.id for o in osdmap.osds if o.up and om.is_in(o)}


def size_shortfall(osdmap: maps_pb2.OsdMap, pool: maps_pb2.Pool) -> tuple[int, str] | None:
    """(usable failure domains, domain type) when the pool cannot place all replicas."""
    domain = builder.failure_domain(osdmap.crush, pool.crush_rule)
    usable = builder.count_failure_domains(osdmap.crush, pool.crush_rule, up_in(osdmap))
    return (usable, domain) if usable < pool.size else None


def size_message(pool: maps_pb2.Pool, usable: int, domain: str) -> str:
    have = "has" if usable == 1 else "have"
    return (f"pool '{pool.name}' wants {pool.size} replicas but only "
            f"{plural(usable, domain)} (failure domain {domain}) {have} usable OSDs")


def size_warnings(osdmap: maps_pb2.OsdMap, pool: maps_pb2.Pool) -> list[str]:
    short = size_shortfall(osdmap, pool)
    return [size_message(pool, *short)] if short else []


def pg_states(view: ClusterView) -> dict[str, dict]:
    """Every PG of every pool with its latest reported stats; "unknown" if unreported."""
    reported = {}
    if view.digest:
        reported = {p.get("pgid"): p for p in view.digest.get("pgs", [])}
    states = {}
    for pool in view.osdmap.pools:
        for pg in range(pool.pg_num):
            pgid = pg_name(pool.id, pg)
            states[pgid] = reported.get(pgid) or {"pgid": pgid, "state": "unknown"}
    return states


def state_parts(state: str) -> set[str]:
    return set(state.split("+"))


def check_osds(view: ClusterView) -> list[HealthCheck]:
    down = [o for o in view.osdmap.osds if not o.up and om.is_in(o)]
    if not down:
        return []
    return [HealthCheck(
        "OSD_DOWN", WARN, f"{plural(len(down), 'osd')} down", len(down),
        [f"osd.{o.id} (host {o.host or '?'}) is down since epoch {o.down_at}" for o in down],
        "restart the OSD daemons; `sds osd tree` shows which are down")]


def check_pool_sizes(view: ClusterView) -> list[HealthCheck]:
    lines, severity = [], WARN
    for pool in view.osdmap.pools:
        short = size_shortfall(view.osdmap, pool)
        if short is None:
            continue
        lines.append(size_message(pool, *short))
        if short[0] < pool.min_size:
            severity = ERR
    if not lines:
        return []
    summary = lines[0] if len(lines) == 1 else f"{len(lines)} pools want more replicas than " \
        "the cluster has failure domains"
    return [HealthCheck(
        "POOL_SIZE_UNMET", severity, summary, len(lines), lines,
        "add OSDs on more hosts, lower the size (`sds pool set POOL size N`), or use "
        "failure domain osd on a single host")]


def check_pgs(view: ClusterView) -> list[HealthCheck]:
    states = pg_states(view)
    inactive, degraded, undersized = [], [], []
    for pgid, pg in sorted(states.items()):
        parts = state_parts(pg.get("state", "unknown"))
        if "active" not in parts:
            inactive.append((pgid, pg))
        if "degraded" in parts:
            degraded.append((pgid, pg))
        if "undersized" in parts:
            undersized.append((pgid, pg))
    checks = []
    if inactive:
        unknown = sum(1 for _, pg in inactive if pg.get("state") == "unknown")
        words = [f"{plural(len(inactive), 'pg')} inactive"]
        if unknown:
            words.append(f"{unknown} unknown")
        if view.digest is None:
            words.append("no statistics from the mgr yet, expected while the cluster starts")
        checks.append(HealthCheck(
            "PG_AVAILABILITY", WARN, "Reduced data availability: " + ", ".join(words),
            len(inactive), [pg_line(pgid, pg, "inactive") for pgid, pg in inactive],
            "check `sds osd tree` for down OSDs and `sds health detail` for POOL_SIZE_UNMET"))
    if degraded or undersized:
        words = []
        if degraded:
            words.append(f"{plural(len(degraded), 'pg')} degraded")
        if undersized:
            words.append(f"{plural(len(undersized), 'pg')} undersized")
        seen = dict(degraded + undersized)
        checks.append(HealthCheck(
            "PG_DEGRADED", WARN, "Degraded data redundancy: " + ", ".join(words), len(seen),
            [pg_line(pgid, pg, "degraded") for pgid, pg in sorted(seen.items())],
            "recovery runs by itself once the OSDs are back; otherwise add OSDs"))
    return checks


def pg_line(pgid: str, pg: dict, what: str) -> str:
    line = f"pg {pgid} is {what}, current state {pg.get('state', 'unknown')}"
    if "acting" in pg:
        line += f", last acting {pg['acting']}"
    if pg.get("reason"):
        line += f": {pg['reason']}"
    return line


def check_scrub_errors(view: ClusterView) -> list[HealthCheck]:
    damaged = [(pgid, pg) for pgid, pg in sorted(pg_states(view).items())
               if pg.get("inconsistent") or "inconsistent" in state_parts(pg.get("state", ""))]
    if not damaged:
        return []
    objects = sum(len(pg.get("inconsistent") or []) for _, pg in damaged)
    lines = [f"pg {pgid} is {pg.get('state')}, inconsistent objects: "
             + ", ".join(pg.get("inconsistent") or ["(see `sds pg PGID query`)"])
             for pgid, pg in damaged]
    return [HealthCheck(
        "PG_DAMAGED", ERR,
        f"Possible data damage: {plural(len(damaged), 'pg')} inconsistent, "
        f"{plural(objects, 'scrub error')}", len(damaged), lines,
        "`sds pg repair PGID` rewrites the bad copies from a good replica")]


_HINTS = {
    fu.FULL: "writes are refused with ENOSPC: delete objects (deletes always work), add "
             "OSDs, or raise the ratio a little (`sds osd set-full-ratio`)",
    fu.BACKFILLFULL: "recovery and backfill into these OSDs has stopped: free space, add "
                     "OSDs or reweight them (`sds osd reweight`)",
    fu.NEARFULL: "free space or add OSDs before they fill: writes stop at the full ratio",
}


def osd_levels(view: ClusterView) -> dict[int, tuple[str, float]]:
    """OSDs of the map at or past a threshold, with their used fraction (latest digest)."""
    known = {o.id for o in view.osdmap.osds}
    limits = fu.ratios_of(view.osdmap, view.config)
    out = {}
    for key, stats in ((view.digest or {}).get("osds") or {}).items():
        osd_id, used = int(key), fu.used_ratio(stats)
        level = limits.level(used)
        if osd_id in known and level is not None:
            out[osd_id] = (level, used)
    return out


def pool_osds(view: ClusterView, placement: Placement) -> dict[int, set[int]]:
    """The OSDs holding each pool's PGs."""
    table = placement(view.osdmap)
    return {pool.id: {o for ps in range(pool.pg_num) for o in table.pg_upmapped(pool.id, ps)}
            for pool in view.osdmap.pools}


def check_osds_full(view: ClusterView) -> list[HealthCheck]:
    """OSD_FULL / OSD_BACKFILLFULL / OSD_NEARFULL: each OSD under its highest level."""
    levels = osd_levels(view)
    limits = fu.ratios_of(view.osdmap, view.config)
    threshold = {fu.FULL: limits.full, fu.BACKFILLFULL: limits.backfillfull,
                 fu.NEARFULL: limits.nearfull}
    checks = []
    for level, code, severity in ((fu.FULL, "OSD_FULL", ERR),
                                  (fu.BACKFILLFULL, "OSD_BACKFILLFULL", WARN),
                                  (fu.NEARFULL, "OSD_NEARFULL", WARN)):
        hit = sorted((o, used) for o, (lv, used) in levels.items() if lv == level)
        if hit:
            checks.append(HealthCheck(
                code, severity, plural(len(hit), f"{level} osd"), len(hit),
                [f"osd.{o} is {level} at {100 * used:.1f}% of its device "
                 f"({level} ratio {threshold[level]:g})" for o, used in hit],
                _HINTS[level]))
    return checks


def check_pools_full(view: ClusterView, placement: Placement = PlacementTable
                     ) -> list[HealthCheck]:
    """POOL_FULL when a pool has data on a full OSD (its writes get ENOSPC), else
    POOL_NEARFULL when on a nearfull or backfillfull one."""
    levels = osd_levels(view)
    if not levels:
        return []
    by_name = {p.id: p.name for p in view.osdmap.pools}
    lines: dict[str, list[str]] = {fu.FULL: [], fu.NEARFULL: []}
    for pool_id, osds in sorted(pool_osds(view, placement).items()):
        hit = sorted(o for o in osds if o in levels)
        if not hit:
            continue
        state = fu.FULL if any(levels[o][0] == fu.FULL for o in hit) else fu.NEARFULL
        lines[state].append(f"pool '{by_name[pool_id]}' is {state}: it has data on "
                            + ", ".join(f"osd.{o} ({levels[o][0]})" for o in hit))
    checks = []
    for state, code, severity, hint in (
            (fu.FULL, "POOL_FULL", ERR,
             "writes to a full pool get ENOSPC: delete objects from it or add OSDs"),
            (fu.NEARFULL, "POOL_NEARFULL", WARN, _HINTS[fu.NEARFULL])):
        if lines[state]:
            checks.append(HealthCheck(code, severity,
                                      f"{plural(len(lines[state]), 'pool')} {state}",
                                      len(lines[state]), lines[state], hint))
    return checks


def cluster_checks(view: ClusterView, placement: Placement = PlacementTable) -> list[HealthCheck]:
    """Every check the manager owns, in the order `sds health` lists them."""
    return (check_osds(view) + check_pgs(view) + check_scrub_errors(view)
            + check_pool_sizes(view) + check_osds_full(view)
            + check_pools_full(view, placement))
