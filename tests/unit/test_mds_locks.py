"""The MDS file lock table: sharing rules, a fair wait queue, bounded waits."""

from __future__ import annotations

import asyncio
import fcntl

import pytest

from sds.common.errors import Retry
from sds.mds.locks import FileLocks

RD, WR = fcntl.F_RDLCK, fcntl.F_WRLCK


async def test_conflicts_fail_at_once_without_wait():
    locks = FileLocks()
    await locks.lock(1, owner=1, kind=WR, wait=False)
    with pytest.raises(Retry):
        await locks.lock(1, owner=2, kind=RD, wait=False)
    await locks.lock(1, owner=1, kind=WR, wait=False)  # the holder may re-lock
    await locks.lock(2, owner=2, kind=WR, wait=False)  # another file is independent
    locks.unlock(1, 1)
    await locks.lock(1, owner=2, kind=RD, wait=False)
    await locks.lock(1, owner=3, kind=RD, wait=False)  # readers share
    with pytest.raises(Retry):
        await locks.lock(1, owner=3, kind=WR, wait=False)
    locks.unlock(1, 2)
    await locks.lock(1, owner=3, kind=WR, wait=False)  # upgrade once alone


async def test_waiters_are_granted_in_arrival_order_and_newcomers_queue_behind():
    locks = FileLocks(max_wait=5)
    await locks.lock(1, owner=1, kind=WR, wait=True)
    order = []

    async def take(owner: int) -> None:
        await locks.lock(1, owner=owner, kind=WR, wait=True)
        order.append(owner)

    waiters = [asyncio.create_task(take(o)) for o in (2, 3)]
    await asyncio.sleep(0.01)
    locks.unlock(1, 1)
    # owner 1 comes straight back: it must not jump the queue (the starvation this fixes)
    again = asyncio.create_task(take(1))
    await asyncio.sleep(0.01)
    assert order == [2]
    locks.unlock(1, 2)
    await asyncio.sleep(0.01)
    locks.unlock(1, 3)
    await asyncio.gather(*waiters, again)
    assert order == [2, 3, 1]


async def test_a_wait_is_bounded_and_leaves_the_queue():
    locks = FileLocks(max_wait=0.05)
    await locks.lock(1, owner=1, kind=WR, wait=True)
    with pytest.raises(Retry):
        await locks.lock(1, owner=2, kind=WR, wait=True)
    assert not locks.waiting  # the timed-out waiter does not block anyone later
    locks.unlock(1, 1)
    await locks.lock(1, owner=3, kind=WR, wait=False)


async def test_readers_behind_a_writer_are_granted_together():
    locks = FileLocks(max_wait=5)
    await locks.lock(1, owner=1, kind=WR, wait=True)
    readers = [asyncio.create_task(locks.lock(1, owner=o, kind=RD, wait=True)) for o in (2, 3)]
    writer = asyncio.create_task(locks.lock(1, owner=4, kind=WR, wait=True))
    await asyncio.sleep(0.01)
    locks.unlock_all(1)  # the last handle closed: its locks go
    await asyncio.gather(*readers)
    assert locks.held[1] == {2: RD, 3: RD}
    assert not writer.done()
    locks.unlock(1, 2)
    locks.unlock(1, 3)
    await writer
    assert locks.held[1] == {4: WR}


async def test_a_cancelled_waiter_gives_back_what_it_was_granted():
    locks = FileLocks(max_wait=5)
    await locks.lock(1, owner=1, kind=WR, wait=True)
    waiter = asyncio.create_task(locks.lock(1, owner=2, kind=WR, wait=True))
    await asyncio.sleep(0.01)
    locks.unlock(1, 1)   # grants owner 2 ...
    waiter.cancel()      # ... whose request goes away before it hears so
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not locks.held and not locks.waiting
