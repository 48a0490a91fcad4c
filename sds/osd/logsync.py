"""Which objects a PG member must re-sync to match the authoritative history (pure).

Log entries are identified by (epoch, v, request id, object). The authoritative member is
the one whose newest entry is greatest in (epoch, v) order, as in Ceph: a primary cut off
from the others keeps writing in its old epoch, so its entries lose to the newer interval
even when its v is higher. For every other member, an object must be re-synced when an
entry of either log, in the window both logs still cover, is missing from or differs in
the other: missing writes are recovered, divergent ones (never acknowledged) rolled back.
When the member's log ends before the authoritative log begins, nothing can be compared:
it is backfilled (every object of both listings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sds.proto import osd_pb2


@dataclass
class LogView:
    head: int
    tail: int
    entries: dict[int, osd_pb2.PgLogEntry]
    objects: list[str] | None = None   # full listing, needed only for backfill

    @classmethod
    def of(cls, head: int, tail: int, entries: Iterable[osd_pb2.PgLogEntry],
           objects: list[str] | None = None) -> LogView:
        return cls(head, tail, {e.v: e for e in entries}, objects)

    def last_update(self) -> tuple[int, int]:
        if self.entries:
            newest = self.entries[max(self.entries)]
            return newest.epoch, newest.v
        return 0, self.head


@dataclass
class SyncPlan:
    objects: set[str] = field(default_factory=set)
    backfill: bool = False

    @property
    def needed(self) -> bool:
        return self.backfill or bool(self.objects)


def same(a: osd_pb2.PgLogEntry, b: osd_pb2.PgLogEntry) -> bool:
    return (a.epoch, a.v, a.oid, a.client, a.tid, a.delete) == \
        (b.epoch, b.v, b.oid, b.client, b.tid, b.delete)


def choose_authoritative(views: dict[int, LogView], primary: int) -> int:
    """Greatest newest entry in (epoch, v) order; the primary wins ties."""
    return max(views, key=lambda osd: (views[osd].last_update(), views[osd].head,
                                       osd == primary, -osd))


def plan(auth: LogView, member: LogView) -> SyncPlan:
    if member.head < auth.tail:
        listing = set(auth.objects or []) | set(member.objects or [])
        return SyncPlan(listing, backfill=True)
    floor = max(auth.tail, member.tail)
    result = SyncPlan()
    for v, entry in auth.entries.items():
        if v > floor:
            mine = member.entries.get(v)
            if mine is None or not same(mine, entry):
                result.objects.add(entry.oid)
    for v, entry in member.entries.items():
        if v > floor:
            theirs = auth.entries.get(v)
            if theirs is None or not same(theirs, entry):
                result.objects.add(entry.oid)
    return result
