"""Scrub comparison: which copies are damaged, and which one is authoritative."""

import pytest

from sds.osd import scrub
from sds.osd.store.base import Transaction
from sds.osd.store.memory import MemoryStore
from sds.proto import osd_pb2


def smap(*objs):
    m = osd_pb2.ScrubMap()
    for oid, size, version, crc, *err in objs:
        m.objects.add(oid=oid, size=size, version=version, crc=crc, error=err[0] if err else "")
    return m


def test_identical_replicas_are_consistent():
    same = smap(("a", 10, 3, 111), ("b", 0, 1, 0))
    assert scrub.compare({0: same, 1: same, 2: same}, primary=0, deep=True) == []


def test_majority_wins_even_against_the_primary():
    good, bad = smap(("a", 10, 3, 111)), smap(("a", 10, 3, 999))
    [f] = scrub.compare({0: bad, 1: good, 2: good}, primary=0, deep=True)
    assert f.good == [1, 2] and list(f.bad) == [0] and "data crc" in f.bad[0]


def test_light_scrub_ignores_checksums():
    assert scrub.compare({0: smap(("a", 10, 3, 1)), 1: smap(("a", 10, 3, 2))},
                         primary=0, deep=False) == []


def test_missing_and_unreadable_copies():
    full = smap(("a", 1, 1, 5), ("b", 2, 2, 6))
    [fa, fb] = scrub.compare({0: full, 1: smap(("a", 1, 1, 5)),
                              2: smap(("a", 1, 1, 0, "ChecksumError"), ("b", 2, 2, 6))},
                             primary=0, deep=True)
    assert fa.oid == "a" and fa.bad == {2: "ChecksumError"}
    assert fb.oid == "b" and fb.bad == {1: "missing"}


def test_tie_goes_to_the_primary():
    [f] = scrub.compare({0: smap(("a", 1, 1, 5)), 1: smap(("a", 1, 1, 6))}, primary=1, deep=True)
    assert f.good == [1] and list(f.bad) == [0]


@pytest.mark.parametrize("deep", [False, True])
async def test_build_map_from_a_store(deep):
    store = MemoryStore()
    txn = Transaction().create_collection("1.0")
    txn.touch("1.0", "x", 1.0, 7).write_full("1.0", "x", b"hello")
    txn.setxattr("1.0", "x", "user.a", b"v").omap_set("1.0", "x", {b"k": b"v"})
    await store.apply(txn)
    m = scrub.build_map(store, "1.0", deep)
    [obj] = m.objects
    assert (obj.oid, obj.size, obj.version) == ("x", 5, 7)
    assert (obj.crc != 0) == deep and (obj.attrs_crc != 0) == deep
