"""The messenger: every internal byte of SDS travels through this module.

Persistent asyncio stream connections carry length-prefixed frames:

    u32 envelope_len | u32 data_len | Envelope (protobuf) | data (raw bytes)

The envelope names the message type and request id, so many requests are in flight on
one connection and replies come back in any order. Bulk data rides after the envelope
and is never re-encoded. Each connection is authenticated at set-up (sds.common.auth:
an entity key with the mons, a service ticket with OSDs, MDSs and the mgr);
connections are symmetric: either side may call the other once set up.
Reconnects, timeouts, back-pressure and error mapping (errno and kind) live here once.

Against hostile peers: frame limits (sds.common.frames) before and after
authentication, connection limits per peer address and in total, failed
authentications backed off and banned (sds.common.ratelimit), every refusal logged
once per interval with peer strings clipped. Secure mode (ms_mon_mode,
ms_cluster_mode, ms_client_mode: the stricter side wins) encrypts every frame after
the handshake (sds.common.secure).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message as ProtoMessage

from sds.common import auth, errorlog, secure, tickets
from sds.common.errors import (
    AuthError,
    ConnectionLost,
    InternalError,
    InvalidArgument,
    Retry,
    SdsError,
    TicketExpired,
    TimedOut,
    from_wire,
)
from sds.common.frames import FrameLimits, FrameProtocol
from sds.common.options import OPTIONS
from sds.common.ratelimit import AuthThrottle, SummaryLog, clip
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
        self.inbound = False      # accepted by our listener (counted against its limits)
        self.mode = secure.CRC
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
            raise from_wire(resp.envelope.err, resp.envelope.err_kind, resp.envelope.err_msg)
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
            self._reply_error(env, e)
        except Exception as e:  # a bug in a handler must not kill the connection silently
            bad = errorlog.classify(e)
            self._reply_error(env, InternalError(self.messenger.errors.internal(
                f"handler for message type {env.type}", e)) if bad is None
                else InvalidArgument(bad[1]))

    def _reply_error(self, env: mpb.Envelope, error: SdsError) -> None:
        if env.req_id and not self.closed:
            with contextlib.suppress(SdsError):
                self._write(mpb.Envelope(type=env.type, req_id=env.req_id, reply=True,
                                         err=error.code, err_kind=error.kind,
                                         err_msg=str(error)), None)

    def _on_lost(self, error: BaseException | None) -> None:
        self._shutdown(error)

    def _shutdown(self, error: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        if self._open and self.proto.refused:
            why = self.proto.refused
            self.messenger._refused(
                ("frame", _host(self.addr), re.sub(r"\d+", "N", why)[:80]),
                f"dropped connection to {clip(self.peer.entity)} at {self.addr}: {why}")
        while not self._handshake.empty():
            self._handshake.get_nowait()
        self._handshake.put_nowait(None)
        exc = ConnectionLost(f"connection to {self.peer.entity or 'peer'} at {self.addr} lost"
                             + (f": {error}" if error and str(error) else ""))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        self.proto.abort()
        callbacks, self.on_close = self.on_close, []
        for cb in callbacks:
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


def _instance_tag(instance: str) -> bytes:
    """The client's proof covers the instance it names, so no one on the path can swap it."""
    return b"|instance=" + instance.encode()[:MAX_INSTANCE + 1]


def _mode_tag(mode: int) -> bytes:
    """What the server's proof adds for a mode, so a man in the middle cannot downgrade it."""
    return b"|secure" if mode == secure.SECURE else b""


def _handshake_frame(msg_type: int, payload: ProtoMessage) -> mpb.Envelope:
    return mpb.Envelope(type=msg_type, payload=payload.SerializeToString())


DAEMON_ROLES = ("mon", "osd", "mds", "mgr")


def _is_daemon(entity: str) -> bool:
    """Transport policy only (which ms_*_mode applies), never a permission."""
    return entity.split(".", 1)[0] in DAEMON_ROLES


def _host(addr: str) -> str:
    return addr.rpartition(":")[0] or addr


class MessengerOptions:
    """The ms_* options a messenger reads once (sds.common.options for their meaning)."""

    def __init__(self, config: Any = None):
        def get(name: str) -> Any:
            return config.get(name) if config is not None else OPTIONS[name].default

        write = get("osd_max_write_size")
        self.limits = FrameLimits(
            handshake=get("ms_handshake_max_bytes"), envelope=get("ms_max_envelope_bytes"),
            data=get("ms_max_frame_bytes"),
            request_data={mpb.OSD_OP: (write, "osd_max_write_size"),
                          mpb.OSD_REPOP: (write, "osd_max_write_size")})
        self.max_connections = get("ms_max_connections")
        self.max_per_peer = get("ms_max_connections_per_peer")
        self.max_handshakes_per_peer = get("ms_max_handshakes_per_peer")
        self.fail_window = get("ms_auth_fail_window")
        self.ban_after = get("ms_auth_fail_ban_after")
        self.ban_s = get("ms_auth_fail_ban_time")
        self.modes = {name: secure.mode_value(get(f"ms_{name}_mode"))
                      for name in ("mon", "cluster", "client")}

    def mode_for(self, local: str, remote: str) -> int:
        """The least mode this side accepts on a connection between the two entities."""
        if local == "mon." or remote == "mon." or local.startswith("mon.") \
                or remote.startswith("mon."):
            return self.modes["mon"]
        both_daemons = _is_daemon(local) and _is_daemon(remote)
        return self.modes["cluster" if both_daemons else "client"]


class Messenger:
    """Listens, connects, authenticates and routes messages to registered handlers.

    `key_lookup` answers who may connect to us with an entity key (entity -> key, caps):
    the mons. `ticket_check` lets peers connect with tickets for our service instead
    (OSD, MDS, mgr, which hold no entity keys). A messenger with neither can only make
    outgoing connections; on those, `ticket_source` supplies the ticket to show a
    service (the mons are always shown our key). `config` supplies the ms_* limits
    and modes (defaults without it).
    """

    def __init__(self, entity: str, key: bytes, key_lookup: auth.KeyLookup | None = None,
                 epoch: Callable[[], int] | None = None, config: Any = None,
                 ticket_check: auth.TicketCheck | None = None,
                 ticket_source: auth.TicketSource | None = None):
        self.entity = entity
        self.key = key
        self.key_lookup = key_lookup
        self.ticket_check = ticket_check
        self.ticket_source = ticket_source
        self.on_ticket_refused: Callable[[str], None] | None = None  # service -> forget it
        self.epoch = epoch or (lambda: 0)
        self.options = MessengerOptions(config)
        self.handlers: dict[int, Handler] = {}
        self.errors = errorlog.ErrorLog(log)
        self.instance = ""  # our client instance, named in each handshake we start
        self.server: asyncio.AbstractServer | None = None
        self.addr = ""
        self._outgoing: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Future[Connection]] = {}
        self._all: set[Connection] = set()
        self._handshakes: set[asyncio.Task] = set()
        self._inbound: dict[str, int] = {}        # peer host -> accepted connections
        self._inbound_total = 0
        self._authenticating: dict[str, int] = {}  # peer host -> handshakes under way
        self.refusals = SummaryLog(log, self.options.fail_window)
        self.auth_throttle = AuthThrottle(
            log, window=self.options.fail_window, ban_after=self.options.ban_after,
            ban_s=self.options.ban_s)
        self._auth_report: asyncio.TimerHandle | None = None
        self._refusal_flush: asyncio.TimerHandle | None = None

    def register(self, msg_type: int, handler: Handler) -> None:
        self.handlers[msg_type] = handler

    def auth_failures(self) -> dict[str, int]:
        """Failed authentications per peer address in the last ms_auth_fail_window s."""
        return self.auth_throttle.recent()

    # -- server side --------------------------------------------------------------
    async def listen(self, addr: str) -> str:
        host, port = parse_addr(addr)
        loop = asyncio.get_running_loop()
        limits = self.options.limits
        self.server = await loop.create_server(
            lambda: FrameProtocol(on_made=self._accepted, limits=limits), host, port)
        sock_host, sock_port = self.server.sockets[0].getsockname()[:2]
        self.addr = f"{sock_host}:{sock_port}"
        return self.addr

    def _accepted(self, proto: FrameProtocol) -> None:
        addr = proto.peername()
        host = _host(addr)
        opts = self.options
        why = None
        if self._inbound_total >= opts.max_connections:
            why = f"{self._inbound_total} connections (ms_max_connections)"
        elif self._inbound.get(host, 0) >= opts.max_per_peer:
            why = f"{self._inbound[host]} connections from it (ms_max_connections_per_peer)"
        elif self._authenticating.get(host, 0) >= opts.max_handshakes_per_peer:
            why = (f"{self._authenticating[host]} handshakes from it under way "
                   "(ms_max_handshakes_per_peer)")
        if why is not None:
            self._refused(("limit", host), f"refused connection from {addr}: {why}")
            proto.abort()
            return
        self._inbound[host] = self._inbound.get(host, 0) + 1
        self._inbound_total += 1
        self._authenticating[host] = self._authenticating.get(host, 0) + 1
        conn = Connection(self, proto, addr)
        conn.inbound = True
        task = asyncio.get_running_loop().create_task(self._serve_handshake(conn, host))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _serve_handshake(self, conn: Connection, host: str) -> None:
        try:
            await asyncio.wait_for(self._server_handshake(conn, host), HANDSHAKE_TIMEOUT_S)
        except (SdsError, TimeoutError) as e:
            if not isinstance(e, AuthError):  # failed proofs are summarised by the throttle
                why = conn.proto.refused or str(e) or "handshake timed out"
                self._refused(("handshake", host, re.sub(r"\d+", "N", why)[:80]),
                              f"refused connection from {conn.addr}: {why}")
            conn._shutdown(e)
            return
        finally:
            left = self._authenticating.get(host, 1) - 1
            if left:
                self._authenticating[host] = left
            else:
                self._authenticating.pop(host, None)
        if not conn.closed:
            self._all.add(conn)

    async def _server_handshake(self, conn: Connection, host: str) -> None:
        nonce = auth.new_nonce()
        conn.proto.write_frame(_handshake_frame(mpb.HELLO, mpb.Hello(
            entity=self.entity, nonce=nonce, protocol=PROTOCOL_VERSION,
            service=self.ticket_check.service if self.ticket_check else "")), [])
        env, _ = await conn._next_handshake_frame()
        if env.type != mpb.AUTH_REQUEST:
            raise InvalidArgument("expected an authentication request")
        req = mpb.AuthRequest()
        try:
            req.ParseFromString(env.payload)
        except Exception:
            raise InvalidArgument("undecodable authentication request") from None
        throttle = self.auth_throttle
        who = req.entity[:256]   # what the throttle keys on: bounded, whatever was sent
        banned = throttle.banned(host, who)
        try:
            if banned:
                raise AuthError("temporarily banned after repeated failures")
            entity, key, caps = self._check_credentials(req, nonce)
        except AuthError as e:
            # a ticket signed with secrets not received yet guessed nothing: not a failure
            delay = throttle.failed(host, who) if e.code != errno.EAGAIN else 0
            self._schedule_auth_report()
            if delay:
                await asyncio.sleep(delay)
            conn.proto.write_frame(_handshake_frame(mpb.AUTH_REPLY, mpb.AuthReply(
                ok=False, code=e.code,
                err=f"authentication failed for {clip(req.entity) or '(no name)'}: {e}")), [])
            await asyncio.sleep(0)  # let the refusal leave before the close
            raise AuthError(f"authentication failed for {clip(req.entity)}") from None
        if len(req.instance) > MAX_INSTANCE or req.instance and \
                not req.instance.startswith(entity + "."):  # only one's own instances
            raise AuthError(f"bad client instance for {clip(entity)}")
        conn.instance = req.instance
        mode = max(req.mode, self.options.mode_for(self.entity, entity))
        reply = mpb.AuthReply(ok=True, mode=mode, proof=auth.proof(
            key, b"server", nonce, req.client_nonce, entity, _mode_tag(mode)))
        reply.caps.update(caps)
        conn.peer = auth.Peer(entity, dict(caps))
        conn.mode = mode
        conn.proto.write_frame(_handshake_frame(mpb.AUTH_REPLY, reply), [])
        conn._open = True
        conn.proto.authenticate(secure.SecureSession.derive(
            key, nonce, req.client_nonce, entity, is_client=False)
            if mode == secure.SECURE else None)

    def _check_credentials(self, req: mpb.AuthRequest,
                           nonce: bytes) -> tuple[str, bytes, dict[str, str]]:
        """(entity, shared secret, caps) of a request whose proof holds; AuthError saying
        why not otherwise (never whether an entity exists: both read "wrong key")."""
        if req.ticket:
            check = self.ticket_check
            if check is None:
                raise AuthError("this daemon verifies entity keys, not tickets")
            held = tickets.verify(bytes(req.ticket), check.service, check.secrets(),
                                  time.time())
            entity, key, caps = held.entity, held.session_key, held.caps
            current = check.caps_of(entity) if check.caps_of is not None else caps
            if current is None:
                raise AuthError(f"{clip(entity)} is not in this daemon's auth map (removed, or "
                                "created a moment ago: retry)")
            caps = dict(current)
        else:
            found = self.key_lookup(req.entity) if self.key_lookup is not None else None
            if found is None and self.ticket_check is not None and self.key_lookup is None:
                raise AuthError(f"the {self.ticket_check.service} service takes tickets only: "
                                "get one from the monitors (auth get-ticket)")
            if found is None:
                raise AuthError("unknown entity or wrong key")
            entity, (key, caps) = req.entity, found
        if not auth.verify(auth.proof(key, b"client", nonce, req.client_nonce, entity,
                                      _instance_tag(req.instance)), req.proof):
            raise AuthError("wrong session key for the ticket" if req.ticket else
                            "unknown entity or wrong key")
        return entity, key, dict(caps)

    def _refused(self, key: tuple, text: str) -> None:
        """Log a refusal at most once per key and ms_auth_fail_window (then a summary)."""
        self.refusals.event(key, text)
        if self._refusal_flush is None:
            self._refusal_flush = asyncio.get_running_loop().call_later(
                self.options.fail_window, self._flush_refusals)

    def _flush_refusals(self) -> None:
        self._refusal_flush = None
        self.refusals.flush()

    def _schedule_auth_report(self) -> None:
        if self._auth_report is None:
            self._auth_report = asyncio.get_running_loop().call_later(
                self.options.fail_window, self._report_auth_failures)

    def _report_auth_failures(self) -> None:
        self._auth_report = None
        if self.auth_throttle.report_due():
            self._schedule_auth_report()

    # -- client side --------------------------------------------------------------
    async def connect(self, addr: str, timeout: float = 10.0) -> Connection:
        """A shared, authenticated connection to `addr` (made once, reused)."""
        conn = self._outgoing.get(addr)
        if conn is not None and not conn.closed:
            return conn
        pending = self._connecting.get(addr)
        if pending is None:
            pending = asyncio.get_running_loop().create_task(self._open_patiently(addr, timeout))
            self._connecting[addr] = pending
            pending.add_done_callback(lambda f: self._connect_done(addr, f))
        return await asyncio.shield(pending)

    async def _open_patiently(self, addr: str, timeout: float) -> Connection:
        """`_open`, again while the service answers Retry: just after the mons rotate their
        secrets a daemon may not have received the one our new ticket is signed with."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = 0.1
        while True:
            try:
                return await self._open(addr, max(0.1, deadline - loop.time()))
            except Retry:
                if loop.time() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _connect_done(self, addr: str, fut: asyncio.Future) -> None:
        self._connecting.pop(addr, None)
        if not fut.cancelled():
            fut.exception()  # retrieved here: the waiters that are still there re-raise it

    async def _open(self, addr: str, timeout: float) -> Connection:
        host, port = parse_addr(addr)
        loop = asyncio.get_running_loop()
        limits = self.options.limits
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: FrameProtocol(limits=limits), host, port),
                timeout)
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
        if env.type != mpb.HELLO:
            raise AuthError(f"{conn.addr} did not greet us with a hello")
        hello = mpb.Hello()
        hello.ParseFromString(env.payload)
        client_nonce = auth.new_nonce()
        want = self.options.mode_for(self.entity, hello.entity)
        held = None
        if hello.service and self.ticket_source is not None:
            held = await self.ticket_source(hello.service)
        key = held.session_key if held is not None else self.key
        conn.proto.write_frame(_handshake_frame(mpb.AUTH_REQUEST, mpb.AuthRequest(
            entity=self.entity, client_nonce=client_nonce, mode=want, instance=self.instance,
            ticket=held.ticket if held is not None else b"",
            proof=auth.proof(key, b"client", hello.nonce, client_nonce, self.entity,
                             _instance_tag(self.instance)))), [])
        conn.proto.release_hold()
        env, _ = await conn._next_handshake_frame()
        if env.type != mpb.AUTH_REPLY:
            raise AuthError(f"{conn.addr} did not answer our authentication request")
        reply = mpb.AuthReply()
        reply.ParseFromString(env.payload)
        if not reply.ok:
            why = clip(reply.err, 200) or "authentication refused"
            if held is not None and reply.code == errno.ETIMEDOUT:
                if self.on_ticket_refused is not None:
                    self.on_ticket_refused(hello.service)
                raise TicketExpired(why)
            if held is not None and reply.code == errno.EAGAIN:
                raise Retry(why)  # the service has not received the newest secrets yet
            raise AuthError(why)
        expected = auth.proof(key, b"server", hello.nonce, client_nonce, self.entity,
                              _mode_tag(reply.mode))
        if not auth.verify(expected, reply.proof):
            raise AuthError(f"{clip(hello.entity)} could not prove it knows our key"
                            if held is None else
                            f"{clip(hello.entity)} could not open our {hello.service} ticket")
        if reply.mode < want or reply.mode > secure.SECURE:
            raise AuthError(f"{clip(hello.entity)} offered mode {reply.mode}; we require "
                            f"{secure.MODES[want]}")
        conn.peer = auth.Peer(hello.entity)
        conn.mode = reply.mode
        conn._open = True
        conn.proto.authenticate(secure.SecureSession.derive(
            key, hello.nonce, client_nonce, self.entity, is_client=True)
            if reply.mode == secure.SECURE else None)

    async def call(self, addr: str, msg_type: int, payload: Payload = None,
                   data: Data | list[Data] | None = None, epoch: int = 0,
                   timeout: float | None = 30.0) -> Response:
        conn = await self.connect(addr)
        return await conn.call(msg_type, payload, data, epoch=epoch, timeout=timeout)

    def _forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        if conn.inbound:
            conn.inbound = False
            host = _host(conn.addr)
            left = self._inbound.get(host, 1) - 1
            if left:
                self._inbound[host] = left
            else:
                self._inbound.pop(host, None)
            self._inbound_total -= 1
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
        for timer in (self._auth_report, self._refusal_flush):
            if timer is not None:
                timer.cancel()
        self._auth_report = self._refusal_flush = None
        for task in list(self._handshakes):
            task.cancel()
        for conn in list(self._all):
            await conn.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
