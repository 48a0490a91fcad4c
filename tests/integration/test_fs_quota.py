"""Directory quotas as a mount sees them: EDQUOT, and statfs reporting the quota (CSI's PVC
size). File data goes straight to the OSDs, so a byte quota is checked when the new size
reaches the MDS: close() or fsync() fail with EDQUOT, and the refused bytes are dropped."""

from __future__ import annotations

import contextlib
import errno
import os

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
        os.write(fd, os.urandom(6 * MiB))
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EDQUOT
        os.close(fd)
        assert os.stat(q / "b").st_size == 0  # the refused bytes are gone, not half-counted
        os.truncate(q / "b", 2 * MiB)  # growing later shows zeros, never the refused data
        assert (q / "b").read_bytes() == bytes(2 * MiB)
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
        fd = os.open(a.path / "r" / "big", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
            os.write(fd, os.urandom(2 * MiB))     # over the quota, not reported yet
            assert (b.path / "r" / "big").read_bytes() == b"ok"  # revokes a: refused growth
            close_fails_with(fd, errno.EDQUOT)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        (a.path / "r" / "after").write_text("still mounted")  # not evicted
        assert (a.path / "r" / "after").read_text() == "still mounted"
