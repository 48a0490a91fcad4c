"""Full ratios, their validation, the full/nearfull health checks, the FULL flag, MAX AVAIL
and the OSD's admission of writes and copies, as pure functions."""

from __future__ import annotations

import errno
import os

import pytest
from mon_helpers import boot, clean_digest, make_view, run

from sds.common import fullness as fu
from sds.common.errors import InvalidArgument, NoSpace
from sds.mon import full
from sds.mon.commands import health_checks
from sds.osd import fullness as osdfull
from sds.proto import osd_pb2

Op = osd_pb2.OsdOp
DEFAULT = fu.Ratios(0.85, 0.90, 0.95)


@pytest.fixture
def view():
    v = make_view()
    for i in range(3):
        boot(v, i, f"host{i}")
    run(v, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 8})
    run(v, {"prefix": "osd pool create", "pool": "other", "pg_num": 8})
    v.digest = clean_digest(v)
    return v


def fill(view, used: dict[int, int], total: int = 1000, fs_id: str | None = None) -> None:
    for osd_id, bytes_used in used.items():
        view.digest["osds"][str(osd_id)].update(
            total_bytes=total, used_bytes=bytes_used, fs_id=fs_id or f"h:{osd_id}")


def codes(view) -> dict:
    return {c.code: c for c in health_checks(view)}


# ---------------------------------------------------------------- ratios

@pytest.mark.parametrize("ratios", [(0.85, 0.90, 0.95), (0.5, 0.5, 0.5), (0.1, 0.2, 1.0)])
def test_ordered_ratios_are_accepted(ratios):
    assert fu.Ratios(*ratios).validate() == fu.Ratios(*ratios)


@pytest.mark.parametrize("ratios", [(0.9, 0.85, 0.95), (0.85, 0.96, 0.95), (0.96, 0.9, 0.95),
                                    (0.0, 0.9, 0.95), (0.85, 0.9, 1.01), (-0.1, 0.9, 0.95)])
def test_bad_ratios_are_refused_with_einval(ratios):
    with pytest.raises(InvalidArgument) as e:
        fu.Ratios(*ratios).validate()
    assert e.value.code == errno.EINVAL


def test_levels():
    assert DEFAULT.level(0.5) is None
    assert DEFAULT.level(0.85) == fu.NEARFULL
    assert DEFAULT.level(0.92) == fu.BACKFILLFULL
    assert DEFAULT.level(0.95) == fu.FULL and DEFAULT.level(1.0) == fu.FULL


def test_genesis_map_carries_the_options_ratios(view):
    assert (view.osdmap.nearfull_ratio, view.osdmap.backfillfull_ratio,
            view.osdmap.full_ratio) == (0.0, 0.0, 0.0)  # made without ratios: options apply
    assert full.ratios(view) == DEFAULT
    dump = run(view, {"prefix": "osd dump"})
    assert (dump["nearfull_ratio"], dump["backfillfull_ratio"], dump["full_ratio"]) == \
        (0.85, 0.90, 0.95)


def test_set_ratio_commands_keep_the_order(view):
    out = run(view, {"prefix": "osd set-full-ratio", "ratio": 0.97})
    assert out["full_ratio"] == 0.97 and view.osdmap.full_ratio == 0.97
    run(view, {"prefix": "osd set-nearfull-ratio", "ratio": "0.8"})
    run(view, {"prefix": "osd set-backfillfull-ratio", "ratio": 0.96})
    assert full.ratios(view) == fu.Ratios(0.8, 0.96, 0.97)
    epoch = view.osdmap.epoch
    for prefix, ratio in (("osd set-nearfull-ratio", 0.965), ("osd set-full-ratio", 0.9),
                          ("osd set-backfillfull-ratio", 0.5), ("osd set-full-ratio", 1.5),
                          ("osd set-full-ratio", "lots"), ("osd set-full-ratio", None)):
        with pytest.raises(InvalidArgument):
            run(view, {"prefix": prefix, "ratio": ratio})
    assert view.osdmap.epoch == epoch  # nothing proposed


# ---------------------------------------------------------------- health checks

def test_no_fullness_checks_below_nearfull(view):
    fill(view, {0: 840, 1: 100, 2: 0})
    found = codes(view)
    assert not {"OSD_NEARFULL", "OSD_BACKFILLFULL", "OSD_FULL", "POOL_NEARFULL",
                "POOL_FULL"} & set(found)


def test_each_osd_is_named_under_its_highest_level(view):
    fill(view, {0: 860, 1: 920, 2: 990})
    found = codes(view)
    assert found["OSD_NEARFULL"].detail == ["osd.0 is nearfull at 86.0% of its device "
                                            "(nearfull ratio 0.85)"]
    assert found["OSD_BACKFILLFULL"].detail[0].startswith("osd.1 is backfillfull at 92.0%")
    assert found["OSD_FULL"].detail[0].startswith("osd.2 is full at 99.0%")
    assert found["OSD_FULL"].severity == "HEALTH_ERR"
    assert found["OSD_NEARFULL"].severity == "HEALTH_WARN"
    assert "ENOSPC" in found["OSD_FULL"].hint and "delete" in found["OSD_FULL"].hint
    # every pool has data on osd.2 (size 3 on 3 OSDs): full, not also nearfull
    assert found["POOL_FULL"].count == 2 and "POOL_NEARFULL" not in found
    assert found["POOL_FULL"].detail[0] == ("pool 'rbd' is full: it has data on osd.0 "
                                            "(nearfull), osd.1 (backfillfull), osd.2 (full)")


def test_pool_nearfull(view):
    fill(view, {0: 100, 1: 870, 2: 100})
    found = codes(view)
    assert set(found) >= {"OSD_NEARFULL", "POOL_NEARFULL"} and "POOL_FULL" not in found
    assert "osd.1 (nearfull)" in found["POOL_NEARFULL"].detail[0]


def test_osds_not_in_the_map_or_without_stats_are_ignored(view):
    fill(view, {0: 990})
    view.digest["osds"]["7"] = {"total_bytes": 100, "used_bytes": 100}
    assert full.osd_levels(view) == {0: (fu.FULL, 0.99)}
    view.digest = None
    assert full.osd_levels(view) == {}


def test_ratios_from_the_map_decide(view):
    fill(view, {0: 900})
    assert "OSD_BACKFILLFULL" in codes(view)
    run(view, {"prefix": "osd set-full-ratio", "ratio": 0.99})
    run(view, {"prefix": "osd set-backfillfull-ratio", "ratio": 0.98})
    run(view, {"prefix": "osd set-nearfull-ratio", "ratio": 0.95})
    assert "OSD_BACKFILLFULL" not in codes(view) and "OSD_NEARFULL" not in codes(view)


def test_mon_disk_checks(view):
    view.mon_status["disks"] = {"0": 50.0, "1": 20.0, "2": 3.0}
    found = codes(view)
    assert found["MON_DISK_LOW"].detail == ["mon.1 has 20% available"]
    assert found["MON_DISK_CRIT"].detail == ["mon.2 has 3% available"]
    assert found["MON_DISK_CRIT"].severity == "HEALTH_ERR"
    view.mon_status["disks"] = {"0": 31.0}
    assert not {"MON_DISK_LOW", "MON_DISK_CRIT"} & set(codes(view))


# ---------------------------------------------------------------- the FULL flag

def test_leader_sets_and_clears_the_full_flag(view):
    assert full._tick(view) == []
    fill(view, {1: 960})
    assert full._tick(view) == [{"prefix": "osd full-flag sync"}]
    out = run(view, {"prefix": "osd full-flag sync"})
    assert out == {"full": True, "changed": True} and "full" in view.osdmap.flags
    assert full._tick(view) == []
    assert run(view, {"prefix": "osd full-flag sync"})["changed"] is False
    view.digest = None  # no statistics (a new mgr): keep the flag as it is
    assert full._tick(view) == []
    view.digest = clean_digest(view)
    run(view, {"prefix": "osd full-flag sync"})
    assert "full" not in view.osdmap.flags


def test_other_flags_survive_the_full_flag(view):
    run(view, {"prefix": "osd set", "flag": "noout"})
    fill(view, {1: 960})
    run(view, {"prefix": "osd full-flag sync"})
    assert sorted(view.osdmap.flags) == ["full", "noout"]
    view.digest = clean_digest(view)
    run(view, {"prefix": "osd full-flag sync"})
    assert list(view.osdmap.flags) == ["noout"]


# ---------------------------------------------------------------- usage and MAX AVAIL

def test_shared_filesystem_counts_once(view):
    fill(view, {0: 400, 1: 400, 2: 400}, fs_id="h:shared")
    stats = run(view, {"prefix": "df"})["stats"]
    assert stats["total_bytes"] == 1000 and stats["total_used_bytes"] == 400


def test_max_avail_from_the_fullest_osd(view):
    fill(view, {0: 100, 1: 100, 2: 700})
    pool = run(view, {"prefix": "df"})["pools"][0]["stats"]
    # osd.2 holds a third of the replicas and has 950 - 700 = 250 bytes to the full ratio
    assert pool["max_avail"] == 250
    fill(view, {2: 990})
    assert run(view, {"prefix": "df"})["pools"][0]["stats"]["max_avail"] == 0


def test_pool_max_avail_pure():
    stats = {"0": {"total_bytes": 1000, "used_bytes": 0, "fs_id": "a"},
             "1": {"total_bytes": 1000, "used_bytes": 0, "fs_id": "a"},
             "2": {"total_bytes": 2000, "used_bytes": 1000, "fs_id": "b"}}
    # fs a: 1000 bytes of room, half the replicas; fs b: 900, the other half
    assert fu.pool_max_avail({0: 4, 1: 4, 2: 8}, stats, 0.95, 2) == 900
    assert fu.pool_max_avail({}, stats, 0.95, 2) == 0
    assert fu.pool_max_avail({5: 3}, stats, 0.95, 3) == 0


# ---------------------------------------------------------------- OSD admission

def usage(ratio: float) -> fu.DeviceUsage:
    return fu.DeviceUsage(1000, int(round(1000 * (1 - ratio))), "h:1")


@pytest.mark.parametrize("code", [Op.WRITE_FULL, Op.WRITE, Op.APPEND, Op.SETXATTR,
                                  Op.OMAP_SET, Op.CREATE])
def test_writes_refused_with_enospc_when_full(code):
    with pytest.raises(NoSpace) as e:
        osdfull.check_write(code, ["full"], DEFAULT, usage(0.5), 3)
    assert e.value.code == errno.ENOSPC and "cluster is full" in str(e.value)
    with pytest.raises(NoSpace, match="osd.3 is full"):
        osdfull.check_write(code, [], DEFAULT, usage(0.951), 3)
    osdfull.check_write(code, ["noout"], DEFAULT, usage(0.94), 3)


@pytest.mark.parametrize("code", [Op.REMOVE, Op.TRUNCATE, Op.RMXATTR, Op.OMAP_RM,
                                  Op.OMAP_CLEAR])
def test_removals_always_admitted(code):
    osdfull.check_write(code, ["full"], DEFAULT, usage(1.0), 3)


def test_copies_stop_at_backfillfull():
    osdfull.check_copy(DEFAULT, usage(0.89), 1)
    with pytest.raises(NoSpace, match="backfill_toofull"):
        osdfull.check_copy(DEFAULT, usage(0.90), 1)


def test_device_usage_of_a_directory(tmp_path):
    u = fu.device_usage(tmp_path)
    st = os.statvfs(tmp_path)
    assert u.total_bytes == st.f_blocks * st.f_frsize and 0.0 <= u.used_ratio <= 1.0
    assert u.fs_id == fu.device_usage(tmp_path / ".").fs_id


def test_reserve_file_released_when_out_of_space_and_taken_back(tmp_path):
    watch = osdfull.DeviceWatch(tmp_path, 1 << 20)
    watch.keep_reserve(fu.Ratios(1.0, 1.0, 1.0))
    assert watch.reserve.stat().st_size == 1 << 20
    watch.reserve_bytes = 1 << 62  # "less free space than the reserve": give it back
    watch.keep_reserve(fu.Ratios(1.0, 1.0, 1.0))
    assert not watch.reserve.exists()


# ---------------------------------------------------------------- the store's free extents

def _extent_files(path) -> list[str]:
    return sorted(os.listdir(path / "ext"))


async def test_store_gives_free_extents_back_when_pooling_is_off(tmp_path):
    from sds.osd.store.base import Transaction
    from sds.osd.store.durable import DurableStore

    store = DurableStore(str(tmp_path), prealloc_files=0)
    try:
        await store.apply(Transaction().create_collection("c"))
        big = b"z" * (1 << 20)
        for name in ("a", "b"):
            await store.apply(Transaction().write_full("c", name, big))
        await store.apply(Transaction().remove("c", "a"))
        assert len(_extent_files(tmp_path)) == 2  # a's file kept in the pool for reuse
        assert store.set_pooling(False) >= 1 << 20
        assert len(_extent_files(tmp_path)) == 1
        await store.apply(Transaction().remove("c", "b"))
        assert _extent_files(tmp_path) == []  # freed at once, not pooled
        store.set_pooling(True)
        await store.apply(Transaction().write_full("c", "d", big))
        await store.apply(Transaction().remove("c", "d"))
        assert len(_extent_files(tmp_path)) == 1
    finally:
        await store.close()


class _Store:
    def __init__(self):
        self.calls = []

    def set_pooling(self, on: bool) -> int:
        self.calls.append(on)
        return 0


def test_pooling_off_from_nearfull_and_on_with_headroom(tmp_path, monkeypatch):
    watch = osdfull.DeviceWatch(tmp_path, 0)
    store = _Store()
    total = 10 << 30
    monkeypatch.setattr(osdfull, "device_usage",
                        lambda path: fu.DeviceUsage(total, int(total * (1 - level[0])), "h:1"))
    level = [0.5]
    watch.tend(DEFAULT, store)
    assert store.calls == []
    level[0] = 0.86
    watch.tend(DEFAULT, store)
    watch.tend(DEFAULT, store)
    assert store.calls == [False]
    level[0] = 0.849  # under nearfull, but not by POOL_HEADROOM_BYTES
    watch.tend(DEFAULT, store)
    assert store.calls == [False]
    level[0] = 0.80
    watch.tend(DEFAULT, store)
    assert store.calls == [False, True]


def test_the_mds_writes_past_full_up_to_the_failsafe_ratio():
    assert osdfull.failsafe_ratio(DEFAULT) == pytest.approx(0.975)
    osdfull.check_write(Op.WRITE_FULL, ["full"], DEFAULT, usage(0.96), 3, full_try=True)
    with pytest.raises(NoSpace, match="failsafe"):
        osdfull.check_write(Op.WRITE_FULL, ["full"], DEFAULT, usage(0.98), 3, full_try=True)
    osdfull.check_write(Op.REMOVE, ["full"], DEFAULT, usage(1.0), 3, full_try=True)
