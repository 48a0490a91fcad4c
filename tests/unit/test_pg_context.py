"""A PG driven through a test double of its PGContext, with no OSD daemon: PGs of four
in-memory OSDs peer, replicate, backfill and purge a stray copy through the context alone
(which is all sds.osd.pg may use of its OSD)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from sds.common.errors import Blocklisted, NotFound
from sds.common.limits import Limits
from sds.common.messenger import Response
from sds.osd import objcopy
from sds.osd import peering_wire as wire
from sds.osd.pg import PG, map_view
from sds.osd.pg_context import PGContext, StrayCopy
from sds.osd.store.base import Transaction
from sds.osd.store.memory import MemoryStore
from sds.proto import messenger_pb2 as mpb
from sds.proto import osd_pb2

POOL, PS = 1, 0
COLL = "1.0"


class FakeOsd:
    """The context of the PGs of one OSD: a MemoryStore and a loopback to the others."""

    def __init__(self, osd_id: int, net: dict[int, FakeOsd]):
        self.osd_id, self.net = osd_id, net
        self.store = MemoryStore()
        self.limits = Limits()
        self.max_read = 1 << 20
        self.op_timeout = 5.0
        self.pg_log_max = 100
        self.recovery_max_active = 2
        self.recovery_slots = asyncio.Semaphore(2)
        self.recovery_sleep = 0.0
        self.pgs: dict[tuple[int, int], PG] = {}
        self.perf: Counter = Counter()
        self.blocked: set[str] = set()
        self.purged: list[StrayCopy] = []
        self.fatal_reasons: list[str] = []
        self.tasks: set[asyncio.Task] = set()

    def pg(self) -> PG:
        if (POOL, PS) not in self.pgs:
            self.pgs[(POOL, PS)] = PG(self, POOL, PS)
        return self.pgs[(POOL, PS)]

    async def commit(self, txn, step: str) -> None:
        await self.store.apply(txn)

    def fatal(self, reason: str) -> None:
        self.fatal_reasons.append(reason)

    async def in_reader(self, fn, *args):
        return fn(*args)

    async def call_osd(self, osd_id: int, msg_type: int, payload, data=None,
                       timeout: float = 10.0) -> Response:
        peer = self.net[osd_id]
        parts = data if isinstance(data, list) else [data or b""]  # the segments of a repop
        raw, data = payload.SerializeToString(), memoryview(b"".join(map(bytes, parts)))
        if msg_type == mpb.OSD_REPOP:
            pg = peer.pg()
            await pg.ensure_collection()
            reply = osd_pb2.RepOpReply(repaired=await pg.apply_repop(
                osd_pb2.RepOp.FromString(raw), data))
            return _response(reply)
        state = osd_pb2.ObjectState.FromString(raw)
        if msg_type == mpb.OSD_PG_PUSH:
            await peer.pg().install_copy(state, data)
            return _response(None)
        assert msg_type == mpb.OSD_PG_PULL, msg_type
        await peer.pg().settle()
        reply, out = objcopy.read_copy(peer.store, COLL, state.oid, POOL, PS, state.offset,
                                       state.length, state.omap_after, peer.max_read)
        return _response(reply, out)

    async def send_osd(self, osd_id: int, msg_type: int, payload) -> None:
        assert msg_type == mpb.OSD_PEERING
        msg = wire.message_from_pb(osd_pb2.PeeringMessage.FromString(payload.SerializeToString()))
        self.net[osd_id].pg().deliver(msg)

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def blocklisted(self, instance: str) -> bool:
        return instance in self.blocked

    def admit_write(self, op, full_try: bool = False) -> None:
        pass

    def admit_copy(self) -> None:
        pass

    def perf_add(self, **counts: int) -> None:
        self.perf.update(counts)

    def forget_usage(self, coll: str) -> None:
        pass

    async def purge_stray(self, pg: StrayCopy) -> None:
        self.purged.append(pg)
        del self.pgs[(pg.pool_id, pg.ps)]
        await pg.remove_copy()


def _response(msg, data: bytes = b"") -> Response:
    payload = msg.SerializeToString() if msg is not None else b""
    return Response(mpb.Envelope(payload=payload), memoryview(data))


class Cluster:
    def __init__(self, n: int):
        self.net: dict[int, FakeOsd] = {}
        for i in range(n):
            self.net[i] = FakeOsd(i, self.net)
        self.epoch = 0

    def map(self, acting: list[int]) -> None:
        """A new map: every OSD of the acting set (and every one holding the PG) sees it."""
        self.epoch += 1
        up = frozenset(self.net)
        for osd in self.net.values():
            if osd.osd_id in acting or (POOL, PS) in osd.pgs:
                osd.pg().on_map(map_view(self.epoch, acting, up, dict.fromkeys(up, 1), 3, 2))

    def primary(self) -> PG:
        return next(o.pgs[(POOL, PS)] for o in self.net.values()
                    if (POOL, PS) in o.pgs and o.pgs[(POOL, PS)].is_primary)

    async def until(self, predicate, what: str) -> None:
        for _ in range(2000):
            for osd in self.net.values():
                for pg in list(osd.pgs.values()):
                    pg.tick()
            if predicate():
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{what} did not happen")

    async def write(self, oid: str, data: bytes, tid: int) -> osd_pb2.OsdOpReply:
        pg = self.primary()
        op = osd_pb2.OsdOp(pool=POOL, pg=PS, oid=oid, code=osd_pb2.OsdOp.WRITE_FULL, tid=tid)
        deadline = time.monotonic() + 10
        await pg.admit(op, "client.1", deadline)
        return await pg.do_write(op, memoryview(data), deadline, "client.1")


def test_the_osd_daemon_and_the_fake_provide_the_whole_context():
    from sds.osd.daemon import OsdDaemon
    methods = [n for n, v in vars(PGContext).items() if callable(v) and not n.startswith("_")]
    fields = list(PGContext.__annotations__)
    assert "purge_stray" in methods and "store" in fields
    for impl in (OsdDaemon, FakeOsd):
        assert [n for n in methods if not callable(getattr(impl, n, None))] == [], impl
        assigned = impl.__init__.__code__.co_names  # self.<field> = ... in __init__
        assert [n for n in fields if n not in assigned] == [], impl


async def test_pgs_peer_replicate_backfill_and_purge_through_a_fake_context():
    c = Cluster(4)
    c.map([0, 1, 2])
    await c.until(lambda: c.primary().is_clean(), "the PG active+clean")
    for i in range(5):
        reply = await c.write(f"o{i}", b"v%d" % i, tid=i + 1)
        assert reply.version
    for osd in (0, 1, 2):
        assert c.net[osd].store.read(COLL, "o3") == b"v3"
    assert c.net[0].perf["ops"] == 5 and c.net[0].perf["writes"] == 5
    c.map([0, 1, 3])  # osd.3 is backfilled; then osd.2's copy is a stray, purged
    await c.until(lambda: c.primary().is_clean() and c.net[2].purged, "backfill and purge")
    assert c.net[3].store.read(COLL, "o4") == b"v4"
    assert [pg.coll for pg in c.net[2].purged] == [COLL]
    assert not c.net[2].store.collection_exists(COLL)
    reply, data = await c.primary().read(osd_pb2.OsdOp(
        pool=POOL, pg=PS, oid="o2", code=osd_pb2.OsdOp.READ), time.monotonic() + 5)
    assert data == b"v2"
    assert not any(o.fatal_reasons for o in c.net.values())


async def test_admission_refuses_a_blocklisted_client_and_waits_for_min_size():
    c = Cluster(3)
    c.map([0, 1, 2])
    await c.until(lambda: c.primary().is_clean(), "the PG active+clean")
    c.net[0].blocked.add("client.1")
    with pytest.raises(Blocklisted):
        await c.write("a", b"x", tid=1)
    c.net[0].blocked.clear()
    c.map([0])  # below min_size 2: a write waits, then is refused with the reason
    op = osd_pb2.OsdOp(pool=POOL, pg=PS, oid="a", code=osd_pb2.OsdOp.WRITE_FULL, tid=2)
    with pytest.raises(Exception, match="fewer than min_size 2"):
        await c.primary().admit(op, "client.1", time.monotonic() + 0.2)


@pytest.mark.parametrize("part", [1 << 20, 4])  # the whole copy in one part, or in many
async def test_a_replica_with_a_damaged_block_takes_the_whole_copy_on_a_partial_write(part):
    c = Cluster(3)
    for osd in c.net.values():
        osd.max_read = part
    c.map([0, 1, 2])
    await c.until(lambda: c.primary().is_clean(), "the PG active+clean")
    await c.write("o", b"0123456789", tid=1)
    omap = {b"k%d" % i: b"v%d" % i for i in range(5)}
    for osd in c.net.values():  # on every copy, as a write would have put it
        await osd.store.apply(Transaction().omap_set(COLL, "o", omap))
    c.net[1].store._corrupt_for_test(COLL, "o", 1)
    pg = c.primary()
    op = osd_pb2.OsdOp(pool=POOL, pg=PS, oid="o", code=osd_pb2.OsdOp.WRITE, offset=4, tid=2)
    await pg.do_write(op, memoryview(b"ab"), time.monotonic() + 5, "client.1")
    for osd in (0, 1, 2):
        assert c.net[osd].store.read(COLL, "o") == b"0123ab6789"
        assert dict(c.net[osd].store.omap_list(COLL, "o")[0]) == omap
    assert list(pg.inconsistent["o"].bad) == [1] and "inconsistent" in pg.pg_state()
    assert not any(o.fatal_reasons for o in c.net.values())
    with pytest.raises(NotFound):
        c.net[1].store.stat(COLL, "absent")


def test_the_pg_imports_nothing_of_the_daemon():
    import ast
    import pathlib

    import sds.osd.pg as pg_module
    import sds.osd.pg_context as ctx_module
    for module in (pg_module, ctx_module):
        tree = ast.parse(pathlib.Path(module.__file__).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                     for a in n.names}
        assert not {m for m in imported if m and m.startswith("sds.osd.daemon")}, module
