"""Recovery moves a large object in parts of bounded size: a 1.5 GiB sparse object (more
than one message can carry) written while an OSD was down is recovered onto it, with
bounded memory in every OSD, and every replica ends up with the same bytes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from crc32c import crc32c
from fault_helpers import wait_for

from sds.client import Rados
from sds.osd.store.durable import DurableStore

pytestmark = [pytest.mark.integration,
              pytest.mark.cluster_opts(extra_conf={"osd_max_object_size": 4 << 30})]

SIZE = 3 << 29   # 1.5 GiB
BLOCKS = {0: os.urandom(4096), (100 << 20) + 7: os.urandom(5000), 700 << 20: os.urandom(4096),
          SIZE - 4096: os.urandom(4096)}
RSS_BOUND = 300 << 20
PART = 16 << 20


def _rss(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) << 10 for line in text.splitlines()
                 if line.startswith("VmRSS:")), 0)


async def _osd_up(r: Rados, osd_id: int, up: bool) -> bool:
    await r.wait_for_map_change(0.5)
    return next(o for o in r.osdmap.osds if o.id == osd_id).up == up


async def _clean(r: Rados) -> bool:
    await r.wait_for_map_change(0.5)
    if not all(o.up for o in r.osdmap.osds):
        return False
    st = await r.mon_command({"prefix": "status"})
    states = st["pgmap"]["pgs_by_state"]
    return sum(s["count"] for s in states) == st["pgmap"]["num_pgs"] and all(
        s["state_name"] == "active+clean" for s in states)


def _signature(store: DurableStore, oid: str) -> tuple:
    """Size, a checksum of the data read part by part, xattrs and omap of one copy."""
    coll = next(c for c in store.list_collections() if store.exists(c, oid))
    size = store.stat(coll, oid).size
    crc = 0
    for at in range(0, size, PART):
        crc = crc32c(store.read(coll, oid, at, PART), crc)
    omap, _ = store.omap_list(coll, oid, max_entries=100)
    return size, crc, store.getxattrs(coll, oid), omap


async def test_a_large_sparse_object_is_recovered_in_parts(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("large", pg_num=4, size=3)
        io = r.ioctx("large")
        cluster.stop("osd.2")
        await wait_for(lambda: _osd_up(r, 2, False), 20, "osd.2 marked down")
        await io.create("big")
        await io.truncate("big", SIZE)
        for offset, block in BLOCKS.items():
            await io.write("big", block, offset=offset)
        await io.setxattr("big", "user.a", b"xattr")
        await io.omap_set("big", {b"k": b"omap"})
        cluster.start("osd.2")
        await wait_for(lambda: _osd_up(r, 2, True), 30, "osd.2 back up")
        pids = {name: cluster.pid(name) for name in cluster.names("osd")}
        peak = dict.fromkeys(pids, 0)
        done = threading.Event()

        def sample():
            while not done.is_set():
                for name, pid in pids.items():
                    peak[name] = max(peak[name], _rss(pid))
                time.sleep(0.05)
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        try:
            await wait_for(lambda: _clean(r), 120, "every PG active+clean")
        finally:
            done.set()
            sampler.join()
        print(f"1.5 GiB sparse object recovered within {time.monotonic() - started:.1f}s; "
              f"peak RSS {', '.join(f'{n} {v >> 20} MiB' for n, v in sorted(peak.items()))}")
        assert max(peak.values()) < RSS_BOUND, peak
        for offset, block in BLOCKS.items():
            assert await io.read("big", length=len(block), offset=offset) == block
    for name in cluster.names("osd"):
        cluster.stop(name)
    signatures = []
    for name in cluster.names("osd"):
        store = DurableStore(str(Path(cluster.dir) / name / "store"))
        try:
            signatures.append(_signature(store, "big"))
        finally:
            await store.close()
    assert signatures[0][0] == SIZE
    assert signatures[0][2] == {"user.a": b"xattr"} and signatures[0][3] == [(b"k", b"omap")]
    assert signatures == [signatures[0]] * 3, "the replicas differ"
