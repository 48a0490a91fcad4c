"""Cluster overview commands: `status`, `df`, `mon stat`, and the command listings."""

from __future__ import annotations

from sds.common import fullness as fu
from sds.common import osdmap as om
from sds.crush import builder
from sds.health.checks import pg_states
from sds.mon.services.core import MON, CommandResult, MonView, command, placement_for
from sds.mon.services.health import (
    _health,
    _pgs_by_state,
    _quorum,
    recovery_progress,
)
from sds.proto import maps_pb2

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
def cmd_status(view: MonView, args: dict) -> CommandResult:
    """Cluster overview: health, monitors, OSDs, pools, PGs and usage (`ceph -s`)."""
    osdmap = view.osdmap
    states = pg_states(view)
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
def cmd_mon_stat(view: MonView, args: dict) -> CommandResult:
    """Monitors, quorum and leader."""
    return CommandResult(_mon_summary(view))


@command("df")
def cmd_df(view: MonView, args: dict) -> CommandResult:
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


@command("help")
def cmd_help(view: MonView, args: dict) -> CommandResult:
    """The commands this monitor understands."""
    return CommandResult({"commands": [
        {"prefix": d.prefix, "help": d.help, "write": d.write}
        for _, d in sorted(MON.commands.items())]})


@command("get_command_descriptions")
def cmd_get_command_descriptions(view: MonView, args: dict) -> CommandResult:
    """Every command's descriptor: prefix, typed parameters, help, write, needs."""
    return CommandResult({"commands": MON.describe()})
