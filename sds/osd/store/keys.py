"""LMDB keys for names of any length that still sort like the names.

Why: LMDB refuses keys over 511 bytes (MDB_BAD_VALSIZE), while the OSD accepts object
names of 2048 bytes (Ceph's osd_max_object_name_len), omap keys up to 64 KiB and xattr
names up to 4 KiB; and listings by PG, omap iteration and backfill scans rely on order.

Sortable names. A name of at most INLINE bytes is stored as itself; a longer one as its
first INLINE bytes + 16 bytes of the SHA-256 of the whole name (`name_key`), the full name
travelling in the value. Key order then equals the names' byte order, except among long
names that share their first INLINE bytes: they are adjacent in key order (no inline
name can sort between them: it would be longer than INLINE), so `ordered` sorts each
such run by the real names. Prefix scans and `start_after` keep their meaning: seek to
the first INLINE bytes, then compare real names.

Object ids. Data blocks, xattrs and omap entries of an object are keyed by `object_id`:
u8 length + the name when it has at most OBJ_INLINE bytes, else its first OBJ_PREFIX bytes
+ hash. So an object of any name leaves room for the longest omap key prefix, the ids
are prefix-free (the length byte), and objects named in sequence stay adjacent in LMDB:
a fully hashed id scattered a batch's 4 KiB writes over as many B-tree leaves and cost
~30% of group-commit write throughput. Two long names with the same prefix and the same
128-bit hash (odds about 2^-65 at 2^32 such objects) would collide: not guarded against.

Values are sealed (sds.common.seal) with the full name when the key holds only its hash.
"""

from __future__ import annotations

import hashlib

from sds.common.errors import CorruptMetadata
from sds.common.seal import unseal

INLINE = 320      # names up to this many bytes are keys by themselves
HASH_BYTES = 16
OBJ_INLINE = 64   # object names up to this many bytes are their own object id
OBJ_PREFIX = OBJ_INLINE - HASH_BYTES
COLL_MAX = 64     # bytes of a collection name: 2 + 64 + 1 + 64 + 320 + 16 <= 511


def _digest(name: bytes) -> bytes:
    return hashlib.sha256(name).digest()[:HASH_BYTES]  # SHA-NI: faster than BLAKE2 here


def name_key(name: bytes) -> bytes:
    """The key part standing for `name`: the name itself, or a sortable prefix + hash."""
    if len(name) <= INLINE:
        return name
    return name[:INLINE] + _digest(name)


def is_hashed(part: bytes) -> bool:
    return len(part) > INLINE


def object_id(oid: bytes) -> bytes:
    part = oid if len(oid) <= OBJ_INLINE else oid[:OBJ_PREFIX] + _digest(oid)
    return len(part).to_bytes(1, "big") + part


def ordered(items, base: bytes, what="record", on_corrupt=None):
    """(real name, key, raw value) of the (key, value) items under `base`, in key order
    as given, with each run of hashed keys sharing a sortable prefix sorted by the real
    names; stops at the first key outside `base`. A hashed record whose value fails its
    checksum (its name is unknown) raises, or with `on_corrupt` is reported and skipped."""
    run: list[tuple[bytes, bytes, bytes]] = []
    run_prefix = b""
    n = len(base)
    for k, v in items:
        if not k.startswith(base):
            break
        part = k[n:]
        if not is_hashed(part):
            if run:
                yield from sorted(run)
                run = []
            yield part, k, v
            continue
        if run and part[:INLINE] != run_prefix:
            yield from sorted(run)
            run = []
        run_prefix = part[:INLINE]
        try:
            run.append((unseal(k, v, what)[0], k, v))
        except CorruptMetadata as e:
            if on_corrupt is None:
                raise
            on_corrupt(k, e)
    if run:
        yield from sorted(run)
