"""The object-store interface: a transaction builder, object stat, and the abstract store.

A `Transaction` is an ordered list of `TxnOp` protobuf messages plus, beside them, the raw
data of the write ops. On the wire the ops travel as one `StoreTxn` message and the data as
one blob; each write op names its bytes as `[data_offset, data_offset + data_len)` of that
blob, so the data is never copied into (or parsed out of) protobuf.

Semantics shared by every store (MemoryStore and DurableStore are tested against the same
suite):

* `apply` is atomic (all ops or none) and durable when it returns; ops apply in order.
* Ops that add something create a missing object: TOUCH, WRITE, WRITE_FULL, TRUNCATE,
  SETXATTR, OMAP_SET. Ops that take something away are no-ops on a missing object:
  REMOVE, RMXATTR, OMAP_RM, OMAP_CLEAR. A new object has mtime 0.0 and version 0 until
  a TOUCH sets them.
* Every object op needs its collection to exist (else NotFound). CREATE_COLLECTION of an
  existing collection raises AlreadyExists; REMOVE_COLLECTION raises NotFound if missing and
  NotEmpty if it still holds objects (its meta keys are dropped with it).
* TRUNCATE grows with zeros; sparse holes read as zeros; reads past the end are short.
* Any failing op aborts the whole transaction with the typed error from sds.common.errors.
* Reads are synchronous methods (called on the event-loop thread); `apply` and `close` are
  coroutines.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass

from sds.common.errors import InvalidArgument
from sds.proto import osd_pb2

TxnOp = osd_pb2.TxnOp
StoreTxn = osd_pb2.StoreTxn

_DATA_KINDS = (TxnOp.WRITE, TxnOp.WRITE_FULL)


def _as_bytes_view(data: bytes | bytearray | memoryview) -> memoryview:
    mv = memoryview(data)
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")
    return mv


class Transaction:
    """Builder of an ordered, atomic list of store operations."""

    __slots__ = ("ops", "_data", "_data_bytes", "verified")

    def __init__(self) -> None:
        self.ops: list[osd_pb2.TxnOp] = []
        self._data: list[memoryview | None] = []  # parallel to ops
        self._data_bytes = 0
        # blocks a precheck verified, for this transaction's commit to reuse instead of
        # reading them again (store-specific; never sent on the wire)
        self.verified: dict = {}

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def data_bytes(self) -> int:
        return self._data_bytes

    def items(self) -> Iterator[tuple[osd_pb2.TxnOp, memoryview | None]]:
        """(op, its write data or None), in order."""
        return zip(self.ops, self._data, strict=True)

    def _add(self, kind: int, coll: str, oid: str = "", data=None, **fields) -> osd_pb2.TxnOp:
        if not isinstance(coll, str) or not coll:
            raise InvalidArgument(f"bad collection name {coll!r}")
        op = osd_pb2.TxnOp(kind=kind, coll=coll, oid=oid, **fields)
        mv = None
        if data is not None:
            mv = _as_bytes_view(data)
            op.data_offset = self._data_bytes
            op.data_len = len(mv)
            self._data_bytes += len(mv)
        self.ops.append(op)
        self._data.append(mv)
        return op

    # -- collections -------------------------------------------------------------------
    def create_collection(self, coll: str) -> Transaction:
        self._add(TxnOp.CREATE_COLLECTION, coll)
        return self

    def remove_collection(self, coll: str) -> Transaction:
        self._add(TxnOp.REMOVE_COLLECTION, coll)
        return self

    def set_meta(self, coll: str, key: bytes, value: bytes) -> Transaction:
        self._add(TxnOp.SET_META, coll, meta_key=bytes(key), value=bytes(value))
        return self

    def rm_meta(self, coll: str, key: bytes) -> Transaction:
        self._add(TxnOp.RM_META, coll, meta_key=bytes(key))
        return self

    # -- objects -----------------------------------------------------------------------
    def touch(self, coll: str, oid: str, mtime: float = 0.0, version: int = 0) -> Transaction:
        self._add(TxnOp.TOUCH, coll, oid, mtime=mtime, version=version)
        return self

    def write(self, coll: str, oid: str, offset: int, data: bytes | memoryview) -> Transaction:
        if offset < 0:
            raise InvalidArgument("negative offset")
        self._add(TxnOp.WRITE, coll, oid, data=data, offset=offset)
        return self

    def write_full(self, coll: str, oid: str, data: bytes | memoryview) -> Transaction:
        self._add(TxnOp.WRITE_FULL, coll, oid, data=data)
        return self

    def truncate(self, coll: str, oid: str, size: int) -> Transaction:
        if size < 0:
            raise InvalidArgument("negative size")
        self._add(TxnOp.TRUNCATE, coll, oid, length=size)
        return self

    def remove(self, coll: str, oid: str) -> Transaction:
        self._add(TxnOp.REMOVE, coll, oid)
        return self

    def setxattr(self, coll: str, oid: str, name: str, value: bytes) -> Transaction:
        self._add(TxnOp.SETXATTR, coll, oid, name=name, value=bytes(value))
        return self

    def rmxattr(self, coll: str, oid: str, name: str) -> Transaction:
        self._add(TxnOp.RMXATTR, coll, oid, name=name)
        return self

    def omap_set(self, coll: str, oid: str, kvs: dict[bytes, bytes]) -> Transaction:
        pairs = [osd_pb2.KeyValue(key=bytes(k), value=bytes(v)) for k, v in kvs.items()]
        self._add(TxnOp.OMAP_SET, coll, oid, kvs=pairs)
        return self

    def omap_rm(self, coll: str, oid: str, keys: list[bytes]) -> Transaction:
        self._add(TxnOp.OMAP_RM, coll, oid, keys=[bytes(k) for k in keys])
        return self

    def omap_clear(self, coll: str, oid: str) -> Transaction:
        self._add(TxnOp.OMAP_CLEAR, coll, oid)
        return self

    # -- wire --------------------------------------------------------------------------
    def to_wire(self) -> tuple[osd_pb2.StoreTxn, list[bytes | memoryview]]:
        """The envelope and the data segments; the messenger sends them concatenated."""
        segments: list[bytes | memoryview] = []
        pos = 0
        for op, mv in zip(self.ops, self._data, strict=True):
            if mv is None:
                continue
            op.data_offset = pos  # renumber: from_wire blobs may have had gaps
            op.data_len = len(mv)
            pos += len(mv)
            if len(mv):
                segments.append(mv)
        return osd_pb2.StoreTxn(ops=self.ops), segments

    @classmethod
    def from_wire(cls, txn: osd_pb2.StoreTxn, data: bytes | memoryview = b"") -> Transaction:
        """Rebuild from an envelope and the data blob; write data are zero-copy slices."""
        blob = _as_bytes_view(data)
        self = cls()
        for op in txn.ops:
            mv = None
            if op.kind in _DATA_KINDS:
                end = op.data_offset + op.data_len
                if end > len(blob):
                    raise InvalidArgument(f"write data [{op.data_offset},{end}) beyond blob")
                mv = blob[op.data_offset:end]
                self._data_bytes += op.data_len
            self.ops.append(op)
            self._data.append(mv)
        return self


@dataclass
class ObjectStat:
    size: int
    mtime: float
    version: int


class ObjectStore(abc.ABC):
    """Collections of objects (data + xattrs + omap) and per-collection meta keys.

    Reads are synchronous; `apply` and `close` are coroutines.
    """

    @abc.abstractmethod
    async def apply(self, txn: Transaction) -> None:
        """Apply all ops atomically; durable when this returns."""

    @abc.abstractmethod
    def read(self, coll: str, oid: str, offset: int = 0, length: int | None = None) -> bytes: ...

    @abc.abstractmethod
    def stat(self, coll: str, oid: str) -> ObjectStat: ...

    @abc.abstractmethod
    def exists(self, coll: str, oid: str) -> bool: ...

    @abc.abstractmethod
    def getxattr(self, coll: str, oid: str, name: str) -> bytes: ...

    @abc.abstractmethod
    def getxattrs(self, coll: str, oid: str) -> dict[str, bytes]: ...

    @abc.abstractmethod
    def omap_get(self, coll: str, oid: str, keys: list[bytes]) -> dict[bytes, bytes]: ...

    @abc.abstractmethod
    def omap_list(
        self, coll: str, oid: str, start_after: bytes = b"", max_entries: int = 1000,
        prefix: bytes = b"",
    ) -> tuple[list[tuple[bytes, bytes]], bool]: ...

    @abc.abstractmethod
    def list_objects(
        self, coll: str, start_after: str = "", max_entries: int = 1000
    ) -> tuple[list[str], bool]: ...

    @abc.abstractmethod
    def list_collections(self) -> list[str]: ...

    @abc.abstractmethod
    def collection_exists(self, coll: str) -> bool: ...

    @abc.abstractmethod
    def get_meta(self, coll: str, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def list_meta(
        self, coll: str, prefix: bytes = b"", start_after: bytes = b"",
        max_entries: int | None = None,
    ) -> list[tuple[bytes, bytes]]: ...

    def verify_kept(self, coll: str, oid: str, spans: list[tuple[int, int]],
                    txn: Transaction) -> None:
        """ChecksumError if a block the commit of `txn` keeps part of fails its checksum:
        the blocks holding the old bytes right before and right after each byte range
        [lo, hi) the transaction replaces. A store may note what it verified in
        `txn.verified` for the commit. Default: a 1-byte read of each such neighbour."""
        size = self.stat(coll, oid).size
        for lo, hi in spans:
            for offset in (min(lo, size) - 1, hi):
                if 0 <= offset < size:
                    self.read(coll, oid, offset, 1)

    @abc.abstractmethod
    def deep_scrub_object(self, coll: str, oid: str) -> int:
        """CRC32C of the whole object data; ChecksumError if any stored block is corrupt."""

    @abc.abstractmethod
    def statfs(self) -> dict[str, int]:
        """{'total_bytes', 'used_bytes', 'objects'}."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Wait for in-flight applies, then release resources."""
