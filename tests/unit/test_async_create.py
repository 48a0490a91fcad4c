"""Async creates, the pure parts: the MDS's bounded record of numbers given to clients
(sds.mds.delegations), the mount's spare numbers per session and the attributes it
answers a create with, which must be the ones the MDS records (sds.fs.asynccreate)."""

from __future__ import annotations

import asyncio
import stat

import pytest

from sds.fs.asynccreate import SpareInos, made_or_raise, new_file_attr
from sds.fs.writebehind import WriteBehind
from sds.mds.delegations import InoDelegations
from sds.mds.tx import new_record
from sds.proto import mds_pb2


def test_a_number_is_taken_once_and_only_by_its_client():
    d = InoDelegations(per_client=8, max_clients=2)
    d.give("a", 100, 4)
    assert d.room("a") == 4 and d.room("b") == 8
    assert not d.take("b", 100)
    assert d.take("a", 100)
    assert not d.take("a", 100)
    assert not d.take("a", 104)
    assert d.held("a") == 3


def test_the_oldest_clients_numbers_are_forgotten_past_the_bound():
    d = InoDelegations(per_client=8, max_clients=2)
    d.give("a", 100, 2)
    d.give("b", 200, 2)
    d.give("a", 102, 2)  # a is the latest again
    d.give("c", 300, 2)
    assert d.held("b") == 0 and not d.take("b", 200)
    assert d.held("a") == 4 and d.held("c") == 2


@pytest.mark.parametrize("dir_mode,dir_gid,umask,mode", [
    (0o755, 0, 0o022, 0o666), (0o2775, 500, 0o002, 0o664), (0o2777, 7, 0o077, 0o4755),
    (0o700, 3, 0, 0o600)])
def test_the_mount_answers_a_create_with_the_attributes_the_mds_records(dir_mode, dir_gid,
                                                                       umask, mode):
    caller = mds_pb2.Caller(uid=1000, gid=1000, umask=umask)
    parent = mds_pb2.InodeAttr(ino=5, mode=stat.S_IFDIR | dir_mode, gid=dir_gid)
    here = new_file_attr(77, stat.S_IFREG | mode, caller, parent)
    # what the MDS's create does (sds.mds.namespace Namespace._make), at the same time
    there = new_record(77, (stat.S_IFREG | stat.S_IMODE(mode)) & ~(umask & 0o777), caller, 5,
                       parent, at=here.ctime_ns).attr
    assert here == there


async def test_spare_numbers_come_a_range_at_a_time_and_belong_to_one_session():
    asked = []

    async def alloc(want: int) -> tuple[int, int]:
        asked.append(want)
        return 1000 * (len(asked)), want

    spare = SpareInos(alloc, want=4, low=2)
    assert spare.take(session=1) is None  # asked for now, in the background
    await asyncio.sleep(0)
    assert [spare.take(1) for _ in range(3)] == [1000, 1001, 1002]
    assert spare.take(1) == 1003  # fewer than `low` were left: asked again
    await asyncio.sleep(0)
    assert spare.take(1) == 2000
    assert spare.take(session=2) is None  # a new session: the old numbers are dropped
    await asyncio.sleep(0)
    assert spare.take(2) == 3000
    assert asked == [4, 4, 4]


async def test_a_failed_allocation_leaves_creates_to_the_mds():
    async def alloc(want: int) -> tuple[int, int]:
        raise OSError("no MDS")

    spare = SpareInos(alloc)
    assert spare.take(1) is None
    await asyncio.sleep(0)
    assert spare.take(1) is None


class FakeStriper:
    def __init__(self):
        self.writes: list[tuple[int, int, bytes]] = []

    async def write(self, ino: int, offset: int, data: bytes) -> None:
        self.writes.append((ino, offset, bytes(data)))


async def test_data_of_an_async_created_file_waits_for_its_create():
    """No data object before the MDS has the inode; a failed create fails the writes."""
    striper = FakeStriper()
    made = asyncio.get_running_loop().create_future()
    wb = WriteBehind(striper, 9, made=made)
    await wb.write(0, b"x" * (2 << 20))
    await asyncio.sleep(0.01)
    assert striper.writes == []
    made.set_result(None)
    await wb.drain()
    assert striper.writes == [(9, 0, b"x" * (2 << 20))]

    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(FileExistsError("taken"))
    wb = WriteBehind(striper, 10, made=failed)
    await wb.write(0, b"y" * (2 << 20))
    with pytest.raises(FileExistsError):
        await wb.drain()
    assert all(ino != 10 for ino, _, _ in striper.writes)


async def test_a_cancelled_waiter_leaves_the_create_running():
    made = asyncio.ensure_future(asyncio.sleep(0.05))
    waiter = asyncio.ensure_future(made_or_raise(made))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0.1)
    assert made.done() and not made.cancelled()
