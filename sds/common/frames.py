"""Frame transport for the messenger: an asyncio BufferedProtocol.

Frame = u32 envelope_len | u32 data_len | Envelope (protobuf) | data (raw bytes).
In secure mode both parts are AES-GCM records (sds.common.secure).

Why a protocol and not streams: the socket reads straight into our buffer, and the data
section of a large frame is received straight into its own bytearray (no StreamReader
copy, no memmove of the rest of the buffer), and frames written within one event-loop
iteration leave in one writev (many small replies, one syscall).

Hostile peers: every length is checked against FrameLimits from the 8-byte header
before anything is allocated for it (and the data length again against the message
type once the envelope is read); buffers grow only as bytes actually arrive, so a
peer makes us hold at most about twice what it really sent. Before authentication
only handshake-sized frames are accepted, one at a time: after each the protocol
stops reading until the handshake has dealt with it (and possibly switched limits
and keys), so no frame is ever parsed under the wrong rules.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from sds.common.errors import ConnectionLost, InvalidArgument
from sds.common.secure import TAG, SecureSession
from sds.proto import messenger_pb2 as mpb

HEADER = struct.Struct("!II")
HANDSHAKE_BUF = 8 << 10   # the whole receive buffer of a connection before authentication
READ_CHUNK = 256 << 10    # and after it
MIN_FREE = 16 << 10       # grow or compact the buffer when less than this is free
BIG_DATA = 64 << 10       # data sections at least this large get their own buffer
BIG_FIRST = 1 << 20       # a big data buffer starts this large (or smaller) and doubles
WRITE_HIGH_WATER = 8 << 20

FrameCallback = Callable[[mpb.Envelope, memoryview], None]


@dataclass(frozen=True)
class FrameLimits:
    """What a peer may send; all sizes are plaintext bytes (tags excluded)."""

    handshake: int = 4096              # envelope before authentication; no data at all
    envelope: int = 64 << 20           # ms_max_envelope_bytes
    data: int = 1 << 30                # ms_max_frame_bytes
    # message type -> (limit of its data section in requests, option that sets it)
    request_data: dict[int, tuple[int, str]] = field(default_factory=dict)

    def check_header(self, authenticated: bool, env_len: int, data_len: int) -> None:
        if not authenticated:
            if env_len > self.handshake or data_len:
                raise InvalidArgument(
                    f"frame of {env_len}+{data_len} bytes before authentication (the limit is "
                    f"{self.handshake}+0, ms_handshake_max_bytes)")
            return
        if env_len > self.envelope:
            raise InvalidArgument(f"envelope of {env_len} bytes is over ms_max_envelope_bytes "
                                  f"({self.envelope})")
        if data_len > self.data:
            raise InvalidArgument(f"data of {data_len} bytes is over ms_max_frame_bytes "
                                  f"({self.data})")

    def check_data(self, env: mpb.Envelope, data_len: int) -> None:
        if env.reply:
            return
        limit = self.request_data.get(env.type)
        if limit is not None and data_len > limit[0]:
            raise InvalidArgument(f"{mpb.MsgType.Name(env.type)} request with {data_len} bytes "
                                  f"of data is over {limit[1]} ({limit[0]})")


def _grow(buf: bytearray, filled: int, size: int) -> bytearray:
    """`buf` enlarged to `size` keeping its first `filled` bytes (in place when possible)."""
    try:
        buf.extend(bytes(size - len(buf)))
        return buf
    except BufferError:  # someone still holds a view of it: copy instead
        new = bytearray(size)
        new[:filled] = memoryview(buf)[:filled]
        return new


class FrameProtocol(asyncio.BufferedProtocol):
    def __init__(self, on_made: Callable[[FrameProtocol], None] | None = None,
                 limits: FrameLimits | None = None):
        self.on_made = on_made
        self.limits = limits or FrameLimits()
        self.on_frame: FrameCallback | None = None
        self.on_lost: Callable[[BaseException | None], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.authenticated = False
        self.session: SecureSession | None = None
        self.refused: str | None = None     # why we dropped the peer, if we did
        self._held = False
        self._buf = bytearray(HANDSHAKE_BUF)
        self._start = 0
        self._end = 0
        self._need = 0                      # bytes from _start the current frame needs
        self._env: mpb.Envelope | None = None   # envelope of the frame at _start, once read
        self._big: bytearray | None = None
        self._big_env: mpb.Envelope | None = None
        self._big_len = 0
        self._big_filled = 0
        self._big_header = b""
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
        if self._error is None and exc is not None:
            self._error = exc.with_traceback(None)
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_exception(ConnectionLost(f"connection lost: {self._error or 'closed'}"))
        self._drain_waiters.clear()
        on_lost = self.on_lost
        self._release()
        if on_lost is not None:
            on_lost(self._error)

    def _release(self) -> None:
        """Drop every buffer and callback now: nothing of a closed connection lingers."""
        self._buf = bytearray()
        self._start = self._end = 0
        self._big = self._big_env = self._env = None
        self._out.clear()
        self._early.clear()
        self.session = None
        self.on_frame = self.on_lost = self.on_made = None

    def eof_received(self) -> bool:
        return False

    def abort(self, reason: BaseException | None = None) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def peername(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    # -- the handshake's lock-step -----------------------------------------------------
    def release_hold(self) -> None:
        """The handshake has dealt with the last frame: read the next one."""
        if not self._held or self.lost:
            return
        self._held = False
        if self.transport is not None:
            self.transport.resume_reading()
        self._run(self._parse)

    def authenticate(self, session: SecureSession | None) -> None:
        """Switch to post-authentication limits (and secure mode when `session` is set).

        Called after the last plaintext handshake frame was written and read, so every
        later frame in both directions is under the new rules.
        """
        self.authenticated = True
        self.session = session
        if len(self._buf) < READ_CHUNK:
            pending = self._end - self._start
            new = bytearray(READ_CHUNK)
            new[:pending] = memoryview(self._buf)[self._start:self._end]
            self._buf, self._start, self._end = new, 0, pending
        self.release_hold()

    # -- reading ------------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            if self._big_filled == len(self._big):
                self._big = _grow(self._big, self._big_filled,
                                  min(self._big_len, 2 * len(self._big)))
            return memoryview(self._big)[self._big_filled:]
        if len(self._buf) - self._end < min(MIN_FREE, len(self._buf) // 4):
            self._make_room()
        return memoryview(self._buf)[self._end:]

    def _make_room(self) -> None:
        """Move unparsed bytes to the front; grow (doubling) only if they fill the buffer."""
        pending = self._end - self._start
        size = len(self._buf)
        if size - pending < MIN_FREE and self.authenticated:
            size = max(2 * size, READ_CHUNK)
            if self._need > pending:
                size = min(size, max(self._need, pending + MIN_FREE))
        if size != len(self._buf):
            new = bytearray(size)
            new[:pending] = memoryview(self._buf)[self._start:self._end]
            self._buf = new
        elif self._start:
            self._buf[:pending] = memoryview(self._buf)[self._start:self._end]
        self._start, self._end = 0, pending
        if self._end == len(self._buf):  # only before authentication: it sent ahead
            raise InvalidArgument("peer sent more than a handshake before authenticating")

    def buffer_updated(self, nbytes: int) -> None:
        if self._big is not None:
            self._big_filled += nbytes
            if self._big_filled == self._big_len:
                self._run(self._finish_big)
            return
        self._end += nbytes
        self._run(self._parse)

    def _run(self, step: Callable[[], None]) -> None:
        """Run a parsing step; a refused or undecodable frame drops the connection."""
        try:
            step()
        except InvalidArgument as e:
            self.refused = str(e)
            e.__traceback__ = e.__context__ = e.__cause__ = None  # no frames kept alive
            self._error = e
            self.abort(e)

    def _finish_big(self) -> None:
        env, data, header = self._big_env, memoryview(self._big), self._big_header
        self._big = self._big_env = None
        if self.session is not None:
            data = memoryview(self.session.open(data, header))
        self._deliver(env, data)
        self._parse()

    def _parse(self) -> None:
        while self._big is None and not self._held and not self.lost:
            buf = self._buf
            if self._end - self._start < HEADER.size:
                self._need = HEADER.size
                break
            env_len, data_len = HEADER.unpack_from(buf, self._start)
            sealed = self.session is not None
            if sealed:
                if env_len < TAG or 0 < data_len < TAG:
                    raise InvalidArgument(f"secure frame of {env_len}+{data_len} bytes is "
                                          "shorter than its tags")
                plain_env, plain_data = env_len - TAG, max(data_len - TAG, 0)
            else:
                plain_env, plain_data = env_len, data_len
            if self._env is None:
                self.limits.check_header(self.authenticated, plain_env, plain_data)
            body = self._start + HEADER.size
            data_at = body + env_len
            header = bytes(buf[self._start:body]) if sealed else b""
            if self._env is None:
                if self._end < data_at:
                    self._need = HEADER.size + env_len
                    break
                raw = memoryview(buf)[body:data_at]
                if sealed:
                    raw = self.session.open(raw, header)
                env = mpb.Envelope()
                try:
                    env.ParseFromString(raw)
                except Exception as e:  # garbage from the peer
                    raise InvalidArgument(f"undecodable envelope: {type(e).__name__}") from None
                self.limits.check_data(env, plain_data)
                self._env = env
            env = self._env
            have = self._end - data_at
            if have >= data_len:
                self._env = None
                self._start = data_at + data_len
                if not data_len:
                    data = memoryview(b"")
                elif sealed:
                    data = memoryview(self.session.open(memoryview(buf)[data_at:self._start],
                                                        header))
                else:
                    data = memoryview(bytes(memoryview(buf)[data_at:self._start]))
                self._deliver(env, data)
                continue
            if data_len >= BIG_DATA:
                big = bytearray(min(data_len, max(have, BIG_FIRST)))
                big[:have] = memoryview(buf)[data_at:self._end]
                self._big_header = header
                self._big, self._big_env, self._big_len, self._big_filled = \
                    big, env, data_len, have
                self._env = None
                self._start = self._end = 0
                self._need = 0
                return
            self._need = data_at - self._start + data_len
            break
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buf) > READ_CHUNK and not self._big:
                self._buf = bytearray(READ_CHUNK)  # a large envelope passed: shrink back

    def _deliver(self, env: mpb.Envelope, data: memoryview) -> None:
        if not self.authenticated:
            self._held = True   # wait for the handshake to take this one in
            if self.transport is not None:
                self.transport.pause_reading()
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
        if self.authenticated:  # what the peer would refuse fails here, early and clearly
            self.limits.check_header(True, len(env_bytes), size)
            self.limits.check_data(env, size)
        if self.session is not None:
            sealed = self.session.seal(env_bytes, segments, size)
            self._out.extend(sealed)
            self._out_bytes += HEADER.size + len(env_bytes) + size + 2 * TAG
        else:
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
