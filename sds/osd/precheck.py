"""The records a write depends on, verified before the PG's state moves for it.

Why: a store commit reads the object's onode (and the data blocks a partial write or a
truncate keeps part of), and leaves its other xattrs and omap entries as they are. A
corrupt record there would make the commit fail after the peering core already took the
write (the OSD must then stop), or outlive the write unnoticed. Both the primary and a
replica check first; a damaged copy is then replaced by a whole good one instead of
getting the delta (sds.osd.pg).
"""

from __future__ import annotations

from sds.common.errors import NotFound
from sds.osd.store.base import ObjectStore, Transaction
from sds.proto import osd_pb2

TxnOp = osd_pb2.TxnOp
# the omap entries verified before a write: all of a small omap, the first ones of a larger
# one (the rest is read-time and deep scrub's). The commit never reads an omap entry, so
# this only bounds how long damage there can outlive writes unnoticed; it is checked on
# every write on every OSD (an MDS journal appends one entry per write to an omap of
# thousands), so it stays small.
OMAP_CHECK_ENTRIES = 16


def check_before_write(store: ObjectStore, txn: Transaction) -> None:
    """ChecksumError (CorruptMetadata for a record) if an object `txn` changes has a
    record that fails its checksum and that the commit would read or leave in place.
    Objects the transaction removes first are not read (a removal always succeeds)."""
    touched: dict[tuple[str, str], list] = {}
    removed: set[tuple[str, str]] = set()
    for op, _ in txn.items():
        if not op.oid:
            continue
        key = (op.coll, op.oid)
        if op.kind == TxnOp.REMOVE and key not in touched:
            removed.add(key)
        if key not in removed:
            touched.setdefault(key, []).append(op)
    for (coll, oid), changes in touched.items():
        _check_object(store, txn, coll, oid, changes)


def _check_object(store: ObjectStore, txn: Transaction, coll: str, oid: str,
                  changes: list) -> None:
    """The onode, every xattr, the first omap entries and the blocks the commit keeps part
    of. Omap keys the write sets or removes are not read: the commit replaces them."""
    try:
        size = store.stat(coll, oid).size       # the onode
    except NotFound:
        return                                  # created by this write: nothing to read
    store.getxattrs(coll, oid)
    store.omap_list(coll, oid, max_entries=OMAP_CHECK_ENTRIES)
    spans = []  # the byte ranges the commit replaces; it keeps the old bytes around them
    for op in changes:
        if op.kind == TxnOp.WRITE and op.data_len:
            spans.append((op.offset, op.offset + op.data_len))
        elif op.kind == TxnOp.TRUNCATE and op.length < size:
            spans.append((op.length, size))
    if spans:
        store.verify_kept(coll, oid, spans, txn)
