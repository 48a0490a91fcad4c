"""What the mount needs to answer a create itself (an async create, see
`SdsOperations.create`): inode numbers the MDS gave this session in advance
(sds.mds.delegations), and the new file's attributes as the MDS will record them.

The numbers are asked for a range at a time, in the background, when fewer than LOW are
left; they belong to one MDS session (after a failover the new session asks again).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import stat
import time
from collections import deque
from collections.abc import Awaitable, Callable

from sds.fsrules.attrs import new_attr
from sds.proto import mds_pb2

log = logging.getLogger("sds.fuse.asynccreate")

WANT = 256  # numbers asked for at a time ...
LOW = 64    # ... when fewer than this are left

# ALLOC_INOS: (how many) -> (first, count)
Alloc = Callable[[int], Awaitable[tuple[int, int]]]


class SpareInos:
    def __init__(self, alloc: Alloc, want: int = WANT, low: int = LOW):
        self.alloc = alloc
        self.want = want
        self.low = low
        self._spare: deque[int] = deque()
        self._session = 0
        self._refill: asyncio.Task | None = None

    def take(self, session: int) -> int | None:
        """A number for a new file in `session`, or None (the create asks the MDS)."""
        self.prefetch(session)
        return self._spare.popleft() if self._spare else None

    def prefetch(self, session: int) -> None:
        """Ask for more numbers if few are left (a new own directory will want them)."""
        if session != self._session:
            self._spare.clear()
            self._session = session
        if len(self._spare) < self.low and (self._refill is None or self._refill.done()):
            self._refill = asyncio.ensure_future(self._ask(session))

    async def _ask(self, session: int) -> None:
        try:
            first, count = await self.alloc(self.want)
        except Exception as e:  # noqa: BLE001 - creates then ask the MDS, as before
            log.info("no inode numbers for async creates: %s", e)
            return
        if session == self._session:
            self._spare.extend(range(first, first + count))

    def close(self) -> None:
        if self._refill is not None:
            self._refill.cancel()


def new_file_attr(ino: int, mode: int, caller: mds_pb2.Caller,
                  parent: mds_pb2.InodeAttr) -> mds_pb2.InodeAttr:
    """A new regular file's attributes, as the MDS's create makes them (umask, then
    sds.fsrules.attrs.new_attr)."""
    mode = (stat.S_IFREG | stat.S_IMODE(mode)) & ~(caller.umask & 0o777)
    return new_attr(ino, mode, caller, parent, time.time_ns())


async def made_or_raise(made: asyncio.Future) -> None:
    """Wait for an async create to reach the MDS; raise its failure. A waiter that is
    cancelled leaves the create running (others wait for it too)."""
    if not made.done():
        await asyncio.wait([made])
    if made.cancelled():
        raise OSError(errno.EIO, "the create was never sent to the MDS")
    error = made.exception()
    if error is not None:
        raise error
