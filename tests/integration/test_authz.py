"""Authorization against real daemons: each hostile action of issue 8 fails, and what a
limited key is for still works."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import running_cluster

from sds.client import Rados
from sds.common.errors import AuthError, InvalidArgument, PermissionDenied, SdsError
from sds.proto import messenger_pb2 as mpb
from sds.proto import mon_pb2, osd_pb2

pytestmark = pytest.mark.integration

POOLS = ("scratch", "rawx", "other")
REVOKE_BOUND_S = 5.0  # stated bound: one auth map push after the commit (measured ~0.01 s)


@pytest.fixture(scope="module")
def c():
    """A cluster whose parent directories anyone may enter (pytest's own base is 0700,
    which would make the file-mode test pass for the wrong reason)."""
    base = Path(tempfile.mkdtemp(prefix="sds-authz-"))
    os.chmod(base, 0o755)

    async def setup(cluster):
        async with Rados(cluster.conf) as r:
            for name in POOLS:
                await r.pool_create(name, pg_num=4)
                await r.ioctx(name).write_full("seed", b"seed data")
    try:
        with running_cluster(base / "cluster") as cluster:
            asyncio.run(setup(cluster))
            yield cluster
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def entity(c, name: str, **caps: str) -> Rados:
    """Create `name` with caps (as admin) and return a client connected as it."""
    async with Rados(c.conf) as admin:
        out = await admin.mon_command({"prefix": "auth get-or-create", "entity": name,
                                       "caps": caps})
    deadline = time.monotonic() + 5
    while True:  # peons and OSDs learn of a new entity a moment after the leader commits it
        r = Rados(c.conf, entity=name, key=base64.b64decode(out["key"]))
        try:
            await r.connect()
            for addr in r.monc.addrs.values():  # every OSD has the pushed auth update
                await r.messenger.connect(addr)
            return r
        except AuthError:
            await r.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def admin_cmd(c, cmd: dict) -> dict:
    async with Rados(c.conf) as admin:
        return await admin.mon_command(cmd)


async def test_read_only_key_reads_maps_not_keys(c):
    r = await entity(c, "client.ro", mon="allow r", osd="allow r")
    try:
        assert "HEALTH" in (await r.mon_command({"prefix": "health"}))["status"]
        assert "scratch" in (await r.mon_command({"prefix": "osd pool ls"}))["pools"]
        assert await r.ioctx("scratch").read("seed") == b"seed data"
        for cmd in ({"prefix": "auth get", "entity": "client.admin"},
                    {"prefix": "auth get", "entity": "mon."},
                    {"prefix": "auth print-key", "entity": "client.admin"},
                    {"prefix": "auth export"},
                    {"prefix": "auth get-or-create", "entity": "client.ro"},
                    {"prefix": "osd pool rm", "pool": "other", "pool2": "other",
                     "confirm": True}):
            with pytest.raises(PermissionDenied):
                await r.mon_command(cmd)
        with pytest.raises(PermissionDenied):
            await r.ioctx("scratch").write_full("ro-write", b"x")
    finally:
        await r.close()
    assert "other" in (await admin_cmd(c, {"prefix": "osd pool ls"}))["pools"]


@pytest.mark.parametrize("mon_cap", ["allow rw", "allow rwx"])
async def test_mon_rw_cannot_mint_daemons_or_admins(c, mon_cap):
    r = await entity(c, f"client.minter-{mon_cap[6:]}", mon=mon_cap, osd="allow rw")
    try:
        attempts = [
            {"prefix": "auth get-or-create", "entity": "osd.0"},  # an existing daemon's key
            {"prefix": "auth get-or-create", "entity": "osd.77",
             "caps": {"mon": "allow profile osd", "osd": "allow *"}},
            {"prefix": "auth get-or-create", "entity": "client.root",
             "caps": {"mon": "allow *", "osd": "allow *"}},
            {"prefix": "auth add", "entity": "mgr.y", "caps": {"mon": "allow profile mgr"}},
            {"prefix": "auth caps", "entity": f"client.minter-{mon_cap[6:]}",
             "caps": {"mon": "allow *"}},
            {"prefix": "auth get", "entity": "client.admin"},
        ]
        for cmd in attempts:
            with pytest.raises(PermissionDenied):
                await r.mon_command(cmd)
        auth = {e["entity"] for e in (await admin_cmd(c, {"prefix": "auth ls"}))["auth"]}
        assert not {"osd.77", "client.root", "mgr.y"} & auth
        if mon_cap == "allow rwx":  # Ceph's x administers keys, within the holder's own caps
            out = await r.mon_command({"prefix": "auth get-or-create", "entity": "client.sub",
                                       "caps": {"mon": "allow r", "osd": "allow r"}})
            assert out["created"]
    finally:
        await r.close()


async def test_name_prefix_gives_no_powers(c):
    r = await entity(c, "osd.77", mon="allow r")  # an admin made it; a client-like key
    try:
        with pytest.raises(PermissionDenied):
            await r.ioctx("scratch").write_full("from-osd77", b"x")
        with pytest.raises(PermissionDenied):
            await r.mon_command({"prefix": "osd boot", "id": 77, "addr": "127.0.0.1:1",
                                 "host": "h", "weight": 1.0, "uuid": "u"})
        with pytest.raises(PermissionDenied):
            await r.mon_command({"prefix": "osd down", "ids": [77]})
        mon = await r.messenger.connect(c.config().mon_addrs[0])
        with pytest.raises(PermissionDenied, match="auth database"):
            await mon.call(mpb.MON_SUBSCRIBE, mon_pb2.MonSubscribe(osdmap=True, auth=True))
        osd = await r.messenger.connect(r.monc.addrs[0])
        with pytest.raises(PermissionDenied):
            await osd.call(mpb.OSD_REPOP, osd_pb2.RepOp(pool=1, pg=0))
        mgr = await r.messenger.connect(c.addr("mgr.x"))
        with pytest.raises(PermissionDenied):
            await mgr.call(mpb.MON_STATS, mon_pb2.OsdStats(osd=77))
    finally:
        await r.close()


async def test_pool_limited_caps_are_limited(c):
    r = await entity(c, "client.scratch", mon="allow r", osd="allow rw pool=scratch")
    try:
        await r.ioctx("scratch").write_full("mine", b"pool-limited write")
        assert await r.ioctx("scratch").read("mine") == b"pool-limited write"
        with pytest.raises(PermissionDenied):
            await r.ioctx("other").write_full("theirs", b"x")
        with pytest.raises(PermissionDenied):
            await r.ioctx("other").read("seed")
    finally:
        await r.close()


async def test_read_on_pool_rawx_grants_no_write(c):
    r = await entity(c, "client.rawx", mon="allow r", osd="allow r pool=rawx")
    try:
        assert await r.ioctx("rawx").read("seed") == b"seed data"
        with pytest.raises(PermissionDenied):
            await r.ioctx("rawx").write_full("seed", b"overwritten")
    finally:
        await r.close()
    async with Rados(c.conf) as admin:
        assert await admin.ioctx("rawx").read("seed") == b"seed data"


async def test_invalid_caps_are_refused_naming_the_token(c):
    with pytest.raises(InvalidArgument, match="poool"):
        await admin_cmd(c, {"prefix": "auth get-or-create", "entity": "client.typo",
                            "caps": {"osd": "allow rw poool=scratch"}})
    with pytest.raises(InvalidArgument, match="namespace"):
        await admin_cmd(c, {"prefix": "auth add", "entity": "client.ns",
                            "caps": {"osd": "allow rw pool=scratch namespace=a"}})
    auth = {e["entity"] for e in (await admin_cmd(c, {"prefix": "auth ls"}))["auth"]}
    assert not {"client.typo", "client.ns"} & auth


async def _until_refused(op, bound: float) -> tuple[float, SdsError]:
    start = time.monotonic()
    while True:
        try:
            await op()
        except (PermissionDenied, AuthError) as e:
            return time.monotonic() - start, e
        if time.monotonic() - start > bound:
            raise AssertionError(f"still allowed {bound:g}s after the change")
        await asyncio.sleep(0.01)


async def test_auth_rm_revokes_live_sessions(c):
    r = await entity(c, "client.gone", mon="allow r", osd="allow rw")
    io = r.ioctx("scratch")
    try:
        await io.write_full("before-rm", b"x")  # the OSD session is open
        await r.mon_command({"prefix": "health"})
        await admin_cmd(c, {"prefix": "auth rm", "entity": "client.gone"})
        took, _ = await _until_refused(lambda: io.write_full("after-rm", b"y"), REVOKE_BOUND_S)
        print(f"auth rm: OSD write refused {took * 1000:.0f} ms after the command returned")
        took, _ = await _until_refused(lambda: r.mon_command({"prefix": "health"}),
                                       REVOKE_BOUND_S)
        print(f"auth rm: mon command refused {took * 1000:.0f} ms after")
        for _ in range(3):  # and it stays refused: the key no longer authenticates
            with pytest.raises(AuthError):
                await io.write_full("after-refusal", b"z")
    finally:
        await r.close()
    async with Rados(c.conf) as admin:
        with pytest.raises(SdsError):
            await admin.ioctx("scratch").stat("after-refusal")


async def test_auth_caps_narrows_live_sessions(c):
    r = await entity(c, "client.narrowed", mon="allow rw", osd="allow rw")
    io = r.ioctx("scratch")
    try:
        await io.write_full("narrow", b"before")
        await admin_cmd(c, {"prefix": "auth caps", "entity": "client.narrowed",
                            "caps": {"mon": "allow r", "osd": "allow r pool=scratch"}})
        took, e = await _until_refused(lambda: io.write_full("narrow-after", b"after"),
                                       REVOKE_BOUND_S)
        assert isinstance(e, PermissionDenied)
        print(f"auth caps: write refused {took * 1000:.0f} ms after the command returned")
        assert await io.read("narrow") == b"before"  # the same session still reads
        with pytest.raises(PermissionDenied):
            await r.mon_command({"prefix": "osd set", "flag": "noout"})
        with pytest.raises(PermissionDenied):
            await r.ioctx("other").read("seed")
    finally:
        await r.close()


def _private_paths(root):
    for dirpath, _dirnames, filenames in os.walk(root):
        yield dirpath, True
        for name in filenames:
            yield os.path.join(dirpath, name), False


def test_stores_keyrings_and_logs_are_private(c):
    old = os.umask(0)  # whatever the umask of whoever started the cluster
    os.umask(old)
    seen = {"keyring": 0, "data.mdb": 0, ".log": 0}
    for path, _is_dir in _private_paths(c.dir):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        for key in seen:
            if path.endswith(key):
                seen[key] += 1
    assert all(seen.values()), seen
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to try as another user")
    def as_nobody(*argv):
        return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True)

    assert as_nobody("ls", str(c.dir.parent)).returncode == 0  # the way there is open
    files = [p for p, is_dir in _private_paths(c.dir) if not is_dir]
    for path in files:
        got = as_nobody("cat", path)
        assert got.returncode != 0 and not got.stdout, f"nobody could read {path}"
    assert as_nobody("ls", str(c.dir)).returncode != 0


async def test_tickets_from_the_mons_verify_with_the_daemons_secrets(c):
    from sds.common import tickets

    r = await entity(c, "client.ticket", mon="allow r", osd="allow rw pool=scratch")
    deadline = time.monotonic() + 10
    try:
        while True:  # the leader rotates the first secrets within a second of quorum
            try:
                out = await r.mon_command({"prefix": "auth get-ticket", "service": "osd"})
                break
            except SdsError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        ticket = base64.b64decode(out["ticket"])
        session_key = tickets.open_session_key(r.messenger.key,
                                               base64.b64decode(out["sealed_key"]))
    finally:
        await r.close()
    async with Rados(c.conf, entity="osd.0", key=c.key("osd.0")) as osd:
        mon = await osd.messenger.connect(c.config().mon_addrs[0])
        resp = await mon.call(mpb.MON_SUBSCRIBE, mon_pb2.MonSubscribe(osdmap=True, auth=True))
        maps = resp.parse(mon_pb2.MonMaps)
    assert [s.service for s in maps.rotating] == ["osd"]  # its own service's secrets only
    secrets = [tickets.RotatingSecret(s.id, s.secret, s.expires)
               for s in maps.rotating[0].secrets]
    got = tickets.verify(ticket, "osd", secrets, time.time())
    assert got.entity == "client.ticket" and got.caps["osd"] == "allow rw pool=scratch"
    assert got.session_key == session_key


async def test_every_mon_judges_by_the_callers_caps_also_when_forwarding(c, tmp_path):
    """A peon forwards writes to the leader on the caller's behalf: the leader judges them
    by the caller's caps, not by the forwarding monitor's."""
    from sds.common.config import Config

    first = await entity(c, "client.fw", mon="allow rw", osd="allow r")
    fw_key = first.messenger.key
    await first.close()
    conf = Config(c.conf)
    for rank, addr in enumerate(conf.mon_addrs):
        one = tmp_path / f"mon{rank}.conf"
        one.write_text(c.conf.read_text().replace(conf.get("mon_host"), addr))
        async with Rados(one, entity="client.fw", key=fw_key) as r:
            out = await r.mon_command({"prefix": "osd pool create", "pool": f"fw{rank}",
                                       "pg_num": 1})
            assert out["created"]
            for cmd in ({"prefix": "auth get-or-create", "entity": f"client.fw{rank}",
                         "caps": {"mon": "allow r"}},
                        {"prefix": "auth get", "entity": "client.admin"}):
                with pytest.raises(PermissionDenied):
                    await r.mon_command(cmd)
