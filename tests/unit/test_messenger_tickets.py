"""The messenger handshake with service tickets, over loopback sockets: a daemon that
holds only its service's rotating secrets takes the peer's identity and caps from the
ticket, refuses expired, forged and misdirected ones, and proves it could open it."""

import asyncio
import errno
import struct
import time

import pytest

from sds.client.tickets import Held
from sds.common import auth, secure, tickets
from sds.common.errors import AuthError, Retry, TicketExpired
from sds.common.messenger import Messenger
from sds.common.options import OPTIONS
from sds.proto import messenger_pb2 as mpb

KEY = b"c" * 32
CAPS = {"mon": "allow r", "osd": "allow rw pool=a"}


class Conf:
    def __init__(self, **over):
        self.over = over

    def get(self, name):
        return self.over.get(name, OPTIONS[name].default)


SECRET_TTL = 86400.0  # SECRETS is made at import: they must outlive a whole test session


def secrets_for(now=None):
    return tickets.rotate([], time.time() if now is None else now, SECRET_TTL)


SECRETS = {"osd": secrets_for(), "mds": secrets_for()}


def held(entity="client.a", caps=CAPS, service="osd", now=None, ttl=60.0, signer=None):
    now = time.time() if now is None else now
    signer = signer or tickets.signing_secret(SECRETS[service], now)
    ticket, sealed = tickets.issue(entity, caps, service, signer, KEY, now, ttl)
    key = tickets.open_session_key(KEY, sealed)
    return Held(ticket, key, min(now + ttl, signer.expires), now)


async def start_server(caps_of=None, **over):
    server = Messenger("osd.0", b"o" * 32, config=Conf(**over),
                       ticket_check=auth.TicketCheck("osd", lambda: SECRETS["osd"], caps_of))

    async def whoami(conn, env, data):
        return f"{conn.peer.entity} {sorted(conn.peer.caps.items())}".encode()

    server.register(mpb.PING, whoami)
    return server, await server.listen("127.0.0.1:0")


def client_with(ticket, entity="client.a", **over):
    async def source(service):
        assert service == "osd"  # the server's hello names its service
        return ticket

    return Messenger(entity, KEY, config=Conf(**over), ticket_source=source)


@pytest.mark.parametrize("mode", ["crc", "secure"])
async def test_a_good_ticket_gives_the_tickets_identity_and_caps(mode):
    server, addr = await start_server(ms_client_mode=mode)
    client = client_with(held())
    try:
        resp = await client.call(addr, mpb.PING)
        assert resp.payload == f"client.a {sorted(CAPS.items())}".encode()
        conn = next(iter(server.connections()))
        assert conn.peer.allows(auth.caps_mod.Need("osd", "w", pool="a"))
        assert not conn.peer.allows(auth.caps_mod.Need("osd", "w", pool="b"))
        assert conn.mode == secure.mode_value(mode)
    finally:
        await client.close()
        await server.close()


async def test_caps_changed_since_the_ticket_win_and_a_removed_entity_is_refused():
    current = {"client.a": {"osd": "allow r"}}
    server, addr = await start_server(caps_of=current.get)
    try:
        client = client_with(held())
        resp = await client.call(addr, mpb.PING)
        assert resp.payload == f"client.a {[('osd', 'allow r')]}".encode()
        await client.close()
        del current["client.a"]   # auth rm: its ticket lives on, but it is refused
        client = client_with(held())
        with pytest.raises(AuthError, match="not in this daemon's auth map"):
            await client.call(addr, mpb.PING)
        await client.close()
    finally:
        await server.close()


async def refused(ticket, entity="client.a"):
    server, addr = await start_server()
    client = client_with(ticket, entity)
    forgotten = []
    client.on_ticket_refused = forgotten.append
    try:
        with pytest.raises(AuthError) as info:
            await client.call(addr, mpb.PING)
        assert not server.connections()
        assert server.auth_failures()  # counted like a wrong key
        return info.value, forgotten
    finally:
        await client.close()
        await server.close()


async def test_an_expired_ticket_is_refused_with_etimedout_and_forgotten():
    error, forgotten = await refused(held(now=time.time() - 120, ttl=30))
    assert isinstance(error, TicketExpired) and error.code == errno.ETIMEDOUT
    assert "expired" in str(error) and forgotten == ["osd"]


async def test_a_ticket_of_secrets_not_received_yet_is_retried_not_counted():
    newer = tickets.RotatingSecret(99, b"n" * 32, time.time() + 120)
    server, addr = await start_server()
    client = client_with(held(signer=newer))
    try:
        with pytest.raises(Retry, match="not received yet"):
            await client.call(addr, mpb.PING)
        assert not server.auth_failures()
    finally:
        await client.close()
        await server.close()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.mark.parametrize("case", ["signature", "caps", "other service", "unknown secret",
                                  "other entity", "no session key"])
async def test_forged_or_misdirected_tickets_are_refused(case):
    good = held()
    if case == "signature":
        bad = Held(_flip(good.ticket, len(good.ticket) - 1), good.session_key, good.expires, 0)
    elif case == "caps":  # widen the caps in the signed body
        body = good.ticket.replace(b"allow rw pool=a", b"allow rwx      ")
        bad = Held(body, good.session_key, good.expires, 0)
    elif case == "other service":
        bad = held(service="mds")
    elif case == "unknown secret":
        bad = held(signer=secrets_for()[0])
    elif case == "other entity":  # a ticket of client.a shown by client.b
        bad = good
    else:  # a stolen ticket without its session key
        bad = Held(good.ticket, b"x" * 32, good.expires, 0)
    error, forgotten = await refused(bad, "client.b" if case == "other entity" else "client.a")
    assert not isinstance(error, TicketExpired) and error.code == errno.EPERM
    assert forgotten == []


async def test_a_ticket_service_refuses_entity_keys():
    server, addr = await start_server()
    client = Messenger("client.a", KEY)  # no ticket source: shows its key
    try:
        with pytest.raises(AuthError, match="takes tickets only"):
            await client.call(addr, mpb.PING)
    finally:
        await client.close()
        await server.close()


async def test_a_server_that_cannot_open_the_ticket_is_not_believed():
    """A fake OSD (no osd secrets) accepts anything: the client sees its proof fail."""
    frame = struct.Struct("!II")

    def send(writer, msg_type, payload):
        env = mpb.Envelope(type=msg_type, payload=payload.SerializeToString()).SerializeToString()
        writer.write(frame.pack(len(env), 0) + env)

    async def fake(reader, writer):
        send(writer, mpb.HELLO, mpb.Hello(entity="osd.0", nonce=b"n" * 16, protocol=1,
                                          service="osd"))
        env_len, _ = frame.unpack(await reader.readexactly(8))
        await reader.readexactly(env_len)
        send(writer, mpb.AUTH_REPLY, mpb.AuthReply(ok=True, proof=b"p" * 32))
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(fake, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = client_with(held())
    try:
        with pytest.raises(AuthError, match="could not open our osd ticket"):
            await client.connect(f"127.0.0.1:{port}")
    finally:
        await client.close()
        server.close()
