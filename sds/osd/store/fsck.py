"""Offline check of a stopped OSD's store (`sds osd fsck DIR`).

Why: a store that fails its checksums refuses to start; the operator needs to see what is
damaged before deciding between repair from replicas and a rebuild. Opening the store
recycles unreferenced extent files, so a running OSD's directory is refused.
"""

from __future__ import annotations

from pathlib import Path

from sds.common.daemon import pid_alive
from sds.common.errors import Busy, ChecksumError, NotFound, NotSupported
from sds.osd.store.durable import DurableStore


def store_dir(path: str | Path) -> Path:
    """The store inside an OSD data directory (osd.N/store), or `path` itself."""
    p = Path(path)
    if (p / "store" / "db").is_dir():
        return p / "store"
    if (p / "db").is_dir():
        return p
    raise NotFound(f"{p}: no OSD store here (expected {p}/store/db or {p}/db)")


def _refuse_if_running(store: Path) -> None:
    for pidfile in [*store.parent.glob("*.pid"), *store.glob("*.pid")]:
        try:
            pid = int(pidfile.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid and pid_alive(pid):
            raise Busy(f"{pidfile} names running process {pid}: stop the OSD first")


async def check(path: str | Path) -> list[str]:
    """Every problem found in the store (empty when consistent); a store that cannot be
    opened at all is one problem naming its file."""
    store = store_dir(path)
    _refuse_if_running(store)
    try:
        s = DurableStore(str(store), prealloc_files=0)
    except (ChecksumError, NotSupported) as e:
        return [str(e)]
    try:
        return s.fsck()
    finally:
        await s.close()
