"""Metadata encodings: dentry keys are ordered by their READDIR cookie, so a listing
resumes from the cookie alone; permission checks follow POSIX."""

from __future__ import annotations

import os
import stat

import pytest

from sds.common.errors import NotPermitted, PermissionDenied
from sds.fsrules import perms
from sds.mds import layout
from sds.proto import mds_pb2


def test_dentry_keys_sort_by_cookie_and_resume_skips_exactly_the_seen_ones():
    names = [f"file-{i}" for i in range(2000)] + ["é" * 127, "x" * 255]
    keys = sorted(layout.dentry_key(n) for n in names)
    cookies = [layout.cookie(layout.key_name(k)) for k in keys]
    assert cookies == sorted(cookies)
    assert all(c > 0 for c in cookies)
    for cut in (0, 1, 999, len(keys) - 1):
        after = layout.resume_after(cookies[cut])
        rest = [k for k in keys if k > after]
        assert rest == keys[cut + 1:]
    assert layout.resume_after(0) == b""


def test_dentry_and_record_round_trip():
    assert layout.decode_dentry(layout.encode_dentry(0x1234, stat.S_IFDIR)) == (0x1234,
                                                                             stat.S_IFDIR)
    rec = mds_pb2.InodeRecord(attr=mds_pb2.InodeAttr(ino=7, mode=0o100644, size=5))
    rec.xattrs["user.a"] = b"b"
    assert layout.decode_record(layout.encode_record(rec)) == rec
    # consecutive numbers share a shard of the inode table; its keys sort by number
    assert layout.inode_shard_oid(0x1000) == layout.inode_shard_oid(0x13ff) \
        != layout.inode_shard_oid(0x1400)
    assert layout.is_inode_shard(layout.inode_shard_oid(0xabc))
    assert not layout.is_inode_shard("dir.0000000000000abc")
    assert layout.key_ino(layout.inode_key(0xabc)) == 0xabc
    assert layout.inode_key(0xff) < layout.inode_key(0x100)
    assert layout.data_oid(0x10, 3) == "0000000000000010.00000003"
    assert layout.data_objects(0) == 1
    assert layout.data_objects(layout.STRIPE + 1) == 2


def attr(mode: int, uid: int = 1000, gid: int = 1000) -> mds_pb2.InodeAttr:
    return mds_pb2.InodeAttr(ino=5, mode=mode, uid=uid, gid=gid)


@pytest.mark.parametrize("caller,mode,mask,ok", [
    (mds_pb2.Caller(uid=1000, gid=1000), 0o100600, perms.R | perms.W, True),
    (mds_pb2.Caller(uid=1001, gid=1000), 0o100640, perms.R, True),
    (mds_pb2.Caller(uid=1001, gid=1000), 0o100640, perms.W, False),
    (mds_pb2.Caller(uid=1001, gid=5, groups=[1000]), 0o100640, perms.R, True),
    (mds_pb2.Caller(uid=1002, gid=5), 0o100604, perms.R, True),
    (mds_pb2.Caller(uid=1002, gid=5), 0o100640, perms.R, False),
    (mds_pb2.Caller(uid=0), 0o100000, perms.R | perms.W, True),
    (mds_pb2.Caller(uid=0), 0o100644, perms.X, False),   # root too needs one x bit
    (mds_pb2.Caller(uid=0), 0o040000, perms.X, True),
])
def test_permission_bits(caller, mode, mask, ok):
    assert perms.allowed(attr(mode), caller, mask) is ok
    if not ok:
        with pytest.raises(PermissionDenied):
            perms.check(attr(mode), caller, mask)


def test_owner_and_sticky_rules():
    with pytest.raises(NotPermitted):
        perms.check_owner(attr(0o100644), mds_pb2.Caller(uid=1001))
    perms.check_owner(attr(0o100644), mds_pb2.Caller(uid=0))
    tmp = attr(0o41777, uid=0, gid=0)
    with pytest.raises(NotPermitted):
        perms.check_sticky(tmp, attr(0o100644, uid=1000), mds_pb2.Caller(uid=1001))
    perms.check_sticky(tmp, attr(0o100644, uid=1000), mds_pb2.Caller(uid=1000))
    assert perms.open_mask(os.O_RDONLY) == perms.R
    assert perms.open_mask(os.O_WRONLY | os.O_TRUNC) == perms.W
    assert perms.open_mask(os.O_RDWR) == perms.R | perms.W
