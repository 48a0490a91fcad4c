"""A small loop-mounted ext4 for tests that fill a disk; always unmounted afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def small_filesystem(base: Path, size_mb: int, at: Path | None = None):
    """A fresh ext4 of `size_mb` (image in `base`) loop-mounted at `at` (default base/mnt,
    made if missing); unmounted and its loop device detached afterwards, whatever
    happened."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root and mkfs.ext4 for a loop-mounted filesystem")
    mnt = at or base / "mnt"
    img = base / f"{mnt.name}.img"
    mnt.mkdir(exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    _run("mkfs.ext4", "-q", str(img))
    _run("mount", "-o", "loop", str(img), str(mnt))
    try:
        yield mnt
    finally:
        for attempt in range(20):
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.5 if attempt < 19 else 0)
        else:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        for line in _run("losetup", "-j", str(img)).splitlines():
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True)
        img.unlink(missing_ok=True)
