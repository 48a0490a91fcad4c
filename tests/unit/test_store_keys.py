"""Store keys for long names, and checksummed metadata (sds/osd/store/keys.py).

Long names: object names of 2048+ bytes, omap keys up to 64 KiB, xattr names of 4 KiB and
meta keys embedding long object names are stored and listed in the order of their real
names, across the inline/hashed boundary. Checksums: a flipped byte in any record (through
a raw LMDB txn, or in the data.mdb file itself) is refused with CorruptMetadata, fsck
names it, and a corrupt or foreign store refuses to open with the file and what to do.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from sds.common.errors import ChecksumError, CorruptMetadata, NoData, NotSupported
from sds.common.seal import seal, unseal
from sds.osd.store import keys
from sds.osd.store.base import Transaction
from sds.osd.store.durable import DurableStore
from sds.osd.store.memory import MemoryStore

C = "pg.1"
N = keys.INLINE


@pytest.fixture(params=["memory", "durable"])
async def store(request, tmp_path):
    s = DurableStore(str(tmp_path / "s")) if request.param == "durable" else MemoryStore()
    await s.apply(Transaction().create_collection(C))
    yield s
    await s.close()


def _tricky_names(rng: random.Random) -> list[bytes]:
    """Short, boundary and long names, many long ones sharing their first INLINE bytes."""
    base = b"p" * (N - 3)
    names = {b"a", b"p", base, b"q" * N, b"z" * 5000}
    for n in (N - 1, N, N + 1, N + 2, N + 17, 2048, 4096):
        names.add((base + b"xyz" * 2000)[:n])
        names.add((base + b"xy" + b"\x00" * 3000)[:n])
        names.add((base + b"xz" + b"\xff" * 3000)[:n])
    shared = b"m" * N
    for _ in range(20):
        names.add(shared + rng.randbytes(rng.randrange(1, 40)))
    names.add(shared)
    names.add(shared[:-1] + b"n")
    return sorted(names)


async def test_names_up_to_limits_roundtrip(store, tmp_path):
    oid = "o" * 2048
    xname = "x" * 4096
    okey = b"k" * 65536
    mkey = b"peering/missing/" + oid.encode()
    await store.apply(Transaction().write_full(C, oid, b"data").setxattr(C, oid, xname, b"xv")
                      .omap_set(C, oid, {okey: b"ov", b"short": b"sv"})
                      .set_meta(C, mkey, b"need"))
    if isinstance(store, DurableStore):
        await store.close()
        store = DurableStore(str(tmp_path / "s"))
    assert store.read(C, oid) == b"data" and store.exists(C, oid)
    assert store.list_objects(C) == ([oid], False)
    assert store.getxattr(C, oid, xname) == b"xv"
    assert store.getxattrs(C, oid) == {xname: b"xv"}
    assert store.omap_get(C, oid, [okey, b"nope"]) == {okey: b"ov"}
    assert store.omap_list(C, oid) == ([(okey, b"ov"), (b"short", b"sv")], False)
    assert store.get_meta(C, mkey) == b"need"
    assert store.list_meta(C, prefix=b"peering/missing/") == [(mkey, b"need")]
    await store.apply(Transaction().rmxattr(C, oid, xname).omap_rm(C, oid, [okey])
                      .rm_meta(C, mkey))
    with pytest.raises(NoData):
        store.getxattr(C, oid, xname)
    assert store.omap_list(C, oid)[0] == [(b"short", b"sv")]
    assert store.get_meta(C, mkey) is None
    await store.apply(Transaction().remove(C, oid))
    assert store.list_objects(C) == ([], False)
    if isinstance(store, DurableStore):
        assert store.fsck() == []
        await store.close()


async def test_listing_order_is_real_name_order(store):
    names = _tricky_names(random.Random(7))
    shuffled = random.Random(8).sample(names, len(names))
    txn = Transaction()
    for i, n in enumerate(shuffled):
        txn.touch(C, n.decode("latin-1"), version=i)
    txn.omap_set(C, "holder", {n: n[-3:] for n in shuffled})
    for n in shuffled:
        txn.set_meta(C, b"log/" + n, b"v")
    await store.apply(txn)
    objs = sorted({n.decode("latin-1") for n in names} | {"holder"})
    # objects: whole listing, pages of 3, every start_after
    assert store.list_objects(C, max_entries=1 << 20) == (objs, False)
    got, after = [], ""
    while True:
        page, more = store.list_objects(C, start_after=after, max_entries=3)
        got += page
        if not more:
            break
        after = page[-1]
    assert got == objs
    for i, n in enumerate(objs):
        assert store.list_objects(C, start_after=n, max_entries=2)[0] == objs[i + 1:i + 3]
    # omap: order, paging from every key, prefixes across the inline/hashed boundary
    kv = [(n, n[-3:]) for n in names]
    assert store.omap_list(C, "holder", max_entries=10000) == (kv, False)
    for i, n in enumerate(names):
        assert store.omap_list(C, "holder", start_after=n, max_entries=2)[0] == kv[i + 1:i + 3]
    for prefix in (b"p" * (N - 3) + b"xy", b"m" * N, b"m" * (N + 1), b"p" * (N - 3) + b"xz\xff"):
        want = [(k, v) for k, v in kv if k.startswith(prefix)]
        assert store.omap_list(C, "holder", prefix=prefix, max_entries=10000)[0] == want
        if want:
            mid = want[len(want) // 2][0]
            got = store.omap_list(C, "holder", prefix=prefix, start_after=mid,
                                  max_entries=10000)[0]
            assert got == [(k, v) for k, v in want if k > mid]
    # meta (PG log, missing set): prefix listing in order
    assert [k for k, _ in store.list_meta(C, prefix=b"log/")] == [b"log/" + n for n in names]
    assert [k for k, _ in store.list_meta(C, prefix=b"log/m", max_entries=5)] == \
        [b"log/" + n for n in names if n.startswith(b"m")][:5]


# -- checksums (durable store only) ------------------------------------------------------------


async def _populated(path) -> DurableStore:
    s = DurableStore(str(path))
    long = "L" * 1500
    await s.apply(Transaction().create_collection(C)
                  .write_full(C, "obj", b"payload").setxattr(C, "obj", "user.a", b"XATTRVALUE")
                  .omap_set(C, "obj", {b"okey": b"OMAPVALUE", b"K" * 1000: b"LONGKEYVALUE"})
                  .write_full(C, long, b"x").set_meta(C, b"peering/info", b"PEERINGSTATE")
                  .set_meta(C, b"peering/log/0001", b"LOGENTRY"))
    return s


def _flip(s: DurableStore, db, match, at: int = -1) -> None:
    """Flip one byte of the value (or, with at=None, of the key) of the record whose key
    satisfies `match`, through a raw LMDB write txn."""
    with s._env.begin(write=True, db=db) as t:
        for k in t.cursor().iternext(values=False):
            if match(k):
                break
        else:
            raise AssertionError("no such record")
        v = t.get(k)
        t.delete(k)
        if at is None:
            k = bytearray(k)
            k[-1] ^= 0x01
            t.put(bytes(k), v)
        else:
            v = bytearray(v)
            v[at] ^= 0x20
            t.put(k, bytes(v))


CASES = {
    "onode": (lambda s: s._onode, lambda k: k.endswith(b"obj"),
              lambda s: s.stat(C, "obj")),
    "onode name": (lambda s: s._onode, lambda k: b"LLLL" in k,
                   lambda s: s.stat(C, "L" * 1500)),
    "xattr": (lambda s: s._xattr, lambda k: k.endswith(b"user.a"),
              lambda s: s.getxattr(C, "obj", "user.a")),
    "xattrs": (lambda s: s._xattr, lambda k: k.endswith(b"user.a"),
               lambda s: s.getxattrs(C, "obj")),
    "omap value": (lambda s: s._omap, lambda k: k.endswith(b"okey"),
                   lambda s: s.omap_get(C, "obj", [b"okey"])),
    "omap list": (lambda s: s._omap, lambda k: k.endswith(b"okey"),
                  lambda s: s.omap_list(C, "obj")),
    "long omap key": (lambda s: s._omap, lambda k: b"KKKK" in k,
                      lambda s: s.omap_list(C, "obj")),
    "peering state": (lambda s: s._meta, lambda k: k.endswith(b"info"),
                      lambda s: s.list_meta(C, prefix=b"peering/")),
    "pg log": (lambda s: s._meta, lambda k: k.endswith(b"0001"),
               lambda s: s.get_meta(C, b"peering/log/0001")),
    "counter": (lambda s: s._sys, lambda k: k == b"objects", lambda s: s.statfs()),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("where", ["payload", "header", "key"])
async def test_flipped_byte_in_any_record_is_refused(tmp_path, case, where):
    db, match, read = CASES[case]
    s = await _populated(tmp_path)
    try:
        read(s)  # fine before
        _flip(s, db(s), match, {"payload": -1, "header": 1, "key": None}[where])
        if where == "key" and case != "counter":
            # the record moved under another key: a lookup misses it, fsck does not
            assert any("checksum" in p for p in s.fsck())
            return
        if where == "key" and case == "counter":
            return  # a counter under a foreign key is simply not found
        with pytest.raises(CorruptMetadata, match="checksum mismatch"):
            read(s)
        assert any("checksum mismatch" in p for p in s.fsck())
    finally:
        await s.close()


async def test_flipped_bytes_in_the_lmdb_file_are_refused(tmp_path):
    s = await _populated(tmp_path)
    await s.close()
    dbfile = tmp_path / "db" / "data.mdb"
    raw = bytearray(dbfile.read_bytes())
    for pattern in (b"XATTRVALUE", b"OMAPVALUE", b"PEERINGSTATE"):
        pos = raw.find(pattern)
        assert pos >= 0
        while pos >= 0:
            raw[pos + 3] ^= 0x01
            pos = raw.find(pattern, pos + 1)
    dbfile.write_bytes(bytes(raw))
    s = DurableStore(str(tmp_path))
    try:
        assert s.read(C, "obj") == b"payload"          # the onode is intact
        with pytest.raises(ChecksumError):              # CorruptMetadata is a ChecksumError
            s.getxattr(C, "obj", "user.a")
        with pytest.raises(CorruptMetadata):
            s.omap_get(C, "obj", [b"okey"])
        with pytest.raises(CorruptMetadata):
            s.list_meta(C, prefix=b"peering/")
        assert s.omap_get(C, "obj", [b"K" * 1000]) == {b"K" * 1000: b"LONGKEYVALUE"}
        problems = s.fsck()
        assert len([p for p in problems if "checksum mismatch" in p]) == 3, problems
    finally:
        await s.close()


async def test_remove_and_recopy_replace_a_corrupt_onode(tmp_path):
    s = await _populated(tmp_path)
    try:
        _flip(s, s._onode, lambda k: k.endswith(b"obj"))
        with pytest.raises(CorruptMetadata):
            s.stat(C, "obj")
        await s.apply(Transaction().remove(C, "obj").write_full(C, "obj", b"good")
                      .setxattr(C, "obj", "user.a", b"v"))
        assert s.read(C, "obj") == b"good" and s.fsck() == []
    finally:
        await s.close()


async def test_corrupt_or_foreign_store_refuses_to_open(tmp_path):
    s = await _populated(tmp_path)
    with s._env.begin(write=True, db=s._sys) as t:
        t.delete(b"format")  # looks like a store of the format before checksums
    await s.close()
    with pytest.raises(NotSupported, match="format 1.*rebuild this OSD"):
        DurableStore(str(tmp_path))
    dbfile = tmp_path / "db" / "data.mdb"
    raw = bytearray(dbfile.read_bytes())
    raw[:8192] = random.Random(1).randbytes(8192)   # both LMDB meta pages
    dbfile.write_bytes(bytes(raw))
    with pytest.raises(CorruptMetadata) as info:
        DurableStore(str(tmp_path))
    assert str(dbfile) in str(info.value) and "sds osd fsck" in str(info.value)


def test_seal_roundtrip_and_bounds():
    key = b"k" * 10
    for name, payload in ((b"", b""), (b"n", b"p" * 100), (b"x" * 70000, b"")):
        assert unseal(key, seal(key, payload, name)) == (name, payload)
    sealed = seal(key, b"abc", b"nm")
    with pytest.raises(CorruptMetadata):
        unseal(key + b"!", sealed)
    with pytest.raises(CorruptMetadata, match="truncated"):
        unseal(key, sealed[:5])
    assert keys.name_key(b"a" * N) == b"a" * N
    assert len(keys.name_key(b"a" * (N + 1))) == N + keys.HASH_BYTES
    assert len(b"\0" * (2 + keys.COLL_MAX) + keys.object_id(b"o" * 5000)
               + keys.name_key(b"k" * 70000)) <= 511
    ids = {keys.object_id(n) for n in (b"", b"a", b"a" * 64, b"a" * 65, b"a" * 66, b"a" * 2048)}
    assert len(ids) == 6 and not any(a != b and b.startswith(a) for a in ids for b in ids)


def test_offline_fsck_names_the_damage(tmp_path, capsys):
    from sds.cli.main import main
    from sds.osd.store import fsck

    async def damage(flip: bool) -> None:
        s = await _populated(osd_dir / "store") if not flip else DurableStore(str(osd_dir / "store"))
        if flip:
            _flip(s, s._xattr, lambda k: k.endswith(b"user.a"))
        await s.close()

    osd_dir = tmp_path / "osd.0"
    asyncio.run(damage(False))
    assert asyncio.run(fsck.check(osd_dir)) == []
    asyncio.run(damage(True))
    [problem] = asyncio.run(fsck.check(osd_dir))
    assert "xattr" in problem and "checksum mismatch" in problem
    assert main(["osd", "fsck", str(osd_dir)]) == 1
    assert "rebuild this OSD" in capsys.readouterr().out


# -- the monitor store ---------------------------------------------------------------------------


def test_mon_store_values_are_sealed(tmp_path):
    from sds.mon.store import MonStore

    with MonStore(tmp_path / "mon") as m:
        m.write({"paxos/1": b"VALUE-ONE", "paxos/2": b"VALUE-TWO", "gone": b"x"})
        m.write({"gone": None})
        assert m.load() == {"paxos/1": b"VALUE-ONE", "paxos/2": b"VALUE-TWO"}
        with m._env.begin(write=True) as t:
            raw = bytearray(t.get(b"paxos/2"))
            raw[-1] ^= 0x01
            t.put(b"paxos/2", bytes(raw))
        assert m.get("paxos/1") == b"VALUE-ONE"
        with pytest.raises(CorruptMetadata, match="data.mdb: key b'paxos/2'.*rebuild"):
            m.get("paxos/2")
        with pytest.raises(CorruptMetadata):
            m.load()
    with pytest.raises(CorruptMetadata):  # and so the monitor does not start
        MonStore(tmp_path / "mon").load()


def test_mon_store_of_old_format_or_garbage_refuses_to_open(tmp_path):
    import lmdb

    from sds.mon.store import MonStore

    env = lmdb.open(str(tmp_path / "old"), subdir=True)
    with env.begin(write=True) as t:
        t.put(b"paxos/1", b"plain")
    env.close()
    with pytest.raises(NotSupported, match="format 1"):
        MonStore(tmp_path / "old")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "data.mdb").write_bytes(random.Random(2).randbytes(64 << 10))
    with pytest.raises(CorruptMetadata, match="bad/data.mdb"):
        MonStore(tmp_path / "bad")


async def test_listing_leaves_out_a_long_name_it_cannot_read(tmp_path):
    s = await _populated(tmp_path)
    try:
        _flip(s, s._onode, lambda k: b"LLLL" in k)
        assert s.list_objects(C) == (["obj"], False)   # scrub then sees it missing here
        with pytest.raises(CorruptMetadata):
            s.stat(C, "L" * 1500)
        await s.apply(Transaction().remove(C, "L" * 1500).write_full(C, "L" * 1500, b"y"))
        assert s.list_objects(C) == (["L" * 1500, "obj"], False) and s.fsck() == []
    finally:
        await s.close()
