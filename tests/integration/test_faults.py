"""Faults with real processes: kill -9 of the leader monitor and of an OSD under load.

Every test ends by checking that every acknowledged write reads back with the right
contents, and (where the cluster is stopped) that all replicas are byte-identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest
from fault_helpers import (
    AckChecker,
    _all_clean,
    _all_up,
    _osd,
    _rebooted,
    assert_replicas_identical,
    flip_byte_on_disk,
    wait_for,
)

from sds.client import Rados
from sds.common.config import Config
from sds.common.errors import SdsError
from sds.osd.store.durable import DurableStore

pytestmark = pytest.mark.integration


def mon_only_conf(cluster, rank: int, tmp_path: Path) -> Path:
    """A copy of sds.conf whose clients only know one monitor."""
    addr = Config(cluster.conf).mon_addrs[rank]
    text = cluster.conf.read_text().replace(Config(cluster.conf).get("mon_host"), addr)
    path = tmp_path / f"mon{rank}.conf"
    path.write_text(text.replace("keyring = keyring", f"keyring = {cluster.dir / 'keyring'}"))
    return path


async def test_leader_mon_kill_and_rejoin(cluster, tmp_path):
    async with Rados(cluster.conf) as r:
        stat = await r.mon_command({"prefix": "mon stat"})
        leader = stat["leader_rank"] if "leader_rank" in stat else stat["leader"]
        leader = int(leader)
        cluster.kill(f"mon.{leader}")
        killed_at = time.monotonic()

        async def pool_create_works():
            await r.mon_command({"prefix": "osd pool create", "pool": "after-kill",
                                 "pg_num": 8}, timeout=3)
            return True
        await wait_for(pool_create_works, 30, "a map change after the leader died")
        elapsed = time.monotonic() - killed_at
        print(f"map changes work again {elapsed:.1f}s after killing mon.{leader}")
        stat = await r.mon_command({"prefix": "mon stat"})
        assert leader not in stat["quorum"]

        cluster.start(f"mon.{leader}")

        async def rejoined():
            st = await r.mon_command({"prefix": "mon stat"})
            return sorted(st["quorum"]) == [0, 1, 2]
        await wait_for(rejoined, 30, f"mon.{leader} rejoining the quorum")

    # the restarted monitor caught up: it alone serves the pool created while it was dead
    async with Rados(mon_only_conf(cluster, leader, tmp_path)) as r:
        assert "after-kill" in await r.pool_list()


async def test_osd_kill9_and_restart_under_writes(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("load", pg_num=16, size=3)
        io = r.ioctx("load")
        checker = AckChecker()
        stop = asyncio.Event()
        writer = asyncio.create_task(checker.writer(io, "obj", stop))
        await asyncio.sleep(1.5)
        before = len(checker.acked)
        booted_in = _osd(r, 1).up_from
        cluster.kill("osd.1")
        await asyncio.sleep(2.0)
        cluster.start("osd.1")
        await wait_for(lambda: _rebooted(r, 1, booted_in), 30, "osd.1 to boot again")
        during = len(checker.acked)

        async def progressing():
            return len(checker.acked) > during + 20
        await wait_for(progressing, 30, "writes to resume after the restart")
        stop.set()
        await asyncio.wait_for(writer, 60)
        assert len(checker.acked) > during >= before > 0
        await checker.verify(io)
        await wait_for(lambda: _all_clean(r), 30, "all PGs active+clean")

    cluster.down()
    await assert_replicas_identical(cluster, checker.acked)


# osd_op_timeout bounds both waits: long enough for osd.1 to restart and peer on a loaded
# machine (the pending write must still be waiting then), short enough to keep the test quick
@pytest.mark.cluster_opts(extra_conf={"osd_op_timeout": 15})
async def test_writes_block_below_min_size_then_fail_clearly(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("minsize", pg_num=8, size=3, min_size=2)
        io = r.ioctx("minsize")
        await io.write_full("before", b"x")
        cluster.stop("osd.1")
        cluster.stop("osd.2")   # a clean stop marks each OSD down
        await wait_for(lambda: _down(r, [1, 2]), 20, "osd.1 and osd.2 marked down")
        started = time.monotonic()
        with pytest.raises(SdsError, match="fewer than min_size 2"):
            await io.write_full("refused", b"y")
        assert time.monotonic() - started >= 5, "the write should block until osd_op_timeout"
        assert await io.read("before") == b"x"  # reads still work with one replica

        pending = asyncio.create_task(io.write_full("waits", b"z"))
        await asyncio.sleep(1.0)
        assert not pending.done(), "a write below min_size must wait, not ack"
        cluster.start("osd.1")
        await asyncio.wait_for(pending, 30)  # unblocks once two replicas are up again
        assert await io.read("waits") == b"z"


async def _down(r: Rados, ids: list[int]) -> bool:
    await r.wait_for_map_change(0.5)
    return all(not _osd(r, i).up for i in ids)


async def _big_object(cluster, pool: str):
    from sds.crush.placement import object_to_pg, pg_name

    big = os.urandom(4 << 20)
    async with Rados(cluster.conf) as r:
        await r.pool_create(pool, pg_num=8, size=3)
        io = r.ioctx(pool)
        await io.write_full("victim", big)
        await io.write_full("bystander", b"fine")
        p = r.monc.pools[pool]
        pg = object_to_pg(p, "victim")
        return big, pg_name(p.id, pg), r.placement.pg_up(p.id, pg)


async def test_corrupt_primary_copy_is_never_returned_and_repaired_on_read(cluster):
    big, pgid, acting = await _big_object(cluster, "readrepair")
    await flip_byte_on_disk(cluster, acting[0], pgid, "victim", 1_000_000)
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        io = r.ioctx("readrepair")
        assert await io.read("victim") == big       # served from a good replica, not EIO
        assert await io.read("bystander") == b"fine"
        report = await r.pg_command(pgid, {"prefix": "deep-scrub"})
        assert report["inconsistent"] == []          # the primary's copy was repaired


async def test_deep_scrub_finds_corrupt_replica_and_repair_fixes_it(cluster):
    big, pgid, acting = await _big_object(cluster, "scrubme")
    replica = acting[2]
    await flip_byte_on_disk(cluster, replica, pgid, "victim", 3_000_000)
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        light = await r.pg_command(pgid, {"prefix": "scrub"})
        assert light["inconsistent"] == []           # sizes and versions still agree
        deep = await r.pg_command(pgid, {"prefix": "deep-scrub"})
        [finding] = deep["inconsistent"]
        assert finding["object"] == "victim" and list(finding["bad"]) == [f"osd.{replica}"]
        query = await r.pg_command(pgid, {"prefix": "query"})
        assert "inconsistent" in query["state"]
        repaired = await r.pg_command(pgid, {"prefix": "repair"})
        assert [f["object"] for f in repaired["repaired"]] == ["victim"]
        assert repaired["inconsistent"] == []
        assert await r.ioctx("scrubme").read("victim") == big
    cluster.down()
    store = DurableStore(cluster.dir / f"osd.{replica}" / "store")
    try:
        assert store.read(pgid, "victim") == big     # the replica's bytes are good again
    finally:
        await store.close()


async def _osd_up(r: Rados, osd_id: int) -> bool:
    await r.wait_for_map_change(0.5)
    return any(o.id == osd_id and o.up for o in r.osdmap.osds)


@pytest.mark.cluster_opts(extra_conf={"osd_heartbeat_grace": 3, "mon_osd_down_out_interval": 6})
async def test_dead_osd_marked_down_then_out_while_writes_continue(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("detect", pg_num=16, size=3, min_size=2)
        io = r.ioctx("detect")
        checker = AckChecker()
        stop = asyncio.Event()
        writer = asyncio.create_task(checker.writer(io, "obj", stop))
        await asyncio.sleep(1.0)
        cluster.kill("osd.2")
        killed = time.monotonic()
        await wait_for(lambda: _down(r, [2]), 30, "osd.2 marked down")
        marked_down = time.monotonic()
        acked = len(checker.acked)

        async def progressing():
            return len(checker.acked) > acked + 20
        await wait_for(progressing, 30, "writes to continue on the two remaining replicas")
        await wait_for(lambda: _out(r, 2), 30, "osd.2 marked out")
        marked_out = time.monotonic()
        print(f"kill -> down {marked_down - killed:.1f}s (grace 3s), "
              f"down -> out {marked_out - marked_down:.1f}s (interval 6s)")
        cluster.start("osd.2")
        await wait_for(lambda: _back_in(r, 2), 30, "osd.2 up and in again")
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(writer, 60)
        await checker.verify(io)
        await wait_for(lambda: _all_clean(r), 60, "all PGs active+clean")
    cluster.down()
    await assert_replicas_identical(cluster, checker.acked)


async def _out(r: Rados, osd_id: int) -> bool:
    await r.wait_for_map_change(0.5)
    return not getattr(_osd(r, osd_id), "in")


async def _back_in(r: Rados, osd_id: int) -> bool:
    await r.wait_for_map_change(0.5)
    osd = _osd(r, osd_id)
    return osd.up and getattr(osd, "in")


KILL_LOOPS = int(os.environ.get("SDS_FAULT_KILL_LOOPS", "20"))


async def test_repeated_kill9_of_an_osd_mid_write_keeps_its_store_consistent(cluster):
    """kill -9 the same OSD again and again while writes (small and 1 MiB) are in flight."""
    async with Rados(cluster.conf) as r:
        await r.pool_create("crashloop", pg_num=8, size=3)
        io = r.ioctx("crashloop")
        checker = AckChecker()
        stop = asyncio.Event()
        writer = asyncio.create_task(checker.writer(io, "obj", stop))
        big_writer = asyncio.create_task(checker.big_writer(io, "big", stop))
        for _ in range(KILL_LOOPS):
            booted_in = _osd(r, 1).up_from
            await asyncio.sleep(0.3)
            cluster.kill("osd.1")
            cluster.start("osd.1")
            await wait_for(lambda b=booted_in: _rebooted(r, 1, b), 30, "osd.1 to boot again")
        stop.set()
        await asyncio.wait_for(asyncio.gather(writer, big_writer), 120)
        await checker.verify(io)
        await wait_for(lambda: _all_clean(r), 60, "all PGs active+clean")
        for pool in r.osdmap.pools:
            for ps in range(pool.pg_num):
                report = await r.pg_command(f"{pool.id}.{ps:x}", {"prefix": "deep-scrub"})
                assert report["inconsistent"] == [], report
    cluster.down()
    for osd in ("osd.0", "osd.1", "osd.2"):
        store = DurableStore(cluster.dir / osd / "store")
        try:
            assert store.fsck() == [], f"{osd} store inconsistent"
        finally:
            await store.close()
    await assert_replicas_identical(cluster, checker.acked)


THRASH_SECONDS = float(os.environ.get("SDS_THRASH_SECONDS", "25"))


@pytest.mark.cluster_opts(osds=4, extra_conf={"osd_heartbeat_grace": 3,
                                              "mon_osd_down_out_interval": 8})
async def test_thrasher(cluster):
    """Random kill -9/restart, stop/start, out/in of OSDs under load; then all must heal."""
    import random

    seed = int(os.environ.get("SDS_THRASH_SEED", "7"))
    rng = random.Random(seed)
    print(f"thrasher seed {seed} (SDS_THRASH_SEED={seed} replays the same actions)")
    async with Rados(cluster.conf) as r:
        await r.pool_create("thrash", pg_num=16, size=3, min_size=2)
        io = r.ioctx("thrash")
        checker = AckChecker()
        stop = asyncio.Event()
        writer = asyncio.create_task(checker.writer(io, "obj", stop))
        dead: set[int] = set()
        out: set[int] = set()
        deadline = time.monotonic() + THRASH_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            victim = rng.randrange(4)
            action = rng.choice(["kill", "restart", "out", "in"])
            if action == "kill" and not dead:   # at most one OSD dead: min_size stays reachable
                cluster.kill(f"osd.{victim}")
                dead.add(victim)
            elif action == "restart" and dead:
                victim = dead.pop()
                cluster.start(f"osd.{victim}")
            elif action == "out" and len(out) < 1 and victim not in dead:
                await r.mon_command({"prefix": "osd out", "ids": [victim]})
                out.add(victim)
            elif action == "in" and out:
                victim = out.pop()
                await r.mon_command({"prefix": "osd in", "ids": [victim]})
            else:
                continue
            print(f"thrash: {action} osd.{victim}; dead {sorted(dead)} out {sorted(out)}")
        for osd in dead:
            cluster.start(f"osd.{osd}")
        if out:
            await r.mon_command({"prefix": "osd in", "ids": sorted(out)})
        await wait_for(lambda: _all_up_and_in(r), 60, "every OSD up and in")
        stop.set()
        await asyncio.wait_for(writer, 120)
        await checker.verify(io)
        await wait_for(lambda: _all_clean(r), 90, "all PGs active+clean")
        final = {name: r.placement.pg_up(r.monc.pools["thrash"].id,
                                         _pg_of(r, "thrash", name)) for name in checker.acked}
    cluster.down()
    await assert_acting_copies_identical(cluster, "thrash", checker.acked, final)


def _pg_of(r: Rados, pool: str, name: str) -> int:
    from sds.crush.placement import object_to_pg
    return object_to_pg(r.monc.pools[pool], name)


async def _all_up_and_in(r: Rados) -> bool:
    await r.wait_for_map_change(0.5)
    return all(o.up and getattr(o, "in") for o in r.osdmap.osds)


async def assert_acting_copies_identical(cluster, pool: str, acked: dict[str, bytes],
                                         acting: dict[str, list[int]]) -> None:
    """Every acked object is on each OSD of its final acting set, byte for byte."""
    stores = {}
    try:
        for osd in sorted({o for osds in acting.values() for o in osds}):
            stores[osd] = DurableStore(cluster.dir / f"osd.{osd}" / "store")
        for name, data in acked.items():
            for osd in acting[name]:
                colls = [c for c in stores[osd].list_collections()
                         if stores[osd].exists(c, name)]
                assert colls, f"{name} missing on osd.{osd}"
                assert stores[osd].read(colls[0], name) == data, f"{name} differs on osd.{osd}"
    finally:
        for store in stores.values():
            await store.close()


@pytest.mark.cluster_opts(extra_conf={"osd_heartbeat_grace": 3})
async def test_leader_mon_killed_during_load_and_osd_failure(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("monkill", pg_num=16, size=3, min_size=2)
        io = r.ioctx("monkill")
        checker = AckChecker()
        stop = asyncio.Event()
        writer = asyncio.create_task(checker.writer(io, "obj", stop))
        await asyncio.sleep(1.0)
        leader = int((await r.mon_command({"prefix": "mon stat"}))["leader_rank"])
        cluster.kill("osd.2")
        await asyncio.sleep(0.5)
        cluster.kill(f"mon.{leader}")
        await wait_for(lambda: _down(r, [2]), 30, "osd.2 marked down by the new quorum")
        stat = await r.mon_command({"prefix": "mon stat"})
        assert leader not in stat["quorum"] and len(stat["quorum"]) == 2
        acked = len(checker.acked)

        async def progressing():
            return len(checker.acked) > acked + 20
        await wait_for(progressing, 30, "writes to continue with 2 mons and 2 OSDs")
        cluster.start(f"mon.{leader}")
        cluster.start("osd.2")
        await wait_for(lambda: _back_in(r, 2), 30, "osd.2 back")
        stop.set()
        await asyncio.wait_for(writer, 60)
        await checker.verify(io)
        await wait_for(lambda: _all_clean(r), 60, "all PGs active+clean")


async def test_add_a_fourth_osd_under_load(cluster):
    """A new OSD joins CRUSH with its weight; only the PGs mapped to it move there."""
    from sds.crush.placement import pg_name

    async with Rados(cluster.conf) as r:
        await r.pool_create("grow", pg_num=32, size=3)
        io = r.ioctx("grow")
        checker = AckChecker()
        stop = asyncio.Event()
        writer = asyncio.create_task(checker.writer(io, "obj", stop))
        await asyncio.sleep(1.0)
        assert cluster.add_osd() == "osd.3"
        await wait_for(lambda: _osd_up(r, 3), 30, "osd.3 up")
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(writer, 60)
        await checker.verify(io)
        await wait_for(lambda: _all_clean(r), 90, "all PGs active+clean after backfill")
        pool = r.monc.pools["grow"]
        on_new = {pg_name(pool.id, ps) for ps in range(pool.pg_num)
                  if 3 in r.placement.pg_up(pool.id, ps)}
        assert on_new, "CRUSH gives the new OSD some PGs"
        final = {name: r.placement.pg_up(pool.id, _pg_of(r, "grow", name))
                 for name in checker.acked}
        tree = await r.mon_command({"prefix": "osd tree"})
        assert any(n.get("name") == "osd.3" for n in tree["nodes"])
    cluster.down()
    await assert_acting_copies_identical(cluster, "grow", checker.acked, final)
    store = DurableStore(cluster.dir / "osd.3" / "store")
    try:
        with_data = {c for c in store.list_collections() if store.list_objects(c)[0]}
        assert with_data <= on_new, f"osd.3 got data of PGs not mapped to it: {with_data - on_new}"
    finally:
        await store.close()


CGROUP2_ROOT = "/sys/fs/cgroup/unified"


@contextlib.contextmanager
def isolated_cgroup(name: str):
    """A cgroup v2 directory whose processes' outgoing packets can be dropped at will."""
    import shutil
    import subprocess

    root = CGROUP2_ROOT if os.path.isdir(CGROUP2_ROOT) else "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(root, "cgroup.procs")) or not shutil.which("iptables"):
        pytest.skip("needs cgroup v2 and iptables with the cgroup match")
    path = os.path.join(root, name)
    os.makedirs(path, exist_ok=True)
    rule = ["OUTPUT", "-m", "cgroup", "--path", name, "-j", "DROP"]

    def iptables(op: str) -> None:
        subprocess.run(["iptables", op, *rule], check=True, capture_output=True)

    class Partition:
        def cut(self):
            iptables("-A")

        def heal(self):
            subprocess.run(["iptables", "-D", *rule], capture_output=True)

    part = Partition()
    try:
        yield path, part
    finally:
        part.heal()
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.2)


@pytest.mark.cluster_opts(extra_conf={"osd_heartbeat_grace": 3})
async def test_partitioned_osd_acks_nothing_and_rejoins_without_split_brain(cluster):
    """Cut every packet osd.2 sends (a primary of some PGs) while clients write, then heal:
    the minority acknowledges nothing, the majority carries on, nothing acked is lost."""
    with isolated_cgroup(f"sds-test-{os.getpid()}") as (cgroup, partition):
        cluster.stop("osd.2")
        cluster.start("osd.2", cgroup=cgroup)
        async with Rados(cluster.conf) as r:
            await wait_for(lambda: _all_up(r), 30, "osd.2 up in its cgroup")
            await r.pool_create("split", pg_num=16, size=3, min_size=2)
            io = r.ioctx("split")
            assert any(r.placement.primary(r.monc.pools["split"].id, ps) == 2
                       for ps in range(16)), "osd.2 should be primary of some PGs"
            checker = AckChecker()
            stop = asyncio.Event()
            writer = asyncio.create_task(checker.writer(io, "obj", stop, concurrency=8))
            await asyncio.sleep(1.0)
            partition.cut()
            await wait_for(lambda: _down(r, [2]), 30, "the majority marking osd.2 down")
            acked = len(checker.acked)

            async def progressing():
                return len(checker.acked) > acked + 20
            await wait_for(progressing, 30, "writes to go on without osd.2")
            await asyncio.sleep(2.0)
            partition.heal()
            await wait_for(lambda: _back_in(r, 2), 60, "osd.2 back after the partition")
            stop.set()
            await asyncio.wait_for(writer, 120)
            await checker.verify(io)
            await wait_for(lambda: _all_clean(r), 90, "all PGs active+clean")
            for ps in range(16):
                report = await r.pg_command(f"{r.monc.pools['split'].id}.{ps:x}",
                                            {"prefix": "deep-scrub"})
                assert report["inconsistent"] == [], report
        cluster.down()
    await assert_replicas_identical(cluster, checker.acked)
