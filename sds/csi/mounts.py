"""The node's mounts: a volume is staged as an `sds mount --root <subvolume>` process (a FUSE
mount that outlives the plugin) and published as bind mounts of the staging path.

Each staged volume has a record next to its staging path (`<staging>.sds-csi.json`:
volume id, root, read-only, published targets) and an index entry in the plugin's state
directory pointing at it, so a restarted plugin finds its volumes and remounts any whose
FUSE process died ("transport endpoint is not connected"), re-binding their targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sds.common.errors import SdsError, TimedOut
from sds.common.keyring import Keyring

log = logging.getLogger("sds.csi.mounts")
MOUNT_TIMEOUT_S = 120.0
STAT_TIMEOUT_S = 5.0
RECORD_SUFFIX = ".sds-csi.json"


@dataclass
class StageRecord:
    volume_id: str
    staging: str
    fs: str
    root: str
    read_only: bool
    entity: str
    keyring: str | None = None
    targets: dict[str, bool] = field(default_factory=dict)  # target path -> read-only


MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, flags: int) -> None:
    if _libc.mount(source.encode(), target.encode(), None, flags, None) != 0:
        code = ctypes.get_errno()
        raise SdsError(f"mount {source} on {target}: {os.strerror(code)}", code)


def _umount(target: str, flags: int) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        code = ctypes.get_errno()
        if code == errno.EINVAL and mount_entry(target) is None:
            return  # not mounted (any more)
        raise SdsError(f"umount {target}: {os.strerror(code)}", code)


def _mount_table() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, options) of every mount, from /proc/mounts (never stats)."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 3:
                out.append((parts[1].replace("\\040", " "), parts[2], set(parts[3].split(","))))
    return out


def mount_entry(path: str) -> tuple[str, set[str]] | None:
    """(fstype, options) of the topmost mount at PATH, None when nothing is mounted there."""
    path = os.path.abspath(path)
    found = None
    for point, fstype, opts in _mount_table():
        if point == path:
            found = (fstype, opts)
    return found


async def is_dead(path: str) -> bool:
    """A FUSE mount whose process is gone answers ENOTCONN (or hangs: treat that as dead)."""
    try:
        await asyncio.wait_for(asyncio.to_thread(os.stat, path), STAT_TIMEOUT_S)
        return False
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.EIO, errno.ECONNABORTED)
    except TimeoutError:
        return True


async def _run(*argv: str, timeout: float = MOUNT_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a command to its exit, from a thread (whatever event loop serves the plugin).
    Its output goes to a file, not a pipe: `sds mount` leaves a daemon behind that keeps
    inherited descriptors open for as long as it mounts."""
    def run() -> subprocess.CompletedProcess:
        with tempfile.TemporaryFile() as out:
            try:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise TimedOut(f"{' '.join(argv[:4])} did not finish in {timeout:g}s") from None
            out.seek(0)
            text = out.read().decode(errors="replace")
        return subprocess.CompletedProcess(argv, done.returncode, text, text)

    return await asyncio.to_thread(run)


class NodeMounts:
    def __init__(self, conf: str, entity: str, keyring: str | None, state_dir: Path):
        self.conf, self.entity, self.keyring = conf, entity, keyring
        self.state_dir = state_dir
        (state_dir / "staged").mkdir(parents=True, exist_ok=True, mode=0o700)
        (state_dir / "logs").mkdir(parents=True, exist_ok=True, mode=0o700)
        (state_dir / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- records ---------------------------------------------------------------------------
    @staticmethod
    def _digest(path: str) -> str:
        return hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:24]

    def _index(self, staging: str) -> Path:
        return self.state_dir / "staged" / self._digest(staging)

    @staticmethod
    def record_path(staging: str) -> Path:
        return Path(os.path.abspath(staging) + RECORD_SUFFIX)

    def load(self, staging: str) -> StageRecord | None:
        try:
            return StageRecord(**json.loads(self.record_path(staging).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def save(self, rec: StageRecord) -> None:
        path = self.record_path(rec.staging)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec)))
        os.replace(tmp, path)
        self._index(rec.staging).write_text(rec.staging)

    def forget(self, staging: str) -> None:
        for p in (self.record_path(staging), self._index(staging)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def records(self) -> list[StageRecord]:
        out = []
        for entry in sorted((self.state_dir / "staged").iterdir()):
            rec = self.load(entry.read_text())
            if rec is None:
                entry.unlink(missing_ok=True)  # its staging path is gone: nothing to keep
            else:
                out.append(rec)
        return out

    def find_target(self, target: str) -> StageRecord | None:
        target = os.path.abspath(target)
        return next((r for r in self.records() if target in r.targets), None)

    def keyring_for(self, entity: str, key: bytes) -> str:
        """A private keyring file holding a request's key (from its node-stage secret)."""
        path = self.state_dir / "keys" / f"{entity}.keyring"
        Keyring({entity: (key, {})}).save(path)
        return str(path)

    # -- FUSE stage mounts -----------------------------------------------------------------
    async def mount(self, rec: StageRecord) -> None:
        os.makedirs(rec.staging, exist_ok=True)
        log_file = self.state_dir / "logs" / f"mount.{self._digest(rec.staging)}.log"
        argv = [sys.executable, "-m", "sds", "--conf", self.conf, "--name", rec.entity]
        if rec.keyring:
            argv += ["--keyring", rec.keyring]
        argv += ["mount", "--fs", rec.fs, "--root", rec.root, "--log-file", str(log_file)]
        if rec.read_only:
            argv.append("--ro")
        done = await _run(*argv, rec.staging)
        if done.returncode != 0:
            raise SdsError(f"mounting {rec.root} at {rec.staging} failed (exit "
                           f"{done.returncode}): {done.stderr.strip()} (log: {log_file})",
                           done.returncode if 0 < done.returncode < 256 else errno.EIO)

    async def unmount_stage(self, staging: str) -> None:
        if mount_entry(staging) is None:
            return
        done = await _run(sys.executable, "-m", "sds", "umount", os.path.abspath(staging),
                          timeout=60)
        if done.returncode != 0 and mount_entry(staging) is not None:
            await self.detach(staging)

    @staticmethod
    async def detach(path: str) -> None:
        """Take away whatever is mounted at PATH now, even a dead FUSE mount."""
        for _ in range(8):  # stacked mounts come off one by one
            if mount_entry(path) is None:
                return
            try:
                await asyncio.to_thread(_umount, path, MNT_DETACH)
            except SdsError:
                with contextlib.suppress(SdsError, OSError):
                    await _run("fusermount3", "-uz", path, timeout=30)

    # -- bind mounts (mount(2) itself: no helper process per pod) -------------------------
    async def bind(self, staging: str, target: str, read_only: bool) -> None:
        os.makedirs(target, exist_ok=True)
        await asyncio.to_thread(_mount, staging, target, MS_BIND)
        if read_only:
            try:
                await asyncio.to_thread(_mount, staging, target,
                                        MS_REMOUNT | MS_BIND | MS_RDONLY)
            except SdsError:
                await self.detach(target)
                raise

    async def unbind(self, target: str) -> None:
        while mount_entry(target) is not None:  # a target may have been bound twice
            try:
                await asyncio.to_thread(_umount, target, 0)
            except SdsError:
                await asyncio.to_thread(_umount, target, MNT_DETACH)

    # -- repair ------------------------------------------------------------------------------
    async def healthy(self, rec: StageRecord) -> bool:
        return mount_entry(rec.staging) is not None and not await is_dead(rec.staging)

    async def repair(self, rec: StageRecord) -> None:
        """Remount a staged volume whose FUSE process died, and re-bind its targets (they
        still point at the dead connection)."""
        log.warning("volume %s: the mount at %s is dead; remounting", rec.volume_id,
                    rec.staging)
        for target in rec.targets:
            await self.detach(target)
        await self.detach(rec.staging)
        await self.mount(rec)
        for target, ro in rec.targets.items():
            await self.bind(rec.staging, target, ro)
