"""The monitors' admin commands, driven as pure functions of a MonView."""

from __future__ import annotations

import base64
import errno

import pytest
from mon_helpers import FSID, boot, clean_digest, make_view, run

from sds.common.config import Config
from sds.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from sds.common.keyring import Keyring
from sds.common.osdmap import is_in, osd_by_id, pool_by_name
from sds.crush import builder
from sds.mon import commands, genesis
from sds.mon.commands import MonView, handle, is_write


@pytest.fixture
def view() -> MonView:
    v = make_view()
    for i in range(3):
        boot(v, i, f"host{i}")
    return v


# ---------------------------------------------------------------- genesis

def test_genesis_maps():
    osdmap = genesis.initial_osdmap(FSID, "osd", 5.0)
    assert osdmap.epoch == 1 and osdmap.fsid == FSID and osdmap.modified == 5.0
    assert builder.failure_domain(osdmap.crush, 0) == "osd"
    assert builder.failure_domain(genesis.initial_osdmap(FSID, "host", 5.0).crush, 0) == "host"
    with pytest.raises(InvalidArgument):
        genesis.initial_osdmap(FSID, "rack", 5.0)
    monmap = genesis.initial_monmap(FSID, ["a:1", "b:2"])
    assert [(m.rank, m.name, m.addr) for m in monmap.mons] == [(0, "0", "a:1"), (1, "1", "b:2")]
    with pytest.raises(InvalidArgument):
        genesis.initial_monmap(FSID, [])
    auth = genesis.initial_auth(Keyring({"client.admin": (b"x", {"mon": "allow *"})}))
    assert auth["client.admin"].key == b"x" and dict(auth["client.admin"].caps) == {"mon": "allow *"}


# ---------------------------------------------------------------- dispatch

def test_unknown_and_malformed_commands(view):
    with pytest.raises(InvalidArgument, match="unknown command"):
        handle(view, {"prefix": "osd frobnicate"})
    with pytest.raises(InvalidArgument, match="prefix"):
        handle(view, {"pool": "x"})
    with pytest.raises(InvalidArgument):
        handle(view, ["status"])  # type: ignore[arg-type]
    assert handle(view, {"prefix": "  osd   ls "}).output == {"osds": [0, 1, 2]}


def test_is_write():
    for prefix in ("osd pool create", "osd pool rm", "osd pool set", "osd boot", "osd down",
                   "osd out", "osd in"):
        assert is_write(prefix), prefix
    for prefix in ("status", "health", "osd tree", "osd map", "auth get", "osd pool get", "nope"):
        assert not is_write(prefix), prefix


def test_help_lists_commands(view):
    out = run(view, {"prefix": "help"})
    prefixes = {c["prefix"] for c in out["commands"]}
    assert {"status", "osd pool create", "osd boot"} <= prefixes
    assert all(c["help"] for c in out["commands"])


# ---------------------------------------------------------------- osd boot / down

def test_boot_adds_osd_to_map_and_crush(view):
    assert [o.id for o in view.osdmap.osds] == [0, 1, 2]
    osd = osd_by_id(view.osdmap, 1)
    assert osd.up and is_in(osd) and osd.host == "host1" and osd.addr == "127.0.0.1:6801"
    assert osd.up_from == 3  # genesis is 1, three boots -> epochs 2, 3, 4
    assert builder.osd_weight(view.osdmap.crush, 1) == 1.0
    assert builder.count_failure_domains(view.osdmap.crush, 0, {0, 1, 2}) == 3


def test_boot_same_addr_is_noop_and_new_addr_is_update(view):
    epoch = view.osdmap.epoch
    out = boot(view, 0, "host0")
    assert out == {"id": 0, "epoch": epoch, "changed": False}
    assert view.osdmap.epoch == epoch
    out = boot(view, 0, "host0", addr="127.0.0.1:7000")
    assert out["changed"] and view.osdmap.epoch == epoch + 1
    assert osd_by_id(view.osdmap, 0).addr == "127.0.0.1:7000"
    assert osd_by_id(view.osdmap, 0).up_from == epoch + 1


def test_boot_with_other_uuid_is_refused(view):
    with pytest.raises(AlreadyExists, match="another data directory"):
        boot(view, 1, "host1", uuid="someone-else")


def test_boot_bad_arguments(view):
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd boot", "id": -1, "addr": "a:1", "host": "h", "uuid": "u"})
    with pytest.raises(InvalidArgument, match="addr"):
        run(view, {"prefix": "osd boot", "id": 5, "host": "h", "uuid": "u"})
    with pytest.raises(InvalidArgument, match="weight"):
        run(view, {"prefix": "osd boot", "id": 5, "addr": "a:1", "host": "h", "uuid": "u",
                   "weight": "heavy"})


def test_boot_on_another_host_moves_crush_item_keeping_weight():
    v = make_view()
    boot(v, 0, "h0", weight=2.5)
    run(v, {"prefix": "osd down", "ids": [0]})
    boot(v, 0, "h1", weight=1.0)
    rows = {row[2]: row for row in builder.tree(v.osdmap.crush)}
    assert rows["h1"][4] == 2.5 and rows["h0"][4] == 0.0
    assert builder.osd_weight(v.osdmap.crush, 0) == 2.5


def test_osd_down_out_in(view):
    out = run(view, {"prefix": "osd down", "ids": [1, "osd.2"]})
    assert out["osds"] == [1, 2]
    epoch = view.osdmap.epoch
    assert not osd_by_id(view.osdmap, 1).up and osd_by_id(view.osdmap, 1).down_at == epoch
    again = run(view, {"prefix": "osd down", "ids": [1]})
    assert again["osds"] == [] and again["unchanged"] == [1] and view.osdmap.epoch == epoch
    with pytest.raises(NotFound):
        run(view, {"prefix": "osd down", "ids": [9]})
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd down"})
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd down", "ids": ["x"]})
    run(view, {"prefix": "osd out", "ids": [1]})
    assert not is_in(osd_by_id(view.osdmap, 1))
    run(view, {"prefix": "osd in", "ids": [1]})
    assert is_in(osd_by_id(view.osdmap, 1))
    boot(view, 1, "host1", addr="127.0.0.1:7001")  # reboot marks it up again
    assert osd_by_id(view.osdmap, 1).up


# ---------------------------------------------------------------- pools

def test_pool_create_defaults_and_idempotency(view):
    out = run(view, {"prefix": "osd pool create", "pool": "rbd"})
    assert out["created"] and out["pool_id"] == 1 and out["warnings"] == []
    pool = pool_by_name(view.osdmap, "rbd")
    assert (pool.size, pool.min_size, pool.pg_num, pool.crush_rule) == (3, 2, 32, 0)
    assert pool.created_epoch == view.osdmap.epoch and view.osdmap.pool_max == 1
    epoch = view.osdmap.epoch
    again = handle(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 8})
    assert again.update is None and again.output == {"pool": "rbd", "pool_id": 1, "created": False}
    out = run(view, {"prefix": "osd pool create", "pool": "b", "pg_num": "8", "size": 2})
    pool = pool_by_name(view.osdmap, "b")
    assert (pool.id, pool.size, pool.min_size, pool.pg_num) == (2, 2, 1, 8)
    assert view.osdmap.epoch == epoch + 1


@pytest.mark.parametrize("size, min_size", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)])
def test_default_min_size(size, min_size):
    assert commands.default_min_size(Config(None), size) == min_size


@pytest.mark.parametrize("cmd, match", [
    ({"pool": ""}, "pool"),
    ({}, "needs the argument 'pool'"),
    ({"pool": ".hidden"}, "invalid pool name"),
    ({"pool": "a b"}, "invalid pool name"),
    ({"pool": "x" * 200}, "invalid pool name"),
    ({"pool": "p", "pg_num": 0}, "pg_num"),
    ({"pool": "p", "pg_num": 65537}, "pg_num"),
    ({"pool": "p", "pg_num": "many"}, "integer"),
    ({"pool": "p", "pg_num": True}, "integer"),
    ({"pool": "p", "size": 11}, "size"),
    ({"pool": "p", "size": 0}, "size"),
    ({"pool": "p", "size": 2, "min_size": 3}, "min_size"),
    ({"pool": "p", "application": 5}, "application"),
])
def test_pool_create_rejects_bad_input(view, cmd, match):
    with pytest.raises(InvalidArgument, match=match):
        handle(view, {"prefix": "osd pool create", **cmd})


def test_pool_create_unknown_rule(view):
    with pytest.raises(NotFound, match="CRUSH rule"):
        handle(view, {"prefix": "osd pool create", "pool": "p", "crush_rule": "fast"})


def test_pool_create_warns_when_hosts_are_too_few():
    v = make_view()
    boot(v, 0, "only")
    out = run(v, {"prefix": "osd pool create", "pool": "rbd"})
    assert out["warnings"] == [
        "pool 'rbd' wants 3 replicas but only 1 host (failure domain host) has usable OSDs"]


def test_pool_ls_get_set(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 16})
    run(view, {"prefix": "osd pool create", "pool": "data", "pg_num": 8})
    assert run(view, {"prefix": "osd pool ls"}) == {"pools": ["rbd", "data"]}
    detail = run(view, {"prefix": "osd pool ls", "detail": "detail"})["pools"]
    assert detail[0]["pool_name"] == "rbd" and detail[0]["crush_rule"] == "replicated_rule"
    assert run(view, {"prefix": "osd pool get", "pool": "rbd", "var": "size"}) == \
        {"pool": "rbd", "size": 3}
    everything = run(view, {"prefix": "osd pool get", "pool": "rbd", "var": "all"})
    assert everything["pg_num"] == 16 and everything["min_size"] == 2
    with pytest.raises(InvalidArgument, match="unknown pool setting"):
        run(view, {"prefix": "osd pool get", "pool": "rbd", "var": "colour"})
    with pytest.raises(NotFound, match="pool 'nope' does not exist"):
        run(view, {"prefix": "osd pool get", "pool": "nope", "var": "size"})

    out = run(view, {"prefix": "osd pool set", "pool": "rbd", "var": "size", "val": "2"})
    assert out["changed"] and (out["size"], out["min_size"]) == (2, 1)
    pool = pool_by_name(view.osdmap, "rbd")
    assert (pool.size, pool.min_size) == (2, 1)
    run(view, {"prefix": "osd pool set", "pool": "rbd", "var": "min_size", "val": 2})
    assert pool_by_name(view.osdmap, "rbd").min_size == 2
    with pytest.raises(InvalidArgument, match="min_size"):
        run(view, {"prefix": "osd pool set", "pool": "rbd", "var": "min_size", "val": 3})
    run(view, {"prefix": "osd pool set", "pool": "rbd", "var": "application", "val": "rbd"})
    assert pool_by_name(view.osdmap, "rbd").application == "rbd"
    run(view, {"prefix": "osd pool set", "pool": "rbd", "var": "crush_rule",
               "val": "replicated_rule"})
    epoch = view.osdmap.epoch
    same = handle(view, {"prefix": "osd pool set", "pool": "rbd", "var": "size", "val": 2})
    assert same.update is None and same.output["changed"] is False
    assert handle(view, {"prefix": "osd pool set", "pool": "rbd", "var": "pg_num",
                         "val": 16}).update is None
    with pytest.raises(NotSupported, match="split"):
        handle(view, {"prefix": "osd pool set", "pool": "rbd", "var": "pg_num", "val": 32})
    with pytest.raises(NotFound):
        handle(view, {"prefix": "osd pool set", "pool": "rbd", "var": "crush_rule", "val": "x"})
    with pytest.raises(InvalidArgument, match="unknown pool setting"):
        handle(view, {"prefix": "osd pool set", "pool": "rbd", "var": "colour", "val": "red"})
    with pytest.raises(InvalidArgument, match="val"):
        handle(view, {"prefix": "osd pool set", "pool": "rbd", "var": "size"})
    assert view.osdmap.epoch == epoch


def test_pool_rm_needs_confirmation_and_is_idempotent(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd"})
    with pytest.raises(PermissionDenied, match="yes-i-really-really-mean-it") as info:
        handle(view, {"prefix": "osd pool rm", "pool": "rbd", "pool2": "rbd"})
    assert info.value.code == errno.EPERM
    with pytest.raises(InvalidArgument, match="repeated"):
        handle(view, {"prefix": "osd pool rm", "pool": "rbd", "pool2": "rdb", "confirm": True})
    out = run(view, {"prefix": "osd pool rm", "pool": "rbd", "pool2": "rbd", "confirm": True})
    assert out["removed"] and not view.osdmap.pools
    again = handle(view, {"prefix": "osd pool rm", "pool": "rbd", "confirm": True})
    assert again.update is None and again.output == {"pool": "rbd", "removed": False}
    # pool ids are never reused
    assert run(view, {"prefix": "osd pool create", "pool": "rbd"})["pool_id"] == 2


# ---------------------------------------------------------------- views

def test_osd_ls_dump_tree(view):
    assert run(view, {"prefix": "osd ls"}) == {"osds": [0, 1, 2]}
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 8})
    dump = run(view, {"prefix": "osd dump"})
    assert dump["epoch"] == view.osdmap.epoch and dump["fsid"] == FSID
    assert dump["pools"][0]["pool_name"] == "rbd"
    assert dump["osds"][1] == {"osd": 1, "uuid": "uuid-1", "up": 1, "in": 1, "reweight": 1.0,
                               "addr": "127.0.0.1:6801", "host": "host1", "up_from": 3,
                               "down_at": 0}
    assert dump["crush_rules"] == [{"rule_id": 0, "rule_name": "replicated_rule",
                                    "failure_domain": "host"}]
    run(view, {"prefix": "osd down", "ids": [2]})
    tree = run(view, {"prefix": "osd tree"})
    by_name = {n["name"]: n for n in tree["nodes"]}
    assert by_name["default"]["type"] == "root" and by_name["default"]["crush_weight"] == 3.0
    assert by_name["host2"]["depth"] == 1 and by_name["osd.2"]["depth"] == 2
    assert by_name["osd.2"]["status"] == "down" and by_name["osd.0"]["status"] == "up"
    assert tree["stray"] == []


def test_osd_map_matches_placement(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 16})
    out = run(view, {"prefix": "osd map", "pool": "rbd", "object": "hello"})
    assert out["pool"] == "rbd" and out["pool_id"] == 1 and out["objname"] == "hello"
    assert out["pgid"].startswith("1.")
    assert sorted(out["up"]) == [0, 1, 2] and out["acting"] == out["up"]
    assert out["up_primary"] == out["up"][0] == out["acting_primary"]
    with pytest.raises(NotFound):
        run(view, {"prefix": "osd map", "pool": "nope", "object": "x"})
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd map", "pool": "rbd"})


def test_placement_cache_is_per_epoch(view):
    a = commands.placement_for(view.osdmap)
    assert commands.placement_for(view.osdmap) is a
    run(view, {"prefix": "osd down", "ids": [0]})
    assert commands.placement_for(view.osdmap) is not a


def test_osd_df_and_df(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 8})
    empty = run(view, {"prefix": "osd df"})
    assert empty["summary"]["stats_available"] is False
    assert sum(n["pgs"] for n in empty["nodes"]) == 8 * 3
    view.digest = clean_digest(view)
    osd_df = run(view, {"prefix": "osd df"})
    node = osd_df["nodes"][0]
    assert (node["total_bytes"], node["used_bytes"], node["avail_bytes"]) == (1000, 100, 900)
    assert node["utilization"] == 10.0 and node["crush_weight"] == 1.0
    assert osd_df["summary"]["total_bytes"] == 3000
    df = run(view, {"prefix": "df"})
    assert df["stats"]["total_bytes"] == 3000 and df["stats"]["total_used_bytes"] == 300
    assert df["stats"]["total_objects"] == 3
    assert df["pools"][0]["name"] == "rbd"
    assert df["pools"][0]["stats"]["stored"] == 300 and df["pools"][0]["stats"]["bytes_used"] == 900
    # room up to the full ratio on the fullest OSD (0.95 * 1000 - 100), spread over 3
    # OSDs with a third of the replicas each, divided by size 3
    assert df["pools"][0]["stats"]["max_avail"] == 850


def test_auth_ls_hides_keys_and_get_shows_them(view):
    listing = run(view, {"prefix": "auth ls"})
    assert [e["entity"] for e in listing["auth"]] == ["client.admin", "osd.0"]
    assert "key" not in str(listing)
    got = run(view, {"prefix": "auth get", "entity": "osd.0"})
    assert got["key"] == base64.b64encode(b"o" * 32).decode()
    assert got["caps"] == {"mon": "allow profile osd"}
    with pytest.raises(NotFound, match="client.nobody"):
        run(view, {"prefix": "auth get", "entity": "client.nobody"})


def test_mon_stat_names_the_leader():
    v = make_view(quorum=[0, 1])
    v.mon_status["leader"] = 1
    out = run(v, {"prefix": "mon stat"})
    assert out["leader"] == "1" and out["leader_rank"] == 1 and out["num_mons"] == 3
    assert out["quorum_names"] == ["0", "1"]
    assert [m["in_quorum"] for m in out["mons"]] == [True, True, False]


# ---------------------------------------------------------------- health and status

def test_health_ok_with_clean_digest(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 8})
    view.digest = clean_digest(view)
    assert run(view, {"prefix": "health"}) == {"status": "HEALTH_OK", "checks": {}}
    status = run(view, {"prefix": "status"})
    assert status["health"]["status"] == "HEALTH_OK"
    assert status["pgmap"]["pgs_by_state"] == [{"state_name": "active+clean", "count": 8}]
    assert status["osdmap"]["num_up_osds"] == 3 and status["notes"] == []
    assert status["monmap"]["leader"] == "0" and status["pgmap"]["write_op_per_sec"] == 4.0


def test_health_without_digest_reports_unknown_pgs(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 8})
    health = run(view, {"prefix": "health detail"})
    check = health["checks"]["PG_AVAILABILITY"]
    assert health["status"] == "HEALTH_WARN"
    assert "8 pgs inactive" in check["summary"]["message"]
    assert "no statistics from the mgr yet" in check["summary"]["message"]
    assert check["detail"][0]["message"].startswith("pg 1.0 is inactive, current state unknown")
    assert "detail" not in run(view, {"prefix": "health"})["checks"]["PG_AVAILABILITY"]
    status = run(view, {"prefix": "status"})
    assert status["pgmap"]["pgs_by_state"] == [{"state_name": "unknown", "count": 8}]
    assert "no statistics from the mgr yet: PG states are unknown" in status["notes"]


def test_health_down_osd_and_mon(view):
    run(view, {"prefix": "osd down", "ids": [2]})
    view.mon_status["quorum"] = [0, 1]
    health = run(view, {"prefix": "health", "detail": True})
    assert health["status"] == "HEALTH_WARN"
    assert health["checks"]["OSD_DOWN"]["summary"] == {"message": "1 osd down", "count": 1}
    assert "osd.2 (host host2) is down" in health["checks"]["OSD_DOWN"]["detail"][0]["message"]
    assert health["checks"]["MON_DOWN"]["summary"]["message"] == "1/3 mons down, quorum 0,1"
    assert health["checks"]["OSD_DOWN"]["hint"]
    run(view, {"prefix": "osd out", "ids": [2]})  # down and out: no longer OSD_DOWN
    assert "OSD_DOWN" not in run(view, {"prefix": "health"})["checks"]


def test_health_degraded_pgs(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 2})
    digest = clean_digest(view)
    digest["pgs"][0].update(state="active+undersized+degraded", acting=[0, 1],
                            reason="waiting for osd.2")
    digest["pgs"][1].update(state="undersized+peered", acting=[0])
    view.digest = digest
    health = run(view, {"prefix": "health detail"})
    degraded = health["checks"]["PG_DEGRADED"]
    assert degraded["summary"]["message"] == \
        "Degraded data redundancy: 1 pg degraded, 2 pgs undersized"
    assert degraded["detail"][0]["message"] == ("pg 1.0 is degraded, current state "
                                                "active+undersized+degraded, last acting [0, 1]: "
                                                "waiting for osd.2")
    assert health["checks"]["PG_AVAILABILITY"]["summary"]["count"] == 1


def test_single_host_undersized_pool_is_explained():
    v = make_view()
    for i in range(3):
        boot(v, i, "lonely")
    run(v, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 4})
    health = run(v, {"prefix": "health detail"})
    check = health["checks"]["POOL_SIZE_UNMET"]
    assert check["summary"]["message"] == \
        "pool 'rbd' wants 3 replicas but only 1 host (failure domain host) has usable OSDs"
    assert check["severity"] == "HEALTH_ERR" and health["status"] == "HEALTH_ERR"
    run(v, {"prefix": "osd pool set", "pool": "rbd", "var": "size", "val": 1})
    assert "POOL_SIZE_UNMET" not in run(v, {"prefix": "health"})["checks"]


def test_two_hosts_size_three_is_a_warning(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 4})
    run(view, {"prefix": "osd down", "ids": [2]})
    check = run(view, {"prefix": "health"})["checks"]["POOL_SIZE_UNMET"]
    assert check["severity"] == "HEALTH_WARN"
    assert check["summary"]["message"] == \
        "pool 'rbd' wants 3 replicas but only 2 hosts (failure domain host) have usable OSDs"


def test_single_host_with_osd_failure_domain_is_noted_and_healthy():
    v = make_view(failure_domain="osd")
    for i in range(3):
        boot(v, i, "lonely")
    run(v, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 4})
    v.digest = clean_digest(v)
    status = run(v, {"prefix": "status"})
    assert status["notes"] == ["single host: CRUSH failure domain is osd"]
    assert status["health"]["status"] == "HEALTH_OK"


def test_status_ignores_stats_of_removed_pools(view):
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 4})
    view.digest = clean_digest(view)
    run(view, {"prefix": "osd pool rm", "pool": "rbd", "confirm": True})
    status = run(view, {"prefix": "status"})
    assert status["pgmap"]["num_pgs"] == 0 and status["pgmap"]["num_objects"] == 0
    assert status["pools"] == []


# ---------------------------------------------------------------- balancer

def test_osd_balance_and_status():
    view = make_view()
    for i in range(10):
        boot(view, i, f"host{i}")
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 334, "size": 3})
    assert is_write("osd balance") and not is_write("osd balance status")
    status = run(view, {"prefix": "osd balance status"})
    assert status["total_replicas"] == 1002 and status["upmap_items"] == 0
    assert [o["osd"] for o in status["osds"]] == list(range(10))
    assert all(o["target"] == pytest.approx(100.2) for o in status["osds"])
    before = status["max_deviation"]
    assert before == max(abs(o["deviation"]) for o in status["osds"]) > 0.05
    assert status["balanced"] is False
    epoch = view.osdmap.epoch
    out = run(view, {"prefix": "osd balance"})
    assert view.osdmap.epoch == epoch + 1
    assert out["changes"] > 0 and out["changes"] == len(view.osdmap.pg_upmap_items)
    assert out["max_deviation_before"] == pytest.approx(before, abs=1e-4)
    assert out["max_deviation_after"] <= 0.05
    status = run(view, {"prefix": "osd balance status"})
    assert status["balanced"] is True and status["upmap_items"] == out["changes"]
    assert status["max_deviation"] == pytest.approx(out["max_deviation_after"], abs=1e-4)
    # PG counts in `osd df` follow the upmaps
    df = run(view, {"prefix": "osd df"})
    assert {n["id"]: n["pgs"] for n in df["nodes"]} == {o["osd"]: o["pgs"]
                                                        for o in status["osds"]}
    # `osd dump` lists the exceptions
    dump = run(view, {"prefix": "osd dump"})
    assert len(dump["pg_upmap_items"]) == out["changes"]
    first = dump["pg_upmap_items"][0]
    assert first["pgid"].startswith("1.") and first["mappings"][0].keys() == {"from", "to"}
    # already balanced: no map change
    again = run(view, {"prefix": "osd balance"})
    assert again["changes"] == 0 and view.osdmap.epoch == epoch + 1
    # removing the pool drops its upmaps
    run(view, {"prefix": "osd pool rm", "pool": "rbd", "pool2": "rbd", "confirm": True})
    assert list(view.osdmap.pg_upmap_items) == []


def test_osd_balance_without_pools_or_bad_args(view):
    out = run(view, {"prefix": "osd balance"})
    assert out["changes"] == 0 and out["max_deviation_before"] == 0
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd balance", "max_deviation": "lots"})
    status = run(view, {"prefix": "osd balance status"})
    assert status["total_replicas"] == 0 and status["max_deviation"] == 0


def test_osd_balance_leaves_busy_pgs_alone():
    view = make_view()
    for i in range(10):
        boot(view, i, f"host{i}")
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 334, "size": 3})
    table = commands.placement_for(view.osdmap)
    pgs = [{"pgid": f"1.{pg:x}", "state": "active+recovering",
            "acting": table.pg_up(1, pg)} for pg in range(334)]
    view.digest = {"stamp": 1.0, "pgs": pgs, "osds": {}, "pools": {}}
    out = run(view, {"prefix": "osd balance"})
    assert out["changes"] == 0 and out["skipped_busy_pgs"] == 334
    for p in pgs:  # clean, but reported with a stale acting set: still busy
        p["state"], p["acting"] = "active+clean", list(reversed(p["acting"]))
    assert run(view, {"prefix": "osd balance"})["changes"] == 0
    for p in pgs:
        p["acting"] = list(reversed(p["acting"]))
    out = run(view, {"prefix": "osd balance"})
    assert out["changes"] > 0 and out["skipped_busy_pgs"] == 0
    # each PG moved at most one replica away from its current members
    after = commands.placement_for(view.osdmap)
    for u in view.osdmap.pg_upmap_items:
        assert len(set(after.pg_up(1, u.pg)) - set(table.pg_up(1, u.pg))) == 1
