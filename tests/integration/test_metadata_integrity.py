"""Metadata checksums and long names with real processes.

Bytes flipped in stored xattr and omap values inside an OSD's LMDB file are never served:
the primary repairs its copy from a replica (the PG shows inconsistent until a deep
scrub), a damaged replica is found by deep scrub and repaired, and every OSD's store
passes the offline fsck afterwards. Names at Ceph's limits (2048-byte object names, 4 KiB
omap keys) are written, listed in order and survive recovery. A write to an object whose
copy has a damaged record (on a replica or on the primary) is acked with no OSD stopping:
the damaged copy is replaced by a whole good one first.
"""

from __future__ import annotations

import os

import pytest
from fault_helpers import ALL_DAEMONS, _all_clean, _all_up, wait_for

from sds.client import Rados
from sds.crush.placement import object_to_pg, pg_name
from sds.osd.store import fsck
from sds.osd.store.durable import DurableStore

pytestmark = pytest.mark.integration


def _flip_in_lmdb(cluster, osd: int, patterns: list[bytes]) -> None:
    """Flip a byte inside every stored copy of each pattern in osd's LMDB file (the
    cluster is stopped meanwhile)."""
    for name in ALL_DAEMONS:
        cluster.stop(name)
    dbfile = cluster.dir / f"osd.{osd}" / "store" / "db" / "data.mdb"
    raw = bytearray(dbfile.read_bytes())
    for pattern in patterns:
        pos = raw.find(pattern)
        assert pos >= 0, f"{pattern!r} not in {dbfile}"
        while pos >= 0:
            raw[pos + len(pattern) // 2] ^= 0x08
            pos = raw.find(pattern, pos + 1)
    dbfile.write_bytes(bytes(raw))
    for name in reversed(ALL_DAEMONS):
        cluster.start(name)


async def _setup(cluster, pool: str):
    tag = os.urandom(8).hex().encode()
    xv, ov = b"XATTR-" + tag * 4, b"OMAP-" + tag * 4
    async with Rados(cluster.conf) as r:
        await r.pool_create(pool, pg_num=8, size=3)
        io = r.ioctx(pool)
        await io.write_full("victim", b"data")
        await io.setxattr("victim", "user.a", xv)
        await io.omap_set("victim", {b"k1": ov, b"k2": b"plain"})
        p = r.monc.pools[pool]
        ps = object_to_pg(p, "victim")
        return xv, ov, pg_name(p.id, ps), r.placement.pg_up(p.id, ps)


async def _gone(cluster, pid: int) -> bool:
    """The daemon process exited (reaped, or a zombie of this test process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def _query(r: Rados, pgid: str) -> dict:
    return await r.pg_command(pgid, {"prefix": "query"})


async def test_flipped_xattr_and_omap_on_primary_never_served_and_repaired(cluster):
    xv, ov, pgid, acting = await _setup(cluster, "metaprimary")
    _flip_in_lmdb(cluster, acting[0], [xv, ov])
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        io = r.ioctx("metaprimary")
        assert await io.getxattr("victim", "user.a") == xv    # from a replica, not EIO
        assert await io.getxattrs("victim") == {"user.a": xv}
        assert await io.omap_get("victim", [b"k1"]) == {b"k1": ov}
        assert (await io.omap_list("victim"))[0] == [(b"k1", ov), (b"k2", b"plain")]
        assert await io.read("victim") == b"data"
        query = await _query(r, pgid)
        assert "inconsistent" in query["state"]                # until scrubbed
        [found] = query["inconsistent"]
        assert found["object"] == "victim" and list(found["bad"]) == [f"osd.{acting[0]}"]
        report = await r.pg_command(pgid, {"prefix": "deep-scrub"})
        assert report["inconsistent"] == []                    # the local copy was repaired
        assert "inconsistent" not in (await _query(r, pgid))["state"]
    cluster.down()
    for osd in acting:
        assert await fsck.check(cluster.dir / f"osd.{osd}") == []


async def test_flipped_omap_on_replica_found_by_deep_scrub_and_repaired(cluster):
    xv, ov, pgid, acting = await _setup(cluster, "metareplica")
    replica = acting[1]
    _flip_in_lmdb(cluster, replica, [ov])
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        io = r.ioctx("metareplica")
        assert await io.omap_get("victim", [b"k1"]) == {b"k1": ov}  # the primary is fine
        deep = await r.pg_command(pgid, {"prefix": "deep-scrub"})
        [finding] = deep["inconsistent"]
        assert list(finding["bad"]) == [f"osd.{replica}"]
        assert "checksum mismatch" in finding["bad"][f"osd.{replica}"]
        repaired = await r.pg_command(pgid, {"prefix": "repair"})
        assert [f["object"] for f in repaired["repaired"]] == ["victim"]
        assert repaired["inconsistent"] == []
    cluster.down()
    assert await fsck.check(cluster.dir / f"osd.{replica}") == []


async def test_names_at_the_limits_work_and_recover(cluster):
    names = sorted(["n" * 2048, "n" * 2047 + "a", "n" * 400 + "b", "short"])
    long_key = b"k" * 4096
    async with Rados(cluster.conf) as r:
        await r.pool_create("longnames", pg_num=1, size=3)
        io = r.ioctx("longnames")
        cluster.stop("osd.2")
        for n in names:  # while osd.2 is down: it must recover them by log
            await io.write_full(n, n[-1].encode())
            await io.omap_set(n, {long_key: b"v", b"a": b"w"})
        cluster.start("osd.2")
        listed = [n async for n in io.list_objects(page_size=2)]
        assert listed == names
        for n in names:
            assert await io.read(n) == n[-1].encode()
            assert (await io.omap_list(n))[0] == [(b"a", b"w"), (long_key, b"v")]
        pgid = pg_name(r.monc.pools["longnames"].id, 0)

        async def clean():
            return "clean" in (await _query(r, pgid))["state"].split("+")
        await wait_for(clean, 60, "the PG recovered to clean")
        deep = await r.pg_command(pgid, {"prefix": "deep-scrub"})
        assert deep["inconsistent"] == []


async def test_osd_with_corrupt_peering_state_refuses_to_start_and_rebuilds(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("rebuild", pg_num=4, size=3)
        io = r.ioctx("rebuild")
        for i in range(8):
            await io.write_full(f"o{i}", b"v%d" % i)
    cluster.stop("osd.0")
    store_dir = cluster.dir / "osd.0" / "store"
    s = DurableStore(str(store_dir))
    with s._env.begin(write=True, db=s._meta) as t:  # one PG's peering info, bit-flipped
        key = next(k for k in t.cursor().iternext(values=False) if k.endswith(b"peering/info"))
        value = bytearray(t.get(key))
        value[-2] ^= 0x04
        t.put(key, bytes(value))
    await s.close()
    log_file = cluster.dir / "out" / "osd.0.log"
    seen = log_file.stat().st_size
    pid = cluster.start("osd.0")

    async def ended():
        new = log_file.read_bytes()[seen:].decode(errors="replace")
        return new if "daemon_exit" in new or "daemon_serving" in new else None
    tail = await wait_for(ended, 30, "osd.0 to refuse to start")
    assert "daemon_serving" not in tail
    await wait_for(lambda: _gone(cluster, pid), 10, "the osd.0 process to exit")
    assert "daemon_start_failed" in tail and str(store_dir / "db" / "data.mdb") in tail
    assert f"sds osd fsck {store_dir}" in tail and "checksum mismatch" in tail
    assert "peering/info" in tail
    [problem] = await fsck.check(cluster.dir / "osd.0")
    assert "peering/info" in problem
    store_dir.rename(store_dir.with_name("store.corrupt"))   # what the message says to do
    cluster.start("osd.0")
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "osd.0 up again")
        await wait_for(lambda: _all_clean(r), 60, "osd.0 backfilled, all PGs clean")
        pool_id = r.monc.pools["rebuild"].id
        io = r.ioctx("rebuild")
        for i in range(8):
            assert await io.read(f"o{i}") == b"v%d" % i
    cluster.down()
    s = DurableStore(str(store_dir))
    try:
        held = {n for c in s.list_collections() if c.startswith(f"{pool_id}.")
                for n in s.list_objects(c)[0]}
    finally:
        await s.close()
    assert held == {f"o{i}" for i in range(8)}, "osd.0 was not backfilled"


async def test_corrupt_onode_on_primary_repaired_on_read_and_on_write(cluster):
    xv, ov, pgid, acting = await _setup(cluster, "metaonode")
    async with Rados(cluster.conf) as r:
        p = r.monc.pools["metaonode"]
        other = next(n for n in (f"other{i}" for i in range(1000))
                     if pg_name(p.id, object_to_pg(p, n)) == pgid)  # same primary
        await r.ioctx("metaonode").write_full(other, b"o")
    await _flip_records(cluster, {acting[0]: [
        ("onode", lambda k, v, n=victim: k.endswith(n.encode())) for victim in ("victim", other)]})
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        io = r.ioctx("metaonode")
        assert await io.read("victim") == b"data"               # stat failed: replicas' copy
        assert (await io.stat("victim")).size == 4
        assert await io.getxattr("victim", "user.a") == xv
        await io.append(other, b"+")                             # a write repairs first
        assert await io.read(other) == b"o+"
        report = await r.pg_command(pgid, {"prefix": "deep-scrub"})
        assert report["inconsistent"] == []


# a write of each kind to an object whose copy has a damaged record of each kind the
# write depends on (the data block kind only under writes that keep part of a block)
WRITES = {"write": lambda io, n: io.write(n, b"WXYZ", offset=2),
          "setxattr": lambda io, n: io.setxattr(n, "user.new", b"fresh"),
          "omap_set": lambda io, n: io.omap_set(n, {b"new": b"fresh"}),
          "truncate": lambda io, n: io.truncate(n, 3)}
DAMAGE = {"onode": list(WRITES), "xattr": list(WRITES), "omap": list(WRITES),
          "data": ["write", "truncate"]}


def _expected(name: str, write: str) -> tuple[bytes, dict, dict]:
    data, xattrs, omap = _content(name)
    if write == "write":
        data = data[:2] + b"WXYZ" + data[6:]
    elif write == "setxattr":
        xattrs = {**xattrs, "user.new": b"fresh"}
    elif write == "omap_set":
        omap = {**omap, b"new": b"fresh"}
    else:
        data = data[:3]
    return data, xattrs, omap


def _content(name: str) -> tuple[bytes, dict, dict]:
    tag = name.encode()
    return (b"DATA-" + tag * 3, {"user.a": b"XATTR-" + tag * 2, "user.b": b"plain"},
            {b"k1": b"OMAP-" + tag * 2, b"k2": b"plain"})


async def test_write_to_an_object_with_a_damaged_record_on_a_replica_or_primary(cluster):
    """The replica checks its copy before its peering state takes the write, and takes the
    primary's whole copy instead of the delta; the primary repairs its own copy first. The
    write is acked, no OSD stops, every copy ends identical and right."""
    objects = {f"{side}-{kind}-{write}": (side, kind, write)
               for side in ("r", "p") for kind, writes in DAMAGE.items() for write in writes}
    async with Rados(cluster.conf) as r:
        await r.pool_create("damaged", pg_num=1, size=3)
        io = r.ioctx("damaged")
        for name in objects:
            data, xattrs, omap = _content(name)
            await io.write_full(name, data)
            for k, v in xattrs.items():
                await io.setxattr(name, k, v)
            await io.omap_set(name, omap)
        pool = r.monc.pools["damaged"]
        pgid, acting = pg_name(pool.id, 0), r.placement.pg_up(pool.id, 0)
    await _flip_records(cluster, {osd: [_record_of(n, kind) for n, (on, kind, _) in objects.items()
                                        if on == side]
                                  for side, osd in (("r", acting[1]), ("p", acting[0]))})
    async with Rados(cluster.conf) as r:
        await wait_for(lambda: _all_up(r), 30, "all OSDs up again")
        io = r.ioctx("damaged")
        for name, (_, _, write) in objects.items():
            await WRITES[write](io, name)                       # acked
        for name, (_, _, write) in objects.items():
            data, xattrs, omap = _expected(name, write)
            assert await io.read(name) == data, name
            assert await io.getxattrs(name) == xattrs, name
            assert dict((await io.omap_list(name))[0]) == omap, name
        assert await _all_up(r), "an OSD went down"
        query = await _query(r, pgid)
        assert "inconsistent" in query["state"]
        found = {f["object"]: list(f["bad"]) for f in query["inconsistent"]}
        assert found == {n: [f"osd.{acting[0 if side == 'p' else 1]}"]
                         for n, (side, _, _) in objects.items()}
        report = await r.pg_command(pgid, {"prefix": "deep-scrub"})
        assert report["inconsistent"] == []
        assert (await _query(r, pgid))["state"] == "active+clean"
    cluster.down()
    for osd in acting:
        log_text = (cluster.dir / "out" / f"osd.{osd}.log").read_text(errors="replace")
        assert "FATAL" not in log_text, f"osd.{osd} stopped"
        assert await fsck.check(cluster.dir / f"osd.{osd}") == []
        s = DurableStore(str(cluster.dir / f"osd.{osd}" / "store"))
        try:
            for name, (_, _, write) in objects.items():
                data, xattrs, omap = _expected(name, write)
                assert s.read(pgid, name) == data, (osd, name)
                assert s.getxattrs(pgid, name) == xattrs, (osd, name)
                assert dict(s.omap_list(pgid, name)[0]) == omap, (osd, name)
        finally:
            await s.close()


def _record_of(name: str, kind: str):
    """(store table, match) of the record of `kind` (onode, xattr, omap, data) of `name`."""
    data, xattrs, omap = _content(name)
    return kind, {"onode": lambda k, v: k.endswith(name.encode()),
                  "xattr": lambda k, v: xattrs["user.a"] in v,
                  "omap": lambda k, v: omap[b"k1"] in v,
                  "data": lambda k, v: data in v}[kind]


async def _flip_records(cluster, flips: dict[int, list]) -> None:
    """With the cluster stopped, flip the last byte of the one LMDB record of each
    (table, match(key, value)) in flips[osd] of that OSD's store."""
    for name in ALL_DAEMONS:
        cluster.stop(name)
    for osd, records in flips.items():
        s = DurableStore(str(cluster.dir / f"osd.{osd}" / "store"))
        try:
            for table, match in records:
                with s._env.begin(write=True, db=getattr(s, f"_{table}")) as t:
                    [key] = [bytes(k) for k, v in t.cursor() if match(bytes(k), bytes(v))]
                    value = bytearray(t.get(key))
                    value[-1] ^= 0x10
                    t.put(key, bytes(value))
        finally:
            await s.close()
    for name in reversed(ALL_DAEMONS):
        cluster.start(name)
