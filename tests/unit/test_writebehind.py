"""Write-behind coalescing: small sequential writes leave as one OSD write, in order with
the writes they overlap, and nothing buffered is lost to a drain, a settle or the timer."""

import asyncio

import pytest

from sds.fs import writebehind
from sds.fs.writebehind import WriteBehind


class RecordingStriper:
    """Stores writes in a bytearray, as the OSDs would, and records each op."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.file = bytearray()
        self.ops: list[tuple[int, int]] = []
        self.delay = delay
        self.fail = fail

    async def write(self, ino: int, offset: int, data: bytes) -> None:
        self.ops.append((offset, len(data)))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise OSError(5, "injected")
        end = offset + len(data)
        if len(self.file) < end:
            self.file.extend(bytes(end - len(self.file)))
        self.file[offset:end] = data


async def test_sequential_small_writes_leave_as_one_op():
    striper = RecordingStriper()
    wb = WriteBehind(striper, 1)
    for i in range(10):
        await wb.write(i * 10240, bytes([i]) * 10240)
    assert striper.ops == [] and wb.bytes == 102400
    await wb.drain()
    assert striper.ops == [(0, 102400)]
    assert bytes(striper.file) == b"".join(bytes([i]) * 10240 for i in range(10))
    assert wb.bytes == 0


async def test_a_full_buffer_goes_out_and_the_rest_follows():
    striper = RecordingStriper()
    wb = WriteBehind(striper, 1)
    chunk = 256 << 10
    for i in range(6):
        await wb.write(i * chunk, b"x" * chunk)
    await wb.drain()
    assert striper.ops == [(0, writebehind.COALESCE_BYTES), (writebehind.COALESCE_BYTES, 2 * chunk)]


async def test_a_rewrite_of_buffered_bytes_wins_over_them():
    striper = RecordingStriper(delay=0.01)
    wb = WriteBehind(striper, 1)
    await wb.write(0, b"a" * 8192)
    await wb.write(8192, b"b" * 8192)
    await wb.write(4096, b"c" * 4096)   # lands inside the buffer: it goes out first
    await wb.write(100_000, b"d" * 10)  # elsewhere: the rewrite goes out
    await wb.drain()
    assert bytes(striper.file[:16384]) == b"a" * 4096 + b"c" * 4096 + b"b" * 8192
    assert striper.ops[0] == (0, 16384)


async def test_the_timer_sends_what_nobody_waits_for():
    striper = RecordingStriper()
    wb = WriteBehind(striper, 1)
    await wb.write(0, b"z" * 100)
    await asyncio.sleep(writebehind.COALESCE_DELAY_S * 3)
    assert striper.ops == [(0, 100)] and not wb.pending


async def test_settle_sends_the_buffer_and_keeps_the_error_for_drain():
    striper = RecordingStriper(fail=True)
    wb = WriteBehind(striper, 1)
    await wb.write(0, b"q" * 100)
    await wb.settle()                     # a read on this mount waits, takes no error
    assert striper.ops == [(0, 100)] and wb.failed
    with pytest.raises(OSError):
        await wb.drain()                  # fsync/close report it, once
    await wb.drain()


async def test_cancel_drops_the_buffer():
    striper = RecordingStriper()
    wb = WriteBehind(striper, 1)
    await wb.write(0, b"q" * 100)
    wb.cancel()
    await asyncio.sleep(writebehind.COALESCE_DELAY_S * 2)
    assert striper.ops == [] and wb.bytes == 0
