"""Service tickets against real daemons: OSDs, the MDS and the mgr hold no other entity's
key (not in their files, not in their memory, not in what the mons send them), and a
cluster whose tickets live 5 s keeps serving a client across renewals and rotations."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path

import pytest
from conftest import running_cluster

from sds.client import Rados
from sds.cluster.local import find_daemon_processes
from sds.common.config import Config
from sds.common.keyring import Keyring
from sds.common.messenger import Messenger
from sds.proto import messenger_pb2 as mpb
from sds.proto import mon_pb2

pytestmark = pytest.mark.integration

SERVICES = ("osd", "mds", "mgr")


def _keys(d: Path) -> dict[str, bytes]:
    """Every entity key of the cluster, from the admin keyring and each daemon's own."""
    keys = {}
    for path in [d / "keyring", *sorted(d.glob("*/keyring"))]:
        keys.update({name: key for name, (key, _) in Keyring.load(path).entries.items()})
    return keys


def _needles(key: bytes) -> tuple[bytes, bytes]:
    return key, base64.b64encode(key)


CHUNK = 16 << 20


def _memory(pid: int):
    """Every readable mapping of a process (we are its owner, or root), in chunks that
    overlap by a key's length; a mapping that stops reading (past a file's end) ends."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r") or line.endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            at = start
            while at < end:
                want = min(CHUNK, end - at)
                try:
                    mem.seek(at)
                    chunk = mem.read(want)
                except (OSError, ValueError, OverflowError):
                    break
                yield chunk
                if len(chunk) < want or at + want >= end:
                    break
                at += want - 64


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("tickets"), mds=1) as cluster:
        async def work():
            async with Rados(cluster.conf) as r:
                await r.pool_create("t", pg_num=8, size=3)
                io = r.ioctx("t")
                for i in range(8):
                    await io.write_full(f"o{i}", b"x" * 1000)
        asyncio.run(work())
        yield cluster


async def test_the_mons_send_daemons_names_and_caps_never_keys(c):
    d = Path(c.dir)
    keys = _keys(d)
    osd_key = keys["osd.0"]
    m = Messenger("osd.0", osd_key, config=Config(c.conf, "osd.0"))
    try:
        addr = Config(c.conf, "osd.0").mon_addrs[0]
        resp = await m.call(addr, mpb.MON_SUBSCRIBE, mon_pb2.MonSubscribe(osdmap=True, auth=True))
        maps = resp.parse(mon_pb2.MonMaps)
        names = {e.name for e in maps.auth_full}
        assert {"client.admin", "osd.0", "osd.1", "mgr.x", "mds.a"} <= names
        assert all(not e.key for e in maps.auth_full)
        assert dict(maps.auth_full[0].caps)  # caps still come, for revocation
        assert [s.service for s in maps.rotating] == ["osd"]  # its own service's secrets
        for name, key in keys.items():
            for needle in _needles(key):
                assert needle not in resp.payload, f"{name}'s key in an OSD's subscription"
    finally:
        await m.close()


def test_no_daemon_file_or_memory_holds_another_entitys_key(c):
    d = Path(c.dir)
    keys = _keys(d)
    procs = {name: pid for pid, name, _ in find_daemon_processes(d)}
    checked = []
    for name, pid in sorted(procs.items()):
        if name.split(".")[0] not in SERVICES:
            continue
        others = [(n, needle) for n, k in keys.items() if n != name for needle in _needles(k)]
        for path in sorted((d / name).rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                for other, needle in others:
                    assert needle not in data, f"{path} holds {other}'s key"
        admin = _needles(keys["client.admin"])
        for region in _memory(pid):
            for needle in admin:
                assert needle not in region, f"{name} (pid {pid}) holds client.admin's key"
        checked.append(name)
    assert {"osd.0", "osd.1", "osd.2", "mgr.x", "mds.a"} <= set(checked)
    # the scan finds a key where one is: a mon holds the auth database
    assert any(needle in region for region in _memory(procs["mon.0"])
               for needle in _needles(keys["client.admin"]))


@pytest.mark.cluster_opts(extra_conf={"auth_service_ticket_ttl": 5})
async def test_a_5s_ticket_cluster_keeps_serving_across_renewals(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("t", pg_num=8, size=3)
        io = r.ioctx("t")
        await io.write_full("first", b"0")
        opened = dict(r.messenger._outgoing)   # connections made with the first ticket
        issued, secret_ids = set(), set()
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 17 or len(issued) < 4:
            assert time.monotonic() - t0 < 40, f"only {len(issued)} osd tickets in 40 s"
            data = f"{i}".encode() * 100
            await io.write_full(f"o{i % 8}", data)
            assert await io.read(f"o{i % 8}") == data
            held = r.monc.tickets.held["osd"]
            issued.add(held.issued)
            secret_ids.add(int(re.search(rb'"secret_id":(\d+)', held.ticket).group(1)))
            i += 1
            await asyncio.sleep(0.2)
        assert len(issued) >= 4 and len(secret_ids) >= 2  # 3 renewals, secrets rotated
        for addr, conn in opened.items():   # live connections were never re-made
            if addr in r.monc.addrs.values():
                assert r.messenger._outgoing.get(addr) is conn and not conn.closed
        for addr in list(r.monc.addrs.values()):  # new connections with the renewed ticket
            r.messenger.drop(addr)
        await io.write_full("last", b"1")
        assert await io.read("first") == b"0"
    status = await _health(cluster)
    assert "AUTH_FAILURES" not in status, status


async def _health(cluster) -> str:
    async with Rados(cluster.conf) as r:
        return str(await r.mon_command({"prefix": "health"}))
