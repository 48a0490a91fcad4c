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
from fault_helpers import all_up_and_clean, osd_is_up, wait_for

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




def _signature(store: DurableStore, oid: str) -> tuple:
    """Size, a checksum of the data read part by part, xattrs and omap of one copy."""
    coll = next(c for c in store.list_collections() if store.exists(c, oid))
    size = store.stat(coll, oid).size
    crc = 0
    for at in range(0, size, PART):
        crc = crc32c(store.read(coll, oid, at, PART), crc)
    omap, _ = store.omap_list(coll, oid, max_entries=100)
    return size, crc, store.getxattrs(coll, oid), omap


async def _stored_signatures(cluster, oid: str) -> list:
    """Stop the OSDs and read `oid`'s signature from each one's store."""
    for name in cluster.names("osd"):
        cluster.stop(name)
    signatures = []
    for name in cluster.names("osd"):
        store = DurableStore(str(Path(cluster.dir) / name / "store"))
        try:
            signatures.append(_signature(store, oid))
        finally:
            await store.close()
    return signatures


async def test_a_large_sparse_object_is_recovered_in_parts(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("large", pg_num=4, size=3)
        io = r.ioctx("large")
        cluster.stop("osd.2")
        await wait_for(lambda: osd_is_up(r, 2, False), 20, "osd.2 marked down")
        await io.create("big")
        await io.truncate("big", SIZE)
        for offset, block in BLOCKS.items():
            await io.write("big", block, offset=offset)
        await io.setxattr("big", "user.a", b"xattr")
        await io.omap_set("big", {b"k": b"omap"})
        cluster.start("osd.2")
        await wait_for(lambda: osd_is_up(r, 2, True), 30, "osd.2 back up")
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
            await wait_for(lambda: all_up_and_clean(r), 120, "every PG active+clean")
        finally:
            done.set()
            sampler.join()
        print(f"1.5 GiB sparse object recovered within {time.monotonic() - started:.1f}s; "
              f"peak RSS {', '.join(f'{n} {v >> 20} MiB' for n, v in sorted(peak.items()))}")
        assert max(peak.values()) < RSS_BOUND, peak
        for offset, block in BLOCKS.items():
            assert await io.read("big", length=len(block), offset=offset) == block
    signatures = await _stored_signatures(cluster, "big")
    assert signatures[0][0] == SIZE
    assert signatures[0][2] == {"user.a": b"xattr"} and signatures[0][3] == [(b"k", b"omap")]
    assert signatures == [signatures[0]] * 3, "the replicas differ"


REPAIR_SIZE = 300 << 20
REPAIR_AT = 100 << 20  # 1 MiB written there: in an extent file, where a byte can be flipped
REPAIR_BLOCKS = {0: os.urandom(4096), REPAIR_AT: os.urandom(1 << 20),
                 REPAIR_SIZE - 4096: os.urandom(4096)}
BIG_OMAP = {f"m{i:02d}".encode(): os.urandom(1 << 20) for i in range(40)}  # 3 pages


class _Peaks:
    """Peak RSS of every OSD while the block runs."""

    def __init__(self, cluster):
        self.pids = {name: cluster.pid(name) for name in cluster.names("osd")}
        self.peak = dict.fromkeys(self.pids, 0)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], _rss(pid))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def __str__(self) -> str:
        return ", ".join(f"{n} {v >> 20} MiB" for n, v in sorted(self.peak.items()))


async def test_a_corrupt_300mib_object_is_repaired_in_parts(cluster):
    """Scrub repair and repair on read copy a large object part by part (its 40 MiB omap
    in pages), and the deep scrub reads it part by part: every OSD stays under the RSS
    bound, and every replica ends up with the same data, xattrs and omap."""
    from fault_helpers import _all_up, flip_byte_on_disk

    from sds.crush.placement import object_to_pg, pg_name

    async with Rados(cluster.conf) as r:
        await r.pool_create("repair", pg_num=4, size=3)
        io = r.ioctx("repair")
        await io.create("big")
        await io.truncate("big", REPAIR_SIZE)
        for offset, block in REPAIR_BLOCKS.items():
            await io.write("big", block, offset=offset)
        await io.setxattr("big", "user.a", b"xattr")
        await io.omap_set("big", {b"k": b"omap"})
        for at in range(0, len(BIG_OMAP), 8):
            await io.omap_set("big", dict(list(BIG_OMAP.items())[at:at + 8]))
        pool = r.monc.pools["repair"]
        ps = object_to_pg(pool, "big")
        pgid, acting = pg_name(pool.id, ps), r.placement.pg_up(pool.id, ps)
    bad_at = REPAIR_AT + 100

    # a replica's copy is corrupt: the deep scrub names it, the repair rewrites it
    await flip_byte_on_disk(cluster, acting[2], pgid, "big", bad_at)
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        with _Peaks(cluster) as peaks:
            started = time.monotonic()
            deep = await r.pg_command(pgid, {"prefix": "deep-scrub"})
            scrubbed = time.monotonic() - started
            assert [f["object"] for f in deep["inconsistent"]] == ["big"]
            repaired = await r.pg_command(pgid, {"prefix": "repair"})
            took = time.monotonic() - started - scrubbed
        assert [f["object"] for f in repaired["repaired"]] == ["big"]
        assert repaired["inconsistent"] == []
        print(f"\n300 MiB object: deep scrub {scrubbed:.1f}s, repair (with its two deep "
              f"scrubs) {took:.1f}s; peak RSS {peaks}")
        assert max(peaks.peak.values()) < RSS_BOUND, str(peaks)

    # the primary's copy is corrupt: a read is served from a replica's copy, in parts
    await flip_byte_on_disk(cluster, acting[0], pgid, "big", bad_at)
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        io = r.ioctx("repair")
        with _Peaks(cluster) as peaks:
            block = REPAIR_BLOCKS[REPAIR_AT]
            assert await io.read("big", length=len(block), offset=REPAIR_AT) == block
        print(f"repair on read: peak RSS {peaks}")
        assert max(peaks.peak.values()) < RSS_BOUND, str(peaks)
        for offset, block in REPAIR_BLOCKS.items():
            assert await io.read("big", length=len(block), offset=offset) == block
        assert (await r.pg_command(pgid, {"prefix": "deep-scrub"}))["inconsistent"] == []
    signatures = await _stored_signatures(cluster, "big")
    assert signatures[0][0] == REPAIR_SIZE
    assert signatures[0][2] == {"user.a": b"xattr"}
    assert signatures[0][3] == [(b"k", b"omap"), *sorted(BIG_OMAP.items())]
    assert signatures == [signatures[0]] * 3, "the replicas differ"
