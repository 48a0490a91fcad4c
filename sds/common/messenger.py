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
import errno
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message as ProtoMessage

from sds.common import auth, errorlog
from sds.common.errors import (
    AuthError,
    ConnectionLost,
    InvalidArgument,
    SdsError,
    TimedOut,
    from_code,
)
from sds.common.frames import FrameProtocol
from sds.proto import messenger_pb2 as mpb

log = logging.getLogger("sds.messenger")

PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT_S = 10.0
MAX_INSTANCE = 256

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

    def __init__(self, messenger: Messenger, proto: FrameProtocol, addr: str):
        self.messenger = messenger
        self.proto = proto
        self.peer = auth.Peer("")
        self.instance = ""  # the client instance the peer named at set-up; never changes
        self.addr = addr
        self.closed = False
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._ids = itertools.count(1)
        self._handshake: asyncio.Queue = asyncio.Queue()
        self._open = False
        self._handler_tasks: set[asyncio.Task] = set()
        self.on_close: list[Callable[[Connection], None]] = []
        proto.attach(self._on_frame, self._on_lost)

    # -- sending ------------------------------------------------------------------
    def _write(self, env: mpb.Envelope, data: Data | list[Data] | None) -> None:
        if self.closed:
            raise ConnectionLost(f"connection to {self.peer.entity} at {self.addr} is closed")
        self.proto.write_frame(env, _segments(data))

    async def send(self, msg_type: int, payload: Payload = None, data: Data | list[Data] | None = None,
                   epoch: int = 0) -> None:
        """One-way message: no reply expected."""
        self._write(mpb.Envelope(type=msg_type, epoch=epoch, payload=_encode_payload(payload)),
                    data)
        await self.proto.drain()

    async def call(self, msg_type: int, payload: Payload = None, data: Data | list[Data] | None = None,
                   epoch: int = 0, timeout: float | None = 30.0) -> Response:
        """Send a request and wait for its reply; an error reply raises its typed SdsError."""
        req_id = next(self._ids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            self._write(mpb.Envelope(type=msg_type, req_id=req_id, epoch=epoch,
                                     payload=_encode_payload(payload)), data)
            await self.proto.drain()
            timer = None if timeout is None else \
                asyncio.get_running_loop().call_later(timeout, _expire, fut)
            try:
                resp = await fut
            except asyncio.CancelledError:
                if timer is not None and fut.cancelled() and not _cancelled_by_caller(fut):
                    raise TimedOut(
                        f"{mpb.MsgType.Name(msg_type)} to {self.peer.entity} at {self.addr} "
                        f"got no reply in {timeout:g}s") from None
                raise
            finally:
                if timer is not None:
                    timer.cancel()
        finally:
            self._pending.pop(req_id, None)
        if resp.envelope.err:
            raise from_code(resp.envelope.err, resp.envelope.err_msg)
        return resp

    # -- receiving ----------------------------------------------------------------
    def _on_frame(self, env: mpb.Envelope, data: memoryview) -> None:
        if not self._open:
            self._handshake.put_nowait((env, data))
        elif env.reply:
            fut = self._pending.get(env.req_id)
            if fut is not None and not fut.done():
                fut.set_result(Response(env, data))
        else:
            task = asyncio.get_running_loop().create_task(self._dispatch(env, data))
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_tasks.discard)

    async def _next_handshake_frame(self) -> tuple[mpb.Envelope, memoryview]:
        item = await self._handshake.get()
        if item is None:
            raise ConnectionLost("connection closed during the handshake")
        return item

    async def _dispatch(self, env: mpb.Envelope, data: memoryview) -> None:
        handler = self.messenger.handlers.get(env.type)
        try:
            if handler is None:
                raise InvalidArgument(f"{self.messenger.entity} does not handle message type "
                                      f"{env.type}")
            result = await handler(self, env, data)
            if env.req_id and not self.closed:
                payload, out = result if isinstance(result, tuple) else (result, None)
                self._write(mpb.Envelope(type=env.type, req_id=env.req_id, reply=True,
                                         epoch=self.messenger.epoch(),
                                         payload=_encode_payload(payload)), out)
                await self.proto.drain()
        except SdsError as e:
            self._reply_error(env, e.code, str(e))
        except Exception as e:  # a bug in a handler must not kill the connection silently
            bad = errorlog.classify(e)
            if bad is None:
                bad = errno.EIO, self.messenger.errors.internal(
                    f"handler for message type {env.type}", e)
            self._reply_error(env, *bad)

    def _reply_error(self, env: mpb.Envelope, code: int, message: str) -> None:
        if env.req_id and not self.closed:
            with contextlib.suppress(SdsError):
                self._write(mpb.Envelope(type=env.type, req_id=env.req_id, reply=True,
                                         err=code, err_msg=message), None)

    def _on_lost(self, error: BaseException | None) -> None:
        self._shutdown(error)

    def _shutdown(self, error: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._handshake.put_nowait(None)
        exc = ConnectionLost(f"connection to {self.peer.entity or 'peer'} at {self.addr} lost"
                             + (f": {error}" if error and str(error) else ""))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        self.proto.abort()
        for cb in self.on_close:
            with contextlib.suppress(Exception):
                cb(self)
        self.messenger._forget(self)

    async def close(self) -> None:
        self._shutdown(None)
        for task in list(self._handler_tasks):
            task.cancel()


_EXPIRED = "sds-messenger-timeout"


def _expire(fut: asyncio.Future) -> None:
    """Timer callback of Connection.call: cheaper than asyncio.wait_for on the hot path."""
    if not fut.done():
        fut.cancel(msg=_EXPIRED)


def _cancelled_by_caller(fut: asyncio.Future) -> bool:
    try:
        fut.result()
    except asyncio.CancelledError as e:
        return _EXPIRED not in str(e.args[0] if e.args else "")
    return True


def _handshake_frame(msg_type: int, payload: ProtoMessage) -> mpb.Envelope:
    return mpb.Envelope(type=msg_type, payload=payload.SerializeToString())


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
        self.errors = errorlog.ErrorLog(log)
        self.instance = ""  # our client instance, named in each handshake we start
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
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: FrameProtocol(on_made=self._accepted), host, port)
        sock_host, sock_port = self.server.sockets[0].getsockname()[:2]
        self.addr = f"{sock_host}:{sock_port}"
        return self.addr

    def _accepted(self, proto: FrameProtocol) -> None:
        conn = Connection(self, proto, proto.peername())
        task = asyncio.get_running_loop().create_task(self._serve_handshake(conn))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _serve_handshake(self, conn: Connection) -> None:
        try:
            await asyncio.wait_for(self._server_handshake(conn), HANDSHAKE_TIMEOUT_S)
        except (SdsError, TimeoutError) as e:
            log.info("refused connection from %s: %s", conn.addr, e)
            conn.proto.transport.close()
            conn._shutdown(e)
            return
        self._all.add(conn)

    async def _server_handshake(self, conn: Connection) -> None:
        nonce = auth.new_nonce()
        conn.proto.write_frame(_handshake_frame(mpb.HELLO, mpb.Hello(
            entity=self.entity, nonce=nonce, protocol=PROTOCOL_VERSION)), [])
        env, _ = await conn._next_handshake_frame()
        if env.type != mpb.AUTH_REQUEST:
            raise AuthError("expected an authentication request")
        req = mpb.AuthRequest()
        req.ParseFromString(env.payload)
        found = self.key_lookup(req.entity) if self.key_lookup else None
        if found is None or not auth.verify(
                auth.proof(found[0], b"client", nonce, req.client_nonce, req.entity), req.proof):
            conn.proto.write_frame(_handshake_frame(mpb.AUTH_REPLY, mpb.AuthReply(
                ok=False, err=f"authentication failed for {req.entity or '(no name)'}: "
                              "unknown entity or wrong key")), [])
            await asyncio.sleep(0)  # let the refusal leave before the close
            raise AuthError(f"authentication failed for {req.entity!r}")
        key, caps = found
        if len(req.instance) > MAX_INSTANCE or req.instance and \
                not req.instance.startswith(req.entity + "."):  # only one's own instances
            raise AuthError(f"bad client instance for {req.entity}")
        conn.instance = req.instance
        reply = mpb.AuthReply(ok=True, proof=auth.proof(key, b"server", nonce, req.client_nonce,
                                                        req.entity))
        reply.caps.update(caps)
        conn.peer = auth.Peer(req.entity, dict(caps))
        conn._open = True
        conn.proto.write_frame(_handshake_frame(mpb.AUTH_REPLY, reply), [])

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
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(FrameProtocol, host, port), timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectionLost(f"cannot connect to {addr}: {e or 'timed out'}") from None
        conn = Connection(self, proto, addr)
        try:
            await asyncio.wait_for(self._client_handshake(conn), timeout)
        except BaseException as e:
            conn._shutdown(e if isinstance(e, Exception) else None)
            if isinstance(e, TimeoutError):
                raise ConnectionLost(f"handshake with {addr} timed out") from None
            raise
        self._outgoing[addr] = conn
        self._all.add(conn)
        return conn

    async def _client_handshake(self, conn: Connection) -> None:
        env, _ = await conn._next_handshake_frame()
        hello = mpb.Hello()
        hello.ParseFromString(env.payload)
        client_nonce = auth.new_nonce()
        conn.proto.write_frame(_handshake_frame(mpb.AUTH_REQUEST, mpb.AuthRequest(
            entity=self.entity, client_nonce=client_nonce, instance=self.instance,
            proof=auth.proof(self.key, b"client", hello.nonce, client_nonce, self.entity))), [])
        env, _ = await conn._next_handshake_frame()
        reply = mpb.AuthReply()
        reply.ParseFromString(env.payload)
        if not reply.ok:
            raise AuthError(reply.err or "authentication refused")
        expected = auth.proof(self.key, b"server", hello.nonce, client_nonce, self.entity)
        if not auth.verify(expected, reply.proof):
            raise AuthError(f"{hello.entity} could not prove it knows our key")
        conn.peer = auth.Peer(hello.entity)
        conn._open = True

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
