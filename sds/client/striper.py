"""File data striped over fixed-size RADOS objects named "<ino:016x>.<index:08x>".

The MDS owns file sizes; the striper only moves bytes. Objects are created lazily by
the first write into them, so a missing object, or the part of one past its end, is a
hole and reads as zeros up to the file size the caller passes in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from sds.client.rados import IoCtx
from sds.common.errors import NotFound
from sds.fsrules.layout import DEFAULT_STRIPE_SIZE, object_name, parse_index

MAX_PARALLEL = 32  # object ops in flight for one truncate/remove: bounds memory and OSD load
DIRECT_OBJECTS = 64  # up to this many possible objects are tried one by one, more are listed


class Striper:
    def __init__(self, ioctx: IoCtx, stripe_size: int = DEFAULT_STRIPE_SIZE):
        if stripe_size <= 0:
            raise ValueError("stripe_size must be positive")
        self.ioctx = ioctx
        self.stripe_size = stripe_size

    def extents(self, offset: int, length: int) -> Iterator[tuple[int, int, int, int]]:
        """(object index, offset in object, offset in buffer, length) covering the range."""
        size = self.stripe_size
        pos, end = offset, offset + length
        while pos < end:
            index, in_obj = divmod(pos, size)
            n = min(size - in_obj, end - pos)
            yield index, in_obj, pos - offset, n
            pos += n

    async def read(self, ino: int, offset: int, length: int, file_size: int) -> bytes | bytearray:
        """Up to `length` bytes at `offset`, never past `file_size`; holes are zeros."""
        length = max(0, min(length, file_size - offset))
        if length == 0:
            return b""
        index, in_obj = divmod(offset, self.stripe_size)
        if in_obj + length <= self.stripe_size:  # within one object (every small read)
            return await self._read_one(ino, index, in_obj, length)
        parts = list(self.extents(offset, length))
        out = bytearray(length)
        chunks = await asyncio.gather(*(self._read_one(ino, index, in_obj, n)
                                        for index, in_obj, _, n in parts))
        for (_, _, at, n), chunk in zip(parts, chunks, strict=True):
            out[at:at + n] = chunk
        return out

    async def _read_one(self, ino: int, index: int, in_obj: int, n: int) -> bytes | bytearray:
        """Exactly n bytes of one object: missing objects and short tails are zeros."""
        try:
            data = await self.ioctx.read(object_name(ino, index), n, in_obj)
        except NotFound:
            return bytes(n)
        if len(data) < n:
            data = bytes(data) + bytes(n - len(data))
        return data

    async def write(self, ino: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write at any offset; the objects it spans are written concurrently."""
        view = memoryview(data).cast("B")
        await asyncio.gather(*(
            self.ioctx.write(object_name(ino, index), view[at:at + n], in_obj)
            for index, in_obj, at, n in self.extents(offset, len(view))))

    async def truncate(self, ino: int, old_size: int, new_size: int) -> None:
        """Shrink: drop whole objects past new_size and cut the boundary object.

        Growing needs no I/O: the new range is a hole. The boundary object is cut even
        when it seems already short, because data written past the old size by a writer
        that had not reported it yet must not reappear when the file grows again."""
        if new_size >= old_size:
            return
        size = self.stripe_size
        first_whole, in_obj = divmod(new_size, size)
        if in_obj:
            await self._truncate_one(ino, first_whole, in_obj)
            first_whole += 1
        await self.each_object(ino, first_whole, (old_size - 1) // size,
                               lambda index: self._remove_one(ino, index))

    async def zero(self, ino: int, offset: int, length: int) -> None:
        """Make a range read as zeros (fallocate PUNCH_HOLE/ZERO_RANGE): the objects it
        covers whole are removed (holes), the partial ones at its ends overwritten."""
        size = self.stripe_size
        end = offset + length
        first_whole, last_whole = -(-offset // size), end // size - 1
        if first_whole > last_whole:
            await self.write(ino, offset, bytes(length))
            return
        head, tail = first_whole * size - offset, end - (last_whole + 1) * size
        if head:
            await self.write(ino, offset, bytes(head))
        if tail:
            await self.write(ino, end - tail, bytes(tail))
        await self.each_object(ino, first_whole, last_whole,
                               lambda index: self._remove_one(ino, index))

    async def remove_all(self, ino: int, size: int) -> None:
        """Remove every data object of a file of `size` bytes (missing ones are fine)."""
        await self.truncate(ino, max(size, 1), 0)

    async def each_object(self, ino: int, first: int, last: int,
                          fn: Callable[[int], Awaitable[None]]) -> None:
        """fn(index) for every object of `ino` in [first, last] that may exist.

        A sparse file may span billions of possible objects: beyond DIRECT_OBJECTS the
        ones that exist are listed instead of tried, and at most MAX_PARALLEL calls run
        at once, so the work is bounded by the objects stored, the memory by
        MAX_PARALLEL, whatever the size."""
        if last < first:
            return
        if last - first < DIRECT_OBJECTS:
            indexes: AsyncIterator[int] = _count(first, last)
        else:
            indexes = self._stored(ino, first, last)
        running: set[asyncio.Future] = set()
        try:
            async for index in indexes:
                if len(running) >= MAX_PARALLEL:
                    done, running = await asyncio.wait(
                        running, return_when=asyncio.FIRST_COMPLETED)
                    for future in done:
                        future.result()
                running.add(asyncio.ensure_future(fn(index)))
            for future in asyncio.as_completed(running):
                await future
        finally:
            for future in running:
                future.cancel()

    async def _stored(self, ino: int, first: int, last: int) -> AsyncIterator[int]:
        """Indexes in [first, last] of the objects of `ino` the pool holds."""
        async for name in self.ioctx.list_prefix(object_name(ino, 0)[:-8]):
            index = parse_index(name)
            if index is not None and first <= index <= last:
                yield index

    async def _truncate_one(self, ino: int, index: int, length: int) -> None:
        try:
            await self.ioctx.truncate(object_name(ino, index), length)
        except NotFound:
            pass

    async def _remove_one(self, ino: int, index: int) -> None:
        try:
            await self.ioctx.remove(object_name(ino, index))
        except NotFound:
            pass


async def _count(first: int, last: int) -> AsyncIterator[int]:
    for index in range(first, last + 1):
        yield index
