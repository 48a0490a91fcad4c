"""The messenger over real loopback sockets: auth, multiplexing, errors, bulk data."""

import asyncio

import pytest

from sds.common.errors import AuthError, ConnectionLost, NotFound, TimedOut
from sds.common.messenger import Messenger
from sds.proto import messenger_pb2 as mpb

KEYS = {"client.admin": b"k" * 32, "osd.0": b"o" * 32}


def lookup(entity):
    return (KEYS[entity], {"osd": "allow *"}) if entity in KEYS else None


async def start_server():
    server = Messenger("osd.0", KEYS["osd.0"], key_lookup=lookup)

    async def echo(conn, env, data):
        return env.payload, bytes(data)

    async def fail(conn, env, data):
        raise NotFound("no such object")

    async def slow(conn, env, data):
        await asyncio.sleep(float(env.payload.decode()))
        return env.payload

    async def whoami(conn, env, data):
        return conn.peer.entity.encode() + b" " + conn.peer.caps.get("osd", "").encode()

    server.register(mpb.PING, echo)
    server.register(mpb.OSD_OP, fail)
    server.register(mpb.OSD_REPOP, slow)
    server.register(mpb.MON_COMMAND, whoami)
    addr = await server.listen("127.0.0.1:0")
    return server, addr


async def test_echo_with_bulk_data_and_identity():
    server, addr = await start_server()
    client = Messenger("client.admin", KEYS["client.admin"])
    try:
        blob = bytes(range(256)) * 16384  # 4 MiB
        resp = await client.call(addr, mpb.PING, b"hi", data=blob)
        assert resp.payload == b"hi"
        assert bytes(resp.data) == blob
        resp = await client.call(addr, mpb.MON_COMMAND)
        assert resp.payload == b"client.admin allow *"
        conn = await client.connect(addr)
        assert conn.peer.entity == "osd.0"
    finally:
        await client.close()
        await server.close()


async def test_many_requests_in_flight_complete_out_of_order():
    server, addr = await start_server()
    client = Messenger("client.admin", KEYS["client.admin"])
    try:
        delays = [0.2, 0.0, 0.1, 0.05] * 10
        results = await asyncio.gather(
            *(client.call(addr, mpb.OSD_REPOP, str(d).encode()) for d in delays))
        assert [r.payload for r in results] == [str(d).encode() for d in delays]
        assert len(list(client.connections())) == 1
    finally:
        await client.close()
        await server.close()


async def test_error_reply_raises_typed_error():
    server, addr = await start_server()
    client = Messenger("client.admin", KEYS["client.admin"])
    try:
        with pytest.raises(NotFound, match="no such object"):
            await client.call(addr, mpb.OSD_OP)
        # the connection survives an error reply
        assert (await client.call(addr, mpb.PING, b"x")).payload == b"x"
    finally:
        await client.close()
        await server.close()


@pytest.mark.parametrize("entity,key", [("client.admin", b"wrong" * 8), ("client.nobody", b"k" * 32)])
async def test_wrong_or_unknown_key_is_refused(entity, key):
    server, addr = await start_server()
    client = Messenger(entity, key)
    try:
        with pytest.raises(AuthError, match="authentication failed"):
            await client.call(addr, mpb.PING, b"x")
    finally:
        await client.close()
        await server.close()


async def test_timeout_and_connection_loss():
    server, addr = await start_server()
    client = Messenger("client.admin", KEYS["client.admin"])
    try:
        with pytest.raises(TimedOut):
            await client.call(addr, mpb.OSD_REPOP, b"5", timeout=0.1)
        pending = asyncio.ensure_future(client.call(addr, mpb.OSD_REPOP, b"5"))
        await asyncio.sleep(0.1)
        await server.close()
        with pytest.raises(ConnectionLost):
            await pending
        with pytest.raises(ConnectionLost):
            await client.call(addr, mpb.PING, b"x")
    finally:
        await client.close()
        await server.close()


async def test_garbage_from_peer_is_refused():
    server, addr = await start_server()
    try:
        host, port = addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"\xff" * 64)
        await writer.drain()
        # server closes the connection instead of crashing
        data = await asyncio.wait_for(reader.read(), 5)
        assert data is not None
        writer.close()
        # and still serves proper clients
        client = Messenger("client.admin", KEYS["client.admin"])
        assert (await client.call(addr, mpb.PING, b"ok")).payload == b"ok"
        await client.close()
    finally:
        await server.close()
