"""`sds mount` / `sds umount` as a user runs them: a daemon that outlives the shell, clear
errors, --ro, --root, busy unmounts, and fsync'd data surviving a client crash."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import time

import pytest
from fsmounts import FS_CLUSTER, Mount, alive, close_fails_with, mounted, requires_mds, sds

from sds.fs.mount import is_mounted, sds_mounts, state_file

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]


def test_mount_is_a_daemon_and_umount_waits_for_it(cluster_module, tmp_path):
    mnt = tmp_path / "mnt"
    with mounted(cluster_module, mnt) as m:
        assert os.getsid(m.pid) != os.getsid(0)  # its own session: the shell can go
        with open(f"/proc/{m.pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) != os.getpid()
        logs = list((cluster_module.conf.parent / "out").glob("mount.*.log"))
        assert any("mounted fs sdsfs/" in p.read_text() for p in logs)
        again = sds("mount", "--conf", str(cluster_module.conf), str(mnt), check=False)
        assert again.returncode == errno.EBUSY and "already" in again.stderr
        pid = m.pid
        out = sds("umount", str(mnt))
        assert "unmounted" in out.stdout
        assert not is_mounted(str(mnt)) and not alive(pid)
    gone = sds("umount", str(mnt), check=False)
    assert gone.returncode == errno.EINVAL and "not an SDS mount" in gone.stderr


def test_foreground_mount_runs_until_unmounted(cluster_module, tmp_path):
    mnt = tmp_path / "fg"
    mnt.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "sds", "--conf", str(cluster_module.conf),
                             "mount", "-f", str(mnt)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not is_mounted(str(mnt)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert is_mounted(str(mnt))
        (mnt / "f").write_text("fg")
        sds("umount", str(mnt))
        assert proc.wait(timeout=30) == 0
        assert "mounted fs sdsfs/" in proc.stderr.read()  # logs go to stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Mount(cluster_module, mnt).stop()


def test_mount_errors_are_clear_and_leave_nothing(cluster_module, tmp_path):
    missing = sds("mount", "--conf", str(cluster_module.conf), str(tmp_path / "nope"),
                  check=False)
    assert missing.returncode == errno.ENOENT and "not a directory" in missing.stderr
    (tmp_path / "m").mkdir()
    bad_fs = sds("mount", "--conf", str(cluster_module.conf), "--fs", "nosuchfs",
                 str(tmp_path / "m"), check=False)
    assert bad_fs.returncode == errno.ENOENT and "nosuchfs" in bad_fs.stderr, bad_fs.stderr
    bad_root = sds("mount", "--conf", str(cluster_module.conf), "--root", "/no/such/dir",
                   str(tmp_path / "m"), check=False)
    assert bad_root.returncode == errno.ENOENT, bad_root.stderr
    assert [p for p in sds_mounts() if p.startswith(str(tmp_path))] == []


def test_busy_umount_fails_until_files_are_closed(cluster_module, tmp_path):
    with mounted(cluster_module, tmp_path / "mnt") as m:
        f = open(m.path / "held", "w")
        try:
            busy = sds("umount", str(m.path), check=False)
            assert busy.returncode == errno.EBUSY and "busy" in busy.stderr
            assert is_mounted(str(m.path))
        finally:
            f.close()
        sds("umount", str(m.path))


def test_read_only_mount(cluster_module, tmp_path):
    with mounted(cluster_module, tmp_path / "rw") as rw:
        (rw.path / "ro-test").mkdir()
        (rw.path / "ro-test" / "f").write_text("data")
        with mounted(cluster_module, tmp_path / "ro", "--ro") as ro:
            d = ro.path / "ro-test"
            assert (d / "f").read_text() == "data"
            for attempt in (lambda: (d / "new").write_text("x"),
                            lambda: open(d / "f", "a"),
                            lambda: (d / "sub").mkdir(),
                            lambda: (d / "f").unlink(),
                            lambda: os.chmod(d / "f", 0o600),
                            lambda: os.truncate(d / "f", 0),
                            lambda: os.setxattr(d / "f", "user.x", b"1")):
                with pytest.raises(OSError) as e:
                    attempt()
                assert e.value.errno == errno.EROFS
        assert (rw.path / "ro-test" / "f").read_text() == "data"


def test_root_subdirectory_mount(cluster_module, tmp_path):
    with mounted(cluster_module, tmp_path / "whole") as whole:
        sub = whole.path / "volumes" / "v1"
        sub.mkdir(parents=True)
        (sub / "inside").write_text("in v1")
        with mounted(cluster_module, tmp_path / "v1", "--root", "/volumes/v1") as v1:
            assert os.listdir(v1.path) == ["inside"]
            assert (v1.path / "inside").read_text() == "in v1"
            (v1.path / "made-here").write_text("hello")
            os.mkdir(v1.path / "d")
            assert os.stat(v1.path).st_ino == 1  # the FUSE root, whatever the MDS inode
        assert (sub / "made-here").read_text() == "hello" and (sub / "d").is_dir()


def test_fsynced_data_survives_a_client_crash(cluster_module, tmp_path):
    data = os.urandom(6 << 20)
    m = Mount(cluster_module, tmp_path / "mnt").start()
    try:
        fd = os.open(m.path / "durable", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        m.kill()  # kill -9 with the file still open: no flush, no release
        with pytest.raises(OSError):
            os.close(fd)  # ENOTCONN from the dead mount is fine
    finally:
        m.stop()
    with mounted(cluster_module, tmp_path / "mnt") as again:
        assert (again.path / "durable").stat().st_size == len(data)
        assert (again.path / "durable").read_bytes() == data


def test_a_failed_data_write_surfaces_at_fsync_and_close(cluster_module, tmp_path):
    """Writes are acknowledged once queued for the OSDs; an OSD's refusal must still reach
    the application, at the next fsync or close, as the kernel reports writeback errors.
    The mount's client instance (shown by `sds mount`) is blocklisted to make OSDs refuse."""
    conf = str(cluster_module.conf)
    with mounted(cluster_module, tmp_path / "mnt") as m:
        client = json.loads(state_file(os.path.realpath(m.path)).read_text())["client"]
        fd = os.open(m.path / "f", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.write(fd, os.urandom(2 << 20))
            os.fsync(fd)
            sds("--conf", conf, "osd", "blocklist", "add", client)
            failed = None
            for _ in range(100):  # until the OSDs have the new map
                os.pwrite(fd, os.urandom(4096), 4096)  # an overwrite: no growth to report
                try:
                    os.fsync(fd)
                except OSError as e:
                    failed = e.errno
                    break
                time.sleep(0.1)
            assert failed == errno.ESHUTDOWN
            os.pwrite(fd, b"x", 0)
            close_fails_with(fd, errno.ESHUTDOWN)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            sds("--conf", conf, "osd", "blocklist", "rm", client)


def test_no_mounts_left_behind(tmp_path_factory):
    base = str(tmp_path_factory.getbasetemp())  # this session's mounts only
    assert [p for p in sds_mounts() if p.startswith(base)] == []
