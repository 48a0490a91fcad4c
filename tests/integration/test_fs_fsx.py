"""fsx-style randomized test: random writes, truncates, fallocates (mode 0, KEEP_SIZE,
PUNCH_HOLE, ZERO_RANGE) and reads on a file in the mount, checked against the same
operations on a local reference file.

SDS_FSX_OPS sets the operation count (default 10,000), SDS_FSX_SEED the seed (default
a fixed one, printed on failure so a failing run can be replayed).
"""

from __future__ import annotations

import ctypes
import os
import random

import pytest
from fsmounts import FS_CLUSTER, mounted, requires_mds

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]

OPS = int(os.environ.get("SDS_FSX_OPS", "10000"))
SEED = int(os.environ.get("SDS_FSX_SEED", "20261127"))
MAX_SIZE = 10 << 20     # crosses two 4 MiB object boundaries
MAX_IO = 64 << 10       # small ops, as fsx does: many of them, each checked
FALLOC_MODES = (0, 0x01, 0x03, 0x10, 0x11)  # 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE(|KEEP)
_libc = ctypes.CDLL(None, use_errno=True)


def fallocate(fd: int, mode: int, off: int, length: int) -> None:
    if _libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Fsx:
    def __init__(self, path: str, ref: str, rng: random.Random):
        self.rng = rng
        self.paths = (path, ref)
        self.fds = [os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644) for p in self.paths]
        self.size = 0
        self.log: list[str] = []

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)

    def reopen(self) -> None:
        self.close()
        flags = os.O_RDWR | (os.O_APPEND if self.rng.random() < 0.2 else 0)
        self.fds = [os.open(p, flags) for p in self.paths]
        self.appending = bool(flags & os.O_APPEND)

    appending = False

    def offset(self, bias_end: bool = True) -> int:
        r = self.rng.random()
        if bias_end and r < 0.2:
            return self.size
        if r < 0.35:  # around a 4 MiB object boundary
            return max(0, (4 << 20) * self.rng.randint(1, 2) + self.rng.randint(-4096, 4096))
        return self.rng.randrange(0, MAX_SIZE)

    def step(self, i: int) -> None:
        op = self.rng.choices(["write", "read", "truncate", "fallocate", "reopen", "fsync",
                               "stat"], [36, 33, 8, 12, 4, 4, 3])[0]
        fs_fd, ref_fd = self.fds
        if op == "write":
            off = min(self.offset(), MAX_SIZE - 1)
            data = self.rng.randbytes(self.rng.randint(1, MAX_IO))
            if self.appending:
                off = self.size
            self.log.append(f"{i} write off={off} len={len(data)} append={self.appending}")
            for fd in self.fds:
                assert os.pwrite(fd, data, off) == len(data)
            self.size = max(self.size, off + len(data))
        elif op == "read":
            off = self.offset(bias_end=False)
            n = self.rng.randint(1, MAX_IO * 2)
            self.log.append(f"{i} read off={off} len={n}")
            got, want = os.pread(fs_fd, n, off), os.pread(ref_fd, n, off)
            if got != want:
                at = next((j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                          min(len(got), len(want)))
                raise AssertionError(f"seed {SEED}: read at {off}+{n} differs at byte "
                                     f"{off + at} (got {len(got)} bytes, want {len(want)})\n"
                                     + "\n".join(self.log[-15:]))
        elif op == "truncate":
            size = self.rng.randrange(0, MAX_SIZE)
            self.log.append(f"{i} truncate {size}")
            for fd in self.fds:
                os.ftruncate(fd, size)
            self.size = size
        elif op == "fallocate":
            mode = self.rng.choice(FALLOC_MODES)
            off = min(self.offset(), MAX_SIZE - 1)
            length = self.rng.randint(1, min(MAX_IO * 4, MAX_SIZE - off))
            self.log.append(f"{i} fallocate mode={mode:#x} off={off} len={length}")
            for fd in self.fds:
                fallocate(fd, mode, off, length)
            if not mode & 0x01:
                self.size = max(self.size, off + length)
        elif op == "reopen":
            self.log.append(f"{i} reopen")
            self.reopen()
        elif op == "fsync":
            self.log.append(f"{i} fsync")
            os.fsync(fs_fd)
        else:
            self.log.append(f"{i} stat")
            assert os.fstat(fs_fd).st_size == os.fstat(ref_fd).st_size == self.size, \
                f"seed {SEED}: size\n" + "\n".join(self.log[-15:])


@pytest.mark.timeout(1200)  # 10,000 ops take about 2 min here; far longer on a loaded machine
def test_fsx_random_ops(cluster_module, tmp_path):
    with mounted(cluster_module, tmp_path / "mnt") as m:
        fsx = Fsx(str(m.path / "fsx.bin"), str(tmp_path / "ref.bin"), random.Random(SEED))
        try:
            for i in range(OPS):
                fsx.step(i)
        finally:
            fsx.close()
        # after a close and reopen everything still matches
        assert (m.path / "fsx.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
