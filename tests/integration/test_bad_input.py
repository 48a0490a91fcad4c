"""Bad input against real OSD processes: limits refused before anything changes, reads of
any size streamed with bounded memory, garbage answered with EINVAL, and the client
identity taken from the session (blocklisting and request-id dedup cannot be fooled)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import time
from pathlib import Path

import pytest
from fault_helpers import wait_for

from sds.cli.main import main as sds_main
from sds.client import Rados
from sds.common.errors import (
    AuthError,
    Blocklisted,
    ConnectionLost,
    FileTooBig,
    InvalidArgument,
    NameTooLong,
    SdsError,
    TooBig,
)
from sds.common.messenger import Messenger
from sds.crush.placement import object_to_pg, pg_name
from sds.proto import messenger_pb2 as mpb
from sds.proto import mon_pb2, osd_pb2

pytestmark = [pytest.mark.integration,
              pytest.mark.cluster_opts(extra_conf={"osd_max_object_size": 4 << 30})]

POOL = "bad"
Op = osd_pb2.OsdOp
NAME_MAX = 2048   # osd_max_object_name_len's default
RSS_BOUND = 300 << 20


@pytest.fixture(scope="module")
def pool(cluster_module):
    async def create():
        async with Rados(cluster_module.conf) as r:
            await r.pool_create(POOL, pg_num=8, size=3)
    asyncio.run(create())
    return cluster_module


async def _conn(r: Rados, oid: str):
    """The connection to the primary of `oid`, and the op fields that address it."""
    pool = r.monc.pools[POOL]
    pg = object_to_pg(pool, oid)
    conn = await r.messenger.connect(r.monc.addrs[r.placement.primary(pool.id, pg)])
    return conn, {"pool": pool.id, "pg": pg}


async def _raw(r: Rados, op: osd_pb2.OsdOp, data: bytes = b""):
    """Send an op as a client would that skips the library's checks."""
    conn, where = await _conn(r, op.oid)
    op.pool, op.pg = where["pool"], where["pg"]
    resp = await conn.call(mpb.OSD_OP, op, data, epoch=r.osdmap.epoch, timeout=10)
    return resp.parse(osd_pb2.OsdOpReply)


async def _pg_log(r: Rados, oid: str) -> tuple:
    pool = r.monc.pools[POOL]
    q = await r.pg_command(pg_name(pool.id, object_to_pg(pool, oid)), {"prefix": "query"})
    return q["last_update"], q["log_entries"], q["log_tail"]


@contextlib.contextmanager
def _nothing_sent(r: Rados):
    """Assert the library refuses locally: every op it sends goes through _primary_call,
    so an op refused before it leaves can never be resent until a timeout."""
    sent = []
    passthrough = r._primary_call

    async def counting(*args, **kwargs):
        sent.append(args[3])
        return await passthrough(*args, **kwargs)

    r._primary_call = counting
    try:
        yield
    finally:
        r._primary_call = passthrough
    assert sent == [], f"sent {sent} instead of refusing locally"


def _name(prefix: str, length: int) -> str:
    return (prefix + "x" * length)[:length]


async def test_long_names_up_to_the_limit_and_refused_above_it(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        longest = _name("long-", NAME_MAX)
        await io.write_full(longest, b"data")
        await io.setxattr(longest, "user.a", b"v")
        await io.omap_set(longest, {b"k": b"v"})
        assert await io.read(longest) == b"data"
        assert longest in [n async for n in io.list_objects()]
        for name in (_name("over-", NAME_MAX + 1),):
            before = await _pg_log(r, name)
            with pytest.raises(NameTooLong, match="osd_max_object_name_len|store"):
                await _raw(r, Op(code=Op.WRITE_FULL, oid=name, tid=1 << 40), b"x")
            assert await _pg_log(r, name) == before   # refused before the PG log
        with _nothing_sent(r), pytest.raises(NameTooLong, match="osd_max_object_name_len"):
            await io.write_full(_name("client-", NAME_MAX + 1), b"x")  # at once, locally


async def test_a_replica_restart_recovers_the_longest_names(pool):
    """Issue 9 item 3: long names once wedged recovery (their records did not fit)."""
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        names = [_name(f"rec{i}-", NAME_MAX) for i in range(6)]
        pool.stop("osd.1")
        await wait_for(lambda: _osd_down(r, 1), 20, "osd.1 marked down")
        for name in names:
            await io.write_full(name, name.encode()[:64])
        pool.start("osd.1")
        await wait_for(lambda: _all_clean(r), 60, "every PG active+clean")
        for name in names:
            assert await io.read(name) == name.encode()[:64]


async def _osd_down(r: Rados, osd_id: int) -> bool:
    await r.wait_for_map_change(0.5)
    return not next(o for o in r.osdmap.osds if o.id == osd_id).up


async def _all_clean(r: Rados) -> bool:
    await r.wait_for_map_change(0.5)
    st = await r.mon_command({"prefix": "status"})
    if not all(o.up for o in r.osdmap.osds):
        return False
    states = st["pgmap"]["pgs_by_state"]
    return states and all(s["state_name"] == "active+clean" for s in states)


async def test_oversize_values_are_refused_at_once_without_resends(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        await io.write_full("sizes", b"")
        before = await _pg_log(r, "sizes")
        with _nothing_sent(r), pytest.raises(TooBig, match="osd_max_attr_size"):
            await io.setxattr("sizes", "user.big", bytes(100 << 20))
        with _nothing_sent(r), pytest.raises(TooBig, match="osd_max_omap_value_size"):
            await io.omap_set("sizes", {b"k": bytes(17 << 20)})
        with _nothing_sent(r), pytest.raises(NameTooLong, match="osd_max_omap_key_len"):
            await io.omap_set("sizes", {b"k" * 5000: b"v"})
        with _nothing_sent(r), pytest.raises(TooBig, match="osd_max_write_size"):
            await io.write_full("sizes", bytes(91 << 20))
        # the OSD refuses the same with an error reply, not a dropped connection
        with pytest.raises(TooBig, match="osd_max_attr_size"):
            await _raw(r, Op(code=Op.SETXATTR, oid="sizes", name="user.big",
                             value=bytes(2 << 20), tid=1 << 41))
        with pytest.raises(NameTooLong, match="osd_max_attr_name_len"):
            await _raw(r, Op(code=Op.SETXATTR, oid="sizes", name="n" * 300, tid=(1 << 41) + 1))
        with pytest.raises(FileTooBig, match="osd_max_object_size"):
            await _raw(r, Op(code=Op.TRUNCATE, oid="sizes", offset=(4 << 30) + 1,
                             tid=(1 << 41) + 2))
        assert await _pg_log(r, "sizes") == before
        await io.setxattr("sizes", "user.ok", b"v")  # the same connection still serves


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    return 0


async def test_a_2gib_sparse_object_reads_back_with_bounded_memory(pool):
    size = 2 << 30
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        await io.create("sparse2g")
        await io.truncate("sparse2g", size)
        await io.write("sparse2g", b"tail", offset=size - 4)
        pool_pb = r.monc.pools[POOL]
        primary = r.placement.primary(pool_pb.id, object_to_pg(pool_pb, "sparse2g"))
        pid = pool.pid(f"osd.{primary}")
        me = os.getpid()
        base_client = _rss(me)
        peak = {"osd": _rss(pid), "client": base_client}
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak["osd"] = max(peak["osd"], _rss(pid))
                peak["client"] = max(peak["client"], _rss(me))
                time.sleep(0.05)
        sampler = threading.Thread(target=sample)
        sampler.start()
        total, last = 0, b""
        started = time.monotonic()
        try:
            async for chunk in io.read_stream("sparse2g"):
                if total % (256 << 20) == 0:
                    assert not any(bytes(chunk[:4096])), "a hole must read as zeros"
                total += chunk.nbytes
                last = bytes(chunk[-4:])
        finally:
            done.set()
            sampler.join()
        elapsed = time.monotonic() - started
        assert total == size and last == b"tail"
        print(f"2 GiB sparse read in {elapsed:.1f}s; osd.{primary} peak RSS "
              f"{peak['osd'] >> 20} MiB; client RSS grew {(peak['client'] - base_client) >> 20} MiB")
        assert peak["osd"] < RSS_BOUND, f"osd RSS reached {peak['osd'] >> 20} MiB"
        assert peak["client"] - base_client < 200 << 20
        assert await io.read("sparse2g", length=8, offset=size - 8) == b"\0\0\0\0tail"
        await io.remove("sparse2g")  # 2 GiB on three OSDs of a shared disk: clean up


async def test_garbage_gets_einval_and_no_traceback(pool):
    async with Rados(pool.conf) as r:
        conn, where = await _conn(r, "garbage")
        logs = sorted((Path(pool.dir) / "out").glob("*.*"))
        before = sum(p.read_text(errors="replace").count("Traceback") for p in logs)
        for _ in range(5):
            with pytest.raises(InvalidArgument, match="malformed"):
                await conn.call(mpb.OSD_OP, b"\xff\xff\xff\xff\x0f", epoch=r.osdmap.epoch)
        nested = '{"prefix": "query", "x": ' + "[" * 100000 + "]" * 100000 + "}"
        cmd = osd_pb2.PgCommand(pool=where["pool"], pg=where["pg"], cmd_json=nested)
        with pytest.raises(InvalidArgument):
            await conn.call(mpb.OSD_PG_COMMAND, cmd, epoch=r.osdmap.epoch)
        mon = await r.messenger.connect(r.config.mon_addrs[0])
        with pytest.raises(InvalidArgument, match="malformed"):
            await mon.call(mpb.MON_COMMAND, mon_pb2.MonCommand(cmd_json=nested))
        after = sum(p.read_text(errors="replace").count("Traceback") for p in logs)
        assert after == before
        await r.ioctx(POOL).write_full("garbage", b"still served")


async def test_a_blocklisted_client_cannot_hide_its_instance(pool):
    async with Rados(pool.conf) as admin, Rados(pool.conf) as victim:
        io = victim.ioctx(POOL)
        await io.write_full("fenced", b"before")
        out = await admin.mon_command({"prefix": "osd blocklist add",
                                       "addr": victim.client_id})
        await victim.wait_for_epoch(out.get("epoch", admin.osdmap.epoch))
        with pytest.raises(Blocklisted):
            await io.write_full("fenced", b"after")
        # the instance field of the op is not who the OSD thinks sent it
        for claimed in ("", "client.someone.else"):
            with pytest.raises(Blocklisted):
                await _raw(victim, Op(code=Op.WRITE_FULL, oid="fenced", client=claimed,
                                      tid=1 << 42), b"after")
        assert await admin.ioctx(POOL).read("fenced") == b"before"
        await admin.mon_command({"prefix": "osd blocklist rm", "addr": victim.client_id})


async def test_a_reused_tid_with_other_content_is_refused(pool):
    async with Rados(pool.conf) as r:
        io = r.ioctx(POOL)
        tid = 1 << 43
        first = await _raw(r, Op(code=Op.WRITE_FULL, oid="tid-a", tid=tid), b"A")
        again = await _raw(r, Op(code=Op.WRITE_FULL, oid="tid-a", tid=tid), b"A")
        assert again.version == first.version   # a true resend: the original's answer
        with pytest.raises(InvalidArgument, match="different op"):
            await _raw(r, Op(code=Op.WRITE_FULL, oid="tid-a", tid=tid), b"B")
        pool_pb = r.monc.pools[POOL]
        pg = object_to_pg(pool_pb, "tid-a")
        other = next(f"tid-b{i}" for i in range(10000)
                     if object_to_pg(pool_pb, f"tid-b{i}") == pg)
        with pytest.raises(InvalidArgument, match="different op"):
            await _raw(r, Op(code=Op.WRITE_FULL, oid=other, tid=tid), b"A")
        assert await io.read("tid-a") == b"A"
        assert not await io.exists(other)
        # two different ops racing under one fresh tid: one is applied, the other refused
        results = await asyncio.gather(
            _raw(r, Op(code=Op.WRITE_FULL, oid="tid-c", tid=tid + 1), b"one"),
            _raw(r, Op(code=Op.WRITE_FULL, oid="tid-c", tid=tid + 1), b"two"),
            return_exceptions=True)
        acked = [b"one", b"two"][[not isinstance(x, Exception) for x in results].index(True)]
        refused = [x for x in results if isinstance(x, SdsError)]
        assert len(refused) == 1 and refused[0].code == errno.EINVAL
        assert await io.read("tid-c") == acked


async def test_a_client_names_only_instances_of_its_own_entity(pool):
    """Dedup and blocklisting are per instance: claiming another entity's would let a
    client interfere with that one's requests."""
    async with Rados(pool.conf) as r:
        key = pool.key("client.admin")
        osd_addr = r.monc.addrs[0]
        for claimed, ok in (("client.other.host.1.x", False), ("client.admin.mine", True)):
            m = Messenger("client.admin", key)
            m.ticket_source = r.monc.tickets.get  # OSDs take service tickets only
            m.instance = claimed
            try:
                if ok:
                    await m.connect(osd_addr, timeout=5)
                else:
                    with pytest.raises((ConnectionLost, AuthError)):
                        await m.connect(osd_addr, timeout=5)
            finally:
                await m.close()


async def test_cli_get_streams_an_object_of_many_chunks(pool, tmp_path):
    data = os.urandom((40 << 20) + 123)   # three osd_max_read_size chunks and a bit
    async with Rados(pool.conf) as r:
        await r.ioctx(POOL).write_full("cli-big", data)
    out = tmp_path / "cli-big"
    code = await asyncio.to_thread(sds_main, ["--conf", str(pool.conf), "get", POOL,
                                             "cli-big", str(out)])
    assert code == 0 and out.read_bytes() == data
    missing = tmp_path / "missing"
    code = await asyncio.to_thread(sds_main, ["--conf", str(pool.conf), "get", POOL,
                                             "no-such-object", str(missing)])
    assert code == errno.ENOENT and not missing.exists()
