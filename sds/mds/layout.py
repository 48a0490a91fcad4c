"""Where filesystem metadata lives in the metadata pool, and how it is encoded.

- ``inodes.<ino >> INODE_SHARD_BITS:012x>``: the inode table, in shards of 1,024
  consecutive numbers; its omap maps the 8-byte big-endian inode number to an
  InodeRecord (attributes, xattrs, symlink target, quota, snapshot links). Why shards
  and not an object per inode (layout 1): numbers are handed out in order, so the files
  an untar or rm -rf changes together sit in one shard, and the journal's apply writes
  them all with one omap op instead of one object write (three replicated commits) each.
- ``dir.<ino:016x>``: one object per directory; its omap maps a hash-ordered key
  (8-byte big-endian cookie + name) to a 12-byte dentry (ino, st_mode). Hash order
  lets READDIR resume from a 64-bit cookie alone, as Ceph's dirfrags do.
- ``inotable``: the inode allocator; data = the next unallocated inode number.
- ``journal``: the metadata journal (sds.mds.journal).
- ``stray``: omap of unlinked inodes still open somewhere (purged on last release).
File data lives in the data pool as ``<ino:016x>.<index:08x>`` of `STRIPE` bytes
(named by sds.fsrules.layout, moved by sds.client.striper).
"""

from __future__ import annotations

import hashlib
import stat
import struct

from sds.fsrules.layout import DEFAULT_STRIPE_SIZE as STRIPE
from sds.fsrules.layout import ROOT_INO  # noqa: F401 - one root for every side
from sds.fsrules.layout import object_name as data_oid  # noqa: F401 - one naming rule
from sds.proto import mds_pb2

FIRST_INO = 0x1000
NAME_MAX = 255
DEFAULT_MAX_FILE_SIZE = 1 << 40  # until the mons send the filesystem's (`fs set max_file_size`)
INOTABLE = "inotable"
JOURNAL = "journal"
STRAY = "stray"

_DENTRY = struct.Struct(">QI")
_COOKIE = struct.Struct(">Q")
_SKIP_SAME_COOKIE = b"\xff" * (NAME_MAX + 1)  # sorts after every name (UTF-8 has no 0xff)


INODE_SHARD_BITS = 10
_INO = struct.Struct(">Q")


def inode_shard_oid(ino: int) -> str:
    """The inode-table object that holds the record of `ino`."""
    return f"inodes.{ino >> INODE_SHARD_BITS:012x}"


def inode_key(ino: int) -> bytes:
    return _INO.pack(ino)


def key_ino(key: bytes) -> int:
    return _INO.unpack(key)[0]


def is_inode_shard(oid: str) -> bool:
    return oid.startswith("inodes.") and len(oid) == 19


def layout1_root_oid() -> str:
    """Where layout 1 (an object per inode) kept the root's record: found, the metadata
    pool is of that layout, which this MDS does not read."""
    return f"inode.{ROOT_INO:016x}"


def dir_oid(ino: int) -> str:
    return f"dir.{ino:016x}"


def data_objects(size: int) -> int:
    """How many stripe objects hold `size` bytes (at least one may exist even at size 0)."""
    return max(1, -(-size // STRIPE))


def cookie(name: str) -> int:
    """The READDIR cookie of a name: a stable 63-bit hash, never 0 (0 means "start")."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) + 1


def dentry_key(name: str) -> bytes:
    return _COOKIE.pack(cookie(name)) + name.encode()


def key_name(key: bytes) -> str:
    return key[_COOKIE.size:].decode()


def resume_after(offset: int) -> bytes:
    """The omap start_after key that resumes a listing after cookie `offset`."""
    return _COOKIE.pack(offset) + _SKIP_SAME_COOKIE if offset else b""


def encode_dentry(ino: int, mode: int) -> bytes:
    return _DENTRY.pack(ino, mode)


def decode_dentry(value: bytes) -> tuple[int, int]:
    return _DENTRY.unpack(value)


def encode_record(rec: mds_pb2.InodeRecord) -> bytes:
    return rec.SerializeToString(deterministic=True)


def decode_record(raw: bytes) -> mds_pb2.InodeRecord:
    rec = mds_pb2.InodeRecord()
    rec.ParseFromString(raw)
    return rec


def is_dir(mode: int) -> bool:
    return stat.S_ISDIR(mode)
