"""File data striped over RADOS objects, against a real cluster: holes, spans, 4 GiB+."""

from __future__ import annotations

import asyncio
import os

import pytest

from sds.client import Rados
from sds.client.striper import Striper
from sds.fsrules.layout import object_name

pytestmark = pytest.mark.integration

POOL = "fsdata"
STRIPE = 1 << 20  # small objects so spanning cases stay cheap


@pytest.fixture(scope="module")
def pool(cluster_module):
    async def create():
        async with Rados(cluster_module.conf) as r:
            await r.pool_create(POOL, pg_num=16)
    asyncio.run(create())
    return cluster_module


async def objects_of(io, ino: int) -> list[str]:
    prefix = f"{ino:016x}."
    return sorted([n async for n in io.list_objects() if n.startswith(prefix)])


async def test_write_read_across_objects_and_holes(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        s = Striper(io, STRIPE)
        ino = 0x10
        data = os.urandom(3 * STRIPE + 123)
        await s.write(ino, STRIPE // 2, data)
        size = STRIPE // 2 + len(data)
        assert await s.read(ino, 0, size, size) == bytes(STRIPE // 2) + data
        assert await s.read(ino, STRIPE - 7, 20, size) == data[STRIPE // 2 - 7:STRIPE // 2 + 13]
        # reads stop at the file size, and at EOF give nothing
        assert await s.read(ino, size - 5, 100, size) == data[-5:]
        assert await s.read(ino, size, 100, size) == b""
        assert len(await objects_of(io, ino)) == 4


async def test_sparse_file_past_4gib_reads_zeros(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        s = Striper(io)  # real 4 MiB objects
        ino = 0x11
        far = (5 << 30) + 17
        await s.write(ino, far, b"tail")
        size = far + 4
        assert await s.read(ino, far - 3, 10, size) == b"\0\0\0tail"
        assert await s.read(ino, 1 << 32, 4096, size) == bytes(4096)
        assert await objects_of(io, ino) == [object_name(ino, far // (4 << 20))]
        # a short object is zero-padded up to the file size (size grown by truncate)
        assert await s.read(ino, far, 10, size + 6) == b"tail" + bytes(6)


async def test_truncate_shrink_then_grow_reads_zeros(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        s = Striper(io, STRIPE)
        ino = 0x12
        data = os.urandom(3 * STRIPE)
        await s.write(ino, 0, data)
        await s.truncate(ino, len(data), STRIPE + 10)
        assert await objects_of(io, ino) == [object_name(ino, 0), object_name(ino, 1)]
        assert (await io.stat(object_name(ino, 1))).size == 10
        grown = 3 * STRIPE
        got = await s.read(ino, 0, grown, grown)
        assert got == data[:STRIPE + 10] + bytes(grown - STRIPE - 10)
        await s.truncate(ino, STRIPE + 10, STRIPE)  # exactly at a boundary
        assert await objects_of(io, ino) == [object_name(ino, 0)]
        await s.truncate(ino, STRIPE, STRIPE)  # no-op
        await s.remove_all(ino, grown)
        assert await objects_of(io, ino) == []
        await s.remove_all(ino, 0)  # nothing there: fine


async def test_concurrent_writes_to_distinct_ranges(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        s = Striper(io, STRIPE)
        ino = 0x13
        blocks = [os.urandom(STRIPE // 2 + 1) for _ in range(8)]
        step = STRIPE // 2 + 1
        await asyncio.gather(*(s.write(ino, i * step, b) for i, b in enumerate(blocks)))
        size = 8 * step
        assert await s.read(ino, 0, size, size) == b"".join(blocks)


async def test_write_behind_orders_overlaps_and_reports_errors(pool):
    from sds.fs.writebehind import WriteBehind

    async with Rados(pool.conf) as r:
        s = Striper(r.ioctx(POOL), STRIPE)
        ino = 0x14
        wb = WriteBehind(s, ino, limit=4 * STRIPE)
        blocks = [bytes([i]) * (STRIPE // 2) for i in range(1, 17)]
        for i, block in enumerate(blocks):  # every other write overlaps the one before
            await wb.write((i // 2) * STRIPE // 4, block)
        assert wb.bytes <= 4 * STRIPE + STRIPE // 2
        await wb.drain()
        assert not wb.pending and wb.bytes == 0
        expected = bytearray()
        for i, block in enumerate(blocks):
            at = (i // 2) * STRIPE // 4
            expected[at:at + len(block)] = block
        assert await s.read(ino, 0, len(expected), len(expected)) == expected
        # a failed write is reported once, by the next write or drain
        bad = WriteBehind(Striper(r.ioctx(POOL), STRIPE), ino)
        bad.striper.ioctx.pool_name = "no-such-pool"
        await bad.write(0, b"x")
        with pytest.raises(Exception) as e:
            await bad.drain()
        assert "no-such-pool" in str(e.value) or e.value.code
        await bad.drain()  # reported once
