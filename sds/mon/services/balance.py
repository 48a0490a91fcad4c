"""`osd balance` and `osd balance status`: even out PGs per OSD with upmap exceptions."""

from __future__ import annotations

from sds.common import osdmap as om
from sds.common.command import opt
from sds.crush import balancer
from sds.crush.placement import PlacementTable, parse_pg_name, pg_name
from sds.mon.services.core import CommandResult, MonView, _update, command, placement_for

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


@command("osd balance", opt("max_deviation", "float", BALANCE_MAX_DEVIATION, lo=0),
         opt("max_changes", "int", BALANCE_MAX_CHANGES, lo=1, hi=1 << 20), write=True)
def cmd_osd_balance(view: MonView, args: dict) -> CommandResult:
    """Even out PG counts per OSD with upmap exceptions (Ceph's upmap balancer; the mgr
    also does this)."""
    osdmap = view.osdmap
    max_dev, max_changes = args["max_deviation"], args["max_changes"]
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
def cmd_osd_balance_status(view: MonView, args: dict) -> CommandResult:
    """PG replicas per OSD against each OSD's weight share, and the worst deviation."""
    table = placement_for(view.osdmap)
    dist = balancer.distribution(view.osdmap, table)
    return CommandResult({**dist.to_dict(), "upmap_items": len(view.osdmap.pg_upmap_items),
                          "balanced_within": BALANCE_MAX_DEVIATION,
                          "balanced": dist.max_deviation <= BALANCE_MAX_DEVIATION})


