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

Small sequential writes are coalesced: tar and cp write 10-128 KiB at a time, and each
would be an OSD op of its own, one after the other on the same object (a 30 MiB file in
10 KiB writes took 3.8 s to drain). A write smaller than COALESCE_BYTES that continues
the one before joins it in a buffer, which goes out when it is full, when a write lands
elsewhere, after COALESCE_DELAY_S, or when anything waits for the data (drain, settle).
"""

from __future__ import annotations

import asyncio

from sds.client.striper import Striper
from sds.fs.asynccreate import made_or_raise

WRITE_BEHIND_BYTES = 32 << 20
COALESCE_BYTES = 1 << 20
COALESCE_DELAY_S = 0.02


class WriteBehind:
    def __init__(self, striper: Striper, ino: int, limit: int = WRITE_BEHIND_BYTES,
                 made: asyncio.Future | None = None):
        self.striper = striper
        self.ino = ino
        self.made = made  # an async create still on its way: no data before the inode
        self.limit = limit
        self.pending: dict[asyncio.Future, tuple[int, int]] = {}
        self.bytes = 0  # in flight or buffered
        self.error: BaseException | None = None
        self.failed = False  # some write failed once (sticky, unlike `error`)
        self._buf: bytearray | None = None  # coalesced writes not yet sent, from _buf_at
        self._buf_at = 0
        self._timer: asyncio.TimerHandle | None = None

    async def write(self, offset: int, data: bytes) -> None:
        self.raise_error()
        buf = self._buf
        if buf is not None and offset == self._buf_at + len(buf) \
                and len(buf) + len(data) <= COALESCE_BYTES:
            buf += data
            self.bytes += len(data)
            if len(buf) == COALESCE_BYTES:
                self.flush()
            return
        end = offset + len(data)
        while True:
            self.flush()  # (again if another write began a buffer while this one waited)
            overlapping = [f for f, (s, e) in self.pending.items() if s < end and offset < e]
            if overlapping:
                await asyncio.wait(overlapping)
            elif self.pending and self.bytes + len(data) > self.limit:
                await asyncio.wait(list(self.pending), return_when=asyncio.FIRST_COMPLETED)
            else:
                break
        self.raise_error()
        self.bytes += len(data)
        if len(data) < COALESCE_BYTES:
            self._buf, self._buf_at = bytearray(data), offset
            self._timer = asyncio.get_running_loop().call_later(COALESCE_DELAY_S, self.flush)
        else:
            self._send(offset, data, [])

    def flush(self) -> None:
        """Send the coalesced writes now, after the in-flight writes they overlap."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buf is None:
            return
        data, offset, self._buf = bytes(self._buf), self._buf_at, None
        end = offset + len(data)
        self._send(offset, data, [f for f, (s, e) in self.pending.items()
                                  if s < end and offset < e])

    def _send(self, offset: int, data: bytes, after: list[asyncio.Future]) -> None:
        future = asyncio.ensure_future(self._write_after(after, offset, data))
        self.pending[future] = (offset, offset + len(data))  # at once: later writes see it
        future.add_done_callback(self._done)

    async def _write_after(self, after: list[asyncio.Future], offset: int, data: bytes) -> None:
        if after:
            await asyncio.wait(after)
        if self.made is not None:
            await made_or_raise(self.made)
        await self.striper.write(self.ino, offset, data)

    def _done(self, future: asyncio.Future) -> None:
        start, end = self.pending.pop(future)
        self.bytes -= end - start
        if not future.cancelled() and future.exception() is not None:
            self.failed = True
            if self.error is None:
                self.error = future.exception()

    async def settle(self) -> None:
        """Wait until everything written so far is on the OSDs, without taking an error."""
        self.flush()
        while self.pending:
            await asyncio.wait(list(self.pending))

    async def drain(self) -> None:
        """Wait until everything written so far is on the OSDs; raise a failed write's error."""
        await self.settle()
        self.raise_error()

    def raise_error(self) -> None:
        """Report a failed write once (as the kernel reports writeback errors)."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buf is not None:
            self.bytes -= len(self._buf)
            self._buf = None
        for future in list(self.pending):
            future.cancel()
