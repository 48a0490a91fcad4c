"""The standing /dev/fuse registration: woken when readable, never spinning while nobody
waits, and failed and dropped when the session closes (on a pipe standing in for it, on
uvloop as the mount runs)."""

from __future__ import annotations

import asyncio
import os

import pytest

pyfuse3_asyncio = pytest.importorskip("pyfuse3.asyncio")

import uvloop  # noqa: E402

from sds.fs import fusewait  # noqa: E402 - after the skip


async def worker(fd: int) -> bytes:
    """As pyfuse3's: wait, then read the request in the same step."""
    await pyfuse3_asyncio.wait_readable(fd)
    return os.read(fd, 1)


@pytest.fixture
def pipe():
    fusewait.install()
    r, w = os.pipe()
    yield r, w
    fusewait.stop_all()
    os.close(r)
    os.close(w)


def test_the_registration_stands_between_requests_and_goes_when_nobody_waits(pipe):
    uvloop.run(stands(*pipe))


async def stands(r: int, w: int) -> None:
    for request in (b"a", b"b"):
        waiter = asyncio.ensure_future(worker(r))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        os.write(w, request)
        assert await asyncio.wait_for(waiter, 1.0) == request
        await asyncio.sleep(0.01)
        readiness = fusewait._readiness[r]
        assert readiness.registered  # kept for the next request: no epoll_ctl per request
    os.write(w, b"c")
    await asyncio.sleep(0.01)  # readable and nobody waits: dropped, not spinning
    assert not readiness.registered
    assert await asyncio.wait_for(worker(r), 1.0) == b"c"
    assert not pyfuse3_asyncio._read_futures  # nothing left behind for notify_closing


def test_closing_fails_the_waiter_and_drops_the_registration(pipe):
    uvloop.run(closes(pipe[0]))


async def closes(r: int) -> None:
    waiter = asyncio.ensure_future(pyfuse3_asyncio.wait_readable(r))
    await asyncio.sleep(0.01)
    pyfuse3_asyncio.notify_closing(r)
    with pytest.raises(pyfuse3_asyncio.ClosedResourceError):
        await asyncio.wait_for(waiter, 1.0)
    assert r not in fusewait._readiness
