"""The write precheck (sds.osd.precheck) against both stores: every block a write keeps part
of is verified before the commit, once; the durable commit reuses that verified copy only
while the block's record is unchanged."""

from __future__ import annotations

import random

import pytest

from sds.common.errors import ChecksumError, CorruptMetadata
from sds.osd import precheck
from sds.osd.store.base import Transaction
from sds.osd.store.durable import BLOCK, DurableStore
from sds.osd.store.memory import MemoryStore

C = "pg.1"
SIZE = 3 * BLOCK + 100  # blocks 0..2 full, block 3 holds 100 bytes
DATA = random.Random(7).randbytes(SIZE)


def T() -> Transaction:
    return Transaction()


@pytest.fixture(params=["memory", "durable-inline", "durable-extent"])
async def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore()
    else:  # blocks as LMDB values, or in extent files
        s = DurableStore(str(tmp_path / "s"),
                         extent_threshold=1 if request.param == "durable-extent" else 1 << 20)
    await s.apply(T().create_collection(C).write_full(C, "o", DATA))
    yield s
    await s.close()


# (the write, the byte damaged before it, whether the precheck must fail)
CASES = {
    "inside a block": (lambda: T().write(C, "o", BLOCK + 10, b"x" * 10), BLOCK + 5000, True),
    "ending inside a block": (lambda: T().write(C, "o", 10, b"x" * BLOCK), BLOCK + 20, True),
    "append to a partial block": (lambda: T().write(C, "o", SIZE, b"x"), SIZE - 1, True),
    "truncate inside a block": (lambda: T().truncate(C, "o", BLOCK + 5), BLOCK + 1, True),
    "whole block replaced": (lambda: T().write(C, "o", BLOCK, b"x" * BLOCK), BLOCK + 7, False),
    "another block": (lambda: T().write(C, "o", 2 * BLOCK + 1, b"x"), BLOCK + 7, False),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_damaged_block_the_commit_keeps_part_of_fails_the_precheck(store, case):
    make, damaged, fails = CASES[case]
    store._corrupt_for_test(C, "o", damaged)
    txn = make()
    if fails:
        with pytest.raises(ChecksumError):
            precheck.check_before_write(store, txn)
        return
    precheck.check_before_write(store, txn)
    await store.apply(txn)


def _count(monkeypatch, obj, name: str) -> list:
    calls = []
    real = getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(obj, name, counted)
    return calls


# (the write, the object after it): both write edges in block 1; a truncate inside block 1
KEPT = {"write": (lambda: T().write(C, "o", BLOCK + 10, b"x" * 4096),
                  DATA[:BLOCK + 10] + b"x" * 4096 + DATA[BLOCK + 4106:]),
        "truncate": (lambda: T().truncate(C, "o", BLOCK + 9000), DATA[:BLOCK + 9000])}


@pytest.mark.parametrize("kind", ["inline", "extent"])
@pytest.mark.parametrize("case", KEPT)
async def test_each_kept_block_is_read_once_per_commit(tmp_path, monkeypatch, kind, case):
    s = DurableStore(str(tmp_path), extent_threshold=1 if kind == "extent" else 1 << 20)
    try:
        await s.apply(T().create_collection(C).write_full(C, "o", DATA))
        verified = _count(monkeypatch, s, "_verified_block")
        reread = _count(monkeypatch, s, "_read_rec_writer")
        make, want = KEPT[case]
        txn = make()
        precheck.check_before_write(s, txn)
        assert len(verified) == 1 and not reread
        await s.apply(txn)
        assert not reread  # the commit kept the precheck's copy
        assert s.read(C, "o") == want
    finally:
        await s.close()


async def test_a_block_changed_after_the_precheck_is_read_again(tmp_path, monkeypatch):
    s = DurableStore(str(tmp_path), extent_threshold=1)
    try:
        await s.apply(T().create_collection(C).write_full(C, "o", DATA))
        reread = _count(monkeypatch, s, "_read_rec_writer")
        txn = T().write(C, "o", BLOCK + 10, b"x")
        precheck.check_before_write(s, txn)
        await s.apply(T().write(C, "o", BLOCK + 20, b"y"))  # committed in between
        reread.clear()
        await s.apply(txn)
        assert len(reread) == 1  # the record is not the one verified: read (and verified)
        want = bytearray(DATA)
        want[BLOCK + 10], want[BLOCK + 20] = ord("x"), ord("y")
        assert s.read(C, "o") == bytes(want)
    finally:
        await s.close()


async def test_a_damaged_omap_entry_fails_the_precheck_unless_the_omap_is_large(tmp_path):
    """All of a small omap is verified; past OMAP_CHECK_ENTRIES only the first entries."""
    s = DurableStore(str(tmp_path))
    try:
        n = precheck.OMAP_CHECK_ENTRIES
        await s.apply(T().create_collection(C)
                      .omap_set(C, "small", {b"k%04d" % i: b"s%04d" % i for i in range(n)})
                      .omap_set(C, "large", {b"k%04d" % i: b"l%04d" % i for i in range(n + 1)}))
        last = (b"s%04d" % (n - 1), b"l%04d" % n)  # the last entry of each
        with s._env.begin(write=True, db=s._omap) as t:
            [(k, v), (k2, v2)] = [(bytes(k), bytes(v)) for k, v in t.cursor()
                                  if any(p in bytes(v) for p in last)]
            for key, value in ((k, v), (k2, v2)):
                t.put(key, value[:-1] + bytes([value[-1] ^ 1]))
        with pytest.raises(CorruptMetadata):
            precheck.check_before_write(s, T().setxattr(C, "small", "user.x", b"1"))
        precheck.check_before_write(s, T().setxattr(C, "large", "user.x", b"1"))
    finally:
        await s.close()
