"""The messenger: every internal byte of SDS travels through this module.

Persistent asyncio stream connections carry length-prefixed frames:

    u32 envelope_len | u32 data_len | Envelope (protobuf) | data (raw bytes)

The envelope names the message type and request id, so many requests are in flight on
one connection and replies come back in any order. Bulk data rides after the envelope
and is never re-encoded. Each connection is authenticated at set-up (sds.common.auth);
connections are symmetric: either side may call the other once set up.
Reconnects, timeouts, back-pressure and errno mapping live here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message as ProtoMessage

from sds.common import auth
from sds.common.errors import (
    AuthError,
    ConnectionLost,
    InvalidArgument,
    SdsError,
    TimedOut,
    from_code,
)
from sds.proto import messenger_pb2 as mpb

log = logging.getLogger("sds.messenger")

HEADER = struct.Struct("!II")
MAX_ENVELOPE = 64 << 20
MAX_DATA = 256 << 20
PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT_S = 10.0
WRITE_HIGH_WATER = 8 << 20

MsgType = mpb.MsgType
Data = bytes | bytearray | memoryview
Payload = bytes | ProtoMessage | None


@dataclass
class Response:
    """A reply: its envelope, the raw payload bytes and the raw data that followed."""

    envelope: mpb.Envelope
    data: memoryview

    @property
    def payload(self) -> bytes:
        return self.envelope.payload

    def parse(self, cls: type[ProtoMessage]) -> Any:
        msg = cls()
        msg.ParseFromString(self.envelope.payload)
        return msg


# A handler gets the connection, the request envelope and the raw data; it returns the
# reply payload, or (payload, data), or None for an empty reply. Raising SdsError sends
# its errno back.
HandlerResult = Payload | tuple[Payload, Data | list[Data]]
Handler = Callable[["Connection", mpb.Envelope, memoryview], Awaitable[HandlerResult]]


def _encode_payload(payload: Payload) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, ProtoMessage):
        return payload.SerializeToString()
    return bytes(payload)


def _segments(data: Data | list[Data] | None) -> list[Data]:
    if data is None:
        return []
    if isinstance(data, list):
        return [d for d in data if len(d)]
    return [data] if len(data) else []


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(f"bad address {addr!r}: expected host:port")
    return host.strip("[]"), int(port)


class Connection:
    """One authenticated stream; multiplexes requests in both directions."""

    def __init__(self, messenger: Messenger, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: auth.Peer, addr: str):
        self.messenger = messenger
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.addr = addr
        self.closed = False
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._ids = itertools.count(1)
        self._reader_task: asyncio.Task | None = None
        self._handler_tasks: set[asyncio.Task] = set()
        self.on_close: list[Callable[[Connection], None]] = []

    def start(self) -> None:
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    # -- sending ------------------------------------------------------------------
    def _write_frame(self, env: mpb.Envelope, data: Data | list[Data] | None) -> None:
        if self.closed:
            raise ConnectionLost(f"connection to {self.peer.entity} at {self.addr} is closed")
        env_bytes = env.SerializeToString()
        segs = _segments(data)
        size = sum(len(s) for s in segs)
        self.writer.writelines([HEADER.pack(len(env_bytes), size), env_bytes, *segs])

    async def _drain(self) -> None:
        transport = self.writer.transport
        if transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as e:
                self._shutdown(e)
                raise ConnectionLost(str(e)) from e

    async def send(self, msg_type: int, payload: Payload = None, data: Data | list[Data] | None = None,
                   epoch: int = 0) -> None:
        """One-way message: no reply expected."""
        env = mpb.Envelope(type=msg_type, epoch=epoch, payload=_encode_payload(payload))
        self._write_frame(env, data)
        await self._drain()

    async def call(self, msg_type: int, payload: Payload = None, data: Data | list[Data] | None = None,
                   epoch: int = 0, timeout: float | None = 30.0) -> Response:
        """Send a request and wait for its reply; an error reply raises its typed SdsError."""
        req_id = next(self._ids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            env = mpb.Envelope(type=msg_type, req_id=req_id, epoch=epoch,
                               payload=_encode_payload(payload))
            self._write_frame(env, data)
            await self._drain()
            if timeout is None:
                resp = await fut
            else:
                try:
                    resp = await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    raise TimedOut(
                        f"{mpb.MsgType.Name(msg_type)} to {self.peer.entity} at {self.addr} "
                        f"got no reply in {timeout:g}s") from None
        finally:
            self._pending.pop(req_id, None)
        if resp.envelope.err:
            raise from_code(resp.envelope.err, resp.envelope.err_msg)
        return resp

    async def _reply(self, req: mpb.Envelope, result: HandlerResult, epoch: int) -> None:
        payload, data = result if isinstance(result, tuple) else (result, None)
        env = mpb.Envelope(type=req.type, req_id=req.req_id, reply=True, epoch=epoch,
                           payload=_encode_payload(payload))
        self._write_frame(env, data)
        await self._drain()

    async def _reply_error(self, req: mpb.Envelope, code: int, message: str) -> None:
        env = mpb.Envelope(type=req.type, req_id=req.req_id, reply=True, err=code, err_msg=message)
        self._write_frame(env, None)
        await self._drain()

    # -- receiving ----------------------------------------------------------------
    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                env, data = await read_frame(self.reader)
                if env.reply:
                    fut = self._pending.get(env.req_id)
                    if fut is not None and not fut.done():
                        fut.set_result(Response(env, data))
                else:
                    task = asyncio.get_running_loop().create_task(self._dispatch(env, data))
                    self._handler_tasks.add(task)
                    task.add_done_callback(self._handler_tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            error = e
        except asyncio.CancelledError:
            error = ConnectionLost("connection closed")
        except SdsError as e:
            log.warning("bad frame from %s: %s", self.peer.entity, e)
            error = e
        finally:
            self._shutdown(error)

    async def _dispatch(self, env: mpb.Envelope, data: memoryview) -> None:
        handler = self.messenger.handlers.get(env.type)
        try:
            if handler is None:
                raise InvalidArgument(f"{self.messenger.entity} does not handle "
                                      f"{mpb.MsgType.Name(env.type) if env.type in mpb.MsgType.values() else env.type}")
            result = await handler(self, env, data)
            if env.req_id:
                await self._reply(env, result, self.messenger.epoch())
        except SdsError as e:
            if env.req_id and not self.closed:
                with contextlib.suppress(SdsError):
                    await self._reply_error(env, e.code, str(e))
        except Exception as e:  # a bug in a handler must not kill the connection silently
            log.exception("handler for %s failed", mpb.MsgType.Name(env.type))
            if env.req_id and not self.closed:
                with contextlib.suppress(SdsError):
                    await self._reply_error(env, 5, f"internal error: {type(e).__name__}: {e}")

    def _shutdown(self, error: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        exc = ConnectionLost(f"connection to {self.peer.entity} at {self.addr} lost"
                             + (f": {error}" if error and str(error) else ""))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        with contextlib.suppress(Exception):
            self.writer.close()
        for cb in self.on_close:
            with contextlib.suppress(Exception):
                cb(self)
        self.messenger._forget(self)

    async def close(self) -> None:
        self._shutdown(None)
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
        for task in list(self._handler_tasks):
            task.cancel()


async def read_frame(reader: asyncio.StreamReader) -> tuple[mpb.Envelope, memoryview]:
    header = await reader.readexactly(HEADER.size)
    env_len, data_len = HEADER.unpack(header)
    if env_len > MAX_ENVELOPE or data_len > MAX_DATA:
        raise InvalidArgument(f"frame too large ({env_len}+{data_len} bytes)")
    env = mpb.Envelope()
    env.ParseFromString(await reader.readexactly(env_len))
    data = memoryview(await reader.readexactly(data_len)) if data_len else memoryview(b"")
    return env, data


def _frame(msg_type: int, payload: ProtoMessage) -> list[bytes]:
    env = mpb.Envelope(type=msg_type, payload=payload.SerializeToString()).SerializeToString()
    return [HEADER.pack(len(env), 0), env]


class Messenger:
    """Listens, connects, authenticates and routes messages to registered handlers.

    `key_lookup` answers who may connect to us (entity -> key, caps); a messenger
    without it can only make outgoing connections.
    """

    def __init__(self, entity: str, key: bytes, key_lookup: auth.KeyLookup | None = None,
                 epoch: Callable[[], int] | None = None):
        self.entity = entity
        self.key = key
        self.key_lookup = key_lookup
        self.epoch = epoch or (lambda: 0)
        self.handlers: dict[int, Handler] = {}
        self.server: asyncio.AbstractServer | None = None
        self.addr = ""
        self._outgoing: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Future[Connection]] = {}
        self._all: set[Connection] = set()
        self._handshakes: set[asyncio.Task] = set()

    def register(self, msg_type: int, handler: Handler) -> None:
        self.handlers[msg_type] = handler

    # -- server side --------------------------------------------------------------
    async def listen(self, addr: str) -> str:
        host, port = parse_addr(addr)
        self.server = await asyncio.start_server(self._accept, host, port, limit=1 << 20)
        sock_host, sock_port = self.server.sockets[0].getsockname()[:2]
        self.addr = f"{sock_host}:{sock_port}"
        return self.addr

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handshakes.add(task)
        try:
            peer = await asyncio.wait_for(self._server_handshake(reader, writer), HANDSHAKE_TIMEOUT_S)
        except (AuthError, TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError,
                SdsError) as e:
            log.info("refused connection from %s: %s", writer.get_extra_info("peername"), e)
            writer.close()
            return
        finally:
            if task is not None:
                self._handshakes.discard(task)
        peername = writer.get_extra_info("peername")
        conn = Connection(self, reader, writer, peer, f"{peername[0]}:{peername[1]}")
        self._all.add(conn)
        conn.start()

    async def _server_handshake(self, reader, writer) -> auth.Peer:
        nonce = auth.new_nonce()
        writer.writelines(_frame(mpb.HELLO, mpb.Hello(entity=self.entity, nonce=nonce,
                                                      protocol=PROTOCOL_VERSION)))
        env, _ = await read_frame(reader)
        if env.type != mpb.AUTH_REQUEST:
            raise AuthError("expected an authentication request")
        req = mpb.AuthRequest()
        req.ParseFromString(env.payload)
        found = self.key_lookup(req.entity) if self.key_lookup else None
        if found is None or not auth.verify(
                auth.proof(found[0], b"client", nonce, req.client_nonce, req.entity), req.proof):
            writer.writelines(_frame(mpb.AUTH_REPLY, mpb.AuthReply(
                ok=False, err=f"authentication failed for {req.entity or '(no name)'}: "
                              "unknown entity or wrong key")))
            await writer.drain()
            raise AuthError(f"authentication failed for {req.entity!r}")
        key, caps = found
        reply = mpb.AuthReply(ok=True, proof=auth.proof(key, b"server", nonce, req.client_nonce,
                                                        req.entity))
        reply.caps.update(caps)
        writer.writelines(_frame(mpb.AUTH_REPLY, reply))
        await writer.drain()
        return auth.Peer(req.entity, dict(caps))

    # -- client side --------------------------------------------------------------
    async def connect(self, addr: str, timeout: float = 10.0) -> Connection:
        """A shared, authenticated connection to `addr` (made once, reused)."""
        conn = self._outgoing.get(addr)
        if conn is not None and not conn.closed:
            return conn
        pending = self._connecting.get(addr)
        if pending is None:
            pending = asyncio.get_running_loop().create_task(self._open(addr, timeout))
            self._connecting[addr] = pending
            pending.add_done_callback(lambda f: self._connect_done(addr, f))
        return await asyncio.shield(pending)

    def _connect_done(self, addr: str, fut: asyncio.Future) -> None:
        self._connecting.pop(addr, None)
        if not fut.cancelled():
            fut.exception()  # retrieved here: the waiters that are still there re-raise it

    async def _open(self, addr: str, timeout: float) -> Connection:
        host, port = parse_addr(addr)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=1 << 20), timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectionLost(f"cannot connect to {addr}: {e or 'timed out'}") from None
        try:
            server_entity = await asyncio.wait_for(self._client_handshake(reader, writer), timeout)
        except BaseException as e:
            writer.close()
            if isinstance(e, (TimeoutError, asyncio.IncompleteReadError, ConnectionError)):
                raise ConnectionLost(f"handshake with {addr} failed: {e or 'timed out'}") from None
            raise
        conn = Connection(self, reader, writer, auth.Peer(server_entity), addr)
        self._outgoing[addr] = conn
        self._all.add(conn)
        conn.start()
        return conn

    async def _client_handshake(self, reader, writer) -> str:
        env, _ = await read_frame(reader)
        hello = mpb.Hello()
        hello.ParseFromString(env.payload)
        client_nonce = auth.new_nonce()
        writer.writelines(_frame(mpb.AUTH_REQUEST, mpb.AuthRequest(
            entity=self.entity, client_nonce=client_nonce,
            proof=auth.proof(self.key, b"client", hello.nonce, client_nonce, self.entity))))
        await writer.drain()
        env, _ = await read_frame(reader)
        reply = mpb.AuthReply()
        reply.ParseFromString(env.payload)
        if not reply.ok:
            raise AuthError(reply.err or "authentication refused")
        expected = auth.proof(self.key, b"server", hello.nonce, client_nonce, self.entity)
        if not auth.verify(expected, reply.proof):
            raise AuthError(f"{hello.entity} could not prove it knows our key")
        return hello.entity

    async def call(self, addr: str, msg_type: int, payload: Payload = None,
                   data: Data | list[Data] | None = None, epoch: int = 0,
                   timeout: float | None = 30.0) -> Response:
        conn = await self.connect(addr)
        return await conn.call(msg_type, payload, data, epoch=epoch, timeout=timeout)

    def _forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        if self._outgoing.get(conn.addr) is conn:
            del self._outgoing[conn.addr]

    def drop(self, addr: str) -> None:
        """Close the cached connection to addr (e.g. the peer restarted elsewhere)."""
        conn = self._outgoing.get(addr)
        if conn is not None:
            conn._shutdown(ConnectionLost("dropped"))

    def connections(self) -> Iterable[Connection]:
        return list(self._all)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._handshakes):
            task.cancel()
        for conn in list(self._all):
            await conn.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
