"""Frame transport for the messenger: an asyncio BufferedProtocol.

Frame = u32 envelope_len | u32 data_len | Envelope (protobuf) | data (raw bytes).

Why a protocol and not streams: the socket reads straight into our buffer, and the data
section of a large frame is received straight into its own bytearray (no StreamReader
copy, no memmove of the rest of the buffer), and frames written within one event-loop
iteration leave in one writev (many small replies, one syscall).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from sds.common.errors import ConnectionLost, InvalidArgument
from sds.proto import messenger_pb2 as mpb

HEADER = struct.Struct("!II")
MAX_ENVELOPE = 64 << 20
MAX_DATA = 1 << 30
READ_CHUNK = 256 << 10
BIG_DATA = 64 << 10       # data sections at least this large get their own buffer
WRITE_HIGH_WATER = 8 << 20

FrameCallback = Callable[[mpb.Envelope, memoryview], None]


class FrameProtocol(asyncio.BufferedProtocol):
    def __init__(self, on_made: Callable[[FrameProtocol], None] | None = None):
        self.on_made = on_made
        self.on_frame: FrameCallback | None = None
        self.on_lost: Callable[[BaseException | None], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._buf = bytearray(READ_CHUNK)
        self._start = 0
        self._end = 0
        self._big: bytearray | None = None
        self._big_env: mpb.Envelope | None = None
        self._big_filled = 0
        self._out: list = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future] = []
        self._error: BaseException | None = None
        self._early: list[tuple[mpb.Envelope, memoryview]] = []

    # -- connection events -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.on_made is not None:
            self.on_made(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self._error = exc
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_exception(ConnectionLost(f"connection lost: {exc or 'closed'}"))
        self._drain_waiters.clear()
        if self.on_lost is not None:
            self.on_lost(exc)

    def eof_received(self) -> bool:
        return False

    def abort(self, reason: BaseException | None = None) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def peername(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    # -- reading ------------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_filled:]
        if len(self._buf) - self._end < READ_CHUNK // 4:
            self._make_room(READ_CHUNK)
        return memoryview(self._buf)[self._end:]

    def _make_room(self, need: int) -> None:
        """Move unparsed bytes to the front, growing the buffer if a frame needs it."""
        pending = self._end - self._start
        if pending + need > len(self._buf):
            new = bytearray(max(len(self._buf) * 2, pending + need))
            new[:pending] = memoryview(self._buf)[self._start:self._end]
            self._buf = new
        elif self._start:
            self._buf[:pending] = memoryview(self._buf)[self._start:self._end]
        self._start, self._end = 0, pending

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._big is not None:
                self._big_filled += nbytes
                if self._big_filled == len(self._big):
                    env, data = self._big_env, memoryview(self._big)
                    self._big, self._big_env = None, None
                    self._deliver(env, data)
                return
            self._end += nbytes
            self._parse()
        except InvalidArgument as e:
            self._error = e
            self.abort(e)

    def _parse(self) -> None:
        buf = self._buf
        while self._big is None and not self.lost:
            avail = self._end - self._start
            if avail < HEADER.size:
                break
            env_len, data_len = HEADER.unpack_from(buf, self._start)
            if env_len > MAX_ENVELOPE or data_len > MAX_DATA:
                raise InvalidArgument(f"frame too large ({env_len}+{data_len} bytes)")
            body = self._start + HEADER.size
            if self._end - body < env_len:
                if HEADER.size + env_len > len(buf) - self._start:
                    self._make_room(HEADER.size + env_len)
                break
            env = mpb.Envelope()
            try:
                env.ParseFromString(memoryview(buf)[body:body + env_len])
            except Exception as e:  # garbage from the peer
                raise InvalidArgument(f"undecodable envelope: {e}") from None
            data_at = body + env_len
            have = self._end - data_at
            if have >= data_len:
                data = memoryview(bytes(buf[data_at:data_at + data_len])) if data_len \
                    else memoryview(b"")
                self._start = data_at + data_len
                self._deliver(env, data)
                buf = self._buf
                continue
            if data_len >= BIG_DATA:
                big = bytearray(data_len)
                big[:have] = memoryview(buf)[data_at:self._end]
                self._big, self._big_env, self._big_filled = big, env, have
                self._start = self._end = 0
                return
            # a small frame not yet complete: wait for the rest (make room if needed)
            if data_at - self._start + data_len > len(buf) - self._start:
                self._make_room(data_at - self._start + data_len)
            break
        if self._start == self._end:
            self._start = self._end = 0

    def _deliver(self, env: mpb.Envelope, data: memoryview) -> None:
        if self.on_frame is not None:
            self.on_frame(env, data)
        else:  # arrived before the owner attached (e.g. the server's hello)
            self._early.append((env, data))

    def attach(self, on_frame: FrameCallback,
               on_lost: Callable[[BaseException | None], None]) -> None:
        """Route frames to `on_frame`, first the ones that arrived before attaching."""
        self.on_frame, self.on_lost = on_frame, on_lost
        early, self._early = self._early, []
        for env, data in early:
            on_frame(env, data)
        if self.lost:
            on_lost(self._error)

    # -- writing ------------------------------------------------------------------------
    def write_frame(self, env: mpb.Envelope, segments: list) -> None:
        if self.lost:
            raise ConnectionLost(f"connection lost: {self._error or 'closed'}")
        env_bytes = env.SerializeToString()
        size = 0
        for seg in segments:
            size += len(seg)
        self._out.append(HEADER.pack(len(env_bytes), size))
        self._out.append(env_bytes)
        self._out.extend(segments)
        self._out_bytes += HEADER.size + len(env_bytes) + size
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out, self._out_bytes = self._out, [], 0
        if out and not self.lost and self.transport is not None:
            self.transport.writelines(out)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()

    async def drain(self) -> None:
        """Wait while the kernel and our queue hold more than the high-water mark."""
        if self.lost:
            raise ConnectionLost(f"connection lost: {self._error or 'closed'}")
        if self._out_bytes > WRITE_HIGH_WATER:
            self._flush()
        if self._paused:
            fut = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(fut)
            await fut
