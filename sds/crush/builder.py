"""Offline, mutating helpers that edit a ``CrushMap`` protobuf in place.

The monitors use these to turn commands (``osd crush add``, ``osd crush
reweight``, ``osd pool create --failure-domain``) into a new map, which is
then proposed as a whole.  Nothing here is used on the placement hot path;
see ``sds.crush.mapper`` for that.

Conventions: weights are floats at this API (1.0 == one unit of capacity) and
16.16 fixed point in the map; bucket weights are kept equal to the sum of
their children after every change; bucket ids are negative and allocated
downwards from -1; device ids are the OSD ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from sds.proto.crush_pb2 import CrushBucket, CrushMap, CrushRule

__all__ = [
    "DEFAULT_ROOT",
    "DEFAULT_TYPES",
    "add_osd",
    "add_replicated_rule",
    "count_failure_domains",
    "failure_domain",
    "new_map",
    "osd_weight",
    "remove_osd",
    "set_osd_weight",
    "set_rule_failure_domain",
    "tree",
    "weight_to_fixed",
]

DEFAULT_TYPES = ("osd", "host", "root")
DEFAULT_ROOT = "default"
_ONE = 0x10000


def weight_to_fixed(weight: float) -> int:
    """Convert a float weight to 16.16 fixed point (rounded, never negative)."""
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    fixed = int(round(weight * _ONE))
    if fixed > 0xFFFFFFFF:
        raise ValueError(f"weight {weight} too large")
    return fixed


def new_map() -> CrushMap:
    """An empty map: types osd/host/root, root "default", rule 0 "replicated_rule"."""
    crush = CrushMap(types=list(DEFAULT_TYPES), choose_total_tries=50)
    crush.buckets.add(id=-1, name=DEFAULT_ROOT, type="root")
    add_replicated_rule(crush, "replicated_rule", "host", DEFAULT_ROOT)
    return crush


# -- lookups -----------------------------------------------------------------


def _bucket_by_name(crush: CrushMap, name: str) -> CrushBucket | None:
    for b in crush.buckets:
        if b.name == name:
            return b
    return None


def _bucket_by_id(crush: CrushMap, bucket_id: int) -> CrushBucket | None:
    for b in crush.buckets:
        if b.id == bucket_id:
            return b
    return None


def _parent_of(crush: CrushMap, item_id: int) -> CrushBucket | None:
    for b in crush.buckets:
        for it in b.items:
            if it.id == item_id:
                return b
    return None


def _rule(crush: CrushMap, rule_id: int) -> CrushRule:
    for r in crush.rules:
        if r.id == rule_id:
            return r
    raise KeyError(f"no CRUSH rule {rule_id}")


def _next_bucket_id(crush: CrushMap) -> int:
    return min([b.id for b in crush.buckets] + [0]) - 1


def _recompute_weights(crush: CrushMap) -> None:
    """Set every bucket-in-bucket item weight to the child's total weight."""
    totals: dict[int, int] = {}

    def total(bucket_id: int, depth: int = 0) -> int:
        if depth > len(crush.buckets):
            raise ValueError("cycle in CRUSH hierarchy")
        if bucket_id in totals:
            return totals[bucket_id]
        bucket = _bucket_by_id(crush, bucket_id)
        s = 0
        if bucket is not None:
            for it in bucket.items:
                if it.id < 0:
                    it.weight = total(it.id, depth + 1)
                s += it.weight
        totals[bucket_id] = s
        return s

    for b in crush.buckets:
        total(b.id)


# -- devices -----------------------------------------------------------------


def add_osd(crush: CrushMap, osd_id: int, host: str, weight: float) -> None:
    """Place ``osd.<osd_id>`` under host bucket ``host`` with ``weight``.

    Creates the host bucket under the "default" root when missing.  An OSD
    that already exists is moved to ``host`` (if needed) and reweighted.
    """
    if osd_id < 0:
        raise ValueError(f"osd id must be >= 0, got {osd_id}")
    fixed = weight_to_fixed(weight)
    host_bucket = _bucket_by_name(crush, host)
    if host_bucket is None:
        root = _bucket_by_name(crush, DEFAULT_ROOT)
        if root is None:
            raise ValueError(f"CRUSH map has no {DEFAULT_ROOT!r} root")
        host_bucket = crush.buckets.add(id=_next_bucket_id(crush), name=host, type="host")
        root.items.add(id=host_bucket.id, weight=0)
    elif host_bucket.type != "host":
        raise ValueError(f"bucket {host!r} is a {host_bucket.type}, not a host")
    parent = _parent_of(crush, osd_id)
    if parent is not None and parent.id != host_bucket.id:
        _remove_item(parent, osd_id)
        parent = None
    if parent is None:
        host_bucket.items.add(id=osd_id, weight=fixed)
    else:
        for it in host_bucket.items:
            if it.id == osd_id:
                it.weight = fixed
    if not any(d.id == osd_id for d in crush.devices):
        crush.devices.add(id=osd_id, name=f"osd.{osd_id}")
    _recompute_weights(crush)


def _remove_item(bucket: CrushBucket, item_id: int) -> None:
    keep = [it for it in bucket.items if it.id != item_id]
    del bucket.items[:]
    bucket.items.extend(keep)


def remove_osd(crush: CrushMap, osd_id: int) -> None:
    """Remove ``osd.<osd_id>`` from the hierarchy and the device list (idempotent)."""
    for b in crush.buckets:
        if any(it.id == osd_id for it in b.items):
            _remove_item(b, osd_id)
    keep = [d for d in crush.devices if d.id != osd_id]
    del crush.devices[:]
    crush.devices.extend(keep)
    _recompute_weights(crush)


def set_osd_weight(crush: CrushMap, osd_id: int, weight: float) -> None:
    """Change the CRUSH weight of an existing OSD; raises KeyError if absent."""
    parent = _parent_of(crush, osd_id)
    if parent is None:
        raise KeyError(f"osd.{osd_id} is not in the CRUSH map")
    fixed = weight_to_fixed(weight)
    for it in parent.items:
        if it.id == osd_id:
            it.weight = fixed
    _recompute_weights(crush)


def osd_weight(crush: CrushMap, osd_id: int) -> float:
    """The CRUSH weight of an OSD as a float; raises KeyError if absent."""
    parent = _parent_of(crush, osd_id)
    if parent is None:
        raise KeyError(f"osd.{osd_id} is not in the CRUSH map")
    for it in parent.items:
        if it.id == osd_id:
            return it.weight / _ONE
    raise AssertionError("unreachable")


# -- rules -------------------------------------------------------------------


def add_replicated_rule(
    crush: CrushMap, name: str, failure_domain: str, root: str = DEFAULT_ROOT
) -> int:
    """Add "take root; chooseleaf_firstn 0 type failure_domain; emit"; return its id.

    Adding a rule whose name exists returns the existing id when it has the
    same shape, and raises ValueError otherwise.
    """
    if failure_domain not in crush.types:
        raise ValueError(f"unknown CRUSH type {failure_domain!r}; types are {list(crush.types)}")
    root_bucket = _bucket_by_name(crush, root)
    if root_bucket is None:
        raise ValueError(f"no CRUSH bucket named {root!r}")
    wanted = [
        ("take", root_bucket.id, 0, ""),
        ("chooseleaf_firstn", 0, 0, failure_domain),
        ("emit", 0, 0, ""),
    ]
    for r in crush.rules:
        if r.name == name:
            if [(s.op, s.item, s.num, s.type) for s in r.steps] == wanted:
                return r.id
            raise ValueError(f"CRUSH rule {name!r} already exists with different steps")
    rule_id = max([r.id for r in crush.rules] + [-1]) + 1
    rule = crush.rules.add(id=rule_id, name=name)
    rule.steps.add(op="take", item=root_bucket.id)
    rule.steps.add(op="chooseleaf_firstn", num=0, type=failure_domain)
    rule.steps.add(op="emit")
    return rule_id


def _choose_step(rule: CrushRule):
    leaf = [s for s in rule.steps if s.op == "chooseleaf_firstn"]
    if leaf:
        return leaf[0]
    choose = [s for s in rule.steps if s.op == "choose_firstn"]
    if choose:
        return choose[0]
    raise ValueError(f"CRUSH rule {rule.name!r} has no choose step")


def set_rule_failure_domain(crush: CrushMap, rule_id: int, type_name: str) -> None:
    """Change the type the rule spreads replicas across (its first choose step)."""
    if type_name not in crush.types:
        raise ValueError(f"unknown CRUSH type {type_name!r}; types are {list(crush.types)}")
    _choose_step(_rule(crush, rule_id)).type = type_name


def failure_domain(crush: CrushMap, rule_id: int) -> str:
    """The type name the rule's replicas are separated by, e.g. "host"."""
    return _choose_step(_rule(crush, rule_id)).type


def count_failure_domains(crush: CrushMap, rule_id: int, up_in_osds: Iterable[int]) -> int:
    """How many distinct failure domains under the rule's root hold a usable OSD.

    A usable OSD is one in ``up_in_osds`` with a CRUSH weight above zero.
    Used to explain unsatisfiable pools ("size 3 needs 3 hosts, found 1").
    """
    rule = _rule(crush, rule_id)
    domain = _choose_step(rule).type
    usable = set(up_in_osds)
    takes = [s.item for s in rule.steps if s.op == "take"]
    children: dict[int, list[tuple[int, int]]] = {
        b.id: [(it.id, it.weight) for it in b.items] for b in crush.buckets
    }
    types = {b.id: b.type for b in crush.buckets}

    def has_usable(item: int, weight: int) -> bool:
        if item >= 0:
            return item in usable and weight > 0
        return any(has_usable(i, w) for i, w in children.get(item, []))

    found: set[int] = set()

    def walk(item: int, weight: int) -> None:
        kind = types.get(item, crush.types[0] if crush.types else "osd")
        if kind == domain:
            if has_usable(item, weight):
                found.add(item)
            return
        for child, w in children.get(item, []):
            walk(child, w)

    for root in takes:
        walk(root, 1)
    return len(found)


# -- display -----------------------------------------------------------------


def tree(crush: CrushMap) -> list[tuple[int, int, str, str, float]]:
    """Rows ``(depth, id, name, type, weight)`` in display order for ``sds osd tree``.

    Roots come first (by id, descending, so "default" at -1 leads), children
    in bucket order; devices that are in no bucket follow at depth 0.
    """
    names = {d.id: d.name for d in crush.devices}
    leaf_type = crush.types[0] if crush.types else "osd"
    by_id = {b.id: b for b in crush.buckets}
    children = {it.id for b in crush.buckets for it in b.items}
    rows: list[tuple[int, int, str, str, float]] = []

    def visit(bucket: CrushBucket, depth: int, weight: int) -> None:
        rows.append((depth, bucket.id, bucket.name, bucket.type, weight / _ONE))
        for it in bucket.items:
            child = by_id.get(it.id)
            if child is not None:
                visit(child, depth + 1, it.weight)
            else:
                rows.append(
                    (
                        depth + 1,
                        it.id,
                        names.get(it.id, f"osd.{it.id}"),
                        leaf_type,
                        it.weight / _ONE,
                    )
                )

    for b in sorted((b for b in crush.buckets if b.id not in children), key=lambda b: -b.id):
        visit(b, 0, sum(it.weight for it in b.items))
    for d in sorted(crush.devices, key=lambda d: d.id):
        if d.id not in children:
            rows.append((0, d.id, d.name, leaf_type, 0.0))
    return rows
