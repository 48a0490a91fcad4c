"""OSD views and state changes: `osd ls/dump/tree/df/map`, `osd boot`, `osd down/out/in`."""

from __future__ import annotations

import functools

from sds.common import fullness as fu
from sds.common import osdmap as om
from sds.common.command import Access, Descriptor, Param, opt
from sds.common.errors import AlreadyExists
from sds.crush import builder
from sds.crush.placement import object_to_pg, pg_name
from sds.mon.services.core import (
    IDS,
    MON,
    CommandResult,
    MonView,
    _crush_apply,
    _crush_copy,
    _in_crush,
    _osd_dict,
    _pool_dict,
    _update,
    _weight,
    command,
    placement_for,
)
from sds.proto import maps_pb2


@command("osd ls")
def cmd_osd_ls(view: MonView, args: dict) -> CommandResult:
    """The ids of all OSDs."""
    return CommandResult({"osds": [o.id for o in view.osdmap.osds]})


@command("osd dump")
def cmd_osd_dump(view: MonView, args: dict) -> CommandResult:
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
def cmd_osd_tree(view: MonView, args: dict) -> CommandResult:
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
def cmd_osd_df(view: MonView, args: dict) -> CommandResult:
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


@command("osd map", Param("pool"), Param("object", "text"))
def cmd_osd_map(view: MonView, args: dict) -> CommandResult:
    """Where an object lives: its PG, up and acting sets and primary (`ceph osd map`)."""
    pool = om.pool_by_name(view.osdmap, args["pool"])
    name = args["object"]
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


# ---------------------------------------------------------------- OSD state changes

@command("osd boot", Param("id", "int", lo=0), Param("addr"), Param("host"), Param("uuid"),
         opt("weight", "float", lo=0), write=True, access=Access(daemon="osd", self_arg="id"))
def cmd_osd_boot(view: MonView, args: dict) -> CommandResult:
    """(internal) An OSD daemon started: add it if new, mark it up and in at its address."""
    osdmap = view.osdmap
    osd_id, addr, host, uuid = args["id"], args["addr"], args["host"], args["uuid"]
    weight = args["weight"]
    if weight is None:
        weight = float(view.config.get("osd_weight"))
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


def _mark(view: MonView, args: dict, what: str) -> CommandResult:
    osdmap = view.osdmap
    ids = args["ids"]
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


for _what, _help, _access in (
        ("down", 'Mark OSDs down; a running OSD re-boots itself into the map (marks itself up again).',
         Access(self_service="osd", self_arg="ids")),
        ("out", "Mark OSDs out: CRUSH stops placing data on them and backfill moves it away.",
         Access()),
        ("in", "Mark OSDs in again.", Access())):
    MON.add(Descriptor(f"osd {_what}", (IDS,), _help, write=True, access=_access,
                       fn=functools.partial(_mark, what=_what)))


