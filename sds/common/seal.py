"""Values sealed with a CRC32C over their key and content, verified on every read.

Why: a flipped byte on disk (or a value moved under another key) must never be served as
data; LMDB itself checksums nothing. Layout: crc32c u32 | name length u32 | name | payload,
the CRC covering the key and everything after the CRC. `name` is an optional field for
records whose key cannot hold their full name (sds.osd.store.keys). Used by the OSD
object store and the monitor store.
"""

from __future__ import annotations

import struct

from crc32c import crc32c

from sds.common.errors import CorruptMetadata

_HDR = struct.Struct(">II")


def seal(key: bytes, payload, name: bytes = b"") -> bytes:
    """The stored value for `payload` under `key` (one copy of the payload)."""
    head = len(name).to_bytes(4, "big")
    crc = crc32c(payload, crc32c(name, crc32c(head, crc32c(key))))
    return b"".join((crc.to_bytes(4, "big"), head, name, payload))


def unseal(key: bytes, raw, what: str = "record") -> tuple[bytes, bytes]:
    """(name, payload) of a stored value, verified; CorruptMetadata if it fails."""
    mv = memoryview(raw)
    if len(mv) < _HDR.size:
        raise CorruptMetadata(f"{what}: record truncated to {len(mv)} bytes")
    crc, nlen = _HDR.unpack_from(mv)
    if crc32c(mv[4:], crc32c(key)) != crc or _HDR.size + nlen > len(mv):
        raise CorruptMetadata(f"{what}: checksum mismatch")
    end = _HDR.size + nlen
    return bytes(mv[_HDR.size:end]), bytes(mv[end:])
