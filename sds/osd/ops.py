"""Client object operations: reads served from the store, writes turned into transactions.

A write op becomes a fully determined store transaction on the primary (an append
becomes a write at the current size), so replicas apply exactly the same bytes.
"""

from __future__ import annotations

from sds.common.errors import AlreadyExists, CompareFailed, InvalidArgument, NotFound
from sds.common.limits import Limits
from sds.osd.store.base import ObjectStore, Transaction
from sds.proto import osd_pb2

Op = osd_pb2.OsdOp
READ_CODES = {Op.READ, Op.STAT, Op.GETXATTR, Op.GETXATTRS, Op.OMAP_GET, Op.OMAP_LIST, Op.LIST}
LARGE_READ_BYTES = 256 << 10


def is_read(code: int) -> bool:
    return code in READ_CODES


def is_large_read(store: ObjectStore, coll: str, op: osd_pb2.OsdOp) -> bool:
    """Whether a READ will move enough bytes to be worth a reader thread."""
    if op.length and op.length < LARGE_READ_BYTES:
        return False
    try:
        size = store.stat(coll, op.oid).size
    except NotFound:
        return False
    return size - op.offset >= LARGE_READ_BYTES


def execute_read(store: ObjectStore, coll: str, op: osd_pb2.OsdOp, max_read: int = 0,
                 ) -> tuple[osd_pb2.OsdOpReply, bytes]:
    """Serve a read op. A READ returns at most `max_read` bytes (0: no bound); the reply's
    size tells the client whether to ask for the rest (sds.client.rados streams it)."""
    reply = osd_pb2.OsdOpReply()
    if op.code == Op.LIST:
        names, more = store.list_objects(coll, start_after=op.oid, max_entries=op.max or 1000)
        reply.names.extend(names)
        reply.more = more
        return reply, b""
    try:
        st = store.stat(coll, op.oid)
    except NotFound:
        raise NotFound(f"object '{op.oid}' does not exist") from None
    reply.size, reply.mtime, reply.version = st.size, st.mtime, st.version
    data = b""
    if op.code == Op.READ:
        length = op.length or None
        if max_read and (length is None or length > max_read):
            length = max_read
        data = store.read(coll, op.oid, op.offset, length)
    elif op.code == Op.GETXATTR:
        reply.value = store.getxattr(coll, op.oid, op.name)
    elif op.code == Op.GETXATTRS:
        for name, value in sorted(store.getxattrs(coll, op.oid).items()):
            reply.kvs.add(key=name.encode(), value=value)
    elif op.code == Op.OMAP_GET:
        for key, value in sorted(store.omap_get(coll, op.oid, list(op.keys)).items()):
            reply.kvs.add(key=key, value=value)
    elif op.code == Op.OMAP_LIST:
        items, more = store.omap_list(coll, op.oid, start_after=op.start_after,
                                      max_entries=op.max or 1000, prefix=op.prefix)
        for key, value in items:
            reply.kvs.add(key=key, value=value)
        reply.more = more
    return reply, data


def check_guards(store: ObjectStore, coll: str, op: osd_pb2.OsdOp, exists: bool) -> None:
    """CompareFailed unless every omap guard of a write op holds. The caller holds the
    object's write lock, so check and write are one atomic step (a compare-and-set)."""
    if not op.omap_cmp and not op.omap_absent:
        return
    keys = [kv.key for kv in op.omap_cmp] + list(op.omap_absent)
    current = store.omap_get(coll, op.oid, keys) if exists else {}
    for kv in op.omap_cmp:
        if current.get(kv.key) != kv.value:
            raise CompareFailed(f"{op.oid}: omap key {kv.key[:80]!r} is not the value expected")
    for key in op.omap_absent:
        if key in current:
            raise CompareFailed(f"{op.oid}: omap key {key[:80]!r} exists")


def build_write(store: ObjectStore, coll: str, op: osd_pb2.OsdOp, data: memoryview,
                mtime: float, version: int, limits: Limits | None = None) -> Transaction:
    """The transaction for a write op, given the object's current state in `store`; the
    op's names and sizes were checked by `limits` (the size an append reaches is checked
    here, where the current size is known)."""
    limits = limits or Limits()
    oid = op.oid
    exists = store.exists(coll, oid)
    check_guards(store, coll, op, exists)
    txn = Transaction()
    code = op.code
    if code == Op.REMOVE:
        if not exists:
            raise NotFound(f"object {oid} does not exist")
        txn.remove(coll, oid)
        return txn
    if code in (Op.SETXATTR, Op.RMXATTR) and not op.name:
        raise InvalidArgument("xattr name must not be empty")
    if code == Op.CREATE and exists and op.exclusive:
        raise AlreadyExists(f"object {oid} already exists")
    if code in (Op.RMXATTR, Op.OMAP_RM, Op.OMAP_CLEAR, Op.TRUNCATE) and not exists:
        raise NotFound(f"object {oid} does not exist")
    if code == Op.RMXATTR:
        store.getxattr(coll, oid, op.name)  # NoData when absent, like removexattr(2)
    txn.touch(coll, oid, mtime, version)
    if code == Op.WRITE_FULL:
        txn.write_full(coll, oid, data)
    elif code == Op.WRITE:
        limits.check_object_size(op.offset + len(data))
        txn.write(coll, oid, op.offset, data)
    elif code == Op.APPEND:
        size = store.stat(coll, oid).size if exists else 0
        limits.check_object_size(size + len(data))
        txn.write(coll, oid, size, data)
    elif code == Op.TRUNCATE:
        limits.check_object_size(op.offset)
        txn.truncate(coll, oid, op.offset)
    elif code == Op.SETXATTR:
        txn.setxattr(coll, oid, op.name, op.value)
    elif code == Op.RMXATTR:
        txn.rmxattr(coll, oid, op.name)
    elif code == Op.OMAP_SET:
        txn.omap_set(coll, oid, {kv.key: kv.value for kv in op.kvs})
    elif code == Op.OMAP_RM:
        txn.omap_rm(coll, oid, list(op.keys))
    elif code == Op.OMAP_CLEAR:
        txn.omap_clear(coll, oid)
    elif code != Op.CREATE:
        raise InvalidArgument(f"unknown op code {code}")
    return txn

