"""Whole-object copies between OSDs: what recovery, backfill and repair move.

A copy is the object's data, xattrs, omap, mtime and version (ObjectState + raw data);
installing it replaces whatever the receiver held, in one store transaction together
with the caller's other changes (the peering state that says the object is recovered).
"""

from __future__ import annotations

from sds.osd.store.base import ObjectStore, Transaction
from sds.proto import osd_pb2

OMAP_PAGE = 10000


def read_copy(store: ObjectStore, coll: str, oid: str, pool: int, ps: int,
              ) -> tuple[osd_pb2.ObjectState, bytes]:
    state = osd_pb2.ObjectState(pool=pool, pg=ps, oid=oid)
    if not store.collection_exists(coll) or not store.exists(coll, oid):
        return state, b""
    st = store.stat(coll, oid)
    state.exists, state.mtime, state.version = True, st.mtime, st.version
    for name, value in sorted(store.getxattrs(coll, oid).items()):
        state.xattrs.add(key=name.encode(), value=value)
    start = b""
    while True:
        items, more = store.omap_list(coll, oid, start_after=start, max_entries=OMAP_PAGE)
        for key, value in items:
            state.omap.add(key=key, value=value)
        if not more or not items:
            break
        start = items[-1][0]
    return state, store.read(coll, oid)


def stage_copy(txn: Transaction, coll: str, state: osd_pb2.ObjectState, data) -> Transaction:
    """Add to `txn` the replacement of `state.oid` by the copy (absent: removal)."""
    txn.remove(coll, state.oid)
    if state.exists:
        txn.touch(coll, state.oid, state.mtime, state.version)
        txn.write_full(coll, state.oid, data)
        for kv in state.xattrs:
            txn.setxattr(coll, state.oid, kv.key.decode(), kv.value)
        if state.omap:
            txn.omap_set(coll, state.oid, {kv.key: kv.value for kv in state.omap})
    return txn
