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
        """Record `entry` in `txn`, trimming the oldest entries when the log is long."""
        txn.set_meta(self.coll, log_key(entry.v), entry.SerializeToString())
        self._remember(entry)
        if len(self.entries) > LOG_MAX_ENTRIES:
            for v in sorted(self.entries)[:LOG_TRIM_BATCH]:
                old = self.entries.pop(v)
                self.by_reqid.pop((old.client, old.tid), None)
                txn.rm_meta(self.coll, log_key(v))
                self.tail = v
            txn.set_meta(self.coll, b"log_tail", str(self.tail).encode())

    def after(self, v: int) -> list[osd_pb2.PgLogEntry]:
        return [e for k, e in sorted(self.entries.items()) if k > v]

    def covers(self, v: int) -> bool:
        """True when every entry after `v` is still in the log (log-based recovery works)."""
        return v >= self.tail
