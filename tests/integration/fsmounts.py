"""Kernel FUSE mounts for the filesystem tests: always unmounted, their process always killed.

    with mounted(cluster, tmp_path / "mnt") as m:     # `sds mount` as a subprocess
        (m.path / "f").write_text("x")

Leaving the block, even on failure: `sds umount`; if that fails, kill -9 the mount
process and detach the mount (fusermount3 -uz); then the mount must be gone from
/proc/mounts. Tests that need an MDS use `requires_mds` until every tree has one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sds.cluster import local
from sds.fs.mount import is_mounted, state_file

MOUNT_TIMEOUT_S = 120


def mds_available() -> bool:
    return (importlib.util.find_spec("sds.mds.daemon") is not None
            and "mds" in inspect.signature(local.cluster_up).parameters)


requires_mds = pytest.mark.skipif(not mds_available(),
                                  reason="no MDS daemon in this tree yet")
FS_CLUSTER = pytest.mark.cluster_opts(mds=2) if mds_available() else pytest.mark.cluster_opts()


def sds(*args: str, check: bool = True, timeout: float = MOUNT_TIMEOUT_S,
        **kw) -> subprocess.CompletedProcess:
    """Run the `sds` CLI as its own process (as a user would)."""
    done = subprocess.run([sys.executable, "-m", "sds", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"sds {' '.join(args)} exited {done.returncode}: "
                             f"{done.stderr.strip()} {done.stdout.strip()}")
    return done


def close_fails_with(fd: int, code: int) -> None:
    """close(2) reports a write-back error as `code` (the fd is closed all the same)."""
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == code


def processes_mentioning(path: str) -> list[int]:
    """Mount client processes whose command line names this mount point."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mount" in argv and os.fsencode(path) in argv:
            pids.append(int(entry.name))
    return pids


class Mount:
    def __init__(self, cluster, path: Path, *args: str):
        self.cluster = cluster
        self.path = Path(path)
        self.args = args
        self.pid: int | None = None

    def start(self) -> Mount:
        self.path.mkdir(parents=True, exist_ok=True)
        sds("mount", "--conf", str(self.cluster.conf), *self.args, str(self.path))
        assert is_mounted(str(self.path)), f"{self.path} not in /proc/mounts after sds mount"
        self.pid = json.loads(state_file(os.path.realpath(self.path)).read_text())["pid"]
        return self

    def kill(self) -> None:
        """kill -9 the client (a crash): the mount stays, but is dead until detached."""
        for pid in {self.pid, *processes_mentioning(str(self.path))} - {None}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in {self.pid} - {None}) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """Unmount cleanly if possible, by force otherwise; the mount must end up gone."""
        try:
            if is_mounted(str(self.path)):
                sds("umount", str(self.path), timeout=60)
        except (AssertionError, subprocess.TimeoutExpired):
            pass
        finally:
            self.kill()
            if is_mounted(str(self.path)):
                subprocess.run(["fusermount3", "-uz", str(self.path)], capture_output=True)
            if is_mounted(str(self.path)):
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            with contextlib.suppress(FileNotFoundError):
                state_file(os.path.realpath(self.path)).unlink()
        assert not is_mounted(str(self.path)), f"{self.path} still mounted"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def mounted(cluster, path: Path, *args: str) -> Iterator[Mount]:
    m = Mount(cluster, path, *args)
    try:
        yield m.start()
    finally:
        m.stop()


def fsync_dir(path: Path) -> None:
    """fsync(2) of a directory: the creates and unlinks a mount answered in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
