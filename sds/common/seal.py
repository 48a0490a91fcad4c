"""Values sealed with a CRC32C over their key and content, verified on every read.

Why: a flipped byte on disk (or a value moved under another key) must never be served as
data; LMDB itself checksums nothing. Layout: crc32c u32 | name length u32 | name | payload,
the CRC covering the key and everything after the CRC. `name` is an optional field for
records whose key cannot hold their full name (sds.osd.store.keys). Used by the OSD
object store and the monitor store.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from crc32c import crc32c

from sds.common.errors import CorruptMetadata

_HDR = struct.Struct(">II")
_SMALL = 64 * 1024


def _name(what: Callable[[], str] | str) -> str:
    return what() if callable(what) else what


def seal(key: bytes, payload, name: bytes = b"") -> bytes:
    """The stored value for `payload` under `key`."""
    head = len(name).to_bytes(4, "big")
    if len(payload) <= _SMALL:  # one concatenation is cheaper than more crc32c calls
        body = head + name + payload
        return crc32c(body, crc32c(key)).to_bytes(4, "big") + body
    crc = crc32c(payload, crc32c(name, crc32c(head, crc32c(key))))
    return b"".join((crc.to_bytes(4, "big"), head, name, payload))  # one copy of a big value


def unseal(key: bytes, raw, what: Callable[[], str] | str = "record") -> tuple[bytes, bytes]:
    """(name, payload) of a stored value, verified; CorruptMetadata if it fails. `what`
    names the record in the error (a callable: built only then, off the hot path)."""
    n = len(raw)
    if n < _HDR.size:
        raise CorruptMetadata(f"{_name(what)}: record truncated to {n} bytes")
    crc, nlen = _HDR.unpack_from(raw)
    end = _HDR.size + nlen
    if n > _SMALL:  # no copies of a big value but the one returned
        mv = memoryview(raw)
        if crc32c(mv[4:], crc32c(key)) != crc or end > n:
            raise CorruptMetadata(f"{_name(what)}: checksum mismatch")
        return bytes(mv[_HDR.size:end]), bytes(mv[end:])
    if crc32c(raw[4:], crc32c(key)) != crc or end > n:
        raise CorruptMetadata(f"{_name(what)}: checksum mismatch")
    return bytes(raw[_HDR.size:end]), bytes(raw[end:])
