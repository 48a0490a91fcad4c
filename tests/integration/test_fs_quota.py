"""Directory quotas as a mount sees them: EDQUOT, and statfs reporting the quota (CSI's PVC
size). The MDS tells the client how far a file may grow under its quota, so write(2) itself
fails with EDQUOT there and what fitted stays (as with CephFS). Growth the MDS still refuses
when it is reported (two files filling one quota at once) fails close() or fsync() with
EDQUOT, and the refused bytes are dropped."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import pytest
from fsmounts import FS_CLUSTER, close_fails_with, mounted, requires_mds, sds

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]

MiB = 1 << 20


def test_quota_edquot_and_statfs(cluster_module, tmp_path):
    conf = str(cluster_module.conf)
    with mounted(cluster_module, tmp_path / "all") as m:
        q = m.path / "q"
        q.mkdir()
        sds("--conf", conf, "fs", "quota", "set", "/q", "--max-bytes", str(8 * MiB),
            "--max-files", "5")
        (q / "a").write_bytes(os.urandom(4 * MiB))
        fd = os.open(q / "b", os.O_CREAT | os.O_WRONLY, 0o644)
        data = os.urandom(6 * MiB)
        assert os.write(fd, data) == 4 * MiB   # short: what fits
        with pytest.raises(OSError) as e:
            os.write(fd, data[4 * MiB:])
        assert e.value.errno == errno.EDQUOT
        os.fsync(fd)
        os.close(fd)
        assert (q / "b").read_bytes() == data[:4 * MiB]  # exactly what fitted
        os.truncate(q / "b", 2 * MiB)
        for i in range(3):
            (q / f"f{i}").write_text("x")
        with pytest.raises(OSError) as e:
            (q / "one-too-many").write_text("x")
        assert e.value.errno == errno.EDQUOT
        with mounted(cluster_module, tmp_path / "pvc", "--root", "/q") as pvc:
            st = os.statvfs(pvc.path)
            assert st.f_blocks * st.f_frsize == 8 * MiB
            assert st.f_bavail * st.f_frsize <= 2 * MiB
            assert st.f_files == 5


def test_growth_refused_during_a_revoke_does_not_evict_the_writer(cluster_module, tmp_path):
    """A mount holds unreported growth past the quota when another mount opens the file:
    the MDS refuses the flush the revoke makes but counts it as the answer (no eviction),
    and the writer's close reports EDQUOT as it would without the other mount."""
    conf = str(cluster_module.conf)
    with mounted(cluster_module, tmp_path / "a") as a, \
            mounted(cluster_module, tmp_path / "b") as b:
        (a.path / "r").mkdir()
        sds("--conf", conf, "fs", "quota", "set", "/r", "--max-bytes", str(MiB))
        first = os.open(a.path / "r" / "first", os.O_CREAT | os.O_WRONLY, 0o644)
        fd = os.open(a.path / "r" / "big", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
            # each fits the room the quota had when it was last reported; together they
            # do not: the second report is refused
            os.write(first, os.urandom(700 << 10))
            os.write(fd, os.urandom(700 << 10))   # not reported yet
            os.fsync(first)
            assert (b.path / "r" / "big").read_bytes() == b"ok"  # revokes a: refused growth
            close_fails_with(fd, errno.EDQUOT)
        finally:
            for f in (first, fd):
                with contextlib.suppress(OSError):
                    os.close(f)
        (a.path / "r" / "after").write_text("still mounted")  # not evicted
        assert (a.path / "r" / "after").read_text() == "still mounted"


def test_dd_into_a_quota_keeps_what_fitted(cluster_module, tmp_path):
    """`dd bs=1M count=20 conv=fsync` into a 10 MiB quota: dd's write(2) fails with
    EDQUOT at the quota, and the file keeps the 10 MiB that fitted."""
    conf = str(cluster_module.conf)
    with mounted(cluster_module, tmp_path / "m") as m:
        (m.path / "dd").mkdir()
        sds("--conf", conf, "fs", "quota", "set", "/dd", "--max-bytes", str(10 * MiB))
        done = subprocess.run(["dd", "if=/dev/urandom", f"of={m.path / 'dd' / 'out'}", "bs=1M",
                               "count=20", "conv=fsync"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0 and "quota" in done.stderr.lower(), done.stderr
        assert os.stat(m.path / "dd" / "out").st_size == 10 * MiB
