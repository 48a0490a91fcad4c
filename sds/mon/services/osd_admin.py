"""Monitor commands for OSD maintenance: flags, reweight, stop/destroy checks, purge, keys.

Pure like the other mon services (view in, result out); registered by importing
this module. The checks answer in plain words which PGs would suffer and why, so an
admin can decide (users.md A2: unsafe maintenance is a top complaint).
"""

from __future__ import annotations

from sds.common import osdmap as om
from sds.common.command import Access, Cli, Param, opt
from sds.common.errors import Busy, PermissionDenied
from sds.common.health import plural
from sds.crush import builder
from sds.crush.placement import pg_name
from sds.health.checks import pg_states
from sds.mon.services.core import (
    IDS,
    ONE_ID,
    CommandResult,
    MonView,
    _crush_copy,
    _update,
    command,
    placement_for,
)
from sds.proto import maps_pb2

KNOWN_FLAGS = ("noout", "noin", "nodown", "noscrub")


FLAG = Param("flag", choices=KNOWN_FLAGS)


def _set_flag(view: MonView, args: dict, on: bool) -> CommandResult:
    flag = args["flag"]
    flags = list(view.osdmap.flags)
    if (flag in flags) == on:
        return CommandResult({"flag": flag, "set": on, "changed": False})
    flags = sorted(set(flags) | {flag}) if on else [f for f in flags if f != flag]
    inc = om.next_incremental(view.osdmap, view.now)
    inc.new_flags.extend(flags)
    inc.has_new_flags = True
    return CommandResult({"flag": flag, "set": on, "changed": True}, _update(inc))


@command("osd set", FLAG, write=True)
def cmd_osd_set(view: MonView, args: dict) -> CommandResult:
    """Set a cluster flag, e.g. noout: down OSDs are not marked out (for maintenance)."""
    return _set_flag(view, args, True)


@command("osd unset", FLAG, write=True)
def cmd_osd_unset(view: MonView, args: dict) -> CommandResult:
    """Clear a cluster flag."""
    return _set_flag(view, args, False)


@command("osd reweight", ONE_ID, Param("weight", "float", lo=0.0, hi=1.0), write=True)
def cmd_osd_reweight(view: MonView, args: dict) -> CommandResult:
    """Override an OSD's share of data (0.0-1.0); CRUSH moves data proportionally."""
    osd_id, weight = args["ids"][0], args["weight"]
    osd = maps_pb2.OsdInfo()
    osd.CopyFrom(om.osd_by_id(view.osdmap, osd_id))
    osd.reweight = int(round(weight * om.FULL_WEIGHT))
    inc = om.next_incremental(view.osdmap, view.now)
    inc.new_osds.append(osd)
    return CommandResult({"osd": osd_id, "reweight": weight}, _update(inc))


def _pgs_with(view: MonView, ids: set[int]) -> list[tuple[str, maps_pb2.Pool, list[int]]]:
    table = placement_for(view.osdmap)
    found = []
    for pool in view.osdmap.pools:
        for ps in range(pool.pg_num):
            up = table.pg_up(pool.id, ps)
            if ids & set(up):
                found.append((pg_name(pool.id, ps), pool, up))
    return found


@command("osd ok-to-stop", IDS)
def cmd_osd_ok_to_stop(view: MonView, args: dict) -> CommandResult:
    """Whether stopping these OSDs keeps every PG writable (>= min_size replicas; exit 16
    EBUSY if not)."""
    ids = set(args["ids"])
    for osd_id in ids:
        om.osd_by_id(view.osdmap, osd_id)
    states = pg_states(view)
    blocked, degraded = [], 0
    for pgid, pool, up in _pgs_with(view, ids):
        left = [o for o in up if o not in ids]
        if len(left) < pool.min_size:
            blocked.append(f"pg {pgid} (pool '{pool.name}') would keep {len(left)} of "
                           f"{pool.size} replicas, below min_size {pool.min_size}")
        elif "active" not in states.get(pgid, {}).get("state", "unknown"):
            blocked.append(f"pg {pgid} is not active now "
                           f"({states.get(pgid, {}).get('state', 'unknown')})")
        else:
            degraded += 1
    names = ", ".join(f"osd.{i}" for i in sorted(ids))
    if blocked:
        raise Busy(f"stopping {names} would make {plural(len(blocked), 'pg')} unavailable: "
                   + "; ".join(blocked[:5]) + ("; ..." if len(blocked) > 5 else ""))
    return CommandResult({"ok_to_stop": True, "osds": sorted(ids), "pgs_degraded": degraded,
                          "message": f"{names} can be stopped: {degraded} PGs would run "
                                     "degraded but stay writable"})


@command("osd safe-to-destroy", IDS)
def cmd_osd_safe_to_destroy(view: MonView, args: dict) -> CommandResult:
    """Whether these OSDs hold no data that is not fully replicated elsewhere (exit 16 EBUSY
    if they do)."""
    ids = set(args["ids"])
    reasons = []
    for osd_id in sorted(ids):
        osd = om.osd_by_id(view.osdmap, osd_id)
        if om.is_in(osd):
            reasons.append(f"osd.{osd_id} is still in: mark it out (`sds osd out {osd_id}`) "
                           "and wait for backfill")
    mapped = _pgs_with(view, ids)
    if mapped:
        reasons.append(f"{plural(len(mapped), 'pg')} still map to them, e.g. {mapped[0][0]}")
    unclean = [pgid for pgid, pg in sorted(pg_states(view).items())
               if pg.get("state") != "active+clean"]
    if unclean:
        reasons.append(f"{plural(len(unclean), 'pg')} are not active+clean yet "
                       f"(e.g. {unclean[0]}): data may still be moving")
    if view.digest is None:
        reasons.append("no PG statistics yet: cannot tell where data is")
    names = ", ".join(f"osd.{i}" for i in sorted(ids))
    if reasons:
        raise Busy(f"{names} not safe to destroy: " + "; ".join(reasons))
    return CommandResult({"safe_to_destroy": True, "osds": sorted(ids),
                          "message": f"{names} hold no data that is needed"})


@command("osd purge", ONE_ID, opt("confirm", "bool", False,
                                  cli=Cli(flag="--yes-i-really-mean-it")), write=True,
         access=Access(caps="rwx"))  # also removes the OSD's key
def cmd_osd_purge(view: MonView, args: dict) -> CommandResult:
    """Remove an OSD from the OSDMap, CRUSH and the auth database (needs confirm)."""
    osd_id = args["ids"][0]
    osd = om.osd_by_id(view.osdmap, osd_id)
    if not args["confirm"]:
        raise PermissionDenied(f"purging osd.{osd_id} forgets it for good; check "
                               f"`sds osd safe-to-destroy {osd_id}` and pass "
                               "--yes-i-really-mean-it")
    if osd.up:
        raise Busy(f"osd.{osd_id} is up: stop it first")
    inc = om.next_incremental(view.osdmap, view.now)
    inc.removed_osds.append(osd_id)
    crush = _crush_copy(view.osdmap)
    if any(d.id == osd_id for d in crush.devices):
        builder.remove_osd(crush, osd_id)
        inc.new_crush.CopyFrom(crush)
        inc.has_new_crush = True
    more = []
    entity = f"osd.{osd_id}"
    if entity in view.auth:
        more.append(maps_pb2.MapUpdate(auth=maps_pb2.AuthIncremental(removed=[entity])))
    return CommandResult({"purged": osd_id}, _update(inc), more)
