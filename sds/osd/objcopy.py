"""Object copies between OSDs: what recovery, backfill and repair move.

A copy is the object's data, xattrs, omap, mtime and version (ObjectState + raw data);
installing it replaces whatever the receiver held, in one store transaction together
with the caller's other changes (the peering state that says the object is recovered).
Recovery moves a large object in parts of bounded size (ObjectState.offset/partial):
the parts before the last only write data into an object the receiver still counts as
missing (never served), and the last part completes it together with that bookkeeping.
Repairs copy the same way. The omap moves in pages of bounded size (omap_after/omap_more):
the first page with the first part, the others as parts of their own before the last.
"""

from __future__ import annotations

from sds.osd.store.base import ObjectStore, Transaction
from sds.proto import osd_pb2

OMAP_PAGE = 10000                # entries listed from the store at a time
OMAP_PAGE_BYTES = 16 << 20       # one page of a copy's omap (osd_max_read_size's default)


def read_copy(store: ObjectStore, coll: str, oid: str, pool: int, ps: int, offset: int = 0,
              length: int = 0, omap_after: bytes = b"",
              page_bytes: int = OMAP_PAGE_BYTES) -> tuple[osd_pb2.ObjectState, bytes]:
    """The object's state and its data from `offset` (at most `length` bytes, 0: all);
    xattrs and the first omap page come with the part at offset 0. With `omap_after`,
    only the omap page after that key (and no data)."""
    state = osd_pb2.ObjectState(pool=pool, pg=ps, oid=oid, offset=offset)
    if not store.collection_exists(coll) or not store.exists(coll, oid):
        return state, b""
    st = store.stat(coll, oid)
    state.exists, state.mtime, state.version, state.size = True, st.mtime, st.version, st.size
    if omap_after:
        state.offset, state.omap_after = st.size, omap_after
        state.omap_more = _omap_page(store, coll, oid, state, omap_after, page_bytes)
        return state, b""
    data = store.read(coll, oid, offset, length or None)
    if offset:
        return state, data
    for name, value in sorted(store.getxattrs(coll, oid).items()):
        state.xattrs.add(key=name.encode(), value=value)
    state.omap_more = _omap_page(store, coll, oid, state, b"", page_bytes)
    return state, data


def _omap_page(store: ObjectStore, coll: str, oid: str, state: osd_pb2.ObjectState,
               after: bytes, page_bytes: int) -> bool:
    """Add the omap entries after `after` to `state`, about `page_bytes` of them (at least
    one); True when more follow."""
    total, start = 0, after
    while True:
        items, more = store.omap_list(coll, oid, start_after=start, max_entries=OMAP_PAGE)
        for key, value in items:
            if total and total + len(key) + len(value) > page_bytes:
                return True
            state.omap.add(key=key, value=value)
            total += len(key) + len(value)
        if not more or not items:
            return False
        start = items[-1][0]


def stage_copy(txn: Transaction, coll: str, state: osd_pb2.ObjectState, data) -> Transaction:
    """Add to `txn` the replacement of `state.oid` by the copy (absent: removal), or one
    part of it (see the module docstring; a part's data may be left out if all zero)."""
    first = state.offset == 0 and not state.omap_after
    if first:
        txn.remove(coll, state.oid)
    if not state.exists:
        return txn
    if state.partial:
        if not state.omap_after:
            txn.write(coll, state.oid, state.offset, data)
        if state.omap:
            txn.omap_set(coll, state.oid, {kv.key: kv.value for kv in state.omap})
        return txn
    txn.touch(coll, state.oid, state.mtime, state.version)
    if first and len(data) == state.size:
        txn.write_full(coll, state.oid, data)
    else:  # the last part of several
        if len(data):
            txn.write(coll, state.oid, state.offset, data)
        txn.truncate(coll, state.oid, state.size)
    for kv in state.xattrs:
        txn.setxattr(coll, state.oid, kv.key.decode(), kv.value)
    if state.omap:
        txn.omap_set(coll, state.oid, {kv.key: kv.value for kv in state.omap})
    return txn
