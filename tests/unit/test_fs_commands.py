"""Filesystem and MDS monitor commands as pure functions of a MonView: the MDSMap,
promotion of standbys, dropping silent MDSs, and the FS health checks."""

from __future__ import annotations

import pytest
from mon_helpers import make_view

from sds.common.errors import AlreadyExists, Busy, InvalidArgument, NotFound, PermissionDenied
from sds.common.osdmap import apply_incremental
from sds.mon import commands, fs_commands
from sds.mon.commands import handle

GRACE = 15.0


@pytest.fixture
def view():
    fs_commands.beacons.last.clear()
    v = make_view()
    for name in ("meta", "data", "other"):
        result = handle(v, {"prefix": "osd pool create", "pool": name, "pg_num": 8})
        v.osdmap = apply_incremental(v.osdmap, result.update.osdmap)
    return v


def run(view, cmd: dict, at: float | None = None) -> dict:
    if at is not None:
        view.now = at
    result = handle(view, cmd)
    for update in result.updates():
        assert commands.is_write(cmd["prefix"])
        assert update.mdsmap.epoch == view.mdsmap.epoch + 1
        view.mdsmap = update.mdsmap
    return result.output


def beacon(view, name: str, at: float, addr: str | None = None) -> dict:
    return run(view, {"prefix": "mds beacon", "name": name,
                      "addr": addr or f"127.0.0.1:{7000 + ord(name[0])}"}, at)


def test_fs_new_errors_and_listing(view):
    with pytest.raises(NotFound):
        run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "nope", "data": "data"})
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "meta"})
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    with pytest.raises(AlreadyExists):
        run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "other", "data": "data"})
    with pytest.raises(InvalidArgument):  # pool in use by another filesystem
        run(view, {"prefix": "fs new", "fs_name": "fs2", "metadata": "other", "data": "data"})
    listing = run(view, {"prefix": "fs ls"})["filesystems"]
    assert [(f["name"], f["metadata_pool"], f["data_pool"], f["active"]) for f in listing] == \
        [("fs", "meta", "data", None)]


def test_standby_promoted_then_replaced_after_grace(view):
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    assert beacon(view, "a", 100.0)["role"] == "active"      # first MDS takes the fs
    b = beacon(view, "b", 100.5)
    assert b["role"] == "standby"
    first = beacon(view, "a", 101.0)
    assert (first["fs"], first["generation"]) == ("fs", 1)
    assert run(view, {"prefix": "fs status"})["standbys"] == [
        {"name": "b", "addr": "127.0.0.1:7098"}]
    # a goes silent: b keeps beaconing; within the grace nothing changes
    assert beacon(view, "b", 101.0 + GRACE - 1)["role"] == "standby"
    after = beacon(view, "b", 101.0 + GRACE + 1)
    assert (after["role"], after["generation"]) == ("active", 2)
    # a comes back: it learns it is a standby now (and must stop serving)
    assert beacon(view, "a", 101.0 + GRACE + 2)["role"] == "standby"
    status = run(view, {"prefix": "fs status", "fs_name": "fs"})
    assert status["filesystems"][0]["active"]["name"] == "b"


def test_restarted_active_gets_new_generation(view):
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    assert beacon(view, "a", 10.0, addr="127.0.0.1:1")["generation"] == 1
    assert beacon(view, "a", 11.0, addr="127.0.0.1:2")["generation"] == 2


def test_leader_tick_drops_silent_mds_and_health_reports_it(view):
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    beacon(view, "a", 10.0)
    assert fs_commands._tick(view) == []
    view.now = 10.0 + GRACE + 1
    cmds = fs_commands._tick(view)
    assert cmds == [{"prefix": "mds reconcile"}]
    run(view, cmds[0])
    assert not view.mdsmap.mds
    checks = run(view, {"prefix": "health"})["checks"]
    assert {"FS_DEGRADED", "MDS_ALL_DOWN"} <= set(checks)
    beacon(view, "b", view.now)
    checks = run(view, {"prefix": "health"})["checks"]
    assert "FS_DEGRADED" not in checks and "MDS_ALL_DOWN" not in checks


def test_fs_rm_needs_confirmation_and_is_busy_while_active(view):
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    beacon(view, "a", 10.0)
    with pytest.raises(PermissionDenied):
        run(view, {"prefix": "fs rm", "fs_name": "fs"})
    with pytest.raises(Busy):
        run(view, {"prefix": "fs rm", "fs_name": "fs", "yes_i_really_mean_it": True})
    run(view, {"prefix": "fs rm", "fs_name": "fs", "yes_i_really_mean_it": True, "force": True})
    assert run(view, {"prefix": "fs ls"})["filesystems"] == []
    assert beacon(view, "a", 11.0)["role"] == "standby"
    with pytest.raises(NotFound):
        run(view, {"prefix": "fs rm", "fs_name": "fs", "yes_i_really_mean_it": True})


def test_mds_fail_promotes_a_standby_at_once(view):
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    beacon(view, "a", 10.0)
    beacon(view, "b", 10.0)
    run(view, {"prefix": "mds fail", "name": "a"}, at=11.0)
    status = run(view, {"prefix": "fs status"})
    assert status["filesystems"][0]["active"]["name"] == "b"
    assert status["filesystems"][0]["generation"] == 2 and status["standbys"] == []
    with pytest.raises(NotFound):
        run(view, {"prefix": "mds fail", "name": "a"})


def test_promoted_standby_never_waits_for_the_placeholder_epoch(view):
    """The beacon that promotes a standby also fences the old active: its reply names
    the OSD map epoch of that blocklist, never the unset placeholder (2^64-1)."""
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    for name, at in (("a", 10.0), ("a", 10.5), ("b", 10.5)):
        run(view, {"prefix": "mds beacon", "name": name, "addr": f"127.0.0.1:{ord(name)}",
                   "instance": f"client.{name}"}, at=at)
    assert run(view, {"prefix": "fs status"})["filesystems"][0]["active"]["name"] == "a"
    view.now += GRACE + 1
    result = handle(view, {"prefix": "mds beacon", "name": "b", "addr": f"127.0.0.1:{ord('b')}",
                           "instance": "client.b"})
    assert result.output["role"] == "active"
    barrier = result.output["osd_epoch_barrier"]
    assert barrier != fs_commands.FENCE_PENDING
    assert barrier == result.update.osdmap.epoch  # the epoch that blocklists a


def test_fs_set_max_file_size(view):
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    assert beacon(view, "a", 10.0)["max_file_size"] == 1 << 40  # Ceph's default
    run(view, {"prefix": "fs set", "fs_name": "fs", "var": "max_file_size", "val": "4096"})
    assert beacon(view, "a", 11.0)["max_file_size"] == 4096
    assert run(view, {"prefix": "fs ls"})["filesystems"][0]["max_file_size"] == 4096
    for bad in ({"var": "max_file_size", "val": "0"}, {"var": "nope", "val": "1"},
                {"var": "max_file_size", "val": str(1 << 63)}):
        with pytest.raises(InvalidArgument):
            run(view, {"prefix": "fs set", "fs_name": "fs", **bad})
    with pytest.raises(NotFound):
        run(view, {"prefix": "fs set", "fs_name": "x", "var": "max_file_size", "val": "1"})


def test_mds_health_from_beacons(view):
    run(view, {"prefix": "fs new", "fs_name": "fs", "metadata": "meta", "data": "data"})
    beacon(view, "a", 10.0)
    bad = [{"code": "MDS_JOURNAL_APPLY", "message": "journal event 7 (PURGE_DATA) fails"}]
    run(view, {"prefix": "mds beacon", "name": "a", "addr": "127.0.0.1:7097",
               "health": bad}, at=11.0)
    check = run(view, {"prefix": "health detail"})["checks"]["MDS_JOURNAL_APPLY"]
    assert check["detail"] == [{"message": "mds.a: journal event 7 (PURGE_DATA) fails"}]
    beacon(view, "a", 12.0)  # no longer reported: gone from health
    assert "MDS_JOURNAL_APPLY" not in run(view, {"prefix": "health"})["checks"]
    with pytest.raises(InvalidArgument):
        run(view, {"prefix": "mds beacon", "name": "a", "addr": "127.0.0.1:7097",
                   "health": [{"code": "OSD_DOWN"}]}, at=13.0)
