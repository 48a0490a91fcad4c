"""Size limits of object ops, checked in one place before anything changes.

The client library checks an op before sending it (a clear error at once, no bytes on
the wire, no resends) and the OSD checks it again before the op touches the PG log:
an op that passes here is one the store can hold, so a commit never fails for its size
after the peering state has moved on. Every refusal names the limit and its option.
"""

from __future__ import annotations

from dataclasses import dataclass

from sds.common.errors import FileTooBig, InvalidArgument, NameTooLong, TooBig
from sds.proto import osd_pb2

Op = osd_pb2.OsdOp
_WRITES_DATA = (Op.WRITE, Op.WRITE_FULL, Op.APPEND)
_NAMES_XATTR = (Op.GETXATTR, Op.SETXATTR, Op.RMXATTR)
_NAMES_KEYS = (Op.OMAP_GET, Op.OMAP_RM)
_READS = (Op.READ, Op.STAT, Op.GETXATTR, Op.GETXATTRS, Op.OMAP_GET, Op.OMAP_LIST, Op.LIST)


@dataclass(frozen=True)
class Limits:
    """The limits in force, from the options of the same names (see options.py)."""

    object_name_len: int = 2048
    attr_name_len: int = 255
    attr_size: int = 1 << 20
    omap_key_len: int = 4096
    omap_value_size: int = 16 << 20
    object_size: int = 128 << 20
    write_size: int = 90 << 20

    @classmethod
    def from_config(cls, config) -> Limits:
        return cls(object_name_len=int(config.get("osd_max_object_name_len")),
                   attr_name_len=int(config.get("osd_max_attr_name_len")),
                   attr_size=int(config.get("osd_max_attr_size")),
                   omap_key_len=int(config.get("osd_max_omap_key_len")),
                   omap_value_size=int(config.get("osd_max_omap_value_size")),
                   object_size=int(config.get("osd_max_object_size")),
                   write_size=int(config.get("osd_max_write_size")))

    def check_op(self, op: osd_pb2.OsdOp, data_len: int) -> None:
        """Refuse an op whose names or sizes exceed a limit (nothing is changed yet).
        A size that depends on the object's current size (append) is checked again by
        `check_object_size` once that is known."""
        code = op.code
        if code != Op.LIST:
            self._name("object name", op.oid, self.object_name_len, "osd_max_object_name_len")
        if code in _NAMES_XATTR:
            self._name("xattr name", op.name, self.attr_name_len, "osd_max_attr_name_len")
        if code == Op.SETXATTR and len(op.value) > self.attr_size:
            raise TooBig(f"xattr value of {len(op.value)} bytes exceeds the limit of "
                         f"{self.attr_size} (osd_max_attr_size)")
        total = data_len + len(op.value)
        if op.keys or op.kvs or op.omap_cmp or op.omap_absent:  # (data ops skip the lists)
            total += self._check_omap(op, code)
        if total > self.write_size:
            raise TooBig(f"write of {total} bytes exceeds the limit of {self.write_size} "
                         "(osd_max_write_size)")
        if code == Op.WRITE:
            self.check_object_size(op.offset + data_len)
        elif code == Op.TRUNCATE:
            self.check_object_size(op.offset)
        elif code in _WRITES_DATA:
            self.check_object_size(data_len)

    def _check_omap(self, op: osd_pb2.OsdOp, code: int) -> int:
        """Check an op's omap keys, values and guards; the bytes they add to the write."""
        guards = list(op.omap_cmp)
        if (guards or op.omap_absent) and code in _READS:
            raise InvalidArgument("omap guards apply to write ops only")
        for key in list(op.keys) + [kv.key for kv in list(op.kvs) + guards] + list(op.omap_absent):
            self._name("omap key", key, self.omap_key_len, "osd_max_omap_key_len")
        for kv in list(op.kvs) + guards:
            if len(kv.value) > self.omap_value_size:
                raise TooBig(f"omap value of {len(kv.value)} bytes exceeds the limit of "
                             f"{self.omap_value_size} (osd_max_omap_value_size)")
        return sum(len(kv.key) + len(kv.value) for kv in list(op.kvs) + guards)

    def check_object_size(self, size: int) -> None:
        if size > self.object_size:
            raise FileTooBig(f"object size {size} would exceed the limit of "
                               f"{self.object_size} bytes (osd_max_object_size)")

    @staticmethod
    def _name(what: str, name: str | bytes, limit: int, option: str) -> None:
        raw = name.encode() if isinstance(name, str) else name
        if len(raw) > limit:
            raise NameTooLong(f"{what} of {len(raw)} bytes exceeds the limit of {limit} "
                              f"({option}): {raw[:40]!r}...")
