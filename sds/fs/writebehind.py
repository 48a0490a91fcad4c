"""Write-behind for one file: write() returns once its data is on its way to the OSDs.

Without a writeback cache the kernel sends one WRITE at a time per file and waits for
each reply, so waiting for the OSDs' replicated ack in every write() caps a sequential
writer at one object op in flight. Here up to `limit` bytes are in flight instead. The
price is NFS-like error reporting: an OSD write that fails is reported by a later
write(), or by fsync()/close(), which wait for everything in flight (drain) before the
new size is reported to the MDS. Overlapping writes never race: a write waits for the
in-flight writes it overlaps, so the last write() wins as it would locally. Once a write
of the file has failed, `failed` stays set: the mount's close then waits for the data
again (sds.fs.fuse_ops defers it otherwise), so later failures reach close too.
"""

from __future__ import annotations

import asyncio

from sds.client.striper import Striper

WRITE_BEHIND_BYTES = 32 << 20


class WriteBehind:
    def __init__(self, striper: Striper, ino: int, limit: int = WRITE_BEHIND_BYTES):
        self.striper = striper
        self.ino = ino
        self.limit = limit
        self.pending: dict[asyncio.Future, tuple[int, int]] = {}
        self.bytes = 0
        self.error: BaseException | None = None
        self.failed = False  # some write failed once (sticky, unlike `error`)

    async def write(self, offset: int, data: bytes) -> None:
        self.raise_error()
        end = offset + len(data)
        while True:
            overlapping = [f for f, (s, e) in self.pending.items() if s < end and offset < e]
            if overlapping:
                await asyncio.wait(overlapping)
            elif self.pending and self.bytes + len(data) > self.limit:
                await asyncio.wait(list(self.pending), return_when=asyncio.FIRST_COMPLETED)
            else:
                break
        self.raise_error()
        future = asyncio.ensure_future(self.striper.write(self.ino, offset, data))
        self.pending[future] = (offset, end)
        self.bytes += len(data)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future) -> None:
        start, end = self.pending.pop(future)
        self.bytes -= end - start
        if not future.cancelled() and future.exception() is not None:
            self.failed = True
            if self.error is None:
                self.error = future.exception()

    async def drain(self) -> None:
        """Wait until everything written so far is on the OSDs; raise a failed write's error."""
        while self.pending:
            await asyncio.wait(list(self.pending))
        self.raise_error()

    def raise_error(self) -> None:
        """Report a failed write once (as the kernel reports writeback errors)."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def cancel(self) -> None:
        for future in list(self.pending):
            future.cancel()
