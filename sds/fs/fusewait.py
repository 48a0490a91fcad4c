"""Waiting for /dev/fuse to become readable, with one standing epoll registration.

pyfuse3's asyncio layer adds a reader for the FUSE fd before every request and removes it
after: with uvloop that is six epoll_ctl calls per request (strace of a 4 KiB random read
run), about a tenth of the mount's system calls. Here the reader stays registered while a
worker waits or is about to; it is dropped only when the fd is readable with nobody
waiting (level-triggered epoll would otherwise spin) and when the session closes.
pyfuse3 lets one worker wait at a time (its read lock), so one waiter is the usual case.
"""

from __future__ import annotations

import asyncio
import collections


class FuseReadiness:
    """The readiness of one FUSE fd on one loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, futures: dict) -> None:
        self.loop, self.fd = loop, fd
        self.futures = futures  # pyfuse3.asyncio's: its notify_closing fails these
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.registered = False

    def _readable(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.stop()

    def stop(self) -> None:
        if self.registered:
            self.registered = False
            self.loop.remove_reader(self.fd)

    async def wait(self) -> None:
        fut = self.loop.create_future()
        self.futures[self.fd].add(fut)
        self.waiters.append(fut)
        try:
            if not self.registered:
                self.loop.add_reader(self.fd, self._readable)
                self.registered = True
            await fut
        finally:
            self.futures[self.fd].discard(fut)
            if not self.futures[self.fd]:
                del self.futures[self.fd]


_readiness: dict[int, FuseReadiness] = {}


def stop_all() -> None:
    """Drop the standing registrations: before the session's fd is closed, so that a
    later fd of the same number is not taken for it."""
    while _readiness:
        _readiness.popitem()[1].stop()


def install() -> None:
    """Replace pyfuse3.asyncio's wait_readable and notify_closing (after its enable())."""
    import pyfuse3.asyncio as fake_trio

    original_wait, original_closing = fake_trio.wait_readable, fake_trio.notify_closing
    if getattr(original_wait, "standing", False):
        return

    async def wait_readable(fd: int) -> None:
        loop = asyncio.get_running_loop()
        readiness = _readiness.get(fd)
        if readiness is None or readiness.loop is not loop:
            readiness = _readiness[fd] = FuseReadiness(loop, fd, fake_trio._read_futures)
        await readiness.wait()

    def notify_closing(fd: int) -> None:
        readiness = _readiness.pop(fd, None)
        if readiness is not None:
            readiness.stop()
        original_closing(fd)

    wait_readable.standing = True  # type: ignore[attr-defined]
    fake_trio.wait_readable, fake_trio.notify_closing = wait_readable, notify_closing
