"""Pure helpers over the OSDMap protobuf: apply incrementals, look things up.

Shared by monitors, OSDs, the manager and clients, so every process derives the
same map from the same sequence of incrementals.
"""

from __future__ import annotations

from sds.common.errors import NotFound
from sds.proto import maps_pb2

FULL_WEIGHT = 0x10000


def apply_incremental(osdmap: maps_pb2.OsdMap, inc: maps_pb2.OsdMapIncremental) -> maps_pb2.OsdMap:
    """Return the map of epoch inc.epoch; `osdmap` must be of epoch inc.epoch - 1."""
    if inc.epoch != osdmap.epoch + 1:
        raise ValueError(f"incremental {inc.epoch} does not follow epoch {osdmap.epoch}")
    new = maps_pb2.OsdMap()
    new.CopyFrom(osdmap)
    new.epoch = inc.epoch
    new.modified = inc.modified
    if inc.new_pool_max:
        new.pool_max = inc.new_pool_max
    if inc.removed_pools or inc.new_pools:
        removed = set(inc.removed_pools) | {p.id for p in inc.new_pools}
        pools = [p for p in new.pools if p.id not in removed] + list(inc.new_pools)
        del new.pools[:]
        new.pools.extend(sorted(pools, key=lambda p: p.id))
    if inc.removed_osds or inc.new_osds:
        removed = set(inc.removed_osds) | {o.id for o in inc.new_osds}
        osds = [o for o in new.osds if o.id not in removed] + list(inc.new_osds)
        del new.osds[:]
        new.osds.extend(sorted(osds, key=lambda o: o.id))
    if inc.has_new_crush:
        new.crush.CopyFrom(inc.new_crush)
    if inc.has_new_flags:
        del new.flags[:]
        new.flags.extend(inc.new_flags)
    if inc.removed_pools or inc.new_pg_upmap_items or inc.removed_pg_upmap_items:
        _apply_upmaps(new, inc)
    for name in ("nearfull_ratio", "backfillfull_ratio", "full_ratio"):
        value = getattr(inc, "new_" + name)
        if value:
            setattr(new, name, value)
    for instance in inc.removed_blocklist:
        new.blocklist.pop(instance, None)
    new.blocklist.update(inc.new_blocklist)
    return new


def is_blocklisted(osdmap: maps_pb2.OsdMap, instance: str, now: float) -> bool:
    """Does the map fence this client instance off (an unexpired blocklist entry)?"""
    until = osdmap.blocklist.get(instance)
    return until is not None and until > now


def _apply_upmaps(new: maps_pb2.OsdMap, inc: maps_pb2.OsdMapIncremental) -> None:
    """Replace/remove upmap entries per pool/pg; drop those of pools that are gone."""
    items = {(u.pool, u.pg): u for u in new.pg_upmap_items}
    for u in inc.removed_pg_upmap_items:
        items.pop((u.pool, u.pg), None)
    for u in inc.new_pg_upmap_items:
        items[(u.pool, u.pg)] = u
    live = {p.id for p in new.pools}
    keep = [items[k] for k in sorted(items) if k[0] in live and items[k].from_osd]
    copies = []
    for u in keep:
        c = maps_pb2.PgUpmapItems()
        c.CopyFrom(u)
        copies.append(c)
    del new.pg_upmap_items[:]
    new.pg_upmap_items.extend(copies)


def upmap_items(osdmap: maps_pb2.OsdMap) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """``{(pool, pg): [(from, to), ...]}`` of the map's upmap exceptions."""
    return {(u.pool, u.pg): list(zip(u.from_osd, u.to_osd, strict=False))
            for u in osdmap.pg_upmap_items}


def pool_by_name(osdmap: maps_pb2.OsdMap, name: str) -> maps_pb2.Pool:
    for pool in osdmap.pools:
        if pool.name == name:
            return pool
    raise NotFound(f"pool '{name}' does not exist")


def pool_by_id(osdmap: maps_pb2.OsdMap, pool_id: int) -> maps_pb2.Pool:
    for pool in osdmap.pools:
        if pool.id == pool_id:
            return pool
    raise NotFound(f"pool {pool_id} does not exist")


def osd_by_id(osdmap: maps_pb2.OsdMap, osd_id: int) -> maps_pb2.OsdInfo:
    for osd in osdmap.osds:
        if osd.id == osd_id:
            return osd
    raise NotFound(f"osd.{osd_id} does not exist")


def find_osd(osdmap: maps_pb2.OsdMap, osd_id: int) -> maps_pb2.OsdInfo | None:
    for osd in osdmap.osds:
        if osd.id == osd_id:
            return osd
    return None


def reweights(osdmap: maps_pb2.OsdMap) -> dict[int, int]:
    """CRUSH reweight per OSD: 0 when out, else its 16.16 reweight."""
    return {o.id: (o.reweight if is_in(o) else 0) for o in osdmap.osds}


def is_in(osd: maps_pb2.OsdInfo) -> bool:
    return getattr(osd, "in")


def next_incremental(osdmap: maps_pb2.OsdMap, now: float) -> maps_pb2.OsdMapIncremental:
    return maps_pb2.OsdMapIncremental(epoch=osdmap.epoch + 1, modified=now)
