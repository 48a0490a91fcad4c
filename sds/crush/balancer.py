"""PG balancer in Ceph's "upmap" mode: per-PG exceptions that even out PG counts.

Hashing alone leaves PG counts per OSD with a relative spread of 6-10 % at ~100
PG replicas per OSD.  :func:`plan` looks at where every PG replica lands (CRUSH
plus the existing ``pg_upmap_items``) and moves single replicas from the most
over-full OSD (relative to its weight share) to the most under-full OSD that may
hold it, until every OSD is within ``max_deviation`` of its target or no move
helps.  A move is recorded as the PG's upmap pairs *relative to the CRUSH
result*: moving a replica that is itself an upmap target rewrites that pair, and
moving it back to the OSD CRUSH chose removes the pair.

Pure and deterministic: no randomness, ties broken by OSD id and PG id.

Accounting: only usable OSDs (up, in, nonzero weight) count.  Target of an OSD
= its effective weight (CRUSH weight x reweight) / the sum over usable OSDs x
the number of replicas placed on usable OSDs.  A move is accepted only when it
strictly lowers ``sum(count**2 / target)``, so planning always terminates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sds.crush.placement import PlacementTable, apply_upmap, crush_weights
from sds.proto.maps_pb2 import OsdMap, PgUpmapItems

__all__ = ["Distribution", "distribution", "plan"]

PgId = tuple[int, int]


@dataclass
class Distribution:
    """PG replica counts per usable OSD against their weight-share targets."""

    counts: dict[int, int]
    targets: dict[int, float]
    total: int
    deviations: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.deviations = {o: _dev(self.counts[o], t) for o, t in self.targets.items()}

    @property
    def max_deviation(self) -> float:
        return max((abs(d) for d in self.deviations.values()), default=0.0)

    def to_dict(self) -> dict:
        return {
            "total_replicas": self.total,
            "max_deviation": round(self.max_deviation, 4),
            "osds": [{"osd": o, "pgs": self.counts[o], "target": round(self.targets[o], 2),
                      "deviation": round(self.deviations[o], 4)}
                     for o in sorted(self.targets)],
        }


def _dev(count: int, target: float) -> float:
    return (count - target) / target if target > 0 else 0.0


def _weights(osdmap: OsdMap, table: PlacementTable) -> dict[int, float]:
    cw = crush_weights(osdmap.crush)
    usable = table.usable()
    out = {}
    for o in osdmap.osds:
        if o.id in usable:
            rw = o.reweight if o.reweight else 0x10000
            out[o.id] = cw[o.id] * min(rw, 0x10000) / 0x10000 / 0x10000
    return out


def _mapped_sets(osdmap: OsdMap, table: PlacementTable) -> dict[PgId, list[int]]:
    return {(p.id, pg): table.pg_upmapped(p.id, pg)
            for p in osdmap.pools for pg in range(p.pg_num)}


def _distribution(weights: Mapping[int, float], sets: Iterable[list[int]]) -> Distribution:
    counts = dict.fromkeys(weights, 0)
    for members in sets:
        for o in members:
            if o in counts:
                counts[o] += 1
    total = sum(counts.values())
    wsum = sum(weights.values())
    targets = {o: (total * w / wsum if wsum > 0 else 0.0) for o, w in weights.items()}
    return Distribution(counts, targets, total)


def distribution(osdmap: OsdMap, table: PlacementTable | None = None) -> Distribution:
    """Where PG replicas are now (CRUSH + upmaps) versus each OSD's weight share."""
    table = table or PlacementTable(osdmap)
    return _distribution(_weights(osdmap, table), _mapped_sets(osdmap, table).values())


def _order_pairs(raw: list[int], want: list[int], usable, domains) -> list[tuple[int, int]] | None:
    """Upmap pairs turning ``raw`` into the member set of ``want``, in an order that
    :func:`apply_upmap` accepts; None when no order of them works."""
    wanted = set(want)
    removed = [o for o in raw if o not in wanted]
    added = [o for o in want if o not in raw]
    if len(removed) != len(added):
        return None
    pairs: list[tuple[int, int]] = []
    left = list(added)
    for r in removed:  # pair a new member with a removed one of its own failure domain
        same = [a for a in left if domains.get(a, a) == domains.get(r, r)]
        pick = same[0] if same else left[0]
        left.remove(pick)
        pairs.append((r, pick))
    ordered: list[tuple[int, int]] = []
    current = list(raw)
    while pairs:
        for i, pair in enumerate(pairs):
            step = apply_upmap(current, [pair], usable, domains)
            if step != current:
                current = step
                ordered.append(pairs.pop(i))
                break
        else:
            return None
    return ordered if set(current) == wanted else None


def plan(osdmap: OsdMap, max_deviation: float = 0.05, max_changes: int = 1000,
         table: PlacementTable | None = None, busy: Iterable[PgId] = ()
         ) -> tuple[list[PgUpmapItems], list[tuple[int, int]]]:
    """Upmap changes that bring every OSD within ``max_deviation`` of its target.

    Returns ``(new_items, removed)``: entries to set (each replaces that PG's entry)
    and ``(pool, pg)`` whose entry is to be dropped.  Both empty when nothing helps.

    Data safety: OSD peering only asks the PG's current members for data, so a PG
    must always keep a member with a complete copy.  A plan therefore moves at most
    one replica of each PG, and never touches the PGs in ``busy`` (those not yet
    active+clean in their current mapping: their new members may still be filling).
    """
    table = table or PlacementTable(osdmap)
    usable = table.usable()
    weights = _weights(osdmap, table)
    existing = {(u.pool, u.pg): list(zip(u.from_osd, u.to_osd, strict=False))
                for u in osdmap.pg_upmap_items}
    pools = {p.id: p for p in osdmap.pools}
    down_in = {o.id for o in osdmap.osds if not o.up and getattr(o, "in")}
    raw: dict[PgId, list[int]] = {}
    cur: dict[PgId, list[int]] = {}
    pairs: dict[PgId, list[tuple[int, int]]] = {}
    frozen: set[PgId] = set(busy)
    touched: set[PgId] = set()
    changed: set[PgId] = set()
    for pid, pool in sorted(pools.items()):
        domains = table.domains(pid)
        for pg in range(pool.pg_num):
            key = (pid, pg)
            r = table.pg_raw(pid, pg)
            raw[key], cur[key] = r, table.pg_upmapped(pid, pg)
            old = existing.get(key, [])
            # a member or upmap target that is down but still in may come back: leave it be
            if key in frozen or any(o in down_in for o in r + [t for _, t in old]):
                frozen.add(key)
                pairs[key] = old
                continue
            if old:
                norm = _order_pairs(r, cur[key], usable, domains) if cur[key] != r else []
                if norm is None:  # cannot happen for a set apply_upmap produced; be safe
                    frozen.add(key)
                    pairs[key] = old
                    continue
                pairs[key] = norm
                if norm != old:
                    changed.add(key)
                    cur[key] = apply_upmap(r, norm, usable, domains)
    for key in existing:  # entries of PGs that no longer exist
        if key not in raw:
            changed.add(key)
            pairs[key] = []

    dist = _distribution(weights, cur.values())
    counts, targets = dist.counts, dist.targets
    pgs_of: dict[int, set[PgId]] = {o: set() for o in weights}
    for key, members in cur.items():
        if key in frozen:
            continue
        for o in members:
            if o in pgs_of:
                pgs_of[o].add(key)

    def dev(o: int) -> float:
        return _dev(counts[o], targets[o])

    def helps(src: int, dst: int) -> bool:  # strictly lowers sum(count^2 / target)
        return (2 * counts[dst] + 1) / targets[dst] < (2 * counts[src] - 1) / targets[src]

    def try_move(src: int, dst: int) -> bool:
        # PGs where src is an upmap target first: moving those undoes exceptions
        for key in sorted(pgs_of[src], key=lambda k: (src in raw[k], k)):
            members = cur[key]
            if dst in members or key in touched:
                continue
            domains = table.domains(key[0])
            dom = domains.get(dst, dst)
            if any(domains.get(o, o) == dom for o in members if o != src):
                continue
            want = [dst if o == src else o for o in members]
            new_pairs = _order_pairs(raw[key], want, usable, domains)
            if new_pairs is None:
                continue
            result = apply_upmap(raw[key], new_pairs, usable, domains)
            if set(result) != set(want):
                continue
            cur[key], pairs[key] = result, new_pairs
            changed.add(key)
            touched.add(key)
            pgs_of[src].discard(key)
            pgs_of[dst].add(key)
            counts[src] -= 1
            counts[dst] += 1
            return True
        return False

    targetable = [o for o in weights if targets[o] > 0]
    moves = 0
    while moves < max_changes:
        if all(abs(dev(o)) <= max_deviation for o in targetable):
            break
        by_dev = sorted(targetable, key=lambda o: (-dev(o), o))
        under = sorted(targetable, key=lambda o: (dev(o), o))
        moved = False
        for src in by_dev:
            if dev(src) <= 0:
                break
            for dst in under:
                if dev(dst) >= 0:
                    break
                if dev(src) <= max_deviation and dev(dst) >= -max_deviation:
                    continue  # both within bounds: this pair needs no move
                if helps(src, dst) and try_move(src, dst):
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
        moves += 1

    new_items: list[PgUpmapItems] = []
    removed: list[tuple[int, int]] = []
    for key in sorted(changed):
        p = pairs.get(key, [])
        if p == existing.get(key, []):
            continue
        if p:
            new_items.append(PgUpmapItems(pool=key[0], pg=key[1], from_osd=[a for a, _ in p],
                                          to_osd=[b for _, b in p]))
        elif key in existing:
            removed.append(key)
    return new_items, removed
