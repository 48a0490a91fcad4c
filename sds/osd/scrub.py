"""Scrub: compare what each replica of a PG holds, and name the damaged copies.

A light scrub compares object lists, sizes and versions; a deep scrub also compares the
CRC32C of every object's data (each stored block is verified against its own checksum
on the way) and of its xattrs and omap. `compare` is pure: maps in, findings out. The
authoritative copy of an object is the largest group of identical, readable copies,
the primary's group winning ties, so one flipped byte on one replica never outvotes two
good copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crc32c import crc32c

from sds.common.errors import NotFound, SdsError
from sds.osd.store.base import ObjectStore
from sds.proto import osd_pb2


@dataclass
class Inconsistency:
    oid: str
    good: list[int]                  # OSDs holding the authoritative copy
    bad: dict[int, str] = field(default_factory=dict)   # OSD -> what is wrong there

    def as_dict(self) -> dict:
        return {"object": self.oid, "good": self.good,
                "bad": {f"osd.{o}": why for o, why in sorted(self.bad.items())}}


def attrs_checksum(store: ObjectStore, coll: str, oid: str) -> int:
    crc = 0
    for name, value in sorted(store.getxattrs(coll, oid).items()):
        crc = crc32c(value, crc32c(name.encode(), crc))
    start = b""
    while True:
        items, more = store.omap_list(coll, oid, start_after=start, max_entries=10000)
        for key, value in items:
            crc = crc32c(value, crc32c(key, crc))
        if not more or not items:
            return crc
        start = items[-1][0]


def build_map(store: ObjectStore, coll: str, deep: bool) -> osd_pb2.ScrubMap:
    """This OSD's view of a PG (runs in a reader thread: deep scrubs read every byte)."""
    result = osd_pb2.ScrubMap()
    if not store.collection_exists(coll):
        return result
    names, _ = store.list_objects(coll, max_entries=1 << 30)
    for oid in names:
        entry = result.objects.add(oid=oid)
        try:
            st = store.stat(coll, oid)
            entry.size, entry.version = st.size, st.version
            if deep:
                entry.crc = store.deep_scrub_object(coll, oid)
                entry.attrs_crc = attrs_checksum(store, coll, oid)
        except NotFound:
            entry.error = "vanished during scrub"
        except SdsError as e:
            entry.error = f"{type(e).__name__}: {e}"
    return result


def _signature(obj: osd_pb2.ScrubObject, deep: bool) -> tuple:
    return (obj.size, obj.version, obj.crc, obj.attrs_crc) if deep else (obj.size, obj.version)


def compare(maps: dict[int, osd_pb2.ScrubMap], primary: int, deep: bool) -> list[Inconsistency]:
    """Objects whose copies disagree, are missing somewhere, or failed their checksum."""
    by_osd = {osd: {o.oid: o for o in m.objects} for osd, m in maps.items()}
    findings = []
    for oid in sorted(set().union(*(set(objs) for objs in by_osd.values()))):
        groups: dict[tuple, list[int]] = {}
        bad: dict[int, str] = {}
        for osd, objs in sorted(by_osd.items()):
            obj = objs.get(oid)
            if obj is None:
                bad[osd] = "missing"
            elif obj.error:
                bad[osd] = obj.error
            else:
                groups.setdefault(_signature(obj, deep), []).append(osd)
        if not groups:
            findings.append(Inconsistency(oid, [], bad))
            continue
        best = max(groups.values(), key=lambda osds: (len(osds), primary in osds))
        for sig, osds in groups.items():
            if osds is not best:
                for osd in osds:
                    bad[osd] = _describe(sig, _signature_of(best, by_osd, oid, deep), deep)
        if bad:
            findings.append(Inconsistency(oid, sorted(best), bad))
    return findings


def _signature_of(osds: list[int], by_osd: dict, oid: str, deep: bool) -> tuple:
    return _signature(by_osd[osds[0]][oid], deep)


def _describe(mine: tuple, good: tuple, deep: bool) -> str:
    names = ("size", "version", "data crc", "attrs crc") if deep else ("size", "version")
    diffs = [f"{n} {a} != {b}" for n, a, b in zip(names, mine, good, strict=True) if a != b]
    return "differs: " + ", ".join(diffs)
