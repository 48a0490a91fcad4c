"""The PG log: ordered record of the writes a placement group applied.

Entries live in the PG's collection metadata under `log/<v as 16 hex digits>`, written
in the same store transaction as the change they describe, so the log and the objects
can never disagree after a crash. The request-id index makes resent ops idempotent.
"""

from __future__ import annotations

from sds.osd.store.base import ObjectStore, Transaction
from sds.proto import osd_pb2

LOG_PREFIX = b"log/"
LOG_MAX_ENTRIES = 3000
LOG_TRIM_BATCH = 500


def log_key(v: int) -> bytes:
    return LOG_PREFIX + b"%016x" % v


class PgLog:
    def __init__(self, coll: str):
        self.coll = coll
        self.entries: dict[int, osd_pb2.PgLogEntry] = {}  # v -> entry, insertion-ordered by v
        self.by_reqid: dict[tuple[str, int], osd_pb2.PgLogEntry] = {}
        self.head = 0   # last v applied
        self.tail = 0   # entries with v > tail are kept

    @classmethod
    def load(cls, store: ObjectStore, coll: str) -> PgLog:
        log = cls(coll)
        for _key, value in store.list_meta(coll, prefix=LOG_PREFIX, max_entries=1 << 30):
            entry = osd_pb2.PgLogEntry()
            entry.ParseFromString(value)
            log._remember(entry)
        head = store.get_meta(coll, b"head")
        log.head = max(log.head, int(head) if head else 0)
        tail = store.get_meta(coll, b"log_tail")
        log.tail = int(tail) if tail else (min(log.entries) - 1 if log.entries else 0)
        return log

    def _remember(self, entry: osd_pb2.PgLogEntry) -> None:
        self.entries[entry.v] = entry
        if entry.client:
            self.by_reqid[(entry.client, entry.tid)] = entry
        self.head = max(self.head, entry.v)

    def append(self, txn: Transaction, entry: osd_pb2.PgLogEntry) -> None:
        """Record `entry` in `txn`, trimming the oldest entries when the log is long.

        The in-memory log learns the entry only through `remember`, which callers run
        once `txn` is committed: peering must never see an entry the store lacks."""
        txn.set_meta(self.coll, log_key(entry.v), entry.SerializeToString())
        if len(self.entries) >= LOG_MAX_ENTRIES:
            for v in sorted(self.entries)[:LOG_TRIM_BATCH]:
                old = self.entries.pop(v)
                self.by_reqid.pop((old.client, old.tid), None)
                txn.rm_meta(self.coll, log_key(v))
                self.tail = v
            txn.set_meta(self.coll, b"log_tail", str(self.tail).encode())

    def replace(self, txn: Transaction, entries: list[osd_pb2.PgLogEntry], head: int,
                tail: int) -> None:
        """Stage, in `txn`, making this log a copy of the authoritative one (peering);
        `adopt` updates memory once `txn` is committed."""
        wanted = {e.v: e for e in entries}
        for v in list(self.entries):
            if v not in wanted:
                txn.rm_meta(self.coll, log_key(v))
        for v, entry in wanted.items():
            if v not in self.entries or self.entries[v] != entry:
                txn.set_meta(self.coll, log_key(v), entry.SerializeToString())
        txn.set_meta(self.coll, b"head", str(max(head, max(wanted, default=0))).encode())
        txn.set_meta(self.coll, b"log_tail", str(tail).encode())

    def adopt(self, entries: list[osd_pb2.PgLogEntry], head: int, tail: int) -> None:
        self.entries, self.by_reqid, self.head, self.tail = {}, {}, 0, tail
        for entry in sorted(entries, key=lambda e: e.v):
            self._remember(entry)
        self.head = max(head, self.head)

    def remember(self, entry: osd_pb2.PgLogEntry) -> None:
        self._remember(entry)

    def after(self, v: int) -> list[osd_pb2.PgLogEntry]:
        return [e for k, e in sorted(self.entries.items()) if k > v]

    def covers(self, v: int) -> bool:
        """True when every entry after `v` is still in the log (log-based recovery works)."""
        return v >= self.tail
