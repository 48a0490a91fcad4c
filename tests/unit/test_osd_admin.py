"""Maintenance commands (flags, reweight, ok-to-stop, safe-to-destroy, purge, auth) and
PG summaries, as pure functions of a MonView."""

from __future__ import annotations

import pytest
from mon_helpers import boot, clean_digest, make_view

from sds.common.errors import Busy, InvalidArgument, PermissionDenied
from sds.common.osdmap import apply_incremental, is_blocklisted, osd_by_id
from sds.mon.commands import handle
from sds.proto import maps_pb2


def run(view, cmd):
    result = handle(view, cmd)
    for update in result.updates():
        if update.WhichOneof("change") == "osdmap":
            view.osdmap = apply_incremental(view.osdmap, update.osdmap)
        else:
            for e in update.auth.set:
                view.auth[e.name] = e
            for name in update.auth.removed:
                view.auth.pop(name, None)
    return result.output


@pytest.fixture
def view():
    v = make_view(failure_domain="host")
    for i in range(4):
        boot(v, i, f"host{i}")
    run(v, {"prefix": "osd pool create", "pool": "p", "pg_num": 16, "size": 3, "min_size": 2})
    v.digest = clean_digest(v)
    return v


def test_noout_flag_set_and_unset(view):
    assert run(view, {"prefix": "osd set", "flag": "noout"})["changed"]
    assert "noout" in view.osdmap.flags
    assert not run(view, {"prefix": "osd set", "flag": "noout"})["changed"]
    run(view, {"prefix": "osd unset", "flag": "noout"})
    assert "noout" not in view.osdmap.flags
    with pytest.raises(InvalidArgument, match="unknown flag"):
        run(view, {"prefix": "osd set", "flag": "nonsense"})


def test_reweight(view):
    run(view, {"prefix": "osd reweight", "ids": [2], "weight": 0.5})
    assert osd_by_id(view.osdmap, 2).reweight == 0x8000
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd reweight", "ids": [2], "weight": 1.5})
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd reweight", "ids": [2]})


def test_ok_to_stop_one_but_not_two(view):
    out = run(view, {"prefix": "osd ok-to-stop", "ids": [1]})
    assert out["ok_to_stop"] and out["pgs_degraded"] > 0
    with pytest.raises(Busy, match="below min_size 2"):
        run(view, {"prefix": "osd ok-to-stop", "ids": [0, 1, 2]})


def test_safe_to_destroy_explains_why_not(view):
    with pytest.raises(Busy, match="still in"):
        run(view, {"prefix": "osd safe-to-destroy", "ids": [3]})
    run(view, {"prefix": "osd out", "ids": [3]})
    view.digest = clean_digest(view)
    assert run(view, {"prefix": "osd safe-to-destroy", "ids": [3]})["safe_to_destroy"]
    view.digest["pgs"][0]["state"] = "active+recovering"
    with pytest.raises(Busy, match="not active\\+clean"):
        run(view, {"prefix": "osd safe-to-destroy", "ids": [3]})


def test_purge_needs_confirmation_and_a_stopped_osd(view):
    with pytest.raises(PermissionDenied, match="yes-i-really-mean-it"):
        run(view, {"prefix": "osd purge", "ids": [3]})
    with pytest.raises(Busy, match="is up"):
        run(view, {"prefix": "osd purge", "ids": [3], "confirm": True})
    run(view, {"prefix": "osd down", "ids": [3]})
    view.auth["osd.3"] = maps_pb2.AuthEntity(name="osd.3", key=b"x" * 32)
    run(view, {"prefix": "osd purge", "ids": [3], "confirm": True})
    assert all(o.id != 3 for o in view.osdmap.osds)
    assert all(d.id != 3 for d in view.osdmap.crush.devices)
    assert "osd.3" not in view.auth


def test_auth_get_or_create_is_idempotent(view):
    first = run(view, {"prefix": "auth get-or-create", "entity": "client.app",
                       "caps": {"osd": "allow rw"}})
    assert first["created"] and view.auth["client.app"].caps["osd"] == "allow rw"
    again = run(view, {"prefix": "auth get-or-create", "entity": "client.app"})
    assert not again["created"] and again["key"] == first["key"]
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "auth get-or-create", "entity": "nodot"})
    run(view, {"prefix": "auth rm", "entity": "client.app"})
    assert "client.app" not in view.auth
    with pytest.raises(PermissionDenied):
        run(view, {"prefix": "auth rm", "entity": "client.admin"})


def test_pg_stat_dump_and_stuck(view):
    stat = run(view, {"prefix": "pg stat"})
    assert stat["num_pgs"] == 16 and stat["pgs_by_state"][0]["state_name"] == "active+clean"
    assert len(run(view, {"prefix": "pg dump"})["pg_stats"]) == 16
    assert run(view, {"prefix": "pg dump_stuck"})["stuck"] == []
    view.digest["pgs"][3].update(state="peering", state_since=view.now - 600)
    view.digest["pgs"][4].update(state="active+undersized+degraded", state_since=view.now - 10)
    stuck = run(view, {"prefix": "pg dump_stuck"})["stuck"]
    assert [p["pgid"] for p in stuck] == [view.digest["pgs"][3]["pgid"]]
    stuck = run(view, {"prefix": "pg dump_stuck", "states": ["degraded"], "threshold": 5})
    assert [p["pgid"] for p in stuck["stuck"]] == [view.digest["pgs"][4]["pgid"]]


def test_scrub_errors_make_health_err_and_name_the_object(view):
    view.digest["pgs"][2].update(state="active+clean+inconsistent", inconsistent=["victim"])
    health = run(view, {"prefix": "health detail"})
    assert health["status"] == "HEALTH_ERR"
    check = health["checks"]["PG_DAMAGED"]
    assert "victim" in check["detail"][0]["message"]


def test_recovery_progress_in_status(view):
    view.digest["pgs"][0].update(recovery_total=100, recovery_done=40)
    view.digest["io"] = {"recovered_objects_sec": 20.0}
    rec = run(view, {"prefix": "status"})["recovery"]
    assert rec == {"objects_left": 60, "objects_total": 100, "objects_per_sec": 20.0,
                   "eta_seconds": 3.0}


def test_blocklist_add_ls_rm_and_expiry(view):
    out = run(view, {"prefix": "osd blocklist add", "addr": "client.a.1", "expire": 60})
    assert out["epoch"] == view.osdmap.epoch
    assert is_blocklisted(view.osdmap, "client.a.1", view.now + 59)
    assert not is_blocklisted(view.osdmap, "client.a.1", view.now + 61)  # expired
    assert not is_blocklisted(view.osdmap, "client.b.1", view.now)
    listed = run(view, {"prefix": "osd blocklist ls"})["blocklist"]
    assert [e["addr"] for e in listed] == ["client.a.1"] and not listed[0]["expired"]
    assert run(view, {"prefix": "osd blocklist rm", "addr": "client.a.1"})["changed"]
    assert not is_blocklisted(view.osdmap, "client.a.1", view.now)
    assert not run(view, {"prefix": "osd blocklist rm", "addr": "client.a.1"})["changed"]
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "osd blocklist add", "addr": "client.a.1", "expire": -1})
