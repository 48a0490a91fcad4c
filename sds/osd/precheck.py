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
# the omap entries verified in full; a larger omap is checked in its first page and the
# keys the write touches (the rest is deep scrub's)
OMAP_CHECK_ENTRIES = 256


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
        _check_object(store, coll, oid, changes)


def _check_object(store: ObjectStore, coll: str, oid: str, changes: list) -> None:
    try:
        size = store.stat(coll, oid).size       # the onode
    except NotFound:
        return                                  # created by this write: nothing to read
    store.getxattrs(coll, oid)
    store.omap_list(coll, oid, max_entries=OMAP_CHECK_ENTRIES)
    keys = [kv.key for op in changes for kv in op.kvs] + \
        [k for op in changes for k in op.keys]
    if keys:
        store.omap_get(coll, oid, keys)
    for op in changes:  # a block the commit keeps part of is read back (one byte verifies it)
        edges = []
        if op.kind == TxnOp.WRITE:
            edges = [op.offset, op.offset + op.data_len - 1] if op.data_len else []
        elif op.kind == TxnOp.TRUNCATE:
            edges = [op.length]
        for offset in edges:
            if 0 <= offset < size:
                store.read(coll, oid, offset, 1)
