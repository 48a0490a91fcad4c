"""Bounded work on file data (purge, truncate, hole punching) over a fake pool: the
objects that exist are listed, never one operation per possible object; and the journal's
set-aside events lose exactly the ops later events overwrote."""

from __future__ import annotations

import asyncio
import stat

from sds.client.striper import DIRECT_OBJECTS, MAX_PARALLEL, Striper
from sds.common.errors import NotFound
from sds.fsrules import attrs, perms
from sds.fsrules.layout import object_name, parse_index
from sds.mds.setaside import SetAside
from sds.proto import mds_pb2

MetaOp = mds_pb2.MetaOp
STRIPE = 4 << 20


class FakePool:
    """Objects in name order, with call counts and the most ops ever in flight."""

    def __init__(self):
        self.objects: dict[str, bytearray] = {}
        self.calls = 0
        self.inflight = self.peak = 0

    async def _op(self):
        self.calls += 1
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        await asyncio.sleep(0)
        self.inflight -= 1

    async def remove(self, oid):
        await self._op()
        if self.objects.pop(oid, None) is None:
            raise NotFound(oid)

    async def truncate(self, oid, size):
        await self._op()
        if oid not in self.objects:
            raise NotFound(oid)
        del self.objects[oid][size:]

    async def write(self, oid, data, offset=0):
        await self._op()
        obj = self.objects.setdefault(oid, bytearray())
        obj[len(obj):offset] = bytes(max(0, offset - len(obj)))
        obj[offset:offset + len(data)] = bytes(data)

    async def list_prefix(self, prefix, page_size=256):
        await self._op()
        for name in sorted(self.objects):
            if name.startswith(prefix):
                yield name


def test_purge_of_a_huge_sparse_file_touches_only_its_objects():
    pool = FakePool()
    ino, huge = 0x1234, (1 << 63) - 1
    for index in (0, 7, 1 << 40):
        pool.objects[object_name(ino, index)] = bytearray(b"x")
    pool.objects[object_name(ino + 1, 0)] = bytearray(b"other file")
    asyncio.run(Striper(pool, STRIPE).remove_all(ino, huge))
    assert list(pool.objects) == [object_name(ino + 1, 0)]
    assert pool.calls < 10


def test_truncate_keeps_what_is_below_and_cuts_the_boundary():
    pool = FakePool()
    ino = 0x99
    for index in range(200):
        pool.objects[object_name(ino, index)] = bytearray(STRIPE)
    asyncio.run(Striper(pool, STRIPE).truncate(ino, 200 * STRIPE, 10 * STRIPE + 5))
    assert sorted(parse_index(n) for n in pool.objects) == list(range(11))
    assert len(pool.objects[object_name(ino, 10)]) == 5
    assert pool.peak <= MAX_PARALLEL


def test_small_files_are_handled_without_listing():
    pool = FakePool()
    pool.objects[object_name(5, 0)] = bytearray(b"abc")
    asyncio.run(Striper(pool, STRIPE).remove_all(5, 3))
    assert not pool.objects and pool.calls == 1
    assert DIRECT_OBJECTS >= 1


def test_zero_removes_whole_objects_and_zeroes_the_ends():
    pool = FakePool()
    ino = 7
    for index in range(4):
        pool.objects[object_name(ino, index)] = bytearray(b"\xff" * STRIPE)
    asyncio.run(Striper(pool, STRIPE).zero(ino, STRIPE - 10, 2 * STRIPE + 20))
    assert object_name(ino, 1) not in pool.objects and object_name(ino, 2) not in pool.objects
    assert pool.objects[object_name(ino, 0)][-10:] == bytes(10)
    assert pool.objects[object_name(ino, 0)][:-10] == b"\xff" * (STRIPE - 10)
    assert pool.objects[object_name(ino, 3)][:10] == bytes(10)
    assert pool.objects[object_name(ino, 3)][10:] == b"\xff" * (STRIPE - 10)


def test_set_aside_event_keeps_only_ops_nothing_newer_wrote():
    aside = SetAside(meta=None)
    ev = mds_pb2.JournalEvent(seq=5, ops=[
        MetaOp(kind=MetaOp.PUT_INODE, ino=10), MetaOp(kind=MetaOp.SET_DENTRY, ino=1, name="a"),
        MetaOp(kind=MetaOp.SET_DENTRY, ino=2, name="b"), MetaOp(kind=MetaOp.PURGE_DATA, ino=9)])
    aside.events[5] = ev
    aside.supersede([MetaOp(kind=MetaOp.PUT_INODE, ino=10), MetaOp(kind=MetaOp.DEL_DIR, ino=2),
                     MetaOp(kind=MetaOp.RM_DENTRY, ino=1, name="other")])
    assert [(op.kind, op.ino, op.name) for op in ev.ops] == [
        (MetaOp.SET_DENTRY, 1, "a"), (MetaOp.PURGE_DATA, 9, "")]
    assert "journal event 5" in aside.health()[0]["message"]


def test_writer_may_clear_setid_bits_only():
    attr = mds_pb2.InodeAttr(ino=3, mode=stat.S_IFREG | 0o6776, uid=0, gid=0)
    writer = mds_pb2.Caller(uid=1000, gid=1000)
    new = mds_pb2.InodeAttr(mode=0o0776)
    attrs.set_attrs(attr, new, mds_pb2.SET_MODE, writer)
    assert stat.S_IMODE(attr.mode) == 0o776
    for mode in (0o0777, 0o0766):  # adds a bit, or removes a non-setid one: still chmod
        try:
            attrs.set_attrs(attr, mds_pb2.InodeAttr(mode=mode), mds_pb2.SET_MODE, writer)
            raise AssertionError("a non-owner changed the mode")
        except perms.NotPermitted:
            pass
    sgid = mds_pb2.InodeAttr(mode=stat.S_IFREG | 0o2766, gid=50)
    assert perms.privileges_killed_by_write(sgid, writer) == stat.S_ISUID | stat.S_ISGID
    assert perms.privileges_killed_by_write(sgid, mds_pb2.Caller(uid=1, gid=50)) == stat.S_ISUID
    assert perms.privileges_killed_by_write(sgid, mds_pb2.Caller(uid=0)) == 0
