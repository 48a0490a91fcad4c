"""Object -> PG -> OSDs, computed by every client and daemon from the OSDMap.

* object -> PG: ``stable_mod(str_hash_rjenkins(name), pg_num, pg_mask)``, so
  growing ``pg_num`` splits PGs instead of reshuffling every object.
* PG -> OSDs: CRUSH on ``pg_seed(pool, pg) = hash32_2(pg, pool)`` (Ceph's
  "hashpspool" seed), then the PG's upmap exceptions (``pg_upmap_items``, set
  by the balancer) replace some members, then down OSDs are dropped with order
  kept; the first remaining OSD is the primary.

A :class:`PlacementTable` is a pure function of one OSDMap epoch.  Keep one per
epoch; it maps a pool's PGs the first time that pool is asked about.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from sds.crush.hash import hash32_2, str_hash_rjenkins
from sds.crush.mapper import WEIGHT_ONE, CompiledCrush
from sds.proto.crush_pb2 import CrushMap
from sds.proto.maps_pb2 import OsdMap, Pool

__all__ = [
    "PlacementTable",
    "apply_upmap",
    "crush_weights",
    "domain_of",
    "object_hash",
    "object_to_pg",
    "parse_pg_name",
    "pg_mask",
    "pg_name",
    "pg_seed",
    "stable_mod",
]


@functools.lru_cache(maxsize=1 << 16)
def object_hash(name: str) -> int:
    """32-bit hash of an object name (Ceph's rjenkins string hash of its UTF-8).

    Cached: it is pure, and hot objects are placed again and again on the client path."""
    return str_hash_rjenkins(name.encode("utf-8"))


def stable_mod(x: int, b: int, bmask: int) -> int:
    """Ceph's ``ceph_stable_mod``: ``x mod b`` that stays put as ``b`` grows.

    ``bmask`` is ``pg_mask(b)``.  Results are always ``< b``; when ``b``
    grows, a value either keeps its bucket or moves to ``old + 2**k``.
    """
    if (x & bmask) < b:
        return x & bmask
    return x & (bmask >> 1)


def pg_mask(pg_num: int) -> int:
    """Smallest ``2**n - 1`` that is ``>= pg_num - 1``."""
    if pg_num <= 0:
        raise ValueError(f"pg_num must be > 0, got {pg_num}")
    return (1 << (pg_num - 1).bit_length()) - 1


def object_to_pg(pool: Pool, name: str) -> int:
    """The PG (0 <= pg < pool.pg_num) that holds object ``name`` in ``pool``."""
    return stable_mod(object_hash(name), pool.pg_num, pg_mask(pool.pg_num))


def pg_seed(pool_id: int, pg: int) -> int:
    """The CRUSH input for a PG: different pools place the same PG number differently."""
    return hash32_2(pg, pool_id)


def pg_name(pool_id: int, pg: int) -> str:
    """``"<pool>.<pg in hex>"``, e.g. ``pg_name(1, 31) == "1.1f"``."""
    return f"{pool_id}.{pg:x}"


def parse_pg_name(s: str) -> tuple[int, int]:
    """Inverse of :func:`pg_name`; raises ValueError for malformed names."""
    pool_s, sep, pg_s = s.strip().partition(".")
    if not sep or not pool_s or not pg_s:
        raise ValueError(f"bad PG name {s!r}: expected <pool>.<hex pg>")
    try:
        pool_id, pg = int(pool_s, 10), int(pg_s, 16)
    except ValueError:
        raise ValueError(f"bad PG name {s!r}: expected <pool>.<hex pg>") from None
    if pool_id < 0 or pg < 0:
        raise ValueError(f"bad PG name {s!r}: negative number")
    return pool_id, pg


def _effective_reweight(info) -> int:
    """16.16 weight CRUSH sees for an OSD: 0 when out; unset (0) while in means 1.0."""
    if not getattr(info, "in"):  # "in" is a Python keyword
        return 0
    if info.reweight == 0:
        return WEIGHT_ONE
    return min(info.reweight, WEIGHT_ONE)


def crush_weights(crush: CrushMap) -> dict[int, int]:
    """16.16 CRUSH weight of every OSD placed in the hierarchy (first parent wins)."""
    weights: dict[int, int] = {}
    for b in crush.buckets:
        for it in b.items:
            if it.id >= 0:
                weights.setdefault(it.id, it.weight)
    return weights


def _rule_domain(crush: CrushMap, rule_id: int) -> str:
    for r in crush.rules:
        if r.id == rule_id:
            for op in ("chooseleaf_firstn", "choose_firstn"):
                for step in r.steps:
                    if step.op == op:
                        return step.type
    return crush.types[0] if crush.types else "osd"


def domain_of(crush: CrushMap, domain_type: str) -> dict[int, int]:
    """OSD id -> id of its ancestor bucket of ``domain_type`` (itself for the leaf type).

    OSDs that are not in the hierarchy, or have no such ancestor, are their own domain.
    """
    parent: dict[int, int] = {}
    for b in crush.buckets:
        for it in b.items:
            parent.setdefault(it.id, b.id)
    types = {b.id: b.type for b in crush.buckets}
    out: dict[int, int] = {}
    for osd in (i for i in parent if i >= 0):
        node = osd
        seen = 0
        while node in parent and types.get(node) != domain_type and seen <= len(types):
            node = parent[node]
            seen += 1
        out[osd] = node if types.get(node) == domain_type else osd
    return out


def apply_upmap(raw: list[int], pairs, usable, domains: Mapping[int, int]) -> list[int]:
    """Ceph's ``_apply_upmap`` for ``pg_upmap_items``, plus a failure-domain check.

    Each ``(frm, to)`` in order replaces ``frm`` by ``to`` when ``frm`` is in the set,
    ``to`` is not, ``to`` is usable (exists, up, in, nonzero weight) and ``to`` is not in
    the failure domain of another member; otherwise the pair is ignored.
    """
    out = list(raw)
    for frm, to in pairs:
        if to in out or to not in usable:
            continue
        try:
            pos = out.index(frm)
        except ValueError:
            continue
        dom = domains.get(to, to)
        if any(domains.get(o, o) == dom for i, o in enumerate(out) if i != pos):
            continue
        out[pos] = to
    return out


class PlacementTable:
    """PG -> OSD lists for one OSDMap epoch, mapped lazily per pool and cached.

    ``pg_raw`` is the CRUSH result, ``pg_upmapped`` that with the upmap exceptions
    applied, and ``pg_up`` the latter with down OSDs removed (order kept), so it may
    be shorter than the pool size, or empty.
    """

    def __init__(self, osdmap: OsdMap):
        self.epoch: int = osdmap.epoch
        self._crush_map = osdmap.crush
        self._crush = CompiledCrush(osdmap.crush)
        self._pools: dict[int, Pool] = {p.id: p for p in osdmap.pools}
        self._reweights: dict[int, int] = {o.id: _effective_reweight(o) for o in osdmap.osds}
        self._up: frozenset[int] = frozenset(o.id for o in osdmap.osds if o.up)
        self._upmaps: dict[int, dict[int, list[tuple[int, int]]]] = {}
        for u in osdmap.pg_upmap_items:
            self._upmaps.setdefault(u.pool, {})[u.pg] = list(zip(u.from_osd, u.to_osd,
                                                                 strict=False))
        self._usable: frozenset[int] | None = None
        self._domains: dict[str, dict[int, int]] = {}
        self._raw: dict[int, list[list[int]]] = {}
        self._mapped: dict[int, list[list[int]]] = {}
        self._upsets: dict[int, list[list[int]]] = {}

    def usable(self) -> frozenset[int]:
        """OSDs that may receive data: up, in, with nonzero reweight and CRUSH weight."""
        if self._usable is None:
            weights = crush_weights(self._crush_map)
            self._usable = frozenset(o for o in self._up
                                     if self._reweights.get(o, 0) > 0 and weights.get(o, 0) > 0)
        return self._usable

    def domains(self, pool_id: int) -> dict[int, int]:
        """OSD -> failure domain id for the pool's rule."""
        kind = _rule_domain(self._crush_map, self.pool(pool_id).crush_rule)
        found = self._domains.get(kind)
        if found is None:
            found = self._domains[kind] = domain_of(self._crush_map, kind)
        return found

    @property
    def crush(self) -> CompiledCrush:
        return self._crush

    def pool(self, pool_id: int) -> Pool:
        try:
            return self._pools[pool_id]
        except KeyError:
            raise KeyError(f"no pool {pool_id} in osdmap epoch {self.epoch}") from None

    def _map_pool(self, pool_id: int) -> list[list[int]]:
        ups = self._upsets.get(pool_id)
        if ups is None:
            pool = self.pool(pool_id)
            crush, reweights, up = self._crush, self._reweights, self._up
            raw = [
                crush.do_rule(pool.crush_rule, pg_seed(pool_id, pg), pool.size, reweights)
                for pg in range(pool.pg_num)
            ]
            mapped = raw
            upmaps = self._upmaps.get(pool_id)
            if upmaps:
                usable, domains = self.usable(), self.domains(pool_id)
                mapped = list(raw)
                for pg, pairs in upmaps.items():
                    if pg < len(mapped):
                        mapped[pg] = apply_upmap(raw[pg], pairs, usable, domains)
            ups = [[o for o in osds if o in up] for osds in mapped]
            self._raw[pool_id] = raw
            self._mapped[pool_id] = mapped
            self._upsets[pool_id] = ups
        return ups

    def _check_pg(self, pool_id: int, pg: int, n: int) -> None:
        if not 0 <= pg < n:
            raise KeyError(f"pg {pg_name(pool_id, pg)} does not exist (pg_num {n})")

    def pg_raw(self, pool_id: int, pg: int) -> list[int]:
        """The CRUSH result, before upmap exceptions and before down OSDs are removed."""
        ups = self._map_pool(pool_id)
        self._check_pg(pool_id, pg, len(ups))
        return list(self._raw[pool_id][pg])

    def pg_upmapped(self, pool_id: int, pg: int) -> list[int]:
        """The CRUSH result with the PG's upmap exceptions applied (down OSDs kept)."""
        ups = self._map_pool(pool_id)
        self._check_pg(pool_id, pg, len(ups))
        return list(self._mapped[pool_id][pg])

    def pg_up(self, pool_id: int, pg: int) -> list[int]:
        """Up OSDs for the PG in CRUSH order; the first is the primary."""
        ups = self._map_pool(pool_id)
        self._check_pg(pool_id, pg, len(ups))
        return list(ups[pg])

    def primary(self, pool_id: int, pg: int) -> int | None:
        up = self.pg_up(pool_id, pg)
        return up[0] if up else None

    def locate(self, pool_id: int, name: str) -> tuple[int, list[int]]:
        """``(pg, up OSDs)`` for an object name in a pool."""
        pg = object_to_pg(self.pool(pool_id), name)
        return pg, self.pg_up(pool_id, pg)

    def pgs_of_osd(self, osd_id: int) -> list[tuple[int, int]]:
        """All ``(pool_id, pg)`` whose up set contains ``osd_id``, sorted."""
        found = []
        for pool_id in sorted(self._pools):
            for pg, up in enumerate(self._map_pool(pool_id)):
                if osd_id in up:
                    found.append((pool_id, pg))
        return found
