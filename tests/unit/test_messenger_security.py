"""The messenger against hostile peers over real loopback sockets: secure mode,
tampering, wrong-key back-off and bans, connection limits, memory of closed
connections."""

import asyncio
import gc
import logging
import socket
import struct
import weakref

import pytest

from sds.common import secure
from sds.common.errors import AuthError, ConnectionLost, InvalidArgument
from sds.common.messenger import Messenger
from sds.common.options import OPTIONS
from sds.proto import messenger_pb2 as mpb

KEYS = {"client.admin": b"k" * 32, "osd.0": b"o" * 32}
HEADER = struct.Struct("!II")


class Conf:
    def __init__(self, **over):
        self.over = over

    def get(self, name):
        return self.over.get(name, OPTIONS[name].default)


def lookup(entity):
    return (KEYS[entity], {"osd": "allow *"}) if entity in KEYS else None


async def start_server(**over):
    server = Messenger("osd.0", KEYS["osd.0"], key_lookup=lookup, config=Conf(**over))

    async def echo(conn, env, data):
        return env.payload, [bytes(data[:10]), bytes(data[10:])]

    server.register(mpb.PING, echo)
    return server, await server.listen("127.0.0.1:0")


@pytest.mark.parametrize("client_mode,server_mode,expect", [
    ("crc", "crc", secure.CRC), ("secure", "crc", secure.SECURE),
    ("crc", "secure", secure.SECURE), ("secure", "secure", secure.SECURE)])
async def test_modes_negotiate_to_the_stricter_and_carry_bulk_data(client_mode, server_mode,
                                                                    expect):
    server, addr = await start_server(ms_client_mode=server_mode)
    client = Messenger("client.admin", KEYS["client.admin"], config=Conf(ms_client_mode=client_mode))
    try:
        blob = bytes(range(256)) * 16384 + b"tail"
        resp = await client.call(addr, mpb.PING, b"hi", data=[blob[:5], memoryview(blob)[5:]])
        assert resp.payload == b"hi" and bytes(resp.data) == blob
        conn = await client.connect(addr)
        assert conn.mode == expect
        assert [c.mode for c in server.connections()] == [expect]
    finally:
        await client.close()
        await server.close()


class FlipProxy:
    """A TCP proxy that flips one byte of the server-bound stream at a given offset."""

    def __init__(self, target: str, flip_at: int):
        self.target, self.flip_at, self.seen = target, flip_at, 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader, writer):
        host, port = self.target.split(":")
        up_r, up_w = await asyncio.open_connection(host, int(port))

        async def pump(src, dst, flip):
            try:
                while chunk := await src.read(65536):
                    if flip and self.seen <= self.flip_at < self.seen + len(chunk):
                        chunk = bytearray(chunk)
                        chunk[self.flip_at - self.seen] ^= 0x01
                    if flip:
                        self.seen += len(chunk)
                    dst.write(bytes(chunk))
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_w, True), pump(up_r, writer, False))


async def test_a_flipped_byte_on_the_wire_drops_a_secure_connection():
    server, addr = await start_server(ms_client_mode="secure")
    # the AuthRequest frame is the client's whole handshake: flip a byte after it
    req = mpb.AuthRequest(entity="client.admin", client_nonce=b"n" * 16, proof=b"p" * 32, mode=1)
    handshake_bytes = HEADER.size + len(mpb.Envelope(
        type=mpb.AUTH_REQUEST, payload=req.SerializeToString()).SerializeToString())
    proxy = FlipProxy(addr, handshake_bytes + 4000)   # inside the data of the first call
    paddr = await proxy.start()
    client = Messenger("client.admin", KEYS["client.admin"], config=Conf(ms_client_mode="secure"))
    try:
        conn = await client.connect(paddr)
        assert conn.mode == secure.SECURE
        with pytest.raises(ConnectionLost):
            await client.call(paddr, mpb.PING, b"x", data=b"d" * 10000, timeout=5)
        assert conn.closed
    finally:
        await client.close()
        await server.close()
        proxy.server.close()


async def test_wrong_keys_back_off_then_ban_and_are_logged_as_a_summary(caplog):
    server, addr = await start_server(ms_auth_fail_ban_after=8)
    caplog.set_level(logging.INFO, logger="sds.messenger")
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for _ in range(10):
            bad = Messenger("client.admin", b"wrong" * 7)
            with pytest.raises(AuthError):
                await bad.connect(addr)
            await bad.close()
        took = loop.time() - t0
        assert took > 0.5    # back-off after the first 5 failures: 0.1 + 0.2 + 0.4 ...
        assert server.auth_failures() == {"127.0.0.1": 10}
        assert server.auth_throttle.bans() == [("127.0.0.1", "client.admin")]
        good = Messenger("client.admin", KEYS["client.admin"])
        with pytest.raises(AuthError, match="banned"):   # even the right key, while banned
            await good.connect(addr)
        await good.close()
        other = Messenger("osd.0", KEYS["osd.0"])          # other entities are not banned
        await other.connect(addr)
        await other.close()
        lines = [r.getMessage() for r in caplog.records if "authentication" in r.getMessage()]
        assert len(lines) <= 3, lines   # first failure, the ban; never one line per attempt
    finally:
        await server.close()


async def test_the_8_mib_name_is_neither_logged_nor_echoed(caplog):
    server, addr = await start_server()
    caplog.set_level(logging.DEBUG)
    try:
        for name in ("client." + "N" * (8 << 20), "client." + "M" * 3000):
            req = mpb.AuthRequest(entity=name, client_nonce=b"n" * 16, proof=b"p" * 32)
            env = mpb.Envelope(type=mpb.AUTH_REQUEST, payload=req.SerializeToString())
            body = env.SerializeToString()
            reader, writer = await asyncio.open_connection(*addr.split(":"))
            writer.write(HEADER.pack(len(body), 0) + body)
            try:
                got = await asyncio.wait_for(reader.read(), 5)
            except ConnectionResetError:   # refused from the header: reset at once
                got = b""
            writer.close()
            assert b"N" * 100 not in got and b"M" * 100 not in got
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "N" * 100 not in text and "M" * 100 not in text
    finally:
        await server.close()


async def test_connections_per_peer_are_limited():
    server, addr = await start_server(ms_max_connections_per_peer=3)
    socks = []
    try:
        for _ in range(5):
            s = socket.create_connection(tuple(addr.split(":")[:1]) + (int(addr.split(":")[1]),))
            socks.append(s)
        await asyncio.sleep(0.3)
        assert server._inbound == {"127.0.0.1": 3}
    finally:
        for s in socks:
            s.close()
        await asyncio.sleep(0.1)
        assert server._inbound == {}
        await server.close()


async def test_closed_connections_are_freed_without_the_gc():
    server, addr = await start_server(ms_client_mode="secure")
    gc.disable()
    try:
        client = Messenger("client.admin", KEYS["client.admin"])
        await client.call(addr, mpb.PING, b"x", data=b"d" * (4 << 20))
        (sconn,) = server.connections()
        refs = [weakref.ref(sconn), weakref.ref(sconn.proto)]
        del sconn
        await client.close()
        for _ in range(5):
            await asyncio.sleep(0.02)
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()
        await server.close()


def test_auth_failures_become_a_health_warning():
    from sds.mon import auth_health
    from sds.mon.commands import MonView

    view = MonView(osdmap=None, auth={}, monmap=None, mon_status={}, digest=None,
                   config=Conf(), now=0.0, auth_failures={"127.0.0.1": 37, "10.0.0.2": 2})
    (check,) = auth_health.check_auth(view)
    assert check.code == "AUTH_FAILURES" and check.count == 37
    assert check.detail == ["37 failed attempts from 127.0.0.1 at this monitor"]
    view.auth_failures = {"127.0.0.1": 3}
    assert auth_health.check_auth(view) == []


async def test_a_request_over_the_limits_fails_early_at_the_sender():
    server, addr = await start_server()
    client = Messenger("client.admin", KEYS["client.admin"], config=Conf(osd_max_write_size=1000))
    try:
        with pytest.raises(InvalidArgument, match="osd_max_write_size"):
            await client.call(addr, mpb.OSD_OP, b"", data=b"x" * 1001)
        resp = await client.call(addr, mpb.PING, b"still fine", data=b"x" * 1001)
        assert resp.payload == b"still fine"
    finally:
        await client.close()
        await server.close()


def test_failures_at_osds_the_mgr_and_mdss_reach_health():
    from sds.mds.daemon import auth_health as mds_auth_health
    from sds.mgr.daemon import build_digest
    from sds.mon import auth_health
    from sds.mon.commands import MonView
    from sds.proto import mon_pb2

    reports = {1: (100.0, mon_pb2.OsdStats(osd=1, auth_failures={"10.0.0.9": 12})),
               2: (100.0, mon_pb2.OsdStats(osd=2, auth_failures={"10.0.0.9": 1}))}
    digest = build_digest(reports, None, 101.0)
    assert digest["auth_failures"] == {"osd.1": {"10.0.0.9": 12}, "osd.2": {"10.0.0.9": 1}}
    digest["auth_failures"]["mgr.x"] = {"10.0.0.7": 40}   # the mgr adds its own
    view = MonView(osdmap=None, auth={}, monmap=None, mon_status={}, digest=digest,
                   config=Conf(), now=0.0, auth_failures={})
    (check,) = auth_health.check_auth(view)
    assert check.count == 52 and "2 address(es)" in check.summary
    assert check.detail == ["40 failed attempts from 10.0.0.7 at mgr.x",
                            "12 failed attempts from 10.0.0.9 at osd.1"]
    assert mds_auth_health({"10.0.0.9": 3}) == []
    assert mds_auth_health({"10.0.0.9": 37}) == [
        {"code": "MDS_AUTH_FAILURES", "message": "at least 10 failed authentications from 10.0.0.9"}]
    many = mds_auth_health({f"10.0.0.{i}": 100 for i in range(5)})
    assert len(many) == 3 and many[-1]["message"] == "and 3 more addresses"
