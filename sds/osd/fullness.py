"""What an OSD still accepts as its device fills: the admission checks and the reserve.

Client writes are refused with ENOSPC when the cluster is flagged full, and also when
this OSD's own device is at the full ratio, without waiting for the flag (the mgr and
the monitors see usage seconds later). Ops that only free space (remove, truncate,
xattr/omap removal) are always admitted. The refusal happens on the primary before
the op enters the PG log, never on a replica: a replica refusing a logged write would
leave the PG's members disagreeing. Recovery and backfill copies into an OSD stop at the
backfillfull ratio, so moving data cannot fill the OSD that takes it.

Ceph's clients block while the cluster is full; here the write fails at once with ENOSPC,
so applications and the FUSE client get the POSIX answer instead of hanging until the op
timeout (a caller that prefers to wait retries after freeing space).

Why deletes still commit on a full device: client writes stop at the full ratio (0.95
by default), leaving 5% of the device for LMDB's copy-on-write pages; if something else
fills that space (another tenant of a shared filesystem, an overshoot), the OSD drops its
reserve file (`osd_full_reserve_bytes`), so the next deletes find room. The reserve is
taken again once usage is back below nearfull. The reserve lives beside the store, not
in it, so the store itself needs no notion of fullness.

From nearfull on, the store keeps no free extent files for reuse (they would count as
used while holding nothing, and a delete would free no space); it keeps them again once
the device has POOL_HEADROOM_BYTES below nearfull, room for its preallocated files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from sds.common.errors import NoSpace
from sds.common.fullness import FULL_FLAG, DeviceUsage, Ratios, device_usage
from sds.proto import osd_pb2

log = logging.getLogger("sds.osd")

Op = osd_pb2.OsdOp
FREEING_CODES = frozenset({Op.REMOVE, Op.TRUNCATE, Op.RMXATTR, Op.OMAP_RM, Op.OMAP_CLEAR})
SAMPLE_S = 0.25  # statvfs is cheap, but not worth doing on every op
RESERVE_NAME = "full-reserve"
POOL_HEADROOM_BYTES = 64 << 20
TOOFULL = "backfill_toofull"  # how a refused copy's error starts (Ceph's PG state name)


def failsafe_ratio(ratios: Ratios) -> float:
    """Where even the MDS stops: halfway from the full ratio to a full device (Ceph's
    osd_failsafe_full_ratio is 0.97 against full 0.95), so its journal never takes the
    room deletes need to commit."""
    return ratios.full + (1.0 - ratios.full) / 2


def check_write(code: int, flags, ratios: Ratios, usage: DeviceUsage, osd_id: int,
                full_try: bool = False) -> None:
    """Admission of one client write on the primary; raises NoSpace to refuse it.

    `full_try` (Ceph's CEPH_OSD_FLAG_FULL_TRY) is for the MDS: its journal must take the
    events that free space (an unlink is journaled before its objects go), so it writes
    past the FULL flag and the full ratio, up to the failsafe ratio."""
    if code in FREEING_CODES:
        return
    if full_try:
        if usage.used_ratio >= failsafe_ratio(ratios):
            raise NoSpace(f"osd.{osd_id} is {100 * usage.used_ratio:.1f}% used, past the "
                          f"failsafe ratio {failsafe_ratio(ratios):g} that even the MDS "
                          "stops at; delete objects through RADOS or add OSDs")
        return
    if FULL_FLAG in flags:
        raise NoSpace("the cluster is full (OSD_FULL: an OSD is past the full ratio "
                      f"{ratios.full:g}); writes are refused until space is freed: delete "
                      "objects, add OSDs or raise it (`sds osd set-full-ratio`)")
    if usage.used_ratio >= ratios.full:
        raise NoSpace(f"osd.{osd_id} is full ({100 * usage.used_ratio:.1f}% of its device "
                      f"used, full ratio {ratios.full:g}); delete objects or add OSDs")


def check_copy(ratios: Ratios, usage: DeviceUsage, osd_id: int) -> None:
    """Admission of a recovery/backfill copy on its target; raises NoSpace to refuse it."""
    if usage.used_ratio >= ratios.backfillfull:
        raise NoSpace(f"{TOOFULL}: osd.{osd_id} is {100 * usage.used_ratio:.1f}% used, "
                      f"past the backfillfull ratio {ratios.backfillfull:g}")


class DeviceWatch:
    """The OSD's view of its data directory's filesystem, sampled at most every SAMPLE_S,
    and the reserve file it keeps there."""

    def __init__(self, data_dir: Path, reserve_bytes: int):
        self.data_dir = data_dir
        self.reserve = data_dir / RESERVE_NAME
        self.reserve_bytes = max(0, reserve_bytes)
        self._usage: DeviceUsage | None = None
        self._stamp = 0.0
        self.pooling = True

    def usage(self, fresh_above: float = 1.0) -> DeviceUsage:
        """The latest sample; sampled again on every call once usage is at `fresh_above`
        (near a threshold a few writes in SAMPLE_S could overshoot it)."""
        now = time.monotonic()
        if self._usage is None or now - self._stamp >= SAMPLE_S \
                or self._usage.used_ratio >= fresh_above:
            self._usage = device_usage(self.data_dir)
            self._stamp = now
        return self._usage

    def tend(self, ratios: Ratios, store) -> None:
        """Every few seconds: free extent files kept by the store only while there is room
        for them, and the reserve."""
        usage = device_usage(self.data_dir)
        below_nearfull = ratios.nearfull * usage.total_bytes - usage.used_bytes
        if self.pooling and usage.used_ratio >= ratios.nearfull:
            self._stop_pooling(store, usage)
        elif not self.pooling and below_nearfull > POOL_HEADROOM_BYTES:
            self.pooling = True
            store.set_pooling(True)
        self.keep_reserve(ratios, store)

    def _stop_pooling(self, store, usage: DeviceUsage) -> None:
        self.pooling = False
        freed = store.set_pooling(False)
        self._usage = None
        log.info("device of %s is %.1f%% used: gave %d bytes of free extent files back",
                 self.data_dir, 100 * usage.used_ratio, freed)

    def make_room(self, ratios: Ratios, store=None) -> None:
        """Before a store commit: from nearfull on keep no free extent files, and drop the
        reserve if the device is out of space (filled by something else than our writes),
        so the commit finds room."""
        usage = self.usage(fresh_above=ratios.nearfull)
        if store is not None and self.pooling and usage.used_ratio >= ratios.nearfull:
            self._stop_pooling(store, usage)
        if usage.avail_bytes >= self.reserve_bytes or not self.reserve.exists():
            return
        with contextlib.suppress(FileNotFoundError):
            self.reserve.unlink()
            log.warning("device of %s is out of space (%d bytes left): released the %d-byte "
                        "reserve so deletes can commit", self.data_dir, usage.avail_bytes,
                        self.reserve_bytes)
        self._usage = None

    def keep_reserve(self, ratios: Ratios, store=None) -> None:
        """Drop the reserve when the device is out of space; take it back once usage is
        below nearfull with room to spare."""
        if not self.reserve_bytes:
            return
        self._usage = None
        self.make_room(ratios, store)
        usage = self.usage()
        if not self.reserve.exists() and usage.used_ratio < ratios.nearfull \
                and usage.avail_bytes > 4 * self.reserve_bytes:
            self._take_reserve()
            self._usage = None

    def _take_reserve(self) -> None:
        tmp = self.reserve.with_name(RESERVE_NAME + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.reserve)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning("cannot keep a %d-byte reserve in %s: %s", self.reserve_bytes,
                        self.data_dir, e)
