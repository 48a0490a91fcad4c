"""Pure parts of the MDS namespace: name rules, new inode records, quota statfs, and
the order of a transaction's journal ops."""

from __future__ import annotations

import stat

import pytest

from sds.common.errors import InvalidArgument, NameTooLong
from sds.mds.namespace import check_name
from sds.mds.quota import quota_statfs
from sds.mds.tx import Tx, new_record
from sds.proto import mds_pb2

MetaOp = mds_pb2.MetaOp


@pytest.mark.parametrize("name,error", [
    ("", InvalidArgument), (".", InvalidArgument), ("..", InvalidArgument),
    ("a/b", InvalidArgument), ("a\0b", InvalidArgument), ("x" * 256, NameTooLong),
    ("é" * 128, NameTooLong), ("x" * 255, None), ("é" * 127, None), (".hidden", None),
])
def test_name_rules(name, error):
    if error is None:
        check_name(name)
    else:
        with pytest.raises(error):
            check_name(name)


def test_new_record_inherits_group_of_setgid_directory():
    caller = mds_pb2.Caller(uid=1000, gid=1000)
    plain = new_record(10, stat.S_IFREG | 0o644, caller, 1,
                       mds_pb2.InodeAttr(mode=stat.S_IFDIR | 0o755, gid=50))
    assert (plain.attr.uid, plain.attr.gid, plain.attr.nlink, plain.parent) == (1000, 1000, 1, 1)
    setgid = mds_pb2.InodeAttr(mode=stat.S_IFDIR | stat.S_ISGID | 0o775, gid=50)
    f = new_record(11, stat.S_IFREG | 0o644, caller, 1, setgid)
    d = new_record(12, stat.S_IFDIR | 0o755, caller, 1, setgid)
    assert f.attr.gid == d.attr.gid == 50
    assert d.attr.mode & stat.S_ISGID and not f.attr.mode & stat.S_ISGID


def test_quota_statfs_reports_the_quota_as_the_size():
    cluster = mds_pb2.StatFs(total_bytes=10**12, free_bytes=10**11, total_files=2**32,
                             free_files=2**31, block_size=4096, name_max=255)
    rec = mds_pb2.InodeRecord(has_quota=True, max_bytes=1000, used_bytes=300, max_files=0)
    out = quota_statfs(rec, cluster)
    assert (out.total_bytes, out.free_bytes) == (1000, 700)
    assert (out.total_files, out.block_size) == (2**32, 4096)
    full = quota_statfs(mds_pb2.InodeRecord(max_bytes=10, used_bytes=50, max_files=5,
                                            used_files=7), cluster)
    assert (full.free_bytes, full.total_files, full.free_files) == (0, 5, 0)


def test_transaction_puts_inodes_before_dentries_and_deletes_last():
    tx = Tx(store=None)  # records are put directly: no store reads needed
    rec = new_record(20, stat.S_IFREG | 0o644, mds_pb2.Caller(), 1)
    tx.put(rec)
    tx.link(1, "f", 20, rec.attr.mode)
    gone = new_record(21, stat.S_IFREG | 0o644, mds_pb2.Caller(), 1)
    tx.put(gone)
    tx.delete(21)
    tx.unlink(1, "old")
    kinds = [(op.kind, op.ino) for op in tx.all_ops()]
    assert kinds == [(MetaOp.PUT_INODE, 20), (MetaOp.SET_DENTRY, 1), (MetaOp.RM_DENTRY, 1),
                     (MetaOp.DEL_INODE, 21)]
    assert tx.all_ops()[1].dentry_mode == stat.S_IFREG
