"""Helpers of the fault tests (test_faults.py, test_recovery.py, test_large_recovery.py): a
checker of acknowledged writes, waiting for a cluster condition, a byte flipped on disk, and
the checks that end a fault test."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

from sds.client import Rados
from sds.common.errors import SdsError
from sds.osd.store.durable import DurableStore


class AckChecker:
    """Records acknowledged writes; each object carries its own name, sequence and digest."""

    def __init__(self):
        self.acked: dict[str, bytes] = {}
        self.failed = 0

    @staticmethod
    def payload(name: str, seq: int, size: int) -> bytes:
        body = os.urandom(size)
        head = f"{name}:{seq}:".encode()
        return head + hashlib.sha256(head + body).digest() + body

    async def writer(self, io, prefix: str, stop: asyncio.Event, concurrency: int = 4):
        seq = 0

        async def one(n: int):
            name = f"{prefix}-{n}"
            data = self.payload(name, n, 512 + (n * 37) % 8000)
            try:
                await io.write_full(name, data)
                self.acked[name] = data
            except SdsError:
                self.failed += 1

        while not stop.is_set():
            await asyncio.gather(*(one(seq + i) for i in range(concurrency)))
            seq += concurrency

    async def big_writer(self, io, prefix: str, stop: asyncio.Event) -> None:
        """Overwrites a few 1 MiB objects (copy-on-write extents) until stopped."""
        seq = 0
        while not stop.is_set():
            name = f"{prefix}-{seq % 4}"
            data = self.payload(name, seq, 1 << 20)
            try:
                await io.write_full(name, data)
                self.acked[name] = data
            except SdsError:
                self.failed += 1
            seq += 1

    async def verify(self, io) -> None:
        for name, data in self.acked.items():
            got = await io.read(name)
            assert got == data, f"acknowledged object {name} reads back wrong"


async def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = await predicate()
            if result:
                return result
        except SdsError as e:
            last = e
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout}s (last error: {last})")


def _osd(r: Rados, osd_id: int):
    return next(o for o in r.osdmap.osds if o.id == osd_id)


async def _rebooted(r: Rados, osd_id: int, booted_in: int) -> bool:
    """True once the OSD booted again (a new up_from epoch), not merely 'still up'."""
    await r.wait_for_map_change(0.5)
    osd = _osd(r, osd_id)
    return osd.up and osd.up_from > booted_in


ALL_DAEMONS = ("osd.0", "osd.1", "osd.2", "mgr.x", "mon.0", "mon.1", "mon.2")


async def _all_up(r: Rados) -> bool:
    await r.wait_for_map_change(0.5)
    return all(o.up for o in r.osdmap.osds)


async def _all_clean(r: Rados) -> bool:
    st = await r.mon_command({"prefix": "status"})
    states = st["pgmap"]["pgs_by_state"]
    total = sum(s["count"] for s in states)
    clean = sum(s["count"] for s in states if s["state_name"] == "active+clean")
    return total == st["pgmap"]["num_pgs"] and clean == total


async def osd_is_up(r: Rados, osd_id: int, up: bool) -> bool:
    await r.wait_for_map_change(0.5)
    return next(o for o in r.osdmap.osds if o.id == osd_id).up == up


async def all_up_and_clean(r: Rados) -> bool:
    """Every OSD up and every PG active+clean."""
    await r.wait_for_map_change(0.5)
    return all(o.up for o in r.osdmap.osds) and await _all_clean(r)


async def assert_replicas_identical(cluster, acked: dict[str, bytes]) -> None:
    """Open each OSD's store (daemons stopped) and compare every acknowledged object."""
    copies: dict[str, list[bytes]] = {name: [] for name in acked}
    for osd in ("osd.0", "osd.1", "osd.2"):
        store = DurableStore(cluster.dir / osd / "store")
        try:
            for coll in store.list_collections():
                names, _ = store.list_objects(coll, max_entries=1 << 30)
                for name in names:
                    if name in copies:
                        copies[name].append(store.read(coll, name))
        finally:
            await store.close()
    for name, data in acked.items():
        assert copies[name] == [data] * 3, f"{name}: replicas differ or are missing"


async def flip_byte_on_disk(cluster, osd: int, coll: str, oid: str, offset: int) -> None:
    """Stop the cluster, flip one stored byte of `oid` in osd's store, start it again."""
    for name in ALL_DAEMONS:
        cluster.stop(name)
    store = DurableStore(cluster.dir / f"osd.{osd}" / "store")
    try:
        path, at = store._block_location(coll, oid, offset)
    finally:
        await store.close()
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x5A]))
    for name in reversed(ALL_DAEMONS):
        cluster.start(name)
