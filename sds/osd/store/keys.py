"""LMDB keys that hold names of any length, and values sealed with a CRC32C.

Why: LMDB refuses keys over 511 bytes (MDB_BAD_VALSIZE), while the OSD accepts object
names of 2048 bytes (Ceph's osd_max_object_name_len), omap keys up to 64 KiB and xattr
names up to 4 KiB; and a flipped byte in a stored record must never be served.

Sortable names. A name of at most INLINE bytes is stored as itself; a longer one as its
first INLINE bytes + 16 bytes of the SHA-256 of the whole name (`name_key`), the full name
travelling in the value. Key order then equals the names' byte order, except among long
names that share their first INLINE bytes: they are adjacent in key order (no inline
name can sort between them: it would be longer than INLINE), so `ordered` sorts each
such run by the real names. Prefix scans and `start_after` keep their meaning: seek to
the first INLINE bytes, then compare real names.

Object ids. Data blocks, xattrs and omap entries of an object are keyed by
`object_id` (16 bytes of the SHA-256 of the name) rather than by the name, so an object of any
name leaves room for the longest omap key prefix. A collision of two names in one
collection (2^-64 at 2^32 objects) is not guarded against.

Values are sealed (sds.common.seal) with the full name when the key holds only its hash
(and for onodes always, so fsck can tie an onode to its object id).
"""

from __future__ import annotations

import hashlib

from sds.common.errors import CorruptMetadata
from sds.common.seal import unseal

INLINE = 320      # names up to this many bytes are keys by themselves
HASH_BYTES = 16
COLL_MAX = 128    # bytes of a collection name; with INLINE and two hashes < 511


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
    return _digest(oid)


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
