"""Ceph-compatible 32-bit hashes used for placement.

Every process must compute the same placement, so nothing here may depend
on Python's randomised ``hash()``, on floating point or on the platform.

* :func:`str_hash_rjenkins` is Bob Jenkins' 1996 string hash exactly as
  Ceph applies it to object names (``ceph_str_hash_rjenkins``).
* :func:`hash32_2` / :func:`hash32_3` are CRUSH's integer hashes
  (``crush_hash32_rjenkins1_2`` / ``_3``), seeded with 1315423911.

The values are frozen by golden vectors in ``tests/unit/test_crush.py``:
changing a single operation here silently moves every object in a cluster.

Implementation note: the mixing rounds are written out inline (no helper
call per round) because these functions run once per bucket item per CRUSH
choice.  Python ints are unbounded, so each step is reduced to 32 bits with
``& M``; masking once after ``(x - y - z) ^ shifted`` is exact because the
low 32 bits of a difference or xor depend only on the low 32 bits of the
operands.
"""

from __future__ import annotations

__all__ = ["CRUSH_HASH_SEED", "hash32_2", "hash32_3", "str_hash_rjenkins"]

M = 0xFFFFFFFF
CRUSH_HASH_SEED = 1315423911
_GOLDEN = 0x9E3779B9  # initial state of the string hash


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    """One Jenkins mixing round on 32-bit words (reference form)."""
    a = ((a - b - c) ^ (c >> 13)) & M
    b = ((b - c - a) ^ (a << 8)) & M
    c = ((c - a - b) ^ (b >> 13)) & M
    a = ((a - b - c) ^ (c >> 12)) & M
    b = ((b - c - a) ^ (a << 16)) & M
    c = ((c - a - b) ^ (b >> 5)) & M
    a = ((a - b - c) ^ (c >> 3)) & M
    b = ((b - c - a) ^ (a << 10)) & M
    c = ((c - a - b) ^ (b >> 15)) & M
    return a, b, c


def str_hash_rjenkins(data: bytes) -> int:
    """Ceph's ``ceph_str_hash_rjenkins``: 32-bit hash of a byte string."""
    length = len(data)
    a = b = _GOLDEN
    c = 0
    pos = 0
    mv = memoryview(data)
    while length - pos >= 12:
        a = (a + int.from_bytes(mv[pos : pos + 4], "little")) & M
        b = (b + int.from_bytes(mv[pos + 4 : pos + 8], "little")) & M
        c = (c + int.from_bytes(mv[pos + 8 : pos + 12], "little")) & M
        a, b, c = _mix(a, b, c)
        pos += 12
    # The tail: up to 11 bytes; the lowest byte of c is reserved for the
    # total length, so c takes tail bytes 8..10 shifted up by one byte.
    tail = bytes(mv[pos:])
    c = (c + length) & M
    a = (a + int.from_bytes(tail[0:4], "little")) & M
    b = (b + int.from_bytes(tail[4:8], "little")) & M
    c = (c + (int.from_bytes(tail[8:11], "little") << 8)) & M
    return _mix(a, b, c)[2]


def hash32_2(a: int, b: int) -> int:
    """CRUSH ``crush_hash32_rjenkins1_2(a, b)``; inputs are taken mod 2**32."""
    a &= M
    b &= M
    h = CRUSH_HASH_SEED ^ a ^ b
    x = 231232
    y = 1232
    # mix(a, b, h)
    a = ((a - b - h) ^ (h >> 13)) & M
    b = ((b - h - a) ^ (a << 8)) & M
    h = ((h - a - b) ^ (b >> 13)) & M
    a = ((a - b - h) ^ (h >> 12)) & M
    b = ((b - h - a) ^ (a << 16)) & M
    h = ((h - a - b) ^ (b >> 5)) & M
    a = ((a - b - h) ^ (h >> 3)) & M
    b = ((b - h - a) ^ (a << 10)) & M
    h = ((h - a - b) ^ (b >> 15)) & M
    # mix(x, a, h)
    x = ((x - a - h) ^ (h >> 13)) & M
    a = ((a - h - x) ^ (x << 8)) & M
    h = ((h - x - a) ^ (a >> 13)) & M
    x = ((x - a - h) ^ (h >> 12)) & M
    a = ((a - h - x) ^ (x << 16)) & M
    h = ((h - x - a) ^ (a >> 5)) & M
    x = ((x - a - h) ^ (h >> 3)) & M
    a = ((a - h - x) ^ (x << 10)) & M
    h = ((h - x - a) ^ (a >> 15)) & M
    # mix(b, y, h)
    b = ((b - y - h) ^ (h >> 13)) & M
    y = ((y - h - b) ^ (b << 8)) & M
    h = ((h - b - y) ^ (y >> 13)) & M
    b = ((b - y - h) ^ (h >> 12)) & M
    y = ((y - h - b) ^ (b << 16)) & M
    h = ((h - b - y) ^ (y >> 5)) & M
    b = ((b - y - h) ^ (h >> 3)) & M
    y = ((y - h - b) ^ (b << 10)) & M
    h = ((h - b - y) ^ (y >> 15)) & M
    return h


def hash32_3(a: int, b: int, c: int) -> int:
    """CRUSH ``crush_hash32_rjenkins1_3(a, b, c)``; inputs are taken mod 2**32."""
    a &= M
    b &= M
    c &= M
    h = CRUSH_HASH_SEED ^ a ^ b ^ c
    x = 231232
    y = 1232
    # mix(a, b, h)
    a = ((a - b - h) ^ (h >> 13)) & M
    b = ((b - h - a) ^ (a << 8)) & M
    h = ((h - a - b) ^ (b >> 13)) & M
    a = ((a - b - h) ^ (h >> 12)) & M
    b = ((b - h - a) ^ (a << 16)) & M
    h = ((h - a - b) ^ (b >> 5)) & M
    a = ((a - b - h) ^ (h >> 3)) & M
    b = ((b - h - a) ^ (a << 10)) & M
    h = ((h - a - b) ^ (b >> 15)) & M
    # mix(c, x, h)
    c = ((c - x - h) ^ (h >> 13)) & M
    x = ((x - h - c) ^ (c << 8)) & M
    h = ((h - c - x) ^ (x >> 13)) & M
    c = ((c - x - h) ^ (h >> 12)) & M
    x = ((x - h - c) ^ (c << 16)) & M
    h = ((h - c - x) ^ (x >> 5)) & M
    c = ((c - x - h) ^ (h >> 3)) & M
    x = ((x - h - c) ^ (c << 10)) & M
    h = ((h - c - x) ^ (x >> 15)) & M
    # mix(y, a, h)
    y = ((y - a - h) ^ (h >> 13)) & M
    a = ((a - h - y) ^ (y << 8)) & M
    h = ((h - y - a) ^ (a >> 13)) & M
    y = ((y - a - h) ^ (h >> 12)) & M
    a = ((a - h - y) ^ (y << 16)) & M
    h = ((h - y - a) ^ (a >> 5)) & M
    y = ((y - a - h) ^ (h >> 3)) & M
    a = ((a - h - y) ^ (y << 10)) & M
    h = ((h - y - a) ^ (a >> 15)) & M
    # mix(b, x, h)
    b = ((b - x - h) ^ (h >> 13)) & M
    x = ((x - h - b) ^ (b << 8)) & M
    h = ((h - b - x) ^ (x >> 13)) & M
    b = ((b - x - h) ^ (h >> 12)) & M
    x = ((x - h - b) ^ (b << 16)) & M
    h = ((h - b - x) ^ (x >> 5)) & M
    b = ((b - x - h) ^ (h >> 3)) & M
    x = ((x - h - b) ^ (b << 10)) & M
    h = ((h - b - x) ^ (x >> 15)) & M
    # mix(y, c, h)
    y = ((y - c - h) ^ (h >> 13)) & M
    c = ((c - h - y) ^ (y << 8)) & M
    h = ((h - y - c) ^ (c >> 13)) & M
    y = ((y - c - h) ^ (h >> 12)) & M
    c = ((c - h - y) ^ (y << 16)) & M
    h = ((h - y - c) ^ (c >> 5)) & M
    y = ((y - c - h) ^ (h >> 3)) & M
    c = ((c - h - y) ^ (y << 10)) & M
    h = ((h - y - c) ^ (c >> 15)) & M
    return h
