"""Recovery in the background: a PG serves client I/O while it recovers, and an op on an
object a member still misses recovers that object first instead of failing."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from fault_helpers import (
    AckChecker,
    _all_clean,
    _rebooted,
    assert_replicas_identical,
    wait_for,
)

from sds.client import Rados
from sds.cluster.local import log_tail
from sds.common.errors import SdsError
from sds.crush.placement import object_to_pg, pg_name
from sds.osd.store.durable import DurableStore

pytestmark = pytest.mark.integration

OBJECTS = 300
RECOVERING = {"recovering", "recovery_wait", "backfilling", "backfill_wait", "degraded"}


async def _pg_state(r: Rados, pgid: str) -> str:
    return (await r.pg_command(pgid, {"prefix": "query"}))["state"]


@pytest.mark.cluster_opts(extra_conf={"osd_recovery_max_active": 1,
                                      "osd_recovery_sleep": 0.05})
async def test_io_continues_while_a_restarted_osd_recovers(cluster):
    checker = AckChecker()
    async with Rados(cluster.conf) as r:
        await r.pool_create("rec", pg_num=4, size=3, min_size=2)
        io = r.ioctx("rec")
        await _put(io, checker, range(OBJECTS), 0, 4096)
        await r.mon_command({"prefix": "osd set", "flag": "noout"})
        cluster.stop("osd.2")
        await wait_for(lambda: _down(r, 2), 20, "osd.2 marked down")
        await _put(io, checker, range(OBJECTS), 1, 4096)  # every object changes while osd.2 is away
        await _restart(cluster, r, 2)

        # the last object is at the end of osd.2's recovery queue of its PG
        target = f"obj-{OBJECTS - 1}"
        pgid = pg_name(r.monc.pools["rec"].id, object_to_pg(r.monc.pools["rec"], target))
        await wait_for(lambda: _active_and_recovering(r, pgid), 30, f"{pgid} recovering")
        checker.acked[target] = checker.payload(target, 2, 4096)
        await asyncio.wait_for(io.write_full(target, checker.acked[target]), 20)
        news = {f"new-{n}": checker.payload(f"new-{n}", 0, 4096) for n in range(10)}
        await asyncio.wait_for(asyncio.gather(  # new objects, written while the PG recovers
            *(io.write_full(name, data) for name, data in news.items())), 20)
        checker.acked.update(news)
        state = await _pg_state(r, pgid)
        assert RECOVERING & set(state.split("+")), \
            f"{pgid} finished recovering before the writes: the test proves nothing ({state})"
        assert "active" in state.split("+")

        await wait_for(lambda: _all_clean(r), 120, "all PGs active+clean")
        await checker.verify(io)
        with contextlib.suppress(Exception):
            await r.mon_command({"prefix": "osd unset", "flag": "noout"})
    for name in ("osd.0", "osd.1", "osd.2"):
        cluster.stop(name)
    await assert_replicas_identical(cluster, checker.acked)


async def _put(io, checker: AckChecker, numbers, seq: int, size: int) -> None:
    """Write obj-<n> for each n, recording the acknowledged contents."""
    for n in numbers:
        name = f"obj-{n}"
        data = checker.payload(name, seq, size)
        await io.write_full(name, data)
        checker.acked[name] = data


async def _restart(cluster, r: Rados, osd_id: int) -> None:
    booted_in = r.osdmap.epoch
    cluster.start(f"osd.{osd_id}")
    await wait_for(lambda: _rebooted(r, osd_id, booted_in), 30, f"osd.{osd_id} back up")


async def _down(r: Rados, osd_id: int) -> bool:
    await r.wait_for_map_change(0.5)
    return not next(o for o in r.osdmap.osds if o.id == osd_id).up


async def _active_and_recovering(r: Rados, pgid: str) -> bool:
    parts = set((await _pg_state(r, pgid)).split("+"))
    return "active" in parts and bool(RECOVERING & parts - {"degraded"})


@pytest.mark.cluster_opts(extra_conf={"osd_op_timeout": 4})
async def test_pg_waits_incomplete_for_the_only_osd_with_the_newest_write(cluster):
    """osd.0 alone acks a write (min_size 1) and dies; osd.1 and osd.2 come back without
    it: they must not serve their older copy, but wait (incomplete) for osd.0."""
    async with Rados(cluster.conf) as r:
        await r.pool_create("lone", pg_num=1, size=3, min_size=1)
        io = r.ioctx("lone")
        await io.write_full("obj", b"old")
        await r.mon_command({"prefix": "osd set", "flag": "noout"})
        for name in ("osd.1", "osd.2"):
            cluster.stop(name)
        await wait_for(lambda: _down_all(r, [1, 2]), 20, "osd.1 and osd.2 down")
        await io.write_full("obj", b"new")  # acked by osd.0 alone
        cluster.stop("osd.0")
        await wait_for(lambda: _down_all(r, [0]), 20, "osd.0 down")
        for name in ("osd.1", "osd.2"):
            cluster.start(name)
        await wait_for(lambda: _up_all(r, [1, 2]), 30, "osd.1 and osd.2 up")
        pgid = pg_name(r.monc.pools["lone"].id, 0)
        await wait_for(lambda: _state_has(r, pgid, "incomplete"), 30, f"{pgid} incomplete")
        query = await r.pg_command(pgid, {"prefix": "query"})
        assert "osd.0" in query["reason"], query
        with pytest.raises(SdsError):
            await io.read("obj")  # never the stale "old"
        cluster.start("osd.0")
        await wait_for(lambda: _all_clean(r), 60, "all PGs active+clean")
        assert await io.read("obj") == b"new"


async def _down_all(r: Rados, ids: list[int]) -> bool:
    await r.wait_for_map_change(0.5)
    return all(not o.up for o in r.osdmap.osds if o.id in ids)


async def _up_all(r: Rados, ids: list[int]) -> bool:
    await r.wait_for_map_change(0.5)
    return all(o.up for o in r.osdmap.osds if o.id in ids)


async def _state_has(r: Rados, pgid: str, part: str) -> bool:
    with contextlib.suppress(SdsError):
        return part in (await _pg_state(r, pgid)).split("+")
    return False


@pytest.mark.cluster_opts(osds=4)
async def test_an_osd_taken_out_hands_its_pgs_over_and_drops_its_copies(cluster):
    checker = AckChecker()
    async with Rados(cluster.conf) as r:
        await r.pool_create("drain", pg_num=8, size=3)
        io = r.ioctx("drain")
        await _put(io, checker, range(60), 0, 2048)
        pool_id = r.monc.pools["drain"].id
        held = [ps for ps in range(8) if 3 in r.monc.placement.pg_up(pool_id, ps)]
        assert held, "osd.3 holds no PG of the pool: nothing to test"
        await r.mon_command({"prefix": "osd out", "ids": [3]})
        await wait_for(lambda: _all_clean(r), 60, "all PGs active+clean without osd.3")
        await checker.verify(io)
        await asyncio.sleep(2)  # the purge message follows the last recovered object
    cluster.stop("osd.3")
    store = DurableStore(cluster.dir / "osd.3" / "store")
    try:
        left = [c for c in store.list_collections() if c.startswith(f"{pool_id}.")]
    finally:
        await store.close()
    assert left == [], f"osd.3 still holds stray copies of {left}: " + log_tail(cluster.dir, "osd.3")


@pytest.mark.cluster_opts(extra_conf={"osd_pg_log_max_entries": 20})
async def test_an_osd_behind_the_log_tail_is_backfilled_by_scan(cluster):
    """While osd.2 is away each PG logs more writes than its log keeps: osd.2 cannot be
    recovered from the log, so it is backfilled from object listings, deletions included."""
    checker = AckChecker()
    async with Rados(cluster.conf) as r:
        await r.pool_create("scan", pg_num=2, size=3, min_size=2)
        io = r.ioctx("scan")
        await _put(io, checker, range(40), 0, 1024)
        await r.mon_command({"prefix": "osd set", "flag": "noout"})
        cluster.stop("osd.2")
        await wait_for(lambda: _down_all(r, [2]), 20, "osd.2 down")
        for n in range(0, 40, 4):  # deletions osd.2 must learn from the scan
            await io.remove(f"obj-{n}")
            del checker.acked[f"obj-{n}"]
        await _put(io, checker, range(40, 140), 1, 1024)
        await _restart(cluster, r, 2)
        await wait_for(lambda: _all_clean(r), 60, "all PGs active+clean")
        await checker.verify(io)
        assert sorted([n async for n in io.list_objects()]) == sorted(checker.acked)
        prefix = f"{r.monc.pools['scan'].id}."
    for name in ("osd.0", "osd.1", "osd.2"):
        cluster.stop(name)
    await assert_replicas_identical(cluster, checker.acked)
    for osd in ("osd.0", "osd.1", "osd.2"):
        store = DurableStore(cluster.dir / osd / "store")
        try:
            held = {n for c in store.list_collections() if c.startswith(prefix)
                    for n in store.list_objects(c, max_entries=1 << 20)[0]}
        finally:
            await store.close()
        assert held == set(checker.acked), f"{osd} holds {sorted(held - set(checker.acked))}"
