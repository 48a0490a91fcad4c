"""Attribute write-back in the client's inode table: changes buffered on a file open for
writing follow the MDS's rules, stay visible over older MDS replies, and are reported
with the data."""

from __future__ import annotations

import pytest

from sds.common.errors import NotPermitted, PermissionDenied
from sds.fs.inodes import Inode
from sds.fs.writebehind import WriteBehind
from sds.proto import mds_pb2

A = mds_pb2.InodeAttr
ROOT, USER, OTHER = mds_pb2.Caller(), mds_pb2.Caller(uid=1000, gid=1000), \
    mds_pb2.Caller(uid=1001, gid=1001)


def inode(**kw) -> Inode:
    attr = A(ino=7, mode=0o100644, uid=1000, gid=1000, size=10, mtime_ns=5, version=3)
    for k, v in kw.items():
        setattr(attr, k, v)
    return Inode(7, attr)


def test_buffered_changes_follow_the_mds_rules():
    i = inode()
    with pytest.raises(NotPermitted):
        i.buffer_attrs(A(mode=0o777), mds_pb2.SET_MODE, OTHER)
    with pytest.raises(NotPermitted):
        i.buffer_attrs(A(uid=1001), mds_pb2.SET_UID, USER)
    with pytest.raises(PermissionDenied):  # touch needs write permission
        i.buffer_attrs(A(), mds_pb2.SET_MTIME_NOW, OTHER)
    assert not i.pending_mask and i.attr.mode == 0o100644  # nothing half-applied
    i.buffer_attrs(A(mode=0o2755), mds_pb2.SET_MODE, USER)
    assert i.attr.mode == 0o102755 and i.pending_caller == USER


def test_buffered_changes_stay_on_top_of_older_mds_replies_until_reported():
    i = inode()
    i.buffer_attrs(A(mode=0o600, mtime_ns=99), mds_pb2.SET_MODE | mds_pb2.SET_MTIME, USER)
    i.update(A(ino=7, mode=0o100644, uid=1000, gid=1000, size=20, mtime_ns=50, version=4))
    assert (i.attr.mode, i.attr.mtime_ns, i.attr.size) == (0o100600, 99, 20)
    attr, mask = i.report()
    assert mask == mds_pb2.SET_MODE | mds_pb2.SET_MTIME
    assert (attr.mode, attr.mtime_ns, attr.size) == (0o100600, 99, 0)  # no write to report
    i.mark_reported(i.write_seq, mask)
    assert not i.pending_mask and i.pending_caller is None
    i.update(A(ino=7, mode=0o100640, size=20, version=5))
    assert i.attr.mode == 0o100640  # the MDS's word again


def test_a_write_after_a_buffered_utimens_wins_and_both_are_reported():
    i = inode()
    i.note_write(100)
    i.buffer_attrs(A(mtime_ns=42, atime_ns=41), mds_pb2.SET_MTIME | mds_pb2.SET_ATIME, USER)
    attr, mask = i.report()
    assert (attr.size, attr.mtime_ns, attr.atime_ns) == (100, 42, 41)
    i.note_write(200)  # newer than the utimens: its mtime must not be sent any more
    attr, mask = i.report()
    assert mask == mds_pb2.SET_ATIME
    assert attr.size == 200 and attr.mtime_ns == i.written_mtime_ns != 42


def test_attributes_are_fresh_after_a_reply_until_stale_or_old():
    i = inode()
    assert i.attr_fresh(1.0)  # as of the reply that made it
    i.attr_stale()  # a change no reply described (a rename, a revoke)
    assert not i.attr_fresh(1.0)
    i.update(A(ino=7, mode=0o100644, size=10, version=2))  # an older reply: not taken
    assert not i.attr_fresh(1.0)
    i.update(A(ino=7, mode=0o100644, size=12, version=4))
    assert i.attr_fresh(1.0) and i.attr.size == 12
    assert not i.attr_fresh(0.0)  # the bound is the caller's


def test_a_known_absent_xattr_outlives_size_reports_but_not_xattr_changes(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("sds.fs.inodes.time.monotonic", lambda: now[0])
    cap = b"security.capability"
    i = inode()
    i.remember_absent_xattr(cap, 1.0)
    assert i.xattr_absent(cap) and not i.xattr_absent(b"user.other")
    i.update(A(ino=7, mode=0o100644, size=4096, version=4))  # an fsync's size report
    assert i.xattr_absent(cap)  # the next write need not ask the MDS again
    i.update(A(ino=7, mode=0o100644, size=4096, version=5, xattr_version=1))
    assert not i.xattr_absent(cap)  # set (or removed) somewhere since: ask
    i.remember_absent_xattr(cap, 1.0)
    now[0] += 1.5
    assert not i.xattr_absent(cap)  # and never for longer than the kernel caches attrs


async def test_a_failed_write_behind_stays_known_after_its_error_is_reported():
    class FailingStriper:
        async def write(self, ino, offset, data):
            raise OSError(5, "refused")

    w = WriteBehind(FailingStriper(), 7)
    await w.write(0, b"x")
    with pytest.raises(OSError):
        await w.drain()  # reported once ...
    await w.drain()
    assert w.failed  # ... but a close still knows to wait for the data
