"""The MDS against a real cluster (3 mons, 3 OSDs, active + standby MDS): POSIX
namespace semantics and errnos, permissions, rename, links, open-unlinked files,
paged readdir, xattrs, quotas, snapshots, request dedup, fsck and the `sds fs` CLI."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
import stat
import time

import pytest
from mdsrequests import table_record

from sds.cli.main import main as sds_main
from sds.client.mdsclient import MdsClient
from sds.common.errors import NotFound, SdsError
from sds.mds import layout
from sds.proto import mds_pb2

pytestmark = [pytest.mark.integration,
              pytest.mark.cluster_opts(mds=2, extra_conf={"mds_beacon_grace": 5,
                                                          "mds_revoke_timeout": 2})]

Req = mds_pb2.MdsRequest
ROOT = layout.ROOT_INO
USER = mds_pb2.Caller(uid=1000, gid=1000)
OTHER = mds_pb2.Caller(uid=1001, gid=1001)


@contextlib.asynccontextmanager
async def mds(cluster):
    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=60).open()
        try:
            yield client
        finally:
            await client.close()


async def call(client: MdsClient, op: int, **fields) -> mds_pb2.MdsReply:
    return await client.request(Req(op=op, **fields))


async def code_of(coro) -> int:
    """The errno an MDS request failed with (0 when it succeeded)."""
    try:
        await coro
    except SdsError as e:
        return e.code
    return 0


async def mkdir(client, parent: int, name: str, mode: int = 0o755, caller=None) -> int:
    reply = await call(client, Req.MKDIR, ino=parent, name=name, mode=mode,
                       caller=caller or mds_pb2.Caller())
    return reply.attr.ino


async def create(client, parent: int, name: str, mode: int = 0o644, caller=None) -> int:
    reply = await call(client, Req.CREATE, ino=parent, name=name, mode=mode,
                       caller=caller or mds_pb2.Caller())
    await call(client, Req.RELEASE, ino=reply.attr.ino)
    return reply.attr.ino


async def getattr_(client, ino: int) -> mds_pb2.InodeAttr:
    return (await call(client, Req.GETATTR, ino=ino)).attr


async def lookup(client, parent: int, name: str) -> int:
    return (await call(client, Req.LOOKUP, ino=parent, name=name)).attr.ino


async def listdir(client, ino: int, page: int = 1000) -> list[str]:
    names, offset, more = [], 0, True
    while more:
        reply = await call(client, Req.READDIR, ino=ino, offset=offset, max_entries=page)
        names += [e.name for e in reply.entries]
        more = reply.more
        if reply.entries:
            offset = reply.entries[-1].offset
    return names


async def eventually(check, timeout: float = 10.0) -> None:
    """Data of removed inodes is purged by the journal's applier, just after the reply."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def fsck(client) -> dict:
    return json.loads((await call(client, Req.CHECK)).report)


async def test_namespace_errnos(cluster_module):
    async with mds(cluster_module) as m:
        top = await mkdir(m, ROOT, "errnos")
        f = await create(m, top, "file")
        d = await mkdir(m, top, "dir")
        await create(m, d, "inner")
        assert await lookup(m, top, "file") == f
        assert await code_of(lookup(m, top, "missing")) == errno.ENOENT
        assert await code_of(mkdir(m, top, "file")) == errno.EEXIST
        assert await code_of(call(m, Req.CREATE, ino=top, name="file", mode=0o644,
                                  flags=os.O_EXCL)) == errno.EEXIST
        assert await code_of(lookup(m, f, "x")) == errno.ENOTDIR
        assert await code_of(create(m, f, "x")) == errno.ENOTDIR
        assert await code_of(call(m, Req.UNLINK, ino=top, name="dir")) == errno.EISDIR
        assert await code_of(call(m, Req.RMDIR, ino=top, name="file")) == errno.ENOTDIR
        assert await code_of(call(m, Req.RMDIR, ino=top, name="dir")) == errno.ENOTEMPTY
        assert await code_of(create(m, top, "n" * 256)) == errno.ENAMETOOLONG
        assert await code_of(lookup(m, top, "n" * 256)) == errno.ENAMETOOLONG
        await create(m, top, "n" * 255)
        assert await code_of(mkdir(m, top, ".")) == errno.EINVAL
        assert await code_of(call(m, Req.READLINK, ino=f)) == errno.EINVAL
        assert await code_of(call(m, Req.UNLINK, ino=top, name="missing")) == errno.ENOENT
        # directory link counts: 2 + subdirectories
        assert (await getattr_(m, top)).nlink == 3
        await call(m, Req.UNLINK, ino=d, name="inner")
        await call(m, Req.RMDIR, ino=top, name="dir")
        assert (await getattr_(m, top)).nlink == 2
        assert await code_of(getattr_(m, d)) == errno.ENOENT
        link = await call(m, Req.SYMLINK, ino=top, name="ln", value=b"file")
        assert stat.S_ISLNK(link.attr.mode)
        assert (await call(m, Req.READLINK, ino=link.attr.ino)).value == b"file"
        fifo = await call(m, Req.MKNOD, ino=top, name="fifo", mode=stat.S_IFIFO | 0o600)
        assert stat.S_ISFIFO(fifo.attr.mode)
        assert (await fsck(m))["ok"]


async def test_permissions_for_non_root_callers(cluster_module):
    async with mds(cluster_module) as m:
        top = await mkdir(m, ROOT, "perms", mode=0o755)  # root-owned
        assert await code_of(create(m, top, "x", caller=USER)) == errno.EACCES
        home = await mkdir(m, top, "home", mode=0o755)
        await call(m, Req.SETATTR, ino=home, attr=mds_pb2.InodeAttr(uid=1000, gid=1000),
                   set_mask=mds_pb2.SET_UID | mds_pb2.SET_GID)
        f = await create(m, home, "mine", mode=0o600, caller=USER)
        attr = await getattr_(m, f)
        assert (attr.uid, attr.gid, stat.S_IMODE(attr.mode)) == (1000, 1000, 0o600)
        # others may not read it, chmod it, chown it or delete it from a 0755 dir
        assert await code_of(call(m, Req.OPEN, ino=f, flags=os.O_RDONLY,
                                  caller=OTHER)) == errno.EACCES
        assert await code_of(call(m, Req.SETATTR, ino=f, caller=OTHER,
                                  attr=mds_pb2.InodeAttr(mode=0o777),
                                  set_mask=mds_pb2.SET_MODE)) == errno.EPERM
        assert await code_of(call(m, Req.SETATTR, ino=f, caller=USER,
                                  attr=mds_pb2.InodeAttr(uid=1001),
                                  set_mask=mds_pb2.SET_UID)) == errno.EPERM
        assert await code_of(call(m, Req.UNLINK, ino=home, name="mine",
                                  caller=OTHER)) == errno.EACCES
        # the owner may; root may do anything
        await call(m, Req.SETATTR, ino=f, caller=USER, attr=mds_pb2.InodeAttr(mode=0o644),
                   set_mask=mds_pb2.SET_MODE)
        await call(m, Req.OPEN, ino=f, flags=os.O_RDONLY, caller=OTHER)
        await call(m, Req.RELEASE, ino=f)
        assert await code_of(call(m, Req.OPEN, ino=f, flags=os.O_WRONLY,
                                  caller=OTHER)) == errno.EACCES
        # sticky directory: another user may not remove my file even with write access
        tmp = await mkdir(m, top, "tmp", mode=0o1777)
        await create(m, tmp, "t", caller=USER)
        assert await code_of(call(m, Req.UNLINK, ino=tmp, name="t",
                                  caller=OTHER)) == errno.EPERM
        await call(m, Req.UNLINK, ino=tmp, name="t", caller=USER)
        # a caller without search permission cannot look names up
        locked = await mkdir(m, top, "locked", mode=0o700)
        await create(m, locked, "secret")
        assert await code_of(lookup(m, locked, "secret")) == 0
        assert await code_of(call(m, Req.LOOKUP, ino=locked, name="secret",
                                  caller=USER)) == errno.EACCES


async def test_rename_semantics(cluster_module):
    async with mds(cluster_module) as m:
        top = await mkdir(m, ROOT, "rename")
        a, b = await mkdir(m, top, "a"), await mkdir(m, top, "b")
        f = await create(m, a, "f")
        g = await create(m, b, "g")
        # replace a file across directories: the replaced inode is gone
        await call(m, Req.RENAME, ino=a, name="f", ino2=b, name2="g")
        assert await lookup(m, b, "g") == f
        assert await code_of(lookup(m, a, "f")) == errno.ENOENT
        assert await code_of(getattr_(m, g)) == errno.ENOENT
        # RENAME_NOREPLACE
        h = await create(m, a, "h")
        assert await code_of(call(m, Req.RENAME, ino=a, name="h", ino2=b, name2="g",
                                  flags=1)) == errno.EEXIST
        # RENAME_EXCHANGE swaps the two names
        await call(m, Req.RENAME, ino=a, name="h", ino2=b, name2="g", flags=2)
        assert (await lookup(m, a, "h"), await lookup(m, b, "g")) == (f, h)
        # directories: replace an empty one, refuse a non-empty one and type mismatches
        d1, d2 = await mkdir(m, a, "d1"), await mkdir(m, b, "d2")
        assert await code_of(call(m, Req.RENAME, ino=a, name="d1", ino2=b,
                                  name2="g")) == errno.ENOTDIR
        assert await code_of(call(m, Req.RENAME, ino=b, name="g", ino2=a,
                                  name2="d1")) == errno.EISDIR
        await create(m, d2, "keep")
        assert await code_of(call(m, Req.RENAME, ino=a, name="d1", ino2=b,
                                  name2="d2")) == errno.ENOTEMPTY
        await call(m, Req.UNLINK, ino=d2, name="keep")
        await call(m, Req.RENAME, ino=a, name="d1", ino2=b, name2="d2")
        assert await lookup(m, b, "d2") == d1
        assert (await getattr_(m, a)).nlink == 2 and (await getattr_(m, b)).nlink == 3
        # no moving a directory into its own subtree
        sub = await mkdir(m, d1, "sub")
        assert await code_of(call(m, Req.RENAME, ino=b, name="d2", ino2=sub,
                                  name2="x")) == errno.EINVAL
        assert await code_of(call(m, Req.RENAME, ino=b, name="d2", ino2=d1,
                                  name2="x")) == errno.EINVAL
        assert await code_of(call(m, Req.RENAME, ino=a, name="nope", ino2=b,
                                  name2="x")) == errno.ENOENT
        report = await fsck(m)
        assert report["ok"], report


async def test_inode_records_live_in_the_sharded_table_and_orphans_are_reported(
        cluster_module):
    """Records of consecutive inodes share a table shard (one omap write applies many);
    removal takes a record out of it, and a record no dentry names fails `fs check`."""
    async with mds(cluster_module) as m:
        top = await mkdir(m, ROOT, "table")
        files = [await create(m, top, f"f{i}") for i in range(20)]
        for i in range(10, 20):
            await call(m, Req.UNLINK, ino=top, name=f"f{i}")
        assert (await fsck(m))["ok"]  # (everything applied first)
        meta = m.rados.ioctx("sdsfs_metadata")
        for f in files:
            rec = await table_record(meta, f)
            assert (rec is not None and rec.attr.ino == f) == (f in files[:10]), hex(f)
        orphan = files[-1] + 100_000
        rec = mds_pb2.InodeRecord(attr=mds_pb2.InodeAttr(ino=orphan, mode=0o100644))
        shard, key = layout.inode_shard_oid(orphan), layout.inode_key(orphan)
        await meta.omap_set(shard, {key: layout.encode_record(rec)})
        try:
            report = await fsck(m)
            assert not report["ok"]
            assert report["errors"] == [f"orphan inode {orphan:#x} (no dentry names it)"]
        finally:
            await meta.omap_rm(shard, [key])
        assert (await fsck(m))["ok"]


async def test_hard_links_and_open_unlinked_file(cluster_module):
    async with mds(cluster_module) as m:
        top = await mkdir(m, ROOT, "links")
        f = await create(m, top, "f")
        await call(m, Req.LINK, ino=f, ino2=top, name2="g")
        assert (await getattr_(m, f)).nlink == 2
        assert await code_of(call(m, Req.LINK, ino=top, ino2=ROOT,
                                  name2="dirlink")) == errno.EPERM
        await call(m, Req.UNLINK, ino=top, name="f")
        assert (await getattr_(m, f)).nlink == 1
        # write data, open, unlink the last name: the inode and its data live on
        data = await m.data_ioctx()
        await data.write_full(layout.data_oid(f, 0), b"x" * 100)
        await data.write_full(layout.data_oid(f, 1), b"y" * 100)
        await call(m, Req.WRITE_DONE, ino=f, attr=mds_pb2.InodeAttr(
            size=layout.STRIPE + 100))
        await call(m, Req.OPEN, ino=f, flags=os.O_RDONLY)
        await call(m, Req.UNLINK, ino=top, name="g")
        attr = await getattr_(m, f)
        assert (attr.nlink, attr.size) == (0, layout.STRIPE + 100)
        assert await data.exists(layout.data_oid(f, 1))
        assert (await fsck(m))["strays"] == 1
        await call(m, Req.RELEASE, ino=f)
        assert await code_of(getattr_(m, f)) == errno.ENOENT

        async def purged() -> bool:
            return not any([await data.exists(layout.data_oid(f, i)) for i in (0, 1)])

        await eventually(purged)
        report = await fsck(m)
        assert report["ok"] and report["strays"] == 0, report


async def test_truncate_cuts_data_and_write_done_grows(cluster_module):
    async with mds(cluster_module) as m:
        top = await mkdir(m, ROOT, "trunc")
        f = await create(m, top, "f")
        data = await m.data_ioctx()
        await data.write_full(layout.data_oid(f, 0), b"a" * 1000)
        await data.write_full(layout.data_oid(f, 1), b"b" * 10)
        grown = await call(m, Req.WRITE_DONE, ino=f, attr=mds_pb2.InodeAttr(
            size=layout.STRIPE + 10, mtime_ns=123))
        assert (grown.attr.size, grown.attr.mtime_ns) == (layout.STRIPE + 10, 123)
        smaller = await call(m, Req.WRITE_DONE, ino=f, attr=mds_pb2.InodeAttr(size=5))
        assert smaller.attr.size == layout.STRIPE + 10  # WRITE_DONE never shrinks
        cut = await call(m, Req.SETATTR, ino=f, attr=mds_pb2.InodeAttr(size=100),
                         set_mask=mds_pb2.SET_SIZE)
        assert cut.attr.size == 100 and cut.attr.version > grown.attr.version
        assert not await data.exists(layout.data_oid(f, 1))
        assert await data.read(layout.data_oid(f, 0)) == b"a" * 100
        d = await mkdir(m, top, "d")
        assert await code_of(call(m, Req.SETATTR, ino=d, attr=mds_pb2.InodeAttr(size=0),
                                  set_mask=mds_pb2.SET_SIZE)) == errno.EISDIR
        # buffered attribute changes ride on WRITE_DONE, checked as a SETATTR would be
        both = await call(m, Req.WRITE_DONE, ino=f, caller=mds_pb2.Caller(), attr=mds_pb2.InodeAttr(
            size=300, mode=0o4700, uid=1000, gid=1000, mtime_ns=77),
            set_mask=mds_pb2.SET_MODE | mds_pb2.SET_UID | mds_pb2.SET_GID | mds_pb2.SET_MTIME)
        assert (both.attr.size, both.attr.mode & 0o7777, both.attr.uid, both.attr.mtime_ns) == \
            (300, 0o700, 1000, 77)  # chown after chmod drops setuid, as in one SETATTR
        assert await code_of(call(m, Req.WRITE_DONE, ino=f, caller=OTHER, attr=mds_pb2.InodeAttr(
            size=400, mode=0o777), set_mask=mds_pb2.SET_MODE)) == errno.EPERM
        assert (await getattr_(m, f)).size == 300  # refused whole


async def test_readdir_pages_ten_thousand_entries(cluster_module):
    async with mds(cluster_module) as m:
        big = await mkdir(m, ROOT, "big")
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await call(m, Req.MKNOD, ino=big, name=f"entry-{i:05d}", mode=0o100644)

        await asyncio.gather(*(one(i) for i in range(10_000)))
        names = await listdir(m, big, page=777)
        assert len(names) == len(set(names)) == 10_000
        assert set(names) == {f"entry-{i:05d}" for i in range(10_000)}
        # resuming from any cookie continues right after it
        first = await call(m, Req.READDIR, ino=big, max_entries=10)
        rest = await call(m, Req.READDIR, ino=big, offset=first.entries[4].offset,
                          max_entries=5)
        assert [e.name for e in rest.entries] == [e.name for e in first.entries[5:]]
        assert all(e.attr.ino and stat.S_ISREG(e.attr.mode) for e in rest.entries)


async def test_listing_and_rmdir_right_after_removals(cluster_module):
    """Names removed but maybe not yet applied to RADOS (hard links: their inode
    lives on) are neither listed (not even as whole pages of them) nor keep a directory from being removed; names just added or
    moved in always are, and do."""
    async with mds(cluster_module) as m:
        d = await mkdir(m, ROOT, "emptied")
        target = await create(m, ROOT, "target")  # its inode outlives the links removed
        names = [f"f{i:02d}" for i in range(40)]
        for name in names:
            await call(m, Req.LINK, ino=target, ino2=d, name2=name)
        await asyncio.gather(*(call(m, Req.UNLINK, ino=d, name=n) for n in names[1:]))
        assert await listdir(m, d, page=3) == [names[0]]
        assert await code_of(call(m, Req.RMDIR, ino=ROOT, name="emptied")) == errno.ENOTEMPTY
        await call(m, Req.UNLINK, ino=d, name=names[0])
        await call(m, Req.MKNOD, ino=d, name="late", mode=0o100644)
        assert await listdir(m, d) == ["late"]
        assert await code_of(call(m, Req.RMDIR, ino=ROOT, name="emptied")) == errno.ENOTEMPTY
        await call(m, Req.UNLINK, ino=d, name="late")
        await create(m, ROOT, "moved")
        await call(m, Req.RENAME, ino=ROOT, name="moved", ino2=d, name2="in")
        assert await code_of(call(m, Req.RMDIR, ino=ROOT, name="emptied")) == errno.ENOTEMPTY
        await call(m, Req.UNLINK, ino=d, name="in")
        assert await listdir(m, d) == []
        await call(m, Req.RMDIR, ino=ROOT, name="emptied")
        assert await code_of(lookup(m, ROOT, "emptied")) == errno.ENOENT
        report = await fsck(m)
        assert report["ok"], report


async def test_xattrs(cluster_module):
    async with mds(cluster_module) as m:
        f = await create(m, ROOT, "xattrs")

        async def xattr_version() -> int:
            return (await call(m, Req.GETATTR, ino=f)).attr.xattr_version

        await call(m, Req.SETXATTR, ino=f, name="user.a", value=b"1")
        # what mounts key their cached "no such attribute" answers on: a set or removal
        # moves it, a size report or chmod does not
        assert await xattr_version() == 1
        await call(m, Req.WRITE_DONE, ino=f, attr=mds_pb2.InodeAttr(size=5))
        await call(m, Req.SETATTR, ino=f, attr=mds_pb2.InodeAttr(mode=0o600),
                   set_mask=mds_pb2.SET_MODE)
        assert await xattr_version() == 1
        assert await code_of(call(m, Req.SETXATTR, ino=f, name="user.a", value=b"2",
                                  flags=1)) == errno.EEXIST
        assert await code_of(call(m, Req.SETXATTR, ino=f, name="user.b", value=b"2",
                                  flags=2)) == errno.ENODATA
        await call(m, Req.SETXATTR, ino=f, name="user.a", value=b"2", flags=2)
        assert (await call(m, Req.GETXATTR, ino=f, name="user.a")).value == b"2"
        assert list((await call(m, Req.LISTXATTR, ino=f)).names) == ["user.a"]
        assert await code_of(call(m, Req.SETXATTR, ino=f, name="trusted.x", value=b"",
                                  caller=USER)) == errno.EPERM
        await call(m, Req.REMOVEXATTR, ino=f, name="user.a")
        assert await xattr_version() == 3
        assert await code_of(call(m, Req.GETXATTR, ino=f, name="user.a")) == errno.ENODATA
        assert await code_of(call(m, Req.REMOVEXATTR, ino=f,
                                  name="user.a")) == errno.ENODATA


async def test_flock_conflicts_answer_eagain_or_queue(cluster_module):
    import fcntl

    async with mds(cluster_module) as m:
        f = await create(m, ROOT, "locked-file")

        async def lock(kind: int, owner: int) -> int:
            return await code_of(call(m, Req.FLOCK, ino=f, lock_type=kind, owner=owner))

        assert await lock(fcntl.F_WRLCK, 1) == 0
        assert await lock(fcntl.F_RDLCK, 2) == errno.EAGAIN
        assert await lock(fcntl.F_WRLCK, 1) == 0          # the holder may re-lock
        assert await lock(fcntl.F_UNLCK, 1) == 0
        assert await lock(fcntl.F_RDLCK, 2) == 0
        assert await lock(fcntl.F_RDLCK, 3) == 0          # readers share
        assert await lock(fcntl.F_WRLCK, 3) == errno.EAGAIN
        assert await lock(fcntl.F_UNLCK, 2) == 0
        assert await lock(fcntl.F_WRLCK, 3) == 0          # upgrade once alone
        waiting = asyncio.ensure_future(call(m, Req.FLOCK, ino=f, lock_type=fcntl.F_WRLCK,
                                             owner=4, flags=mds_pb2.FLOCK_WAIT))
        await asyncio.sleep(0.3)
        assert not waiting.done()                         # queued, not refused
        assert await lock(fcntl.F_UNLCK, 3) == 0
        await asyncio.wait_for(waiting, 10)               # granted when the holder lets go
        assert await lock(fcntl.F_RDLCK, 1) == errno.EAGAIN


async def test_quota_enforced_and_reported_by_statfs(cluster_module):
    async with mds(cluster_module) as m:
        q = await mkdir(m, ROOT, "quota")
        await create(m, q, "before")
        set_ = await call(m, Req.QUOTA_SET, path="/quota", max_bytes=10_000, max_files=3)
        assert (set_.quota.used_files, set_.quota.max_files) == (1, 3)
        sub = await mkdir(m, q, "sub")
        f = await create(m, sub, "f")
        assert await code_of(create(m, sub, "g")) == errno.EDQUOT
        assert await code_of(mkdir(m, q, "more")) == errno.EDQUOT
        await call(m, Req.WRITE_DONE, ino=f, attr=mds_pb2.InodeAttr(size=6_000))
        assert await code_of(call(m, Req.WRITE_DONE, ino=f,
                                  attr=mds_pb2.InodeAttr(size=10_001))) == errno.EDQUOT
        got = (await call(m, Req.QUOTA_GET, path="/quota")).quota
        assert (got.used_files, got.used_bytes, got.max_bytes) == (3, 6_000, 10_000)
        inside = (await call(m, Req.STATFS, ino=f)).statfs
        assert (inside.total_bytes, inside.free_bytes) == (10_000, 4_000)
        assert (inside.total_files, inside.free_files) == (3, 0)
        outside = (await call(m, Req.STATFS, ino=ROOT)).statfs
        assert outside.total_bytes != 10_000 and outside.name_max == 255
        # renames out of a quota root are EXDEV (the caller copies), removal frees quota
        assert await code_of(call(m, Req.RENAME, ino=sub, name="f", ino2=ROOT,
                                  name2="escaped")) == errno.EXDEV
        await call(m, Req.UNLINK, ino=sub, name="f")
        got = (await call(m, Req.QUOTA_GET, path="/quota")).quota
        assert (got.used_files, got.used_bytes) == (2, 0)
        await create(m, sub, "g")
        await call(m, Req.QUOTA_SET, path="/quota")  # 0/0 removes the quota
        await create(m, sub, "h")


async def test_snapshot_is_a_read_only_copy(cluster_module):
    async with mds(cluster_module) as m:
        top = await mkdir(m, ROOT, "snapped")
        f = await create(m, top, "f")
        data = await m.data_ioctx()
        await data.write_full(layout.data_oid(f, 0), b"version one")
        await call(m, Req.WRITE_DONE, ino=f, attr=mds_pb2.InodeAttr(size=11))
        await call(m, Req.LINK, ino=f, ino2=top, name2="f2")
        sub = await mkdir(m, top, "sub")
        await create(m, sub, "g")
        await call(m, Req.SNAP_CREATE, path="/snapped", name="s1")
        assert await code_of(call(m, Req.SNAP_CREATE, path="/snapped",
                                  name="s1")) == errno.EEXIST
        # change the live tree afterwards
        await data.write_full(layout.data_oid(f, 0), b"version two!")
        await call(m, Req.WRITE_DONE, ino=f, attr=mds_pb2.InodeAttr(size=12))
        await call(m, Req.UNLINK, ino=sub, name="g")
        snaps = await call(m, Req.SNAP_LIST, path="/snapped")
        assert [s.name for s in snaps.snaps] == ["s1"]
        snapdir = await lookup(m, top, ".snap")
        assert await listdir(m, snapdir) == ["s1"]
        s1 = await lookup(m, snapdir, "s1")
        assert sorted(await listdir(m, s1)) == ["f", "f2", "sub"]
        sf = await lookup(m, s1, "f")
        assert sf != f and await lookup(m, s1, "f2") == sf
        sattr = await getattr_(m, sf)
        assert (sattr.size, sattr.nlink) == (11, 2)
        assert await data.read(layout.data_oid(sf, 0)) == b"version one"
        assert await listdir(m, await lookup(m, s1, "sub")) == ["g"]
        # read-only: every change inside is EROFS
        for op, fields in [(Req.CREATE, dict(ino=s1, name="new", mode=0o644)),
                           (Req.UNLINK, dict(ino=s1, name="f")),
                           (Req.SETATTR, dict(ino=sf, attr=mds_pb2.InodeAttr(mode=0o777),
                                              set_mask=mds_pb2.SET_MODE)),
                           (Req.WRITE_DONE, dict(ino=sf, attr=mds_pb2.InodeAttr(size=99))),
                           (Req.OPEN, dict(ino=sf, flags=os.O_WRONLY)),
                           (Req.SETXATTR, dict(ino=sf, name="user.x", value=b"1"))]:
            assert await code_of(call(m, op, **fields)) == errno.EROFS, Req.Op.Name(op)
        assert await code_of(call(m, Req.RMDIR, ino=ROOT, name="snapped")) == errno.ENOTEMPTY
        assert (await fsck(m))["ok"]
        await call(m, Req.SNAP_REMOVE, path="/snapped", name="s1")
        assert await code_of(getattr_(m, sf)) == errno.ENOENT

        async def purged() -> bool:
            return not await data.exists(layout.data_oid(sf, 0))

        await eventually(purged)
        assert not (await call(m, Req.SNAP_LIST, path="/snapped")).snaps
        report = await fsck(m)
        assert report["ok"], report


async def test_resent_request_is_answered_once(cluster_module):
    async with mds(cluster_module) as m:
        req = Req(op=Req.MKDIR, ino=ROOT, name="once", mode=0o755)
        first = await m.request(req)
        again = await m.request(req)  # same tid: the MDS answers from its memory
        assert again.attr.ino == first.attr.ino
        fresh = Req(op=Req.MKDIR, ino=ROOT, name="once", mode=0o755)
        assert await code_of(m.request(fresh)) == errno.EEXIST
        # another request under a used tid is refused, never answered with the old reply
        other = Req(op=Req.MKDIR, ino=ROOT, name="not-once", mode=0o755, tid=req.tid)
        assert await code_of(m.request(other)) == errno.EINVAL
        assert await code_of(lookup(m, ROOT, "not-once")) == errno.ENOENT


async def test_two_clients_on_one_rados_never_share_a_request_id(cluster_module):
    """The MDS spots a resend by (client instance, tid), and clients of one Rados share
    its instance (a mount's MDS client and an FsAdmin, say): each change must be applied
    as itself, never refused as a reused id nor answered with the other's reply."""
    async with cluster_module.rados() as rados:
        first = await MdsClient(rados, timeout=60).open()
        second = await MdsClient(rados, timeout=60).open()
        try:
            made = {}
            for i in range(16):  # enough turns that two counters of their own would meet
                made[f"tid-{i}"] = await mkdir((first, second)[i % 2], ROOT, f"tid-{i}")
            assert len(set(made.values())) == 16
            for name, ino in made.items():
                assert await lookup(first, ROOT, name) == ino
        finally:
            await second.close()
            await first.close()


def sds(cluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = sds_main(["--conf", str(cluster.conf), *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_fs_cli(cluster_module):
    code, out, _ = sds(cluster_module, "fs", "ls", "--format", "json")
    assert code == 0
    fs = json.loads(out)["filesystems"][0]
    assert (fs["name"], fs["metadata_pool"], fs["data_pool"]) == \
        ("sdsfs", "sdsfs_metadata", "sdsfs_data")
    code, out, _ = sds(cluster_module, "fs", "status")
    assert code == 0 and "sdsfs" in out and "standby: mds." in out
    code, _, err = sds(cluster_module, "fs", "new", "x", "nope", "sdsfs_data")
    assert code == errno.ENOENT and "nope" in err
    code, _, err = sds(cluster_module, "fs", "new", "sdsfs", "sdsfs_metadata", "sdsfs_data")
    assert code == errno.EEXIST
    code, _, _ = sds(cluster_module, "fs", "rm", "sdsfs")
    assert code == errno.EACCES  # needs --yes-i-really-mean-it
    code, _, _ = sds(cluster_module, "fs", "rm", "sdsfs", "--yes-i-really-mean-it")
    assert code == errno.EBUSY
    code, out, _ = sds(cluster_module, "fs", "check", "--format", "json")
    assert code == 0 and json.loads(out)["ok"]
    assert sds(cluster_module, "fs", "quota", "get", "/missing")[0] == errno.ENOENT
    asyncio.run(_mkdir_root(cluster_module, "cli"))
    code, out, _ = sds(cluster_module, "fs", "quota", "set", "/cli", "--max-bytes", "1048576",
                       "--max-files", "10")
    assert code == 0 and "1.0 MiB" in out, out
    code, out, _ = sds(cluster_module, "fs", "quota", "get", "/cli", "--format", "json")
    assert json.loads(out) == {"path": "/cli", "max_bytes": 1048576, "max_files": 10,
                               "used_bytes": 0, "used_files": 0}
    code, out, err = sds(cluster_module, "fs", "snapshot", "create", "/cli", "s1")
    assert code == 0, err
    assert sds(cluster_module, "fs", "snapshot", "create", "/cli", "s1")[0] == errno.EEXIST
    code, out, _ = sds(cluster_module, "fs", "snapshot", "ls", "/cli", "--format", "json")
    assert code == 0 and [s["name"] for s in json.loads(out)["snapshots"]] == ["s1"]
    assert sds(cluster_module, "fs", "snapshot", "rm", "/cli", "s1")[0] == 0
    assert sds(cluster_module, "fs", "snapshot", "rm", "/cli", "s1")[0] == errno.ENOENT


async def _mkdir_root(cluster, name: str) -> None:
    async with mds(cluster) as m:
        await mkdir(m, ROOT, name)


async def test_health_reports_no_fs_warning_while_an_mds_is_active(cluster_module):
    async with cluster_module.rados() as r:
        checks = (await r.mon_command({"prefix": "health"}))["checks"]
        assert "FS_DEGRADED" not in checks and "MDS_ALL_DOWN" not in checks
        with pytest.raises(NotFound):
            await MdsClient(r, "no-such-fs", timeout=5).open()


async def test_open_revokes_other_holders_and_evicts_the_silent(cluster_module):
    async with mds(cluster_module) as m, cluster_module.rados() as ra, \
            cluster_module.rados() as rc:
        f = await create(m, ROOT, "shared")
        got_a: list[mds_pb2.MdsClientMessage] = []
        got_c: list[mds_pb2.MdsClientMessage] = []
        writer = MdsClient(ra, timeout=30)

        def flush_on_revoke(msg: mds_pb2.MdsClientMessage) -> None:
            got_a.append(msg)
            if msg.kind == msg.REVOKE:  # flush what was "written", then ack
                asyncio.get_running_loop().create_task(writer.request(Req(
                    op=Req.CAPS_ACK, ino=msg.ino, attr=mds_pb2.InodeAttr(size=4242))))

        writer.on_message = flush_on_revoke
        await writer.open()
        await writer.request(Req(op=Req.OPEN, ino=f, flags=os.O_WRONLY))
        # another client opens to read: the writer is asked to flush first
        opened = await m.request(Req(op=Req.OPEN, ino=f, flags=os.O_RDONLY))
        assert [x.kind for x in got_a] == [mds_pb2.MdsClientMessage.REVOKE]
        assert opened.attr.size == 4242
        await m.request(Req(op=Req.RELEASE, ino=f))
        # a holder that never answers is evicted; its old session is refused
        silent = await MdsClient(rc, timeout=30, on_message=got_c.append).open()
        await silent.request(Req(op=Req.OPEN, ino=f, flags=os.O_RDWR))
        started = asyncio.get_running_loop().time()
        await m.request(Req(op=Req.OPEN, ino=f, flags=os.O_RDWR))
        assert asyncio.get_running_loop().time() - started >= 1.5  # waited for the revoke
        assert [x.kind for x in got_c] == [mds_pb2.MdsClientMessage.REVOKE,
                                           mds_pb2.MdsClientMessage.EVICTED]
        assert await code_of(silent.request(Req(op=Req.GETATTR, ino=f))) == errno.ESTALE
        # fenced: no new session, and the OSDs refuse its (possibly buffered) data writes
        assert await code_of(silent.request(Req(op=Req.GETATTR, ino=f))) == errno.ESHUTDOWN
        data = await silent.data_ioctx()
        assert await code_of(data.write_full(f"{f:016x}.00000000", b"stale")) == errno.ESHUTDOWN
        listed = await m.rados.mon_command({"prefix": "osd blocklist ls"})
        assert rc.client_id in [e["addr"] for e in listed["blocklist"]]
        await m.request(Req(op=Req.RELEASE, ino=f))
        await writer.close()
        await silent.close()


async def test_stopped_mds_hands_over_without_waiting_for_the_grace(cluster_module):
    """SIGTERM: the MDS stops serving, then tells the mons (`mds fail`): the standby takes
    over at once instead of after mds_beacon_grace (5 s here)."""
    async with mds(cluster_module) as m:
        before = (await m.active())[1]
        name = next(n for n in cluster_module.names("mds") if cluster_module.addr(n) == before)
        started = time.monotonic()
        assert cluster_module.stop(name)
        await mkdir(m, ROOT, "after-stop")
        took = time.monotonic() - started
        assert (await m.active())[1] != before
        assert took < 4.5, f"handover took {took:.1f}s"
        cluster_module.start(name)


async def test_name_changes_are_pushed_to_sessions_caching_the_directory(cluster_module):
    K = mds_pb2.MdsClientMessage
    async with mds(cluster_module) as m, cluster_module.rados() as rw, \
            cluster_module.rados() as ri:
        top = await mkdir(m, ROOT, "leased")
        await create(m, top, "a")
        await create(m, top, "b")
        to_watcher: list[mds_pb2.MdsClientMessage] = []
        to_idle: list[mds_pb2.MdsClientMessage] = []
        watcher = await MdsClient(rw, timeout=30, on_message=to_watcher.append).open()
        idle = await MdsClient(ri, timeout=30, on_message=to_idle.append).open()

        async def pushed(n: int) -> list[tuple[int, str]]:
            async def enough() -> bool:
                return len(to_watcher) >= n
            await eventually(enough)
            return [(x.ino, x.name) for x in to_watcher if x.kind == K.INVALIDATE_DENTRY]

        try:
            await lookup(idle, ROOT, "leased")       # a lease on the root only
            await lookup(watcher, top, "a")          # the watcher caches entries of `top`
            await call(m, Req.RENAME, ino=top, name="a", ino2=top, name2="b")
            assert sorted(await pushed(2)) == [(top, "a"), (top, "b")]
            await lookup(watcher, top, "b")
            await call(m, Req.UNLINK, ino=top, name="b")
            assert (await pushed(3))[-1] == (top, "b")
            await create(m, top, "c")
            assert (await pushed(4))[-1] == (top, "c")
            assert to_idle == []                     # nothing it caches changed
        finally:
            await watcher.close()
            await idle.close()


async def test_a_client_that_reconnects_keeps_its_opens_and_is_not_evicted(cluster_module):
    """A broken connection to the same MDS: the client opens a new session. Its old
    session must not linger holding its open files, or the next revoke would go
    unanswered there and evict (and fence) the live client."""
    async with mds(cluster_module) as m, cluster_module.rados() as rw:
        f = await create(m, ROOT, "reconnecting")
        got: list[mds_pb2.MdsClientMessage] = []
        writer = MdsClient(rw, timeout=30)

        def flush_on_revoke(msg: mds_pb2.MdsClientMessage) -> None:
            got.append(msg)
            if msg.kind == msg.REVOKE:
                asyncio.get_running_loop().create_task(writer.request(Req(
                    op=Req.CAPS_ACK, ino=msg.ino, attr=mds_pb2.InodeAttr(size=77))))

        writer.on_message = flush_on_revoke
        await writer.open()
        await writer.request(Req(op=Req.OPEN, ino=f, flags=os.O_WRONLY))
        first = writer.session_id
        await writer._conn.close()  # a network blip
        await writer.request(Req(op=Req.GETATTR, ino=f))
        assert writer.session_id != first  # reconnected as a new session
        opened = await m.request(Req(op=Req.OPEN, ino=f, flags=os.O_RDONLY))
        assert opened.attr.size == 77  # the revoke reached the live session, which flushed
        assert [x.kind for x in got] == [mds_pb2.MdsClientMessage.REVOKE]
        listed = await m.rados.mon_command({"prefix": "osd blocklist ls"})
        assert rw.client_id not in [e["addr"] for e in listed["blocklist"]]
        # its open handle is counted once: unlinked, the file goes with the last release
        await m.request(Req(op=Req.RELEASE, ino=f))
        await call(m, Req.UNLINK, ino=ROOT, name="reconnecting")
        assert (await getattr_(m, f)).nlink == 0
        await writer.request(Req(op=Req.RELEASE, ino=f))
        assert await code_of(getattr_(m, f)) == errno.ENOENT
        await writer.close()


async def test_numbers_for_async_creates_are_the_clients_own(cluster_module):
    """ALLOC_INOS gives a client numbers for the creates it answers itself: a CREATE
    under one of them makes the file with that number, once; a number used already,
    given to another client or never given is refused (EBUSY) and nothing is made; no
    client holds more than PER_CLIENT of them."""
    from sds.mds.delegations import PER_CLIENT

    async with cluster_module.rados() as ra, cluster_module.rados() as rb:
        a, b = await MdsClient(ra, timeout=60).open(), await MdsClient(rb, timeout=60).open()
        try:
            d = await mkdir(a, ROOT, "delegated")
            got = await call(a, Req.ALLOC_INOS, want_inos=8)
            assert got.ino_count == 8
            first = got.ino_start
            made = await call(a, Req.CREATE, ino=d, name="mine", mode=0o644, new_ino=first)
            assert made.attr.ino == first
            await call(a, Req.RELEASE, ino=first)
            assert await lookup(b, d, "mine") == first
            refused = {"again": (a, first), "theirs": (b, first + 1),
                       "made-up": (a, first + (1 << 40))}
            for name, (client, ino) in refused.items():
                assert await code_of(call(client, Req.CREATE, ino=d, name=name, mode=0o644,
                                          new_ino=ino)) == errno.EBUSY, name
                assert await code_of(lookup(a, d, name)) == errno.ENOENT
            held = 7
            for _ in range(4):
                held += (await call(a, Req.ALLOC_INOS, want_inos=100_000)).ino_count
            assert held == PER_CLIENT
            assert (await call(a, Req.ALLOC_INOS, want_inos=1)).ino_count == 0
            # the numbers are a's: b's own creates never get one of them
            theirs = await create(b, d, "b-made")
            assert not first <= theirs < first + 8
        finally:
            await b.close()
            await a.close()
