"""Behaviour suite for the object stores, run against MemoryStore and DurableStore.

Also: corruption detection (bytes flipped on disk), group commit, and a crash test that
SIGKILLs a writer process at random moments and checks every acknowledged transaction.

Run as a script (`python tests/unit/test_store.py --crash-child DIR`) it is the crash child.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from crc32c import crc32c

from sds.common.errors import (
    AlreadyExists,
    ChecksumError,
    InvalidArgument,
    NoData,
    NotEmpty,
    NotFound,
)
from sds.osd.store.base import ObjectStat, Transaction
from sds.osd.store.durable import BLOCK, POOL_MAX_FILES, DurableStore
from sds.osd.store.memory import MemoryStore

MiB = 1 << 20
C = "pg.1"


class Harness:
    def __init__(self, kind: str, path: str) -> None:
        self.kind, self.path = kind, path
        self.store = DurableStore(path) if kind == "durable" else MemoryStore()

    async def reopen(self):
        """Close and reopen (the durable store must keep everything)."""
        if self.kind == "durable":
            await self.store.close()
            self.store = DurableStore(self.path)
        return self.store


@pytest.fixture(params=["memory", "durable"])
async def h(request, tmp_path):
    harness = Harness(request.param, str(tmp_path / "store"))
    await harness.store.apply(Transaction().create_collection(C))
    yield harness
    await harness.store.close()


def T() -> Transaction:
    return Transaction()


# -- transactions and wire form ------------------------------------------------------------


def test_transaction_wire_roundtrip():
    t = T().create_collection("c").write("c", "o", 5, b"hello").setxattr("c", "o", "a", b"v")
    t.write_full("c", "p", memoryview(b"xyz")).omap_set("c", "o", {b"k": b""})
    assert len(t) == 5 and t.data_bytes == 8
    env, segs = t.to_wire()
    blob = b"".join(segs)
    assert blob == b"helloxyz"
    t2 = Transaction.from_wire(type(env).FromString(env.SerializeToString()), blob)
    assert [op.kind for op in t2.ops] == [op.kind for op in t.ops]
    datas = [bytes(d) for _, d in t2.items() if d is not None]
    assert datas == [b"hello", b"xyz"]
    assert isinstance(next(d for _, d in t2.items() if d is not None), memoryview)
    with pytest.raises(InvalidArgument):
        Transaction.from_wire(env, b"short")


# -- basic object ops ----------------------------------------------------------------------


async def test_write_read_stat(h):
    s = h.store
    await s.apply(T().write(C, "o", 0, b"hello").touch(C, "o", 12.5, 7))
    assert s.read(C, "o") == b"hello"
    assert s.read(C, "o", 1, 3) == b"ell"
    assert s.read(C, "o", 3, 100) == b"lo"
    assert s.read(C, "o", 5) == b"" and s.read(C, "o", 99, 4) == b""
    assert s.stat(C, "o") == ObjectStat(5, 12.5, 7)
    assert s.exists(C, "o") and not s.exists(C, "nope") and not s.exists("nocoll", "o")
    with pytest.raises(NotFound):
        s.read(C, "nope")
    with pytest.raises(NotFound):
        s.stat(C, "nope")


async def test_empty_and_zero_byte_objects(h):
    s = h.store
    await s.apply(T().write_full(C, "empty", b"").touch(C, "t"))
    await s.apply(T().write(C, "w0", 0, b""))
    for oid in ("empty", "t", "w0"):
        assert s.exists(C, oid)
        assert s.read(C, oid) == b""
        assert s.stat(C, oid).size == 0
        assert s.deep_scrub_object(C, oid) == crc32c(b"")


async def test_sparse_writes_read_zeros(h):
    s = h.store
    await s.apply(T().write(C, "sp", 3 * BLOCK + 10, b"tail"))
    data = s.read(C, "sp")
    assert len(data) == 3 * BLOCK + 14
    assert data == bytes(3 * BLOCK + 10) + b"tail"
    await s.apply(T().write(C, "sp", 5, b"head"))
    assert s.read(C, "sp", 0, 12) == bytes(5) + b"head" + bytes(3)
    await s.apply(T().write(C, "sp2", 10 * MiB, b"z"))  # large hole
    assert s.stat(C, "sp2").size == 10 * MiB + 1
    assert s.read(C, "sp2", 5 * MiB, 4) == bytes(4)


async def test_truncate_grow_and_shrink(h):
    s = h.store
    data = random.Random(1).randbytes(3 * BLOCK + 100)
    await s.apply(T().write_full(C, "o", data))
    await s.apply(T().truncate(C, "o", BLOCK + 7))
    assert s.read(C, "o") == data[: BLOCK + 7]
    await s.apply(T().truncate(C, "o", 4 * BLOCK))  # grow: the cut bytes must not reappear
    assert s.read(C, "o") == data[: BLOCK + 7] + bytes(3 * BLOCK - 7)
    await s.apply(T().truncate(C, "new", 10))
    assert s.read(C, "new") == bytes(10)
    await s.apply(T().truncate(C, "o", 0))
    assert s.read(C, "o") == b"" and s.stat(C, "o").size == 0
    await h.reopen()
    assert h.store.read(C, "o") == b"" and h.store.read(C, "new") == bytes(10)


async def test_write_full_replaces(h):
    s = h.store
    await s.apply(T().write_full(C, "o", b"x" * 300_000))
    await s.apply(T().write_full(C, "o", b"short"))
    assert s.read(C, "o") == b"short"
    assert s.statfs()["used_bytes"] == 5


async def test_large_objects_and_partial_writes(h):
    s = h.store
    rng = random.Random(2)
    big = bytearray(rng.randbytes(4 * MiB))
    await s.apply(T().write_full(C, "big", big))
    assert s.read(C, "big") == big
    for off, n in ((1 * MiB, 4096), (BLOCK - 3, 10), (4 * MiB - 1, 5), (123_457, 300_000),
                   (2 * MiB + 1, 600_000)):
        chunk = rng.randbytes(n)
        await s.apply(T().write(C, "big", off, chunk))
        end = off + n
        if end > len(big):
            big.extend(bytes(end - len(big)))
        big[off:end] = chunk
        assert s.read(C, "big", off, n) == chunk
    assert s.read(C, "big") == big
    assert s.deep_scrub_object(C, "big") == crc32c(big)
    for off, n in ((0, 1), (BLOCK - 1, 2), (3 * MiB + 5, MiB), (0, 10 * MiB)):
        assert s.read(C, "big", off, n) == big[off:off + n]
    await h.reopen()
    assert h.store.read(C, "big") == big


async def test_remove_and_missing_noops(h):
    s = h.store
    await s.apply(T().write(C, "o", 0, b"x" * 600_000).setxattr(C, "o", "a", b"1"))
    await s.apply(T().omap_set(C, "o", {b"k": b"v"}))
    await s.apply(T().remove(C, "o"))
    assert not s.exists(C, "o")
    with pytest.raises(NotFound):
        s.getxattr(C, "o", "a")
    await s.apply(T().remove(C, "o").rmxattr(C, "o", "a").omap_rm(C, "o", [b"k"]).omap_clear(C, "o"))
    assert not s.exists(C, "o")
    await s.apply(T().touch(C, "o"))  # recreated: nothing of the old object survives
    assert s.getxattrs(C, "o") == {} and s.omap_list(C, "o") == ([], False)
    assert s.read(C, "o") == b""
    assert s.statfs()["objects"] == 1 and s.statfs()["used_bytes"] == 0


async def test_names_are_arbitrary(h):
    s = h.store
    names = ["a/b c", "ünï", "x\x00y", "", "rbd_data.1/2 3", "a", "ab", "a\x00"]
    t = T()
    for i, n in enumerate(names):
        t.write_full(C, n, n.encode() + bytes([i]))
    await s.apply(t)
    for i, n in enumerate(names):
        assert s.read(C, n) == n.encode() + bytes([i])
    assert s.list_objects(C) == (sorted(names), False)


async def test_ops_apply_in_order(h):
    s = h.store
    t = T().write_full(C, "o", b"one").write(C, "o", 1, b"XY").truncate(C, "o", 2)
    t.write(C, "o", 4, b"!").setxattr(C, "o", "a", b"1").rmxattr(C, "o", "a")
    t.setxattr(C, "o", "b", b"2").omap_set(C, "o", {b"k": b"1"}).omap_clear(C, "o")
    t.omap_set(C, "o", {b"j": b"2"}).set_meta(C, b"m", b"1").rm_meta(C, b"m").set_meta(C, b"n", b"")
    t.remove(C, "gone").write(C, "gone", 0, b"g").remove(C, "gone")
    await s.apply(t)
    assert s.read(C, "o") == b"oX\x00\x00!"
    assert s.getxattrs(C, "o") == {"b": b"2"}
    assert s.omap_list(C, "o") == ([(b"j", b"2")], False)
    assert s.get_meta(C, b"m") is None and s.get_meta(C, b"n") == b""
    assert not s.exists(C, "gone")


async def test_txn_is_atomic_on_error(h):
    s = h.store
    await s.apply(T().write_full(C, "o", b"before").set_meta(C, b"m", b"old"))
    bad = T().write_full(C, "o", b"after" * 100_000).set_meta(C, b"m", b"new").write(C, "p", 0, b"p")
    bad.create_collection("c2").write(C, "q", 0, b"q" * 700_000).write("missing", "o", 0, b"x")
    with pytest.raises(NotFound):
        await s.apply(bad)
    assert s.read(C, "o") == b"before" and s.get_meta(C, b"m") == b"old"
    assert not s.exists(C, "p") and not s.exists(C, "q") and not s.collection_exists("c2")
    with pytest.raises(AlreadyExists):
        await s.apply(T().remove(C, "o").create_collection(C))
    assert s.read(C, "o") == b"before"
    assert s.statfs()["objects"] == 1
    if h.kind == "durable":
        assert s.fsck() == []


# -- xattrs, omap, meta, listing -----------------------------------------------------------


async def test_xattrs(h):
    s = h.store
    await s.apply(T().setxattr(C, "o", "_", b"v1").setxattr(C, "o", "empty", b""))
    await s.apply(T().setxattr(C, "o", "bin", bytes(range(256))))
    assert s.getxattr(C, "o", "_") == b"v1" and s.getxattr(C, "o", "empty") == b""
    assert s.getxattrs(C, "o") == {"_": b"v1", "empty": b"", "bin": bytes(range(256))}
    with pytest.raises(NoData):
        s.getxattr(C, "o", "nope")
    with pytest.raises(NotFound):
        s.getxattr(C, "nobj", "a")
    with pytest.raises(NotFound):
        s.getxattrs(C, "nobj")
    await s.apply(T().rmxattr(C, "o", "_").rmxattr(C, "o", "never"))
    assert set(s.getxattrs(C, "o")) == {"empty", "bin"}


async def test_omap(h):
    s = h.store
    kvs = {b"\x00": b"zero", b"": b"emptykey", b"a": b"", b"a\x00": b"1", b"ab": b"2",
           b"b": b"3", b"\xff\xff": b"4"}
    kvs.update({b"p%03d" % i: b"%d" % i for i in range(25)})
    await s.apply(T().omap_set(C, "o", kvs))
    assert s.omap_get(C, "o", [b"\x00", b"a", b"missing"]) == {b"\x00": b"zero", b"a": b""}
    items, more = s.omap_list(C, "o", max_entries=1000)
    assert items == sorted(kvs.items()) and not more
    # paging
    got, after = [], b""
    while True:
        page, more = s.omap_list(C, "o", start_after=after, max_entries=7)
        got += page
        if not more:
            break
        after = page[-1][0]
    assert got == sorted(kvs.items())
    # prefix
    assert s.omap_list(C, "o", prefix=b"a") == ([(b"a", b""), (b"a\x00", b"1"), (b"ab", b"2")], False)
    page, more = s.omap_list(C, "o", prefix=b"p", max_entries=10)
    assert [k for k, _ in page] == [b"p%03d" % i for i in range(10)] and more
    page, more = s.omap_list(C, "o", prefix=b"p", start_after=b"p020", max_entries=10)
    assert [k for k, _ in page] == [b"p%03d" % i for i in range(21, 25)] and not more
    page, _ = s.omap_list(C, "o", prefix=b"p", start_after=b"a")
    assert len(page) == 25
    await s.apply(T().omap_rm(C, "o", [b"a", b"nope"]))
    assert b"a" not in dict(s.omap_list(C, "o")[0])
    await s.apply(T().omap_clear(C, "o"))
    assert s.omap_list(C, "o") == ([], False)
    with pytest.raises(NotFound):
        s.omap_get(C, "nobj", [b"a"])
    with pytest.raises(NotFound):
        s.omap_list(C, "nobj")


async def test_list_objects_paging(h):
    s = h.store
    names = [f"obj{i:03d}" for i in range(57)] + ["z/1", "a b"]
    t = T()
    for n in names:
        t.touch(C, n, 1.0, 1)
    await s.apply(t)
    got, after = [], ""
    while True:
        page, more = s.list_objects(C, start_after=after, max_entries=10)
        got += page
        if not more:
            break
        after = page[-1]
    assert got == sorted(names)
    assert s.list_objects(C, start_after="obj050", max_entries=3) == (
        ["obj051", "obj052", "obj053"], True)
    assert s.list_objects(C, start_after="zzz") == ([], False)
    with pytest.raises(NotFound):
        s.list_objects("missing")


async def test_collections_and_meta(h):
    s = h.store
    await s.apply(T().create_collection("b").create_collection("a/x"))
    assert s.list_collections() == sorted([C, "a/x", "b"])
    assert s.collection_exists("b") and not s.collection_exists("nope")
    with pytest.raises(AlreadyExists):
        await s.apply(T().create_collection("b"))
    t = T().set_meta("b", b"info", b"I").set_meta("b", b"log.0002", b"2")
    t.set_meta("b", b"log.0001", b"1").set_meta("b", b"\x00", b"").set_meta("a/x", b"log.9", b"x")
    await s.apply(t)
    assert s.get_meta("b", b"info") == b"I" and s.get_meta("b", b"nope") is None
    assert s.get_meta("b", b"\x00") == b""
    assert s.list_meta("b", prefix=b"log.") == [(b"log.0001", b"1"), (b"log.0002", b"2")]
    assert s.list_meta("b", prefix=b"log.", start_after=b"log.0001") == [(b"log.0002", b"2")]
    assert s.list_meta("b", max_entries=2) == [(b"\x00", b""), (b"info", b"I")]
    assert len(s.list_meta("b")) == 4
    await s.apply(T().rm_meta("b", b"info").rm_meta("b", b"never"))
    assert s.get_meta("b", b"info") is None
    await s.apply(T().touch("b", "obj"))
    with pytest.raises(NotEmpty):
        await s.apply(T().remove_collection("b"))
    await s.apply(T().remove("b", "obj").remove_collection("b"))
    assert not s.collection_exists("b")
    with pytest.raises(NotFound):
        s.get_meta("b", b"log.0001")
    await s.apply(T().create_collection("b"))  # meta did not survive the collection
    assert s.list_meta("b") == [] and s.list_objects("b") == ([], False)
    with pytest.raises(NotFound):
        await s.apply(T().remove_collection("never"))
    with pytest.raises(NotFound):
        await s.apply(T().touch("never", "o"))
    s = await h.reopen()
    assert s.list_collections() == sorted([C, "a/x", "b"])
    assert s.list_meta("a/x") == [(b"log.9", b"x")]


async def test_statfs(h):
    s = h.store
    await s.apply(T().write_full(C, "a", b"x" * 1000).write_full(C, "b", b"y" * 500_000))
    st = s.statfs()
    assert st["objects"] == 2 and st["used_bytes"] == 501_000 and st["total_bytes"] > 0
    await s.apply(T().remove(C, "b").truncate(C, "a", 10))
    assert s.statfs()["objects"] == 1 and s.statfs()["used_bytes"] == 10


# -- concurrency and durability --------------------------------------------------------------


async def test_concurrent_applies_all_durable(h):
    s = h.store
    sizes = [10, 4096, 300_000, 0, 70_000]

    def data(i: int) -> bytes:
        return bytes([i]) * sizes[i % len(sizes)]

    async def one(i: int) -> None:
        await s.apply(T().write_full(C, f"o{i}", data(i)).set_meta(C, b"m%d" % i, b"%d" % i))

    await asyncio.gather(*(one(i) for i in range(50)))
    if h.kind == "durable":
        assert s.commits < 50  # group commit batched them
    s = await h.reopen()
    for i in range(50):
        assert s.read(C, f"o{i}") == data(i)
        assert s.get_meta(C, b"m%d" % i) == b"%d" % i
    if h.kind == "durable":
        assert s.fsck() == []


async def test_failing_txn_in_batch_aborts_alone(h):
    s = h.store
    good = [s.apply(T().write_full(C, f"g{i}", b"x" * (i * 200_000))) for i in range(5)]
    bad = s.apply(T().write_full(C, "bad", b"y" * 600_000).touch("missing", "o"))
    res = await asyncio.gather(*good[:2], bad, *good[2:], return_exceptions=True)
    assert isinstance(res[2], NotFound)
    assert all(r is None for i, r in enumerate(res) if i != 2)
    assert not s.exists(C, "bad")
    assert all(s.read(C, f"g{i}") == b"x" * (i * 200_000) for i in range(5))
    if h.kind == "durable":
        assert s.fsck() == []


async def test_random_ops_match_model(h):
    """Random op sequences on the store under test give the same state as a fresh model."""
    model = MemoryStore()
    await model.apply(T().create_collection(C))
    rng = random.Random(7)
    for step in range(60):
        t = T()
        for _ in range(rng.randint(1, 4)):
            _random_op(rng, t, C, [f"o{i}" for i in range(4)], big=2 * MiB)
        env, segs = t.to_wire()  # the store under test gets the zero-copy wire form
        await h.store.apply(Transaction.from_wire(env, b"".join(segs)))
        await model.apply(t)
        if step % 20 == 19:
            await h.reopen()
    _assert_same(h.store, model, C)
    if h.kind == "durable":
        assert h.store.fsck() == []


# -- corruption ----------------------------------------------------------------------------


async def test_corruption_detected_via_hook(h):
    s = h.store
    small, big = b"s" * 4096, random.Random(3).randbytes(4 * MiB)
    await s.apply(T().write_full(C, "small", small).write_full(C, "big", big))
    s._corrupt_for_test(C, "small", 100)
    s._corrupt_for_test(C, "big", 2 * MiB + 5)
    for oid in ("small", "big"):
        with pytest.raises(ChecksumError):
            s.read(C, oid)
        with pytest.raises(ChecksumError):
            s.deep_scrub_object(C, oid)
    with pytest.raises(ChecksumError):
        s.read(C, "big", 2 * MiB, 10)
    assert s.read(C, "big", 0, MiB) == big[:MiB]  # other blocks stay readable


async def test_corrupt_extent_file_on_disk(tmp_path):
    s = DurableStore(str(tmp_path))
    big = random.Random(4).randbytes(4 * MiB)
    await s.apply(T().create_collection(C).write_full(C, "big", big))
    path, off = s._block_location(C, "big", 3 * MiB + 17)
    await s.close()
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 1]))
    s = DurableStore(str(tmp_path))
    with pytest.raises(ChecksumError):
        s.read(C, "big")
    with pytest.raises(ChecksumError):
        s.read(C, "big", 3 * MiB + 17, 1)
    assert s.read(C, "big", 0, 3 * MiB) == big[: 3 * MiB]
    # a partial write over the corrupt block must not launder it
    with pytest.raises(ChecksumError):
        await s.apply(T().write(C, "big", 3 * MiB + 20, b"x"))
    # rewriting it whole repairs it
    await s.apply(T().write_full(C, "big", big))
    assert s.read(C, "big") == big
    await s.close()


async def test_corrupt_lmdb_value_on_disk(tmp_path):
    s = DurableStore(str(tmp_path))
    pattern = random.Random(5).randbytes(3000)
    await s.apply(T().create_collection(C).write_full(C, "small", pattern))
    assert s._block_location(C, "small", 0) is None  # stored inline in LMDB
    await s.close()
    dbfile = tmp_path / "db" / "data.mdb"
    raw = bytearray(dbfile.read_bytes())
    hits, pos = 0, raw.find(pattern)
    while pos >= 0:
        raw[pos + 1000] ^= 0x40
        hits += 1
        pos = raw.find(pattern, pos + 1)
    assert hits >= 1
    dbfile.write_bytes(bytes(raw))
    s = DurableStore(str(tmp_path))
    with pytest.raises(ChecksumError):
        s.read(C, "small")
    with pytest.raises(ChecksumError):
        s.deep_scrub_object(C, "small")
    assert any("checksum" in p for p in s.fsck())
    await s.close()


async def test_partial_write_is_not_rewrite_and_cow(tmp_path):
    s = DurableStore(str(tmp_path))
    big = bytearray(random.Random(6).randbytes(4 * MiB))
    await s.apply(T().create_collection(C).write_full(C, "big", big))
    ext_path = s._block_location(C, "big", 0)[0]
    await s.apply(T().write(C, "big", MiB, b"w" * 4096))
    big[MiB:MiB + 4096] = b"w" * 4096
    assert s._block_location(C, "big", MiB) is None  # only that block, inline
    assert s._block_location(C, "big", 0)[0] == ext_path  # the rest untouched
    assert s.read(C, "big") == big
    # a large overwrite goes to a new extent; the old one is freed only when unreferenced
    await s.apply(T().write(C, "big", 0, b"n" * (2 * MiB)))
    big[: 2 * MiB] = b"n" * (2 * MiB)
    assert s._block_location(C, "big", 0)[0] != ext_path
    assert os.path.exists(ext_path)  # still holds blocks 2 MiB..4 MiB
    await s.apply(T().write_full(C, "big", b"tiny"))
    free = {os.path.join(s._ext_dir, f"{e:016x}") for _, e in s._pool}
    assert ext_path in free  # unreferenced now: kept only as reusable free space
    assert s.read(C, "big") == b"tiny" and s.fsck() == []
    # the next large write reuses a free file (overwrite of allocated blocks, no new file)
    files = set(os.listdir(s._ext_dir))
    await s.apply(T().write_full(C, "big2", b"r" * 3 * MiB))
    assert set(os.listdir(s._ext_dir)) == files and s._block_location(C, "big2", 0)[0] in free
    assert s.read(C, "big2") == b"r" * 3 * MiB and s.fsck() == []
    await s.close()
    s = DurableStore(str(tmp_path))  # free files survive a restart as free space
    assert s.fsck() == [] and s.read(C, "big2") == b"r" * 3 * MiB
    await s.close()


async def test_startup_cleanup_removes_orphan_extents(tmp_path):
    s = DurableStore(str(tmp_path))
    await s.apply(T().create_collection(C).write_full(C, "big", b"b" * MiB))
    await s.close()
    orphan = tmp_path / "ext" / f"{0xFFFF:016x}"
    orphan.write_bytes(b"junk")
    s = DurableStore(str(tmp_path))
    assert not orphan.exists() and s.fsck() == []
    await s.apply(T().write_full(C, "big2", b"c" * MiB))  # ids keep increasing
    assert s.read(C, "big2") == b"c" * MiB and s.fsck() == []
    await s.close()


# -- crash test ----------------------------------------------------------------------------

CRASH_OBJS = [f"obj{i}" for i in range(5)] + ["big/a", "big b"]


def _random_op(rng: random.Random, t: Transaction, coll: str, objs: list[str], big: int) -> None:
    oid = rng.choice(objs)
    r = rng.random()
    if r < 0.15:
        t.write_full(coll, oid, rng.randbytes(rng.choice([0, 100, 5000, 300_000, 600_000, big])))
    elif r < 0.5:
        n = rng.choice([1, 10, 4096, 70_000, 300_000, 600_000, 1 * MiB])
        t.write(coll, oid, rng.randrange(0, big + BLOCK), rng.randbytes(n))
    elif r < 0.6:
        t.truncate(coll, oid, rng.randrange(0, big))
    elif r < 0.67:
        t.remove(coll, oid)
    elif r < 0.8:
        t.omap_set(coll, oid, {rng.randbytes(3): rng.randbytes(rng.randrange(0, 50))})
    elif r < 0.85:
        t.omap_clear(coll, oid)
    elif r < 0.95:
        t.setxattr(coll, oid, rng.choice(["a", "b", "_"]), rng.randbytes(rng.randrange(0, 20)))
    else:
        t.touch(coll, oid, rng.random() * 1e9, rng.randrange(1 << 40))


def build_crash_txn(i: int) -> Transaction:
    rng = random.Random(i)
    t = T()
    if i == 0:
        t.create_collection("c")
    for _ in range(rng.randint(1, 4)):
        _random_op(rng, t, "c", CRASH_OBJS, big=4 * MiB)
    t.set_meta("c", b"last", b"%d" % i).set_meta("c", b"txn/%08d" % i, b"x" * (i % 7))
    return t


def _say(line: bytes) -> None:
    """One whole line in one write(2): print() makes a write per piece when stdout is
    unbuffered (PYTHONUNBUFFERED), and a SIGKILL between them left a torn "ack" line."""
    os.write(1, line + b"\n")


def _complete_lines(out: str) -> list[str]:
    """The lines of a killed child's output that it finished writing."""
    return out.split("\n")[:-1]


async def _crash_child(path: str) -> None:
    store = DurableStore(path)
    i = int(store.get_meta("c", b"last")) + 1 if store.collection_exists("c") else 0
    _say(b"ready")

    async def one(j: int) -> None:
        await store.apply(build_crash_txn(j))
        _say(b"ack %d" % j)

    while True:
        await asyncio.gather(*(one(j) for j in range(i, i + 4)))
        i += 4


def _assert_same(store, model, coll: str) -> None:
    names, more = store.list_objects(coll, max_entries=10_000)
    assert (names, more) == model.list_objects(coll, max_entries=10_000)
    for oid in names:
        assert store.stat(coll, oid) == model.stat(coll, oid), oid
        data = model.read(coll, oid)
        assert store.read(coll, oid) == data, oid
        assert store.deep_scrub_object(coll, oid) == crc32c(data)
        assert store.getxattrs(coll, oid) == model.getxattrs(coll, oid)
        assert store.omap_list(coll, oid, max_entries=10_000) == model.omap_list(
            coll, oid, max_entries=10_000)
    assert store.list_meta(coll) == model.list_meta(coll)


def test_a_killed_childs_torn_last_line_is_not_counted():
    assert _complete_lines("ready\nack 1\nack") == ["ready", "ack 1"]
    assert _complete_lines("ready\nack 1\n") == ["ready", "ack 1"]


async def test_crash_sigkill_at_random_moments(tmp_path):
    path = str(tmp_path / "crash")
    model, model_last = MemoryStore(), -1
    rng = random.Random(int(time.time()))
    total_acked, kills = 0, 22
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--crash-child", path],
            stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.01, 0.4))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        acked = [int(line.split()[1]) for line in _complete_lines(out)
                 if line.startswith("ack ")]
        total_acked += len(acked)
        store = DurableStore(path)
        try:
            if not store.collection_exists("c"):
                assert not acked
                continue
            last = int(store.get_meta("c", b"last"))
            assert last >= max(acked, default=-1), "an acknowledged txn was lost"
            for j in range(model_last + 1, last + 1):  # committed txns form a prefix
                await model.apply(build_crash_txn(j))
            model_last = last
            assert store.fsck() == []
            assert len(store._pool) <= POOL_MAX_FILES
            _assert_same(store, model, "c")
        finally:
            await store.close()
    print(f"crash test: {kills} kills, {total_acked} acked txns, last committed {model_last}")
    assert total_acked > kills  # the kills did land amid real work


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--crash-child":
        asyncio.run(_crash_child(sys.argv[2]))


# -- O_DIRECT extent I/O ---------------------------------------------------------------------


def _fs_does_odirect(path: str) -> bool:
    probe = os.path.join(path, "probe")
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


async def _odd_sizes_roundtrip(s: DurableStore, path: str) -> None:
    """Extent writes whose sizes and offsets are not multiples of 4096, partial overwrites
    (merged blocks, inline and extent), a merge that reads an extent written earlier in the
    same txn, unaligned reads, a restart, fsck."""
    rng = random.Random(11)
    model: dict[str, bytearray] = {}
    t = T()
    for i, n in enumerate((512 * 1024 + 1, MiB + 4095, 3 * BLOCK + 100, 600_001, 4 * MiB)):
        model[f"o{i}"] = bytearray(rng.randbytes(n))
        t.write_full(C, f"o{i}", bytes(model[f"o{i}"]))
    await s.apply(t)
    for oid, off, n in (("o0", 70_000, 600_000), ("o1", 5, 3), ("o2", BLOCK - 7, 700_000),
                        ("o3", 599_999, 2), ("o4", 4 * MiB - 1, 513 * 1024 + 3)):
        data = rng.randbytes(n)
        await s.apply(T().write(C, oid, off, data))
        buf = model[oid]
        if len(buf) < off + n:
            buf.extend(bytes(off + n - len(buf)))
        buf[off:off + n] = data
    big = rng.randbytes(MiB + 123)  # merge reading an extent of the same, unfinished txn
    await s.apply(T().write_full(C, "o5", big).write(C, "o5", 10, b"xyz"))
    model["o5"] = bytearray(big)
    model["o5"][10:13] = b"xyz"
    for oid, want in model.items():
        assert s.read(C, oid) == want, oid
        assert s.read(C, oid, 4097, 300_001) == want[4097:4097 + 300_001]
        assert s.stat(C, oid).size == len(want)
    assert s.fsck() == []
    await s.close()
    s2 = DurableStore(path)
    for oid, want in model.items():
        assert s2.read(C, oid) == want, oid
    assert s2.fsck() == []
    await s2.close()


async def test_odirect_used_and_odd_sizes_verify(tmp_path):
    path = str(tmp_path / "s")
    os.makedirs(path)
    if not _fs_does_odirect(path):
        pytest.skip("filesystem without O_DIRECT")
    s = DurableStore(path)
    assert s.io_mode == "direct" and s.direct_io  # ext4 under /tmp here
    wflags: list[int] = []
    job = s._write_job

    def spy(fd, bufs, wbuf):
        wflags.append(fcntl.fcntl(fd, fcntl.F_GETFL))
        return job(fd, bufs, wbuf)

    s._write_job = spy
    await s.apply(T().create_collection(C).write_full(C, "x", b"q" * (MiB + 1)))
    assert wflags and all(f & os.O_DIRECT for f in wflags)
    assert s.read(C, "x") == b"q" * (MiB + 1)
    assert s._rfds and all(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT for fd in s._rfds.values())
    ext_path, _ = s._block_location(C, "x", 0)
    assert os.path.getsize(ext_path) % 4096 == 0  # padded, the record keeps the real length
    await _odd_sizes_roundtrip(s, path)


async def test_buffered_fallback_and_mixed_modes(tmp_path, monkeypatch):
    path = str(tmp_path / "s")
    real_open = os.open

    def no_direct(p, flags, *a):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")  # what tmpfs used to say
        return real_open(p, flags, *a)

    monkeypatch.setattr(os, "open", no_direct)
    s = DurableStore(path)
    assert s.io_mode == "buffered"
    await s.apply(T().create_collection(C).write_full(C, "b", b"b" * (MiB + 5)))
    await _odd_sizes_roundtrip(s, path)
    monkeypatch.undo()
    s = DurableStore(path)  # data written buffered reads back in whatever mode
    assert s.read(C, "b") == b"b" * (MiB + 5)
    await s.apply(T().write(C, "b", 3, b"z" * MiB))
    assert s.read(C, "b") == b"bbb" + b"z" * MiB + b"b" * 2 and s.fsck() == []
    await s.close()
    s = DurableStore(path, direct_io=False)
    assert s.read(C, "b") == b"bbb" + b"z" * MiB + b"b" * 2 and s.fsck() == []
    await s.close()
