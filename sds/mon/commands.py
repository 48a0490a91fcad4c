"""The monitors' admin commands, as pure functions of a `MonView`.

A command is a JSON object like Ceph's: ``{"prefix": "osd pool create", "pool": "rbd"}``.
`handle` reads only the view it is given and returns the JSON-able output plus,
for a write, the one map change (`MapUpdate`) the daemon proposes through Paxos
before it replies. Nothing here does I/O, so every command is unit-tested by
applying its update with `apply_incremental`.

Errors are typed (`sds.common.errors`) with one-line messages that say what to
do next; the daemon sends their errno to the caller.
"""

from __future__ import annotations

import errno
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sds.common import fullness as fu
from sds.common import health
from sds.common import osdmap as om
from sds.common.caps import Caps
from sds.common.config import Config
from sds.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from sds.common.health import WARN, HealthCheck
from sds.crush import balancer, builder
from sds.crush.placement import PlacementTable, object_to_pg, parse_pg_name, pg_name
from sds.mgr import health as mgr_health
from sds.mgr.health import pg_states as _pg_states
from sds.mgr.health import size_warnings as _size_warnings
from sds.proto import crush_pb2, maps_pb2

MAX_PG_NUM = 65536
MAX_POOL_SIZE = 10
POOL_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
POOL_VARS = ("size", "min_size", "pg_num", "crush_rule", "application")

MGR_DOWN_AFTER_S = 15.0  # the mgr reports every 2 s; this many seconds of silence is MGR_DOWN


@dataclass
class MonView:
    """Everything a command may read; built by the mon daemon for each command."""

    osdmap: maps_pb2.OsdMap
    auth: dict[str, maps_pb2.AuthEntity]
    monmap: maps_pb2.MonMap
    mon_status: dict  # {"leader": rank|None, "quorum": [ranks], "election_epoch": n, ...}
    digest: dict | None  # latest statistics from the mgr, None before the first report
    config: Config
    now: float
    mdsmap: maps_pb2.MdsMap = field(default_factory=maps_pb2.MdsMap)
    auth_failures: dict[str, int] = field(default_factory=dict)  # at this mon, per address
    caller: Caps | None = None  # the caller's parsed caps; None for the mons' own commands
    caller_name: str | None = None
    rotating: dict[str, list[maps_pb2.RotatingSecret]] = field(default_factory=dict)
    mgr_report_age: float | None = None  # seconds since the last mgr report (or mon start)


@dataclass
class CommandResult:
    output: dict
    update: maps_pb2.MapUpdate | None = None
    more_updates: list[maps_pb2.MapUpdate] = field(default_factory=list)  # other maps, in order

    def updates(self) -> list[maps_pb2.MapUpdate]:
        """Every map change to propose, one Paxos value each (a value changes one map)."""
        return ([self.update] if self.update is not None else []) + self.more_updates


@dataclass(frozen=True)
class Command:
    prefix: str
    fn: Callable[[MonView, dict], CommandResult]
    write: bool
    help: str


COMMANDS: dict[str, Command] = {}

# Hooks for command modules of other subsystems (e.g. sds.mon.fs_commands):
# extra health checks, and leader ticks returning commands the leader runs once a second.
HEALTH_CHECKS: list[Callable[[MonView], list]] = []
LEADER_TICKS: list[Callable[[MonView], list[dict]]] = []


def command(prefix: str, *, write: bool = False):
    """Register a command; its docstring's first line is its help."""

    def register(fn: Callable[[MonView, dict], CommandResult]):
        doc = (fn.__doc__ or "").strip().splitlines()
        COMMANDS[prefix] = Command(prefix, fn, write, doc[0] if doc else "")
        return fn

    return register


def is_write(prefix: str) -> bool:
    """True for commands that may change a map: they must run on the leader."""
    cmd = COMMANDS.get(prefix.strip())
    return bool(cmd and cmd.write)


def handle(view: MonView, cmd: dict) -> CommandResult:
    if not isinstance(cmd, dict):
        raise InvalidArgument("a command is a JSON object with a 'prefix'")
    prefix = cmd.get("prefix")
    if not isinstance(prefix, str) or not prefix.strip():
        raise InvalidArgument("the command has no 'prefix'")
    found = COMMANDS.get(" ".join(prefix.split()))
    if found is None:
        raise InvalidArgument(f"unknown command '{prefix}' (try 'help')")
    return found.fn(view, cmd)


# ---------------------------------------------------------------- placement cache

_PLACEMENT_CACHE: OrderedDict[tuple, PlacementTable] = OrderedDict()
_PLACEMENT_CACHE_SIZE = 4


def placement_for(osdmap: maps_pb2.OsdMap) -> PlacementTable:
    """The PG -> OSDs table of this map, computed once per epoch (small LRU)."""
    digest = hashlib.blake2b(osdmap.SerializeToString(deterministic=True), digest_size=16)
    key = (osdmap.fsid, osdmap.epoch, digest.digest())
    table = _PLACEMENT_CACHE.get(key)
    if table is None:
        table = PlacementTable(osdmap)
        _PLACEMENT_CACHE[key] = table
        while len(_PLACEMENT_CACHE) > _PLACEMENT_CACHE_SIZE:
            _PLACEMENT_CACHE.popitem(last=False)
    else:
        _PLACEMENT_CACHE.move_to_end(key)
    return table


# ---------------------------------------------------------------- arguments

_MISSING: Any = object()


def _arg(cmd: dict, key: str, default: Any = _MISSING) -> Any:
    value = cmd.get(key)
    if value is None:
        if default is _MISSING:
            raise InvalidArgument(f"'{cmd.get('prefix')}' needs the argument '{key}'")
        return default
    return value


def _str(cmd: dict, key: str, default: Any = _MISSING) -> str:
    value = _arg(cmd, key, default)
    if value is default and default is not _MISSING:
        return value
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"'{key}' must be a non-empty string, not {value!r}")
    return value


def _int(cmd: dict, key: str, default: Any = _MISSING, lo: int | None = None,
         hi: int | None = None) -> int:
    value = _arg(cmd, key, default)
    if value is default and default is not _MISSING:
        return value
    return _as_int(key, value, lo, hi)


def _as_int(key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"'{key}' must be an integer, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise InvalidArgument(f"'{key}' must be an integer, not {value!r}") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise InvalidArgument(f"'{key}' must be between {lo} and {hi}, not {number}")
    return number


def _float(cmd: dict, key: str, default: float) -> float:
    value = cmd.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidArgument(f"'{key}' must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise InvalidArgument(f"'{key}' must be a number, not {value!r}") from None
    if not number >= 0:
        raise InvalidArgument(f"'{key}' must be a number >= 0, not {value!r}")
    return number


def _flag(cmd: dict, key: str) -> bool:
    value = cmd.get(key)
    return value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1", key))


def _ids(cmd: dict) -> list[int]:
    raw = cmd.get("ids", cmd.get("id"))
    if raw is None:
        raise InvalidArgument(f"'{cmd.get('prefix')}' needs 'ids': a list of OSD ids")
    if not isinstance(raw, list):
        raw = [raw]
    if not raw:
        raise InvalidArgument("'ids' is empty")
    ids = []
    for item in raw:
        if isinstance(item, str) and item.startswith("osd."):
            item = item[4:]
        ids.append(_as_int("ids", item, 0))
    return list(dict.fromkeys(ids))


# ---------------------------------------------------------------- small helpers

def _update(inc: maps_pb2.OsdMapIncremental) -> maps_pb2.MapUpdate:
    return maps_pb2.MapUpdate(osdmap=inc)


def _weight(fixed: int) -> float:
    return round(fixed / om.FULL_WEIGHT, 5)


def _crush_copy(osdmap: maps_pb2.OsdMap) -> crush_pb2.CrushMap:
    crush = crush_pb2.CrushMap()
    crush.CopyFrom(osdmap.crush)
    return crush


def _crush_apply(crush: crush_pb2.CrushMap, fn: Callable, *args) -> crush_pb2.CrushMap:
    """Run a builder mutation; tolerate builders that return a new map."""
    result = fn(crush, *args)
    return result if isinstance(result, crush_pb2.CrushMap) else crush


def _rule(crush: crush_pb2.CrushMap, ref: Any) -> crush_pb2.CrushRule:
    for rule in crush.rules:
        if rule.name == ref or (not isinstance(ref, bool) and str(rule.id) == str(ref)):
            return rule
    known = ", ".join(r.name for r in crush.rules) or "none"
    raise NotFound(f"CRUSH rule '{ref}' does not exist (rules: {known})")


def _rule_name(crush: crush_pb2.CrushMap, rule_id: int) -> str:
    for rule in crush.rules:
        if rule.id == rule_id:
            return rule.name
    return str(rule_id)


def _in_crush(crush: crush_pb2.CrushMap, osd_id: int) -> bool:
    return any(d.id == osd_id for d in crush.devices)


def default_min_size(config: Config, size: int) -> int:
    """Ceph's rule: a majority of the replicas (size - size//2), capped by the config."""
    majority = size - size // 2
    configured = int(config.get("osd_pool_default_min_size"))
    return max(1, min(majority, configured)) if configured > 0 else majority


def _pool_dict(pool: maps_pb2.Pool, crush: crush_pb2.CrushMap) -> dict:
    return {
        "pool": pool.id,
        "pool_name": pool.name,
        "size": pool.size,
        "min_size": pool.min_size,
        "pg_num": pool.pg_num,
        "crush_rule": _rule_name(crush, pool.crush_rule),
        "crush_rule_id": pool.crush_rule,
        "application": pool.application,
        "created_epoch": pool.created_epoch,
    }


def _osd_dict(osd: maps_pb2.OsdInfo) -> dict:
    return {
        "osd": osd.id,
        "uuid": osd.uuid,
        "up": int(osd.up),
        "in": int(om.is_in(osd)),
        "reweight": _weight(osd.reweight),
        "addr": osd.addr,
        "host": osd.host,
        "up_from": osd.up_from,
        "down_at": osd.down_at,
    }


# ---------------------------------------------------------------- PG states

def _pgs_by_state(states: dict[str, dict]) -> list[dict]:
    counts: dict[str, int] = {}
    for pg in states.values():
        counts[pg.get("state", "unknown")] = counts.get(pg.get("state", "unknown"), 0) + 1
    return [{"state_name": s, "count": n} for s, n in sorted(counts.items(), key=lambda i: -i[1])]


# ---------------------------------------------------------------- health

def _quorum(view: MonView) -> list[int]:
    return list(view.mon_status.get("quorum", [m.rank for m in view.monmap.mons]))


def _check_mons(view: MonView) -> list[HealthCheck]:
    quorum = set(_quorum(view))
    down = [m for m in view.monmap.mons if m.rank not in quorum]
    if not down:
        return []
    names = ",".join(m.name for m in view.monmap.mons if m.rank in quorum)
    return [HealthCheck(
        "MON_DOWN", WARN,
        f"{len(down)}/{len(view.monmap.mons)} mons down, quorum {names}", len(down),
        [f"mon.{m.name} (rank {m.rank}) addr {m.addr} is down (out of quorum)" for m in down],
        "start the monitor again (`sds cluster status` shows which are running)")]


def recovery_progress(view: MonView) -> dict | None:
    """Objects still to recover or backfill, the rate, and an ETA (None when idle)."""
    total = done = 0
    for pg in _pg_states(view).values():
        total += int(pg.get("recovery_total", 0))
        done += int(pg.get("recovery_done", 0))
    if total <= done:
        return None
    rate = float(((view.digest or {}).get("io") or {}).get("recovered_objects_sec", 0.0))
    left = total - done
    return {"objects_left": left, "objects_total": total, "objects_per_sec": rate,
            "eta_seconds": (left / rate) if rate > 0 else None}


def _check_mgr(view: MonView) -> list[HealthCheck]:
    age = view.mgr_report_age
    if age is None or age <= MGR_DOWN_AFTER_S:
        return []
    if view.digest is None:
        summary = f"no mgr has reported in {age:.0f} s"
        line = "PG states are unknown until a mgr reports"
    else:
        summary = f"no report from the mgr for {age:.0f} s"
        line = f"the PG, OSD and pool checks are those of its last report, {age:.0f} s ago"
    return [HealthCheck("MGR_DOWN", WARN, summary, 1, [line],
                        "start the mgr again (`sds cluster status` shows whether it runs)")]


def _mgr_checks(view: MonView) -> list[HealthCheck]:
    """The manager's checks as its last report carries them. Computed here, by the same
    functions, from the digest when the report has none (no report yet, an older mgr)
    or judged by another map than ours (a pool just created, an OSD just marked down:
    the answer must not lag the map the caller just changed)."""
    digest = view.digest or {}
    reported = digest.get("health")
    if not isinstance(reported, list) or digest.get("health_epoch") != view.osdmap.epoch:
        return mgr_health.cluster_checks(view, placement_for)
    return [HealthCheck.from_wire(c) for c in reported if isinstance(c, dict)]


def health_checks(view: MonView) -> list[HealthCheck]:
    return (_check_mons(view) + _check_mgr(view) + _mgr_checks(view)
            + [c for check in HEALTH_CHECKS for c in check(view)])


def _health(view: MonView, detail: bool) -> dict:
    return health.report(health_checks(view), detail)


@command("health")
def cmd_health(view: MonView, cmd: dict) -> CommandResult:
    """Cluster health: HEALTH_OK/WARN/ERR and the checks that fail."""
    return CommandResult(_health(view, _flag(cmd, "detail")))


@command("health detail")
def cmd_health_detail(view: MonView, cmd: dict) -> CommandResult:
    """Cluster health with one detail line per affected daemon, PG or pool."""
    return CommandResult(_health(view, True))


# ---------------------------------------------------------------- status

def _mon_summary(view: MonView) -> dict:
    quorum = _quorum(view)
    by_rank = {m.rank: m for m in view.monmap.mons}
    leader = view.mon_status.get("leader")
    return {
        "epoch": view.monmap.epoch,
        "num_mons": len(view.monmap.mons),
        "mons": [{"rank": m.rank, "name": m.name, "addr": m.addr, "in_quorum": m.rank in quorum}
                 for m in view.monmap.mons],
        "quorum": quorum,
        "quorum_names": [by_rank[r].name for r in quorum if r in by_rank],
        "leader": by_rank[leader].name if leader in by_rank else None,
        "leader_rank": leader,
        "election_epoch": view.mon_status.get("election_epoch", 0),
    }


def _usage(view: MonView) -> dict:
    """Cluster totals, each filesystem counted once however many OSDs share it."""
    osds = (view.digest or {}).get("osds", {})
    known = {str(o.id) for o in view.osdmap.osds}
    devices = fu.by_filesystem({k: s for k, s in osds.items() if k in known}).values()
    total = sum(d["total_bytes"] for d in devices)
    used = sum(d["used_bytes"] for d in devices)
    pools = (view.digest or {}).get("pools", {})
    live = {str(p.id) for p in view.osdmap.pools}
    return {
        "bytes_total": total,
        "bytes_used": used,
        "bytes_avail": max(total - used, 0),
        "num_objects": sum(int(s.get("objects", 0)) for k, s in pools.items() if k in live),
        "data_bytes": sum(int(s.get("bytes", 0)) for k, s in pools.items() if k in live),
    }


def _notes(view: MonView) -> list[str]:
    crush = view.osdmap.crush
    notes = []
    if any(r.id == 0 for r in crush.rules) and builder.failure_domain(crush, 0) == "osd":
        hosts = {o.host for o in view.osdmap.osds if o.host}
        if len(hosts) <= 1:
            notes.append("single host: CRUSH failure domain is osd")
        else:
            notes.append("CRUSH failure domain is osd: replicas of a PG may share a host")
    if view.digest is None:
        notes.append("no statistics from the mgr yet: PG states are unknown")
    return notes


def _fs_summary(mdsmap: maps_pb2.MdsMap) -> dict:
    """Filesystems with their active MDS, and the standbys (the `mds:` line of status)."""
    return {"epoch": mdsmap.epoch,
            "filesystems": [{"name": f.name, "active": f.active} for f in mdsmap.filesystems],
            "standby": sorted(m.name for m in mdsmap.mds if m.state == "standby")}


@command("status")
def cmd_status(view: MonView, cmd: dict) -> CommandResult:
    """Cluster overview: health, monitors, OSDs, pools, PGs and usage (`ceph -s`)."""
    osdmap = view.osdmap
    states = _pg_states(view)
    usage = _usage(view)
    io = (view.digest or {}).get("io", {})
    return CommandResult({
        "fsid": osdmap.fsid,
        "health": _health(view, False),
        "monmap": _mon_summary(view),
        "osdmap": {
            "epoch": osdmap.epoch,
            "num_osds": len(osdmap.osds),
            "num_up_osds": sum(1 for o in osdmap.osds if o.up),
            "num_in_osds": sum(1 for o in osdmap.osds if om.is_in(o)),
            "flags": list(osdmap.flags),
        },
        "pgmap": {
            "num_pools": len(osdmap.pools),
            "num_pgs": len(states),
            "pgs_by_state": _pgs_by_state(states),
            **usage,
            "read_bytes_sec": io.get("read_bytes_sec", 0),
            "write_bytes_sec": io.get("write_bytes_sec", 0),
            "read_op_per_sec": io.get("read_ops_sec", 0),
            "write_op_per_sec": io.get("write_ops_sec", 0),
        },
        "fsmap": _fs_summary(view.mdsmap),
        "pools": [p.name for p in osdmap.pools],
        "recovery": recovery_progress(view),
        "notes": _notes(view),
        "stats_stamp": (view.digest or {}).get("stamp"),
    })


@command("mon stat")
def cmd_mon_stat(view: MonView, cmd: dict) -> CommandResult:
    """Monitors, quorum and leader."""
    return CommandResult(_mon_summary(view))


@command("help")
def cmd_help(view: MonView, cmd: dict) -> CommandResult:
    """The commands this monitor understands."""
    return CommandResult({"commands": [
        {"prefix": c.prefix, "help": c.help, "write": c.write}
        for c in sorted(COMMANDS.values(), key=lambda c: c.prefix)]})


# ---------------------------------------------------------------- OSD views

@command("osd ls")
def cmd_osd_ls(view: MonView, cmd: dict) -> CommandResult:
    """The ids of all OSDs."""
    return CommandResult({"osds": [o.id for o in view.osdmap.osds]})


@command("osd dump")
def cmd_osd_dump(view: MonView, cmd: dict) -> CommandResult:
    """The OSDMap: epoch, pools, OSD states and addresses, CRUSH rules."""
    osdmap = view.osdmap
    return CommandResult({
        "epoch": osdmap.epoch,
        "fsid": osdmap.fsid,
        "modified": osdmap.modified,
        "flags": list(osdmap.flags),
        **{f"{k}_ratio": v for k, v in fu.ratios_of(osdmap, view.config).__dict__.items()},
        "pool_max": osdmap.pool_max,
        "pools": [_pool_dict(p, osdmap.crush) for p in osdmap.pools],
        "osds": [_osd_dict(o) for o in osdmap.osds],
        "crush_rules": [{"rule_id": r.id, "rule_name": r.name,
                         "failure_domain": builder.failure_domain(osdmap.crush, r.id)}
                        for r in osdmap.crush.rules],
        "pg_upmap_items": [{"pgid": pg_name(u.pool, u.pg),
                            "mappings": [{"from": a, "to": b}
                                         for a, b in zip(u.from_osd, u.to_osd, strict=False)]}
                           for u in osdmap.pg_upmap_items],
    })


@command("osd tree")
def cmd_osd_tree(view: MonView, cmd: dict) -> CommandResult:
    """The CRUSH hierarchy with each OSD's weight, status and reweight."""
    osdmap = view.osdmap
    osds = {o.id: o for o in osdmap.osds}
    nodes = []
    for depth, node_id, name, node_type, weight in builder.tree(osdmap.crush):
        node = {"id": node_id, "name": name, "type": node_type, "depth": depth,
                "crush_weight": round(float(weight), 5)}
        if node_id >= 0:
            osd = osds.get(node_id)
            node["status"] = "up" if osd is not None and osd.up else "down"
            node["reweight"] = _weight(osd.reweight) if osd and om.is_in(osd) else 0.0
        nodes.append(node)
    in_crush = {n["id"] for n in nodes}
    stray = [{"id": o.id, "name": f"osd.{o.id}", "status": "up" if o.up else "down"}
             for o in osdmap.osds if o.id not in in_crush]
    return CommandResult({"nodes": nodes, "stray": stray})


@command("osd df")
def cmd_osd_df(view: MonView, cmd: dict) -> CommandResult:
    """Per-OSD capacity, usage and PG count."""
    osdmap = view.osdmap
    stats = (view.digest or {}).get("osds", {})
    table = placement_for(osdmap)
    nodes = []
    for osd in osdmap.osds:
        s = stats.get(str(osd.id), {})
        total, used = int(s.get("total_bytes", 0)), int(s.get("used_bytes", 0))
        crush_weight = builder.osd_weight(osdmap.crush, osd.id) \
            if _in_crush(osdmap.crush, osd.id) else 0.0
        nodes.append({
            "id": osd.id, "name": f"osd.{osd.id}", "host": osd.host,
            "status": "up" if osd.up else "down",
            "crush_weight": round(float(crush_weight), 5),
            "reweight": _weight(osd.reweight) if om.is_in(osd) else 0.0,
            "total_bytes": total, "used_bytes": used, "avail_bytes": max(total - used, 0),
            "utilization": round(100.0 * used / total, 2) if total else 0.0,
            "objects": int(s.get("objects", 0)),
            "pgs": len(table.pgs_of_osd(osd.id)),
        })
    total = sum(n["total_bytes"] for n in nodes)
    used = sum(n["used_bytes"] for n in nodes)
    return CommandResult({"nodes": nodes, "summary": {
        "total_bytes": total, "used_bytes": used, "avail_bytes": max(total - used, 0),
        "average_utilization": round(100.0 * used / total, 2) if total else 0.0,
        "stats_available": bool(stats),
    }})


@command("df")
def cmd_df(view: MonView, cmd: dict) -> CommandResult:
    """Cluster capacity and per-pool usage."""
    usage = _usage(view)
    pool_stats = (view.digest or {}).get("pools", {})
    osd_stats = (view.digest or {}).get("osds", {})
    full_ratio = fu.ratios_of(view.osdmap, view.config).full
    table = placement_for(view.osdmap)
    total, avail = usage["bytes_total"], usage["bytes_avail"]
    pools = []
    for pool in view.osdmap.pools:
        s = pool_stats.get(str(pool.id), {})
        stored = int(s.get("bytes", 0))
        raw = stored * pool.size
        shares: dict[int, int] = {}
        for ps in range(pool.pg_num):
            for osd_id in table.pg_upmapped(pool.id, ps):
                shares[osd_id] = shares.get(osd_id, 0) + 1
        max_avail = fu.pool_max_avail(shares, osd_stats, full_ratio, pool.size)
        room = max_avail * pool.size
        pools.append({"name": pool.name, "id": pool.id, "stats": {
            "stored": stored, "objects": int(s.get("objects", 0)), "bytes_used": raw,
            "percent_used": round(100.0 * raw / (raw + room), 2) if raw + room else 0.0,
            "max_avail": max_avail}})
    return CommandResult({"stats": {
        "total_bytes": total, "total_used_bytes": usage["bytes_used"], "total_avail_bytes": avail,
        "total_objects": usage["num_objects"],
        "used_percent": round(100.0 * usage["bytes_used"] / total, 2) if total else 0.0,
        "stats_available": view.digest is not None,
    }, "pools": pools})


@command("osd map")
def cmd_osd_map(view: MonView, cmd: dict) -> CommandResult:
    """Where an object lives: its PG, up and acting sets and primary (`ceph osd map`)."""
    pool = om.pool_by_name(view.osdmap, _str(cmd, "pool"))
    name = _arg(cmd, "object")
    if not isinstance(name, str):
        raise InvalidArgument(f"'object' must be a string, not {name!r}")
    pg = object_to_pg(pool, name)
    table = placement_for(view.osdmap)
    up = list(table.pg_up(pool.id, pg))
    primary = table.primary(pool.id, pg)
    primary = -1 if primary is None else primary
    return CommandResult({
        "epoch": view.osdmap.epoch, "pool": pool.name, "pool_id": pool.id, "objname": name,
        "pgid": pg_name(pool.id, pg), "up": up, "up_primary": primary,
        "acting": up, "acting_primary": primary,
    })


# ---------------------------------------------------------------- balancer

BALANCE_MAX_DEVIATION = 0.05
BALANCE_MAX_CHANGES = 1000


def _busy_pgs(view: MonView, table: PlacementTable) -> set[tuple[int, int]]:
    """PGs the balancer must not move yet: reported not active+clean, or reported with
    an acting set other than the current mapping (their peering has not caught up, so
    a new member may still be filling; moving another replica could strand the data)."""
    busy = set()
    pools = {p.id: p for p in view.osdmap.pools}
    for pg in (view.digest or {}).get("pgs", []):
        try:
            pool_id, ps = parse_pg_name(str(pg.get("pgid")))
        except ValueError:
            continue
        if pool_id not in pools or ps >= pools[pool_id].pg_num:
            continue
        if pg.get("state") != "active+clean" or \
                list(pg.get("acting", [])) != table.pg_up(pool_id, ps):
            busy.add((pool_id, ps))
    return busy


@command("osd balance", write=True)
def cmd_osd_balance(view: MonView, cmd: dict) -> CommandResult:
    """Even out PG counts per OSD with upmap exceptions (Ceph's upmap balancer)."""
    osdmap = view.osdmap
    max_dev = _float(cmd, "max_deviation", BALANCE_MAX_DEVIATION)
    max_changes = _int(cmd, "max_changes", BALANCE_MAX_CHANGES, 1, 1 << 20)
    table = placement_for(osdmap)
    before = balancer.distribution(osdmap, table).max_deviation
    busy = _busy_pgs(view, table)
    new_items, removed = balancer.plan(osdmap, max_dev, max_changes, table, busy)
    out = {"changes": len(new_items) + len(removed), "updated": len(new_items),
           "removed": len(removed), "skipped_busy_pgs": len(busy),
           "max_deviation_before": round(before, 4),
           "max_deviation_after": round(before, 4)}
    if not new_items and not removed:
        return CommandResult(out)
    inc = om.next_incremental(osdmap, view.now)
    inc.new_pg_upmap_items.extend(new_items)
    for pool, pg in removed:
        inc.removed_pg_upmap_items.add(pool=pool, pg=pg)
    balanced = om.apply_incremental(osdmap, inc)  # the very map the commit will produce
    after = balancer.distribution(balanced, placement_for(balanced)).max_deviation
    out["max_deviation_after"] = round(after, 4)
    out["pgs"] = [pg_name(u.pool, u.pg) for u in new_items] + \
        [pg_name(pool, pg) for pool, pg in removed]
    return CommandResult(out, _update(inc))


@command("osd balance status")
def cmd_osd_balance_status(view: MonView, cmd: dict) -> CommandResult:
    """PG replicas per OSD against each OSD's weight share, and the worst deviation."""
    table = placement_for(view.osdmap)
    dist = balancer.distribution(view.osdmap, table)
    return CommandResult({**dist.to_dict(), "upmap_items": len(view.osdmap.pg_upmap_items),
                          "balanced_within": BALANCE_MAX_DEVIATION,
                          "balanced": dist.max_deviation <= BALANCE_MAX_DEVIATION})


# ---------------------------------------------------------------- pools

@command("osd pool ls")
def cmd_pool_ls(view: MonView, cmd: dict) -> CommandResult:
    """Pool names; with detail, every pool's settings."""
    if _flag(cmd, "detail"):
        return CommandResult({"pools": [_pool_dict(p, view.osdmap.crush)
                                        for p in view.osdmap.pools]})
    return CommandResult({"pools": [p.name for p in view.osdmap.pools]})


@command("osd pool create", write=True)
def cmd_pool_create(view: MonView, cmd: dict) -> CommandResult:
    """Create a replicated pool; an existing pool of that name is left as it is."""
    osdmap, config = view.osdmap, view.config
    name = _str(cmd, "pool")
    if not POOL_NAME_RE.match(name):
        raise InvalidArgument(f"invalid pool name '{name}': use letters, digits, '_', '-', '.' "
                              "(at most 128, not starting with '.' or '-')")
    pg_num = _int(cmd, "pg_num", int(config.get("osd_pool_default_pg_num")), 1, MAX_PG_NUM)
    size = _int(cmd, "size", int(config.get("osd_pool_default_size")), 1, MAX_POOL_SIZE)
    min_size = _int(cmd, "min_size", default_min_size(config, size), 1, size)
    rule = _rule(osdmap.crush, cmd.get("crush_rule", 0))
    application = cmd.get("application") or ""
    if not isinstance(application, str):
        raise InvalidArgument(f"'application' must be a string, not {application!r}")
    for existing in osdmap.pools:
        if existing.name == name:
            return CommandResult({"pool": name, "pool_id": existing.id, "created": False})
    inc = om.next_incremental(osdmap, view.now)
    pool = inc.new_pools.add(
        id=osdmap.pool_max + 1, name=name, size=size, min_size=min_size, pg_num=pg_num,
        crush_rule=rule.id, created_epoch=inc.epoch, application=application)
    inc.new_pool_max = pool.id
    return CommandResult(
        {"pool": name, "pool_id": pool.id, "created": True, "size": size,
         "min_size": min_size, "pg_num": pg_num, "crush_rule": rule.name,
         "warnings": _size_warnings(osdmap, pool)},
        _update(inc))


@command("osd pool rm", write=True)
def cmd_pool_rm(view: MonView, cmd: dict) -> CommandResult:
    """Delete a pool and all its objects; needs the name twice and "confirm": true."""
    name = _str(cmd, "pool")
    again = cmd.get("pool2")
    if again is not None and again != name:
        raise InvalidArgument(f"the pool name was not repeated correctly: '{name}' vs '{again}'")
    if not _flag(cmd, "confirm"):
        raise PermissionDenied(
            f"deleting pool '{name}' destroys all its data for good; repeat the name and pass "
            f"--yes-i-really-really-mean-it: sds pool rm {name} {name} --yes-i-really-really-mean-it",
            code=errno.EPERM)
    found = [p for p in view.osdmap.pools if p.name == name]
    if not found:
        return CommandResult({"pool": name, "removed": False})
    inc = om.next_incremental(view.osdmap, view.now)
    inc.removed_pools.append(found[0].id)
    return CommandResult({"pool": name, "pool_id": found[0].id, "removed": True}, _update(inc))


@command("osd pool get")
def cmd_pool_get(view: MonView, cmd: dict) -> CommandResult:
    """One setting of a pool (size, min_size, pg_num, crush_rule, application) or all."""
    pool = om.pool_by_name(view.osdmap, _str(cmd, "pool"))
    var = _str(cmd, "var")
    values = _pool_dict(pool, view.osdmap.crush)
    if var == "all":
        return CommandResult({"pool": pool.name, "pool_id": pool.id,
                              **{k: values[k] for k in POOL_VARS}})
    if var not in POOL_VARS:
        raise InvalidArgument(f"unknown pool setting '{var}' (known: {', '.join(POOL_VARS)}, all)")
    return CommandResult({"pool": pool.name, var: values[var]})


@command("osd pool set", write=True)
def cmd_pool_set(view: MonView, cmd: dict) -> CommandResult:
    """Change one setting of a pool: size, min_size, pg_num, crush_rule or application."""
    osdmap = view.osdmap
    current = om.pool_by_name(osdmap, _str(cmd, "pool"))
    var = _str(cmd, "var")
    val = _arg(cmd, "val")
    pool = maps_pb2.Pool()
    pool.CopyFrom(current)
    if var == "size":
        pool.size = _as_int("size", val, 1, MAX_POOL_SIZE)
        if pool.size != current.size:  # as Ceph: min_size follows size
            pool.min_size = default_min_size(view.config, pool.size)
    elif var == "min_size":
        pool.min_size = _as_int("min_size", val, 1, pool.size)
    elif var == "pg_num":
        pg_num = _as_int("pg_num", val, 1, MAX_PG_NUM)
        if pg_num != current.pg_num:
            raise NotSupported(
                f"changing pg_num of pool '{pool.name}' ({current.pg_num} -> {pg_num}) needs PG "
                "split/merge, which SDS does not do yet; create a new pool with that pg_num")
    elif var == "crush_rule":
        pool.crush_rule = _rule(osdmap.crush, val).id
    elif var == "application":
        if not isinstance(val, str):
            raise InvalidArgument(f"'application' must be a string, not {val!r}")
        pool.application = val
    else:
        raise InvalidArgument(f"unknown pool setting '{var}' (settable: {', '.join(POOL_VARS)})")
    output = {"pool": pool.name, "var": var, **{k: _pool_dict(pool, osdmap.crush)[k]
                                                for k in POOL_VARS}}
    if pool == current:
        return CommandResult({**output, "changed": False})
    inc = om.next_incremental(osdmap, view.now)
    inc.new_pools.append(pool)
    output.update(changed=True, warnings=_size_warnings(osdmap, pool))
    return CommandResult(output, _update(inc))


# ---------------------------------------------------------------- OSD state changes

@command("osd boot", write=True)
def cmd_osd_boot(view: MonView, cmd: dict) -> CommandResult:
    """(internal) An OSD daemon started: add it if new, mark it up and in at its address."""
    osdmap = view.osdmap
    osd_id = _int(cmd, "id", lo=0)
    addr, host, uuid = _str(cmd, "addr"), _str(cmd, "host"), _str(cmd, "uuid")
    weight = _float(cmd, "weight", float(view.config.get("osd_weight")))
    existing = om.find_osd(osdmap, osd_id)
    if existing is not None and existing.uuid and existing.uuid != uuid:
        raise AlreadyExists(
            f"osd.{osd_id} belongs to another data directory (uuid {existing.uuid}, "
            f"this one is {uuid}); give this OSD a new id")
    if (existing is not None and existing.up and existing.uuid == uuid
            and existing.addr == addr and existing.host == host):
        return CommandResult({"id": osd_id, "epoch": osdmap.epoch, "changed": False})
    inc = om.next_incremental(osdmap, view.now)
    osd = maps_pb2.OsdInfo()
    if existing is not None:
        osd.CopyFrom(existing)
    else:
        osd.id, osd.reweight = osd_id, om.FULL_WEIGHT
    osd.up, osd.addr, osd.host, osd.uuid, osd.up_from = True, addr, host, uuid, inc.epoch
    setattr(osd, "in", True)
    if osd.reweight == 0:
        osd.reweight = om.FULL_WEIGHT
    inc.new_osds.append(osd)
    crush = _crush_copy(osdmap)
    changed_crush = False
    if _in_crush(crush, osd_id) and existing is not None and existing.host != host:
        weight = builder.osd_weight(crush, osd_id)  # moved to another host: keep its weight
        crush = _crush_apply(crush, builder.remove_osd, osd_id)
    if not _in_crush(crush, osd_id):
        crush = _crush_apply(crush, builder.add_osd, osd_id, host, weight)
        changed_crush = True
    if changed_crush:
        inc.new_crush.CopyFrom(crush)
        inc.has_new_crush = True
    return CommandResult({"id": osd_id, "epoch": inc.epoch, "changed": True}, _update(inc))


def _mark(view: MonView, cmd: dict, what: str) -> CommandResult:
    osdmap = view.osdmap
    ids = _ids(cmd)
    osds = [om.osd_by_id(osdmap, i) for i in ids]
    inc = om.next_incremental(osdmap, view.now)
    changed, unchanged = [], []
    for current in osds:
        osd = maps_pb2.OsdInfo()
        osd.CopyFrom(current)
        if what == "down":
            osd.up = False
            osd.down_at = inc.epoch if current.up else current.down_at
        else:
            setattr(osd, "in", what == "in")
        if osd == current:
            unchanged.append(osd.id)
            continue
        changed.append(osd.id)
        inc.new_osds.append(osd)
    output = {"marked": what, "osds": changed, "unchanged": unchanged}
    if not changed:
        return CommandResult({**output, "epoch": osdmap.epoch})
    return CommandResult({**output, "epoch": inc.epoch}, _update(inc))


@command("osd down", write=True)
def cmd_osd_down(view: MonView, cmd: dict) -> CommandResult:
    """Mark OSDs down ({"ids": [..]}); a running OSD re-boots itself into the map."""
    return _mark(view, cmd, "down")


@command("osd out", write=True)
def cmd_osd_out(view: MonView, cmd: dict) -> CommandResult:
    """Mark OSDs out: CRUSH stops placing data on them and backfill moves it away."""
    return _mark(view, cmd, "out")


@command("osd in", write=True)
def cmd_osd_in(view: MonView, cmd: dict) -> CommandResult:
    """Mark OSDs in again."""
    return _mark(view, cmd, "in")


# The other command modules register themselves with @command when imported.
from sds.mon import (  # noqa: E402,F401
    auth_commands,
    blocklist,
    fs_commands,
    full,
    osd_admin,
    pg_commands,
    ticket_commands,
)
