"""The filesystem at its edges, on a live cluster with kernel mounts: no metadata
operation can take the MDS down (a huge sparse truncate + unlink, a journal event that
never applies), EFBIG past max_file_size, and a mount that never hangs once every MDS
is gone. The tests share one cluster and run in order: the last one kills the MDSs."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import threading
import time

import pytest
from fsmounts import alive, mounted, requires_mds, sds

GRACE = 3.0
MOUNT_TIMEOUT = 5.0
POISON = "poison"
pytestmark = [pytest.mark.integration, requires_mds, pytest.mark.cluster_opts(
    mds=2, extra_conf={"mds_beacon_grace": GRACE, "mds_beacon_interval": 0.5,
                       "client_mount_timeout": MOUNT_TIMEOUT,
                       "mds_inject_apply_failure": POISON, "mds_apply_attempts": 2})]

MiB = 1 << 20
TiB = 1 << 40
MAX_SIZE = (1 << 63) - 1
RSS_BOUND = 300 * MiB  # an MDS is ~70 MB; before the fix, one 1 PB unlink took 13.7 GiB


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """The largest RSS of the MDS processes, sampled every 50 ms in a thread."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name in self.cluster.names("mds"):
                pid = self.cluster.pid(name)
                if pid:
                    try:
                        self.peak = max(self.peak, rss(pid))
                    except OSError:
                        pass
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def conf_of(cluster) -> str:
    return str(cluster.conf)


def fs_set(cluster, var: str, value: int) -> None:
    sds("--conf", conf_of(cluster), "fs", "set", "sdsfs", var, str(value))
    time.sleep(1.5)  # the active MDS follows at its next beacon


def data_objects(cluster, ino: int) -> list[str]:
    async def run() -> list[str]:
        async with cluster.rados() as r:
            return [n async for n in r.ioctx("sdsfs_data").list_prefix(f"{ino:016x}.")]
    return asyncio.run(run())


def health(cluster) -> dict:
    out = sds("--conf", conf_of(cluster), "--format", "json", "health", "detail").stdout
    return json.loads(out)


def active_mds(cluster) -> str:
    out = sds("--conf", conf_of(cluster), "--format", "json", "fs", "status").stdout
    fs = json.loads(out)["filesystems"][0]
    return fs["active"]["name"] if fs["active"] else ""


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_huge_sparse_truncate_and_unlink_is_bounded(cluster_module, tmp_path):
    """A file of 2^63-1 bytes, mostly hole: truncated, unlinked, and the active MDS killed
    right after so the standby replays the purge. Both stay small, the filesystem
    serves, and every data object is removed."""
    cluster = cluster_module
    fs_set(cluster, "max_file_size", MAX_SIZE)
    with mounted(cluster, tmp_path / "m") as m, RssSampler(cluster) as sampler:
        f = m.path / "huge"
        with open(f, "wb") as out:
            for offset in (0, 100 << 30, 999999999999999 - 10):
                out.seek(offset)
                out.write(b"x" * 4096)
            out.flush()
            os.fsync(out.fileno())  # close(2) alone may leave the data on its way
        ino = os.stat(f).st_ino
        assert len(data_objects(cluster, ino)) == 3
        os.truncate(f, 999999999999999)
        os.truncate(f, MAX_SIZE)
        assert os.stat(f).st_size == MAX_SIZE
        os.truncate(f, 50 << 30)                 # drops the object near 1 PB
        os.truncate(f, 999999999999999)
        os.unlink(f)
        victim = active_mds(cluster)
        assert cluster.kill(f"mds.{victim}")     # the standby replays the purge
        (m.path / "after").write_text("still serving")
        assert (m.path / "after").read_text() == "still serving"
        wait_for(lambda: not data_objects(cluster, ino), 60, "the purge")
        cluster.start(f"mds.{victim}")
    print(f"peak MDS RSS during the huge truncate/unlink and takeover: {sampler.peak / MiB:.0f} MiB")
    assert sampler.peak < RSS_BOUND
    report = json.loads(sds("--conf", conf_of(cluster), "--format", "json", "fs", "check").stdout)
    assert report["ok"], report


def test_efbig_past_max_file_size(cluster_module, tmp_path):
    cluster = cluster_module
    fs_set(cluster, "max_file_size", 8 * MiB)
    try:
        with mounted(cluster, tmp_path / "m") as m:
            f = m.path / "big"
            fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                os.fstat(fd)
                with pytest.raises(OSError) as e:
                    os.pwrite(fd, b"x", 8 * MiB)
                assert e.value.errno == errno.EFBIG
                assert os.pwrite(fd, b"abcd", 8 * MiB - 2) == 2   # short, as Linux does
                with pytest.raises(OSError) as e:
                    os.ftruncate(fd, 8 * MiB + 1)
                assert e.value.errno == errno.EFBIG
                os.ftruncate(fd, 8 * MiB)
            finally:
                os.close(fd)
            assert os.stat(f).st_size == 8 * MiB
            with pytest.raises(OSError) as e:
                os.truncate(f, 2 * TiB)
            assert e.value.errno == errno.EFBIG
    finally:
        fs_set(cluster, "max_file_size", TiB)
    out = json.loads(sds("--conf", conf_of(cluster), "--format", "json", "fs", "ls").stdout)
    assert out["filesystems"][0]["max_file_size"] == TiB
    with pytest.raises(AssertionError):
        sds("--conf", conf_of(cluster), "fs", "set", "sdsfs", "max_file_size", "0")


def test_event_that_never_applies_keeps_the_fs_serving(cluster_module, tmp_path):
    """Creating POISON journals an event whose apply always fails (injected): it is set
    aside, later changes apply, health names it, and a takeover replays past it."""
    cluster = cluster_module
    with mounted(cluster, tmp_path / "m") as m:
        d = m.path / "apply"
        d.mkdir()
        (d / POISON).write_text("x")
        for i in range(20):
            (d / f"ok{i}").write_text(str(i))
        names = set(os.listdir(d))                 # a listing waits for every apply
        assert {f"ok{i}" for i in range(20)} <= names

        def named() -> str:
            check = health(cluster).get("checks", {}).get("MDS_JOURNAL_APPLY")
            return json.dumps(check) if check else ""
        text = wait_for(named, 30, "MDS_JOURNAL_APPLY in health")
        assert "journal event" in text and "injected" in text, text
        victim = active_mds(cluster)
        assert cluster.kill(f"mds.{victim}")
        wait_for(lambda: active_mds(cluster) not in ("", victim), 30, "a takeover")
        (d / "after-takeover").write_text("y")
        assert (d / "after-takeover").read_text() == "y"
        assert (d / "ok7").read_text() == "7"
        wait_for(named, 30, "MDS_JOURNAL_APPLY after the takeover")
        cluster.start(f"mds.{victim}")


def sigterm_with_a_request_pending(m) -> tuple[float, int]:
    """stat() in a thread (waiting for an MDS that is gone), then SIGTERM to the mount:
    how long the process takes to exit, and the errno the stat got."""
    got: list[int] = []

    def probe() -> None:
        try:
            os.stat(m.path / "pending")
            got.append(0)
        except OSError as e:
            got.append(e.errno)
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    os.kill(m.pid, signal.SIGTERM)
    wait_for(lambda: not alive(m.pid), 30, "the mount process to exit")
    exited = time.monotonic() - t0
    thread.join(10)
    return exited, got[0] if got else -1


def test_mount_without_any_mds_fails_fast_and_unmounts(cluster_module, tmp_path):
    """Every MDS killed: statfs answers (last known values), stat and create fail within
    client_mount_timeout, fsync of an open file too; `sds umount` returns within
    seconds; with an MDS back, a new mount works."""
    cluster = cluster_module
    path = tmp_path / "m"
    with mounted(cluster, path) as m, mounted(cluster, tmp_path / "term") as term:
        with open(m.path / "known", "w") as f:  # fsync: close(2) alone may report it
            f.write("x")                          # after the kill below (deferred close)
            f.flush()
            os.fsync(f.fileno())
        assert os.statvfs(m.path).f_blocks > 0   # right even on a cluster seconds old
        fd = os.open(m.path / "open", os.O_CREAT | os.O_WRONLY, 0o644)
        names = cluster.names("mds")
        for name in names:
            cluster.kill(name)
        try:
            exited, pending = sigterm_with_a_request_pending(term)
            print(f"mount exit after SIGTERM with a request pending: {exited:.2f}s ({pending})")
            assert exited < 10 and pending in (errno.EIO, errno.ENOTCONN, errno.ETIMEDOUT)
            t0 = time.monotonic()
            st = os.statvfs(m.path)
            assert st.f_blocks > 0
            timings = {"statfs": time.monotonic() - t0}
            for what, call in (("stat", lambda: os.stat(m.path / "never-seen")),
                               ("create", lambda: os.open(m.path / "new",
                                                          os.O_CREAT | os.O_WRONLY, 0o644)),
                               ("fsync", lambda: (os.write(fd, b"data"), os.fsync(fd)))):
                t0 = time.monotonic()
                with pytest.raises(OSError) as e:
                    call()
                timings[what] = time.monotonic() - t0
                assert e.value.errno in (errno.ETIMEDOUT, errno.EIO), (what, e.value)
                assert timings[what] < MOUNT_TIMEOUT + 10, (what, timings)
            t0 = time.monotonic()
            with pytest.raises(OSError):        # the unreported write cannot be reported
                os.close(fd)
            timings["close"] = time.monotonic() - t0
            assert timings["close"] < MOUNT_TIMEOUT + 10, timings
            t0 = time.monotonic()
            sds("umount", str(m.path), timeout=60)
            timings["umount"] = time.monotonic() - t0
            print("with every MDS dead:", {k: round(v, 2) for k, v in timings.items()})
            assert timings["umount"] < 15
        finally:
            for name in names:
                cluster.start(name)
    wait_for(lambda: active_mds(cluster), 60, "an active MDS again")
    with mounted(cluster, path) as m:
        assert (m.path / "known").read_text() == "x"
