"""The upmap balancer: PG counts per OSD within a few percent of each weight share."""

from __future__ import annotations

import pytest

from sds.common.osdmap import FULL_WEIGHT, apply_incremental, next_incremental
from sds.crush import balancer, builder
from sds.crush.placement import PlacementTable, apply_upmap, domain_of
from sds.mon import genesis
from sds.proto import maps_pb2

FSID = "8d1c6f2e-0000-4000-8000-0000000000ba"


def make_map(weights: list[float], hosts: bool = True, size: int = 3,
             pg_num: int | None = None, pools: int = 1) -> maps_pb2.OsdMap:
    """OSD i on host i (or all on one host with failure domain osd); ~100 replicas/OSD."""
    osdmap = genesis.initial_osdmap(FSID, "host" if hosts else "osd", now=1.0)
    for i, w in enumerate(weights):
        host = f"host{i}" if hosts else "single"
        builder.add_osd(osdmap.crush, i, host, w)
        info = osdmap.osds.add(id=i, up=True, reweight=FULL_WEIGHT, host=host,
                               addr=f"127.0.0.1:{6800 + i}", uuid=f"u{i}")
        setattr(info, "in", True)
    if pg_num is None:
        pg_num = -(-100 * len(weights) // (size * max(pools, 1)))
    for p in range(1, pools + 1):
        osdmap.pools.add(id=p, name=f"pool{p}", size=size, min_size=2, pg_num=pg_num,
                         crush_rule=0)
    osdmap.pool_max = pools
    return osdmap


def with_plan(osdmap: maps_pb2.OsdMap, **kw) -> tuple[maps_pb2.OsdMap, int]:
    new, removed = balancer.plan(osdmap, **kw)
    if not new and not removed:
        return osdmap, 0
    inc = next_incremental(osdmap, 2.0)
    inc.new_pg_upmap_items.extend(new)
    for pool, pg in removed:
        inc.removed_pg_upmap_items.add(pool=pool, pg=pg)
    return apply_incremental(osdmap, inc), len(new) + len(removed)


def counts(osdmap: maps_pb2.OsdMap) -> dict[int, int]:
    table = PlacementTable(osdmap)
    out = {o.id: 0 for o in osdmap.osds}
    for pool in osdmap.pools:
        for pg in range(pool.pg_num):
            for o in table.pg_up(pool.id, pg):
                out[o] += 1
    return out


def max_dev(osdmap: maps_pb2.OsdMap, weights: list[float]) -> float:
    c = counts(osdmap)
    total, wsum = sum(c.values()), sum(weights)
    return max(abs(c[i] - total * w / wsum) / (total * w / wsum) for i, w in enumerate(weights))


def check_sets(osdmap: maps_pb2.OsdMap, full: bool = True) -> None:
    """Every PG has `size` distinct up members (when full) in distinct failure domains."""
    table = PlacementTable(osdmap)
    up = {o.id for o in osdmap.osds if o.up and getattr(o, "in")}
    for pool in osdmap.pools:
        kind = builder.failure_domain(osdmap.crush, pool.crush_rule)
        dom = domain_of(osdmap.crush, kind)
        for pg in range(pool.pg_num):
            members = table.pg_up(pool.id, pg)
            assert set(members) <= up, (pool.id, pg, members)
            assert len({dom[o] for o in members}) == len(members), (pool.id, pg, members)
            if full:
                assert len(members) == pool.size, (pool.id, pg, members)


SETUPS = {
    "10 hosts": ([1.0] * 10, True),
    "1 host, failure domain osd": ([1.0] * 10, False),
    "weights 1 and 2": ([1.0, 2.0] * 5, True),
}


@pytest.fixture(scope="module")
def raw_deviations() -> dict[str, float]:
    return {name: max_dev(make_map(w, h), w) for name, (w, h) in SETUPS.items()}


def test_raw_crush_is_not_within_ten_percent(raw_deviations):
    # hashing alone: ~100 replicas per OSD spread 6-10 %, so some OSD is beyond +-10 %
    assert max(raw_deviations.values()) > 0.10, raw_deviations


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_plan_balances_within_five_percent(name, raw_deviations):
    weights, hosts = SETUPS[name]
    osdmap = make_map(weights, hosts)
    balanced, changes = with_plan(osdmap)
    after = max_dev(balanced, weights)
    assert after <= 0.05 + 1e-9, (name, raw_deviations[name], after)
    if raw_deviations[name] > 0.05:
        assert changes > 0 and len(balanced.pg_upmap_items) > 0
    check_sets(balanced)
    # planning again on the balanced map changes nothing
    assert balancer.plan(balanced) == ([], [])
    dist = balancer.distribution(balanced)
    assert dist.max_deviation == pytest.approx(after)
    assert dist.total == sum(p.size * p.pg_num for p in balanced.pools)


def test_plan_is_deterministic():
    osdmap = make_map([1.0] * 10)
    assert balancer.plan(osdmap) == balancer.plan(make_map([1.0] * 10))


def test_two_pools_and_size_two():
    weights = [1.0] * 8
    osdmap = make_map(weights, size=2, pools=2)
    balanced, _ = with_plan(osdmap)
    assert max_dev(balanced, weights) <= 0.05 + 1e-9
    check_sets(balanced)


def test_max_changes_limits_the_plan():
    osdmap = make_map([1.0] * 10)
    new, removed = balancer.plan(osdmap, max_changes=2)
    assert 1 <= len(new) <= 2 and not removed


def _mark(osdmap: maps_pb2.OsdMap, osd_id: int, up: bool | None = None,
          in_: bool | None = None) -> maps_pb2.OsdMap:
    inc = next_incremental(osdmap, 3.0)
    info = maps_pb2.OsdInfo()
    info.CopyFrom(next(o for o in osdmap.osds if o.id == osd_id))
    if up is not None:
        info.up = up
    if in_ is not None:
        setattr(info, "in", in_)
    inc.new_osds.append(info)
    return apply_incremental(osdmap, inc)


def test_osd_down_and_out_after_balancing_gives_valid_sets():
    balanced, _ = with_plan(make_map([1.0] * 10))
    targets = {t for u in balanced.pg_upmap_items for t in u.to_osd}
    victim = min(targets)  # an OSD that holds upmapped replicas
    down = _mark(balanced, victim, up=False)
    check_sets(down, full=False)
    table = PlacementTable(down)
    for pool in down.pools:
        for pg in range(pool.pg_num):
            assert len(table.pg_up(pool.id, pg)) >= pool.size - 1
    # the balancer leaves PGs touching a down (but in) OSD alone
    new, removed = balancer.plan(down)
    assert all(victim not in u.to_osd and victim not in u.from_osd for u in new)
    out = _mark(down, victim, in_=False)
    check_sets(out)  # CRUSH remaps around the out OSD; pairs to it are ignored
    rebalanced, _ = with_plan(out)
    check_sets(rebalanced)
    assert all(victim not in u.to_osd for u in rebalanced.pg_upmap_items)
    weights = [0.0 if i == victim else 1.0 for i in range(10)]
    live = [w for w in weights if w]
    c = counts(rebalanced)
    total = sum(c.values())
    assert c[victim] == 0
    assert max(abs(c[i] - total / len(live)) / (total / len(live))
               for i in range(10) if i != victim) <= 0.05 + 1e-9


def test_upmap_items_survive_incremental_round_trips():
    balanced, _ = with_plan(make_map([1.0] * 10))
    items = [(u.pool, u.pg, list(u.from_osd), list(u.to_osd)) for u in balanced.pg_upmap_items]
    assert items == sorted(items)
    # serialize / parse, then unrelated incrementals keep them
    copy = maps_pb2.OsdMap()
    copy.ParseFromString(balanced.SerializeToString())
    assert copy == balanced
    later = _mark(copy, 0, up=True)
    inc = next_incremental(later, 4.0)
    inc.new_pools.add(id=2, name="other", size=3, min_size=2, pg_num=8, crush_rule=0)
    inc.new_pool_max = 2
    later = apply_incremental(later, inc)
    assert [(u.pool, u.pg, list(u.from_osd), list(u.to_osd))
            for u in later.pg_upmap_items] == items
    # replace one, remove one
    first, second = items[0], items[1]
    inc = next_incremental(later, 5.0)
    inc.new_pg_upmap_items.add(pool=first[0], pg=first[1], from_osd=[9], to_osd=[8])
    inc.removed_pg_upmap_items.add(pool=second[0], pg=second[1])
    later = apply_incremental(later, inc)
    got = {(u.pool, u.pg): (list(u.from_osd), list(u.to_osd)) for u in later.pg_upmap_items}
    assert got[(first[0], first[1])] == ([9], [8])
    assert (second[0], second[1]) not in got
    assert len(got) == len(items) - 1
    # removing the pool drops its entries
    inc = next_incremental(later, 6.0)
    inc.removed_pools.append(1)
    later = apply_incremental(later, inc)
    assert list(later.pg_upmap_items) == []


def test_apply_upmap_rules():
    domains = {0: -2, 1: -3, 2: -4, 3: -5, 4: -2}  # osd.4 shares osd.0's host
    usable = {0, 1, 2, 3, 4}
    assert apply_upmap([0, 1, 2], [(1, 3)], usable, domains) == [0, 3, 2]
    assert apply_upmap([0, 1, 2], [(1, 2)], usable, domains) == [0, 1, 2]  # already member
    assert apply_upmap([0, 1, 2], [(1, 4)], usable, domains) == [0, 1, 2]  # same host as 0
    assert apply_upmap([0, 1, 2], [(0, 4)], usable, domains) == [4, 1, 2]  # replaces its host
    assert apply_upmap([0, 1, 2], [(1, 3)], {0, 1, 2}, domains) == [0, 1, 2]  # not usable
    assert apply_upmap([0, 1, 2], [(3, 4)], usable, domains) == [0, 1, 2]  # from not member
    assert apply_upmap([0, 1, 2], [(1, 3), (3, 1)], usable, domains) == [0, 1, 2]


def test_invalid_and_unneeded_upmaps_are_removed():
    osdmap = make_map([1.0] * 10)
    table = PlacementTable(osdmap)
    raw = table.pg_raw(1, 0)
    outsider = min(set(range(10)) - set(raw))
    inc = next_incremental(osdmap, 2.0)
    # pg 0: a pair to a member (ignored); pg 1: a pair from a non-member (ignored)
    inc.new_pg_upmap_items.add(pool=1, pg=0, from_osd=[raw[0]], to_osd=[raw[1]])
    raw1 = table.pg_raw(1, 1)
    stranger = min(set(range(10)) - set(raw1) - {outsider})
    inc.new_pg_upmap_items.add(pool=1, pg=1, from_osd=[stranger], to_osd=[outsider])
    bad = apply_incremental(osdmap, inc)
    assert PlacementTable(bad).pg_up(1, 0) == raw
    new, removed = balancer.plan(bad, max_changes=0)
    assert not new and sorted(removed) == [(1, 0), (1, 1)]


def test_out_target_voids_the_pair_and_plan_drops_it():
    osdmap = make_map([1.0] * 10)
    raw = PlacementTable(osdmap).pg_raw(1, 5)
    a = min(set(range(10)) - set(raw))
    inc = next_incremental(osdmap, 2.0)
    inc.new_pg_upmap_items.add(pool=1, pg=5, from_osd=[raw[1]], to_osd=[a])
    m = apply_incremental(osdmap, inc)
    assert PlacementTable(m).pg_up(1, 5) == [raw[0], a, raw[2]]
    # mark osd a out: its upmap pair is void and the balancer drops it
    out = _mark(m, a, in_=False)
    assert PlacementTable(out).pg_up(1, 5) == PlacementTable(out).pg_raw(1, 5)
    new, removed = balancer.plan(out, max_changes=0)
    assert (1, 5) in removed


def test_pairs_are_relative_to_crush_never_chained():
    # balance, then take weight off one OSD and balance again: moved replicas that
    # were upmap targets get their pair rewritten, never a -> b -> c chains
    balanced, _ = with_plan(make_map([1.0] * 10))
    inc = next_incremental(balanced, 3.0)
    info = maps_pb2.OsdInfo()
    info.CopyFrom(balanced.osds[3])
    info.reweight = FULL_WEIGHT // 2
    inc.new_osds.append(info)
    reweighted = apply_incremental(balanced, inc)
    again, changes = with_plan(reweighted)
    assert changes > 0
    check_sets(again)
    table = PlacementTable(again)
    for u in again.pg_upmap_items:
        raw = table.pg_raw(u.pool, u.pg)
        assert set(u.from_osd) <= set(raw) and not set(u.to_osd) & set(raw), u
        assert len(set(u.from_osd)) == len(u.from_osd) and len(set(u.to_osd)) == len(u.to_osd)
        up = table.pg_up(u.pool, u.pg)
        assert set(u.to_osd) <= set(up) and not set(u.from_osd) & set(up), u


def test_mgr_balances_only_when_all_pgs_are_clean():
    from sds.mgr.daemon import ready_to_balance

    osdmap = make_map([1.0] * 4, pg_num=4)
    assert not ready_to_balance(make_map([1.0] * 4, pools=0), None)
    assert ready_to_balance(osdmap, None)  # no PG reported yet
    pgs = [{"pgid": f"1.{pg:x}", "state": "active+clean"} for pg in range(4)]
    assert ready_to_balance(osdmap, {"pgs": pgs})
    assert not ready_to_balance(osdmap, {"pgs": pgs[:3]})
    pgs[2]["state"] = "active+recovering"
    assert not ready_to_balance(osdmap, {"pgs": pgs})
