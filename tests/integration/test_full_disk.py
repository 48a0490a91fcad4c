"""A cluster on a small filesystem that fills up: it warns, refuses writes with ENOSPC,
accepts deletes, writes again once space is freed, restarts healthy, loses nothing.

The whole cluster directory (3 mons, 3 OSDs, mgr) lives on one loop-mounted 300 MiB
ext4, as in issue 9: the OSDs share the device, so all cross the ratios together.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import running_cluster
from loopfs import small_filesystem

from sds.client import Rados
from sds.common.errors import NoSpace, NotFound, SdsError
from sds.common.fullness import device_usage

pytestmark = pytest.mark.integration

FS_MB = 300
OBJECT_BYTES = 1 << 20  # above the store's extent threshold: deletes free whole files
NEARFULL, FULL = 0.85, 0.95
POOL = "fill"
HEALTH_WAIT_S = 30.0


@pytest.fixture
def full_cluster(tmp_path: Path):
    with small_filesystem(tmp_path, FS_MB) as mnt, running_cluster(
            mnt / "cluster", extra_conf={
                "osd_stats_interval": 0.5, "osd_full_reserve_bytes": 4 << 20,
                # the monitors share the OSDs' disk: warn only when it is really short
                "mon_data_avail_warn": 8, "mon_data_avail_crit": 1}) as cluster:
        yield cluster, mnt


def used(mnt: Path) -> float:
    return device_usage(mnt).used_ratio


async def health(r: Rados) -> dict:
    return await r.mon_command({"prefix": "health", "detail": True})


async def wait_check(r: Rados, code: str, present: bool = True,
                     timeout: float = HEALTH_WAIT_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        h = await health(r)
        if (code in h["checks"]) == present:
            return h
        if time.monotonic() > deadline:
            raise AssertionError(f"{code} {'never appeared' if present else 'stayed'}: {h}")
        await asyncio.sleep(0.1)


async def wait_ok(r: Rados, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(SdsError):
            h = await health(r)
            if h["status"] == "HEALTH_OK":
                return h
        if time.monotonic() > deadline:
            raise AssertionError(f"not HEALTH_OK after {timeout:g}s: {h}")
        await asyncio.sleep(0.5)


async def wait_only(r: Rados, codes: set[str], timeout: float = 90.0) -> dict:
    """Wait until the failing health checks are exactly `codes` (MON_DISK_LOW allowed:
    the monitors share the full disk)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(SdsError):
            h = await health(r)
            if set(h["checks"]) - {"MON_DISK_LOW"} == codes:
                return h
        if time.monotonic() > deadline:
            raise AssertionError(f"health checks are not {sorted(codes)}: {h}")
        await asyncio.sleep(0.5)


async def wait_quorum(r: Rados, n: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(SdsError):
            if len((await r.mon_command({"prefix": "mon stat"}))["quorum"]) == n:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"no quorum of {n} monitors after {timeout:g}s")
        await asyncio.sleep(0.2)


def restart_all(cluster) -> None:
    names = cluster.names()
    for name in names:
        cluster.stop(name)
    for name in names:
        cluster.start(name)


async def wait_flag(r: Rados, on: bool, timeout: float = HEALTH_WAIT_S) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        dump = await r.mon_command({"prefix": "osd dump"})
        if ("full" in dump["flags"]) == on:
            return dump
        if time.monotonic() > deadline:
            raise AssertionError(f"the FULL flag is {'not ' if on else ''}set: {dump['flags']}")
        await asyncio.sleep(0.1)


def payload(i: int) -> bytes:
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (OBJECT_BYTES // len(seed) + 1))[:OBJECT_BYTES - i % 7]


async def verify(io, acked: dict[str, bytes]) -> None:
    for name, digest in sorted(acked.items()):
        assert hashlib.sha256(await io.read(name)).digest() == digest, name


@pytest.mark.timeout(600)
async def test_fill_warn_refuse_delete_resume_restart(full_cluster):
    cluster, mnt = full_cluster
    figures = {}
    async with Rados(cluster.conf) as r:
        await r.pool_create(POOL, pg_num=8, size=3)
        io = r.ioctx(POOL)
        await wait_ok(r)
        await io.write_full("tagged", b"x")
        await io.setxattr("tagged", "user.a", b"1")
        await io.omap_set("tagged", {b"k": b"v"})
        acked = {"tagged": hashlib.sha256(b"x").digest()}

        # fill to nearfull: the warning names the OSDs (the store gives its free extent
        # files back at nearfull, which may take usage under it again for a while)
        i = 0
        while "nearfull" not in figures:
            await io.write_full(f"o{i}", payload(i))
            acked[f"o{i}"] = hashlib.sha256(payload(i)).digest()
            i += 1
            if used(mnt) >= NEARFULL + 0.01:
                crossed = time.monotonic()
                with contextlib.suppress(AssertionError):
                    h = await wait_check(r, "OSD_NEARFULL", timeout=8.0)
                    figures["nearfull"] = time.monotonic() - crossed
                    assert "osd.0" in str(h["checks"]["OSD_NEARFULL"]["detail"])
                    assert "POOL_NEARFULL" in h["checks"]

        # fill until refused: ENOSPC, not EIO
        refused = None
        crossed = None
        while refused is None:
            name = f"o{i}"
            try:
                await io.write_full(name, payload(i))
            except NoSpace as e:
                refused = name
                figures["used_at_refusal"] = round(used(mnt), 4)
                assert "full" in str(e)
                break
            acked[name] = hashlib.sha256(payload(i)).digest()
            i += 1
            if crossed is None and used(mnt) >= FULL:
                crossed = time.monotonic()
            assert i < FS_MB, "writes were never refused"
        crossed = crossed or time.monotonic()
        h = await wait_check(r, "OSD_FULL")
        figures["full"] = time.monotonic() - crossed
        figures["objects_acked"] = len(acked)
        assert h["status"] == "HEALTH_ERR" and "POOL_FULL" in h["checks"]
        assert "ENOSPC" in h["checks"]["OSD_FULL"]["hint"]
        dump = await wait_flag(r, True)
        figures["full_flag"] = time.monotonic() - crossed
        assert dump["full_ratio"] == FULL
        df = await r.mon_command({"prefix": "df"})
        assert df["pools"][0]["stats"]["max_avail"] == 0
        # the monitors share the disk: each one's low space is known to all of them
        h = await wait_check(r, "MON_DISK_LOW")
        deadline = time.monotonic() + HEALTH_WAIT_S
        while h["checks"].get("MON_DISK_LOW", {}).get("summary", {}).get("count") != 3:
            assert time.monotonic() < deadline, h["checks"].get("MON_DISK_LOW")
            await asyncio.sleep(0.5)
            h = await health(r)
        # every kind of write is refused; the refused object was never created
        for attempt in (io.write_full(refused, b"y"), io.append("tagged", b"y"),
                        io.setxattr("tagged", "user.b", b"2"), io.omap_set("tagged", {b"j": b"w"}),
                        io.create("new-empty")):
            with pytest.raises(NoSpace):
                await attempt
        with pytest.raises(NotFound):
            await io.stat(refused)

    # a restart of every daemon while full: all come back, reads work, writes stay refused
    restart_all(cluster)
    async with Rados(cluster.conf) as r:
        io = r.ioctx(POOL)
        h = await wait_only(r, {"OSD_FULL", "POOL_FULL"})
        await verify(io, acked)
        with pytest.raises(NoSpace):
            await io.write_full(refused, b"y")

        # removals always work while full, even once something else took every block left
        fill_up(mnt)
        await io.rmxattr("tagged", "user.a")
        await io.omap_rm("tagged", [b"k"])
        await io.truncate("tagged", 0)
        acked["tagged"] = hashlib.sha256(b"").digest()
        reserves = [mnt / "cluster" / f"osd.{i}" / "full-reserve" for i in range(3)]
        assert not any(p.exists() for p in reserves), "the OSDs kept their reserve"
        for name in ("ballast", "ballast-small"):
            (mnt / name).unlink()
        deleted = 0
        for name in sorted((n for n in acked if n.startswith("o")), key=lambda n: int(n[1:])):
            if used(mnt) < NEARFULL - 0.15:
                break
            await io.remove(name)
            del acked[name]
            deleted += 1
        figures["deleted"] = deleted

        # writes resume once the flag clears, and health comes back
        await wait_flag(r, False)
        h = await wait_ok(r)
        await io.write_full("after", b"resumed")
        await asyncio.sleep(2)  # a stats interval: the OSDs take their reserve back
        assert all(p.exists() for p in reserves)
        acked["after"] = hashlib.sha256(b"resumed").digest()
        await verify(io, acked)

    # a restart of every daemon comes back healthy, with every acknowledged object
    restart_all(cluster)
    async with Rados(cluster.conf) as r:
        await wait_ok(r)
        io = r.ioctx(POOL)
        await verify(io, acked)
        await io.write_full("after-restart", b"ok")
    print(f"\nfull-disk figures: {figures}")


def fill_up(path: Path) -> None:
    """Take every free block of the filesystem holding `path` (root's reserve too)."""
    with open(path / "ballast", "wb") as f:
        chunk = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
                f.flush()
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    with open(path / "ballast-small", "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())


@pytest.mark.cluster_opts(osds=1, extra_conf={"osd_pool_default_size": 1})
async def test_monitor_whose_store_write_fails_stops_with_its_reason(cluster, tmp_path):
    """mon.2's data directory on its own 16 MiB filesystem, filled: its next Paxos write
    fails, and it exits logging why instead of lingering out of quorum."""
    mon_dir = Path(cluster.dir) / "mon.2"
    cluster.stop("mon.2")
    saved = tmp_path / "mon.2-saved"
    shutil.copytree(mon_dir, saved)
    with small_filesystem(tmp_path, 16, at=mon_dir):
        try:
            shutil.copytree(saved, mon_dir, dirs_exist_ok=True)
            cluster.start("mon.2")
            async with Rados(cluster.conf) as r:
                deadline = time.monotonic() + 30
                while not (mon_dir / "mon.2.addr").exists():  # serving
                    assert time.monotonic() < deadline, "mon.2 did not start"
                    await asyncio.sleep(0.1)
                await wait_quorum(r, 3)
                fill_up(mon_dir)
                deadline = time.monotonic() + 60
                flip = True
                while cluster.pid("mon.2") is not None and time.monotonic() < deadline:
                    with contextlib.suppress(SdsError):
                        await r.mon_command({"prefix": "osd set" if flip else "osd unset",
                                             "flag": "noout"}, timeout=5)
                    flip = not flip
                assert cluster.pid("mon.2") is None, "mon.2 lingers with a failed store"
                h = await wait_check(r, "MON_DOWN")
                assert h["checks"]["MON_DOWN"]["summary"]["count"] == 1
            log = (Path(cluster.dir) / "out" / "mon.2.log").read_text()
            assert "mon.2 stopping: cannot write the monitor store" in log
            assert "free space on its disk and restart the monitor" in log
            assert "daemon_exit code=1" in log
            print("\n" + next(line for line in log.splitlines() if "stopping:" in line))
        finally:
            cluster.kill("mon.2")


@pytest.mark.cluster_opts(extra_conf={"osd_stats_interval": 0.5})
async def test_recovery_into_a_backfillfull_osd_waits_until_there_is_room(cluster):
    """With the ratios lowered under the disk's real usage, osd.2 (back from a restart) is
    backfillfull: it refuses the copies it misses, so its PGs stay degraded; once the
    ratios are raised again it is recovered and nothing acknowledged is lost."""
    async with Rados(cluster.conf) as r:
        await r.pool_create("bf", pg_num=8, size=3)
        io = r.ioctx("bf")
        acked = {}
        for n in range(10):
            await io.write_full(f"old-{n}", payload(n)[:4096])
            acked[f"old-{n}"] = hashlib.sha256(payload(n)[:4096]).digest()
        await r.mon_command({"prefix": "osd set", "flag": "noout"})
        cluster.stop("osd.2")
        await wait_check(r, "OSD_DOWN")
        for n in range(10, 30):  # missing on osd.2
            await io.write_full(f"new-{n}", payload(n)[:4096])
            acked[f"new-{n}"] = hashlib.sha256(payload(n)[:4096]).digest()
        low = max(used(Path(cluster.dir)) / 2, 0.001)
        await r.mon_command({"prefix": "osd set-nearfull-ratio", "ratio": low})
        await r.mon_command({"prefix": "osd set-backfillfull-ratio", "ratio": low})
        cluster.start("osd.2")
        deadline = time.monotonic() + HEALTH_WAIT_S
        while "osd.2" not in str((await health(r))["checks"].get("OSD_BACKFILLFULL")):
            assert time.monotonic() < deadline, "osd.2 is not reported backfillfull"
            await asyncio.sleep(0.2)
        await wait_check(r, "OSD_DOWN", present=False)
        await asyncio.sleep(5)
        h = await health(r)
        assert "PG_DEGRADED" in h["checks"], "osd.2 took copies past backfillfull"
        assert "backfill_toofull: osd.2" in str(h["checks"]["PG_DEGRADED"]["detail"])
        logs = "".join((Path(cluster.dir) / "out" / f"osd.{i}.log").read_text() for i in (0, 1))
        assert "backfill_toofull: osd.2" in logs

        await r.mon_command({"prefix": "osd set-backfillfull-ratio", "ratio": 0.90})
        await r.mon_command({"prefix": "osd set-nearfull-ratio", "ratio": 0.85})
        await r.mon_command({"prefix": "osd unset", "flag": "noout"})
        await wait_ok(r)
        await verify(io, acked)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.mark.timeout(600)
async def test_a_mounted_filesystem_deletes_at_full_and_writes_again(tmp_path: Path):
    """The MDS journals an unlink before its objects go: it writes past the FULL flag by
    its caps (full try), so `rm` on a full cluster works and frees the space."""
    from fsmounts import mounted

    with small_filesystem(tmp_path, FS_MB) as mnt, running_cluster(
            mnt / "cluster", mds=1, extra_conf={
                "osd_stats_interval": 0.5, "osd_full_reserve_bytes": 4 << 20,
                "mon_data_avail_warn": 8, "mon_data_avail_crit": 1}) as cluster, \
            mounted(cluster, tmp_path / "fs") as m:
        files = []
        refused = None
        for i in range(FS_MB):
            path = m.path / f"f{i}"
            try:
                _write_file(path, payload(i))
            except OSError as e:
                refused = e.errno
                break
            files.append(path)
        assert refused == errno.ENOSPC, f"writes ended with {refused}"
        async with Rados(cluster.conf) as r:
            await wait_flag(r, True)
            started = time.monotonic()
            for path in files[: len(files) // 2]:
                path.unlink()  # ENOSPC here without the MDS's exemption
            removed = time.monotonic() - started
            assert not any(p.exists() for p in files[: len(files) // 2])
            await wait_flag(r, False, timeout=90)
            _write_file(m.path / "after", b"resumed")
            assert (m.path / "after").read_bytes() == b"resumed"
            assert (m.path / files[-1].name).read_bytes() == payload(len(files) - 1)
        print(f"\n{len(files)} files written until ENOSPC; removed half of them at full in "
              f"{removed:.1f}s; writes resumed")
