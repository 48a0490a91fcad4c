"""Object operations against a real 3-mon/3-OSD cluster of separate processes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from sds.client import Rados
from sds.common.errors import (
    AlreadyExists,
    AuthError,
    CompareFailed,
    InvalidArgument,
    NoData,
    NotFound,
    PermissionDenied,
)
from sds.common.keyring import Keyring

pytestmark = pytest.mark.integration

POOL = "objects"


@pytest.fixture(scope="module")
def pool(cluster_module):
    async def create():
        async with Rados(cluster_module.conf) as r:
            await r.pool_create(POOL, pg_num=16, size=3)
        # a new client may subscribe to a monitor that has not yet learnt of the new pool
        deadline = time.monotonic() + 30
        while True:
            async with Rados(cluster_module.conf) as r:
                if any(p.name == POOL for p in r.osdmap.pools):
                    return
            assert time.monotonic() < deadline, f"pool {POOL} never reached every monitor"
            await asyncio.sleep(0.2)
    asyncio.run(create())
    return cluster_module


async def test_write_read_stat_remove(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        await io.write_full("a", b"hello world")
        assert await io.read("a") == b"hello world"
        assert await io.read("a", length=5, offset=6) == b"world"
        assert await io.read("a", offset=100) == b""
        st = await io.stat("a")
        assert st.size == 11 and st.mtime > 0
        await io.write("a", b"W", offset=6)
        assert await io.read("a") == b"hello World"
        await io.append("a", b"!")
        assert await io.read("a") == b"hello World!"
        await io.truncate("a", 5)
        assert await io.read("a") == b"hello"
        await io.truncate("a", 8)
        assert await io.read("a") == b"hello\0\0\0"
        await io.remove("a")
        with pytest.raises(NotFound):
            await io.read("a")
        with pytest.raises(NotFound):
            await io.remove("a")


async def test_sparse_zero_and_large_objects(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        await io.write_full("empty", b"")
        assert await io.read("empty") == b""
        assert (await io.stat("empty")).size == 0
        await io.write("sparse", b"end", offset=1 << 20)
        data = await io.read("sparse")
        assert len(data) == (1 << 20) + 3 and data[:1 << 20] == bytes(1 << 20)
        big = os.urandom(4 << 20)
        await io.write_full("big", big)
        assert await io.read("big") == big
        await io.write("big", b"x" * 10, offset=(2 << 20) - 5)
        expected = big[:(2 << 20) - 5] + b"x" * 10 + big[(2 << 20) + 5:]
        assert hashlib.sha256(await io.read("big")).digest() == hashlib.sha256(expected).digest()


async def test_exclusive_create(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        await io.create("excl")
        with pytest.raises(AlreadyExists):
            await io.create("excl")
        await io.create("excl", exclusive=False)


async def test_omap_compare_and_set_from_concurrent_clients(pool):
    """Ten clients claim one omap key with a guarded set at once: exactly one wins, the
    others get CompareFailed; a guarded remove with a stale value changes nothing."""
    clients = [Rados(pool.conf) for _ in range(10)]
    for r in clients:
        await r.connect()
    try:
        async def claim(i: int) -> int | None:
            try:
                await clients[i].ioctx(POOL).omap_set("claims", {b"name/x": str(i).encode()},
                                                      absent=[b"name/x"])
                return i
            except CompareFailed:
                return None

        winners = [w for w in await asyncio.gather(*map(claim, range(10))) if w is not None]
        assert len(winners) == 1
        io = clients[0].ioctx(POOL)
        won = str(winners[0]).encode()
        assert await io.omap_get("claims", [b"name/x"]) == {b"name/x": won}
        with pytest.raises(CompareFailed):
            await io.omap_rm("claims", [b"name/x"], expect={b"name/x": won + b"stale"})
        await io.omap_rm("claims", [b"name/x"], expect={b"name/x": won})
        assert await io.omap_get("claims", [b"name/x"]) == {}
    finally:
        for r in clients:
            await r.close()


async def test_xattrs_edge_cases(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        await io.write_full("x", b"data")
        await io.setxattr("x", "user.empty", b"")
        await io.setxattr("x", "user.bin", bytes(range(256)))
        assert await io.getxattr("x", "user.empty") == b""
        assert await io.getxattrs("x") == {"user.empty": b"", "user.bin": bytes(range(256))}
        await io.rmxattr("x", "user.bin")
        with pytest.raises(NoData):
            await io.getxattr("x", "user.bin")
        with pytest.raises(NoData):
            await io.rmxattr("x", "user.bin")
        with pytest.raises(InvalidArgument):
            await io.setxattr("x", "", b"v")
        with pytest.raises(NotFound):
            await io.getxattr("missing", "user.empty")


async def test_omap_edge_cases(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        keys = {b"\x00": b"zero", b"\xff\xfe": b"", b"a": b"1", b"b/c": b"2" * 1000}
        await io.omap_set("dir", keys)
        assert await io.omap_get("dir", list(keys) + [b"missing"]) == keys
        items, more = await io.omap_list("dir")
        assert [k for k, _ in items] == sorted(keys) and not more
        items, more = await io.omap_list("dir", max_entries=2)
        assert len(items) == 2 and more
        rest, more = await io.omap_list("dir", start_after=items[-1][0])
        assert [k for k, _ in items + rest] == sorted(keys) and not more
        items, _ = await io.omap_list("dir", prefix=b"b")
        assert items == [(b"b/c", b"2" * 1000)]
        await io.omap_rm("dir", [b"\x00", b"not-there"])
        assert b"\x00" not in await io.omap_get("dir", [b"\x00"])
        await io.omap_clear("dir")
        assert (await io.omap_list("dir"))[0] == []
        assert (await io.stat("dir")).size == 0


async def test_list_objects_pages(pool):
    async with Rados(pool.conf) as r:
        await r.pool_create("listing", pg_num=4)
        io = r.ioctx("listing")
        names = {f"obj/{i:04d} with space" for i in range(250)}
        await asyncio.gather(*(io.write_full(n, n.encode()) for n in names))
        listed = [n async for n in io.list_objects(page_size=7)]
        assert sorted(listed) == sorted(names)


async def test_eight_concurrent_clients(pool):
    async def client(i: int) -> dict[str, bytes]:
        async with Rados(pool.conf) as r:
            io = r.ioctx(POOL)
            written = {}
            for j in range(40):
                name, data = f"c{i}-{j}", os.urandom(1000 + 97 * j)
                await io.write_full(name, data)
                written[name] = data
            await asyncio.gather(*(io.append("shared-log", f"{i}:{j};".encode())
                                   for j in range(10)))
            return written

    results = await asyncio.gather(*(client(i) for i in range(8)))
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        for written in results:
            for name, data in written.items():
                assert await io.read(name) == data
        log = (await io.read("shared-log")).decode()
        entries = [e for e in log.split(";") if e]
        assert sorted(entries) == sorted(f"{i}:{j}" for i in range(8) for j in range(10))


async def test_missing_pool_and_bad_input(pool):
    async with Rados(pool.conf) as r:
        with pytest.raises(NotFound):
            r.ioctx("no-such-pool")
        with pytest.raises(InvalidArgument):
            await r.pool_create("bad", size=0)


async def test_wrong_key_is_refused(pool, tmp_path):
    keyring = Keyring()
    keyring.add("client.admin")  # a fresh random key: wrong
    keyring.save(tmp_path / "bad.keyring")
    with pytest.raises(AuthError):
        async with Rados(pool.conf, keyring=tmp_path / "bad.keyring") as r:
            await r.mon_command({"prefix": "status"})
    keyring = Keyring()
    keyring.add("client.nobody")
    keyring.save(tmp_path / "nobody.keyring")
    with pytest.raises(AuthError):
        async with Rados(pool.conf, entity="client.nobody", keyring=tmp_path / "nobody.keyring"):
            pass


async def test_daemon_key_cannot_impersonate_another_osd(pool):
    async with Rados(pool.conf, entity="osd.1", key=pool.key("osd.1")) as r:
        with pytest.raises(PermissionDenied):
            await r.mon_command({"prefix": "osd boot", "id": 0, "addr": "127.0.0.1:1",
                                 "host": "h", "weight": 1.0, "uuid": "x"})


def test_sync_wrapper(pool):
    from sds.client import SyncRados

    with SyncRados(str(pool.conf)) as r:
        io = r.ioctx(POOL)
        io.write_full("sync-obj", b"sync data")
        assert io.read("sync-obj") == b"sync data"
        assert "sync-obj" in io.list_objects()
        assert POOL in r.pool_list()


async def test_resent_ops_are_applied_once(pool):
    """A resend carries the same request id (the connection's client instance, tid): the
    OSD must not apply it again. (The tids are far above the ones `io` itself uses: a tid
    reused for a different op is refused, see test_bad_input.py.)"""
    from sds.crush.placement import object_to_pg
    from sds.proto import messenger_pb2 as mpb
    from sds.proto import osd_pb2

    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        await io.write_full("idem", b"")
        p = r.monc.pools[POOL]
        pg = object_to_pg(p, "idem")
        conn = await r.messenger.connect(r.monc.addrs[r.placement.primary(p.id, pg)])

        def append(tid: int):
            op = osd_pb2.OsdOp(code=osd_pb2.OsdOp.APPEND, pool=p.id, pg=pg, oid="idem",
                               tid=1_000_000 + tid)
            return conn.call(mpb.OSD_OP, op, b"abc", epoch=r.osdmap.epoch)

        for _ in range(3):           # resent after completion
            await append(1)
        await asyncio.gather(*(append(2) for _ in range(3)))   # resent while in flight
        assert await io.read("idem") == b"abcabc"


async def test_op_to_a_non_primary_is_refused_with_retry(pool):
    from sds.common.errors import Retry
    from sds.crush.placement import object_to_pg
    from sds.proto import messenger_pb2 as mpb
    from sds.proto import osd_pb2

    async with Rados(pool.conf) as r:
        p = r.monc.pools[POOL]
        pg = object_to_pg(p, "elsewhere")
        replica = r.placement.pg_up(p.id, pg)[1]
        conn = await r.messenger.connect(r.monc.addrs[replica])
        op = osd_pb2.OsdOp(code=osd_pb2.OsdOp.WRITE_FULL, pool=p.id, pg=pg, oid="elsewhere",
                           client="client.test.misdirected", tid=1)
        with pytest.raises(Retry, match="not primary"):
            await conn.call(mpb.OSD_OP, op, b"x", epoch=r.osdmap.epoch)
        with pytest.raises(NotFound):
            await r.ioctx(POOL).read("elsewhere")
