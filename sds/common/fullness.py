"""How full a device is, and the three thresholds that decide what it may still take.

Shared by OSDs (admission of writes and copies), the manager (usage per filesystem) and
monitors (health checks, the cluster FULL flag), so all judge fullness the same way.
Ratios are fractions of a device in use, as Ceph's: nearfull warns, backfillfull stops
recovery copies into the OSD, full stops client writes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sds.common.errors import InvalidArgument

NEARFULL, BACKFILLFULL, FULL = "nearfull", "backfillfull", "full"
FULL_FLAG = "full"  # OSDMap flag set by the monitors while any OSD is full


@dataclass(frozen=True)
class Ratios:
    nearfull: float
    backfillfull: float
    full: float

    def validate(self) -> Ratios:
        """Refuse ratios outside (0, 1] or out of order (nearfull <= backfillfull <= full):
        out of order, an OSD would stop taking copies before anyone was warned."""
        for name, value in (("nearfull", self.nearfull), ("backfillfull", self.backfillfull),
                            ("full", self.full)):
            if not 0.0 < value <= 1.0:
                raise InvalidArgument(f"{name} ratio must be in (0, 1], not {value:g}")
        if not self.nearfull <= self.backfillfull <= self.full:
            raise InvalidArgument(
                f"ratios out of order: need nearfull <= backfillfull <= full, got "
                f"{self.nearfull:g} / {self.backfillfull:g} / {self.full:g}")
        return self

    def level(self, used_ratio: float) -> str | None:
        """The highest threshold a device at `used_ratio` has reached, or None."""
        if used_ratio >= self.full:
            return FULL
        if used_ratio >= self.backfillfull:
            return BACKFILLFULL
        if used_ratio >= self.nearfull:
            return NEARFULL
        return None


def ratios_of(osdmap, config) -> Ratios:
    """The map's ratios; options fill in those a map written before them lacks."""
    return Ratios(
        osdmap.nearfull_ratio or float(config.get("mon_osd_nearfull_ratio")),
        osdmap.backfillfull_ratio or float(config.get("mon_osd_backfillfull_ratio")),
        osdmap.full_ratio or float(config.get("mon_osd_full_ratio")))


def ratios_from_config(config) -> Ratios:
    return Ratios(float(config.get("mon_osd_nearfull_ratio")),
                  float(config.get("mon_osd_backfillfull_ratio")),
                  float(config.get("mon_osd_full_ratio"))).validate()


@dataclass(frozen=True)
class DeviceUsage:
    """Space of the filesystem holding a path, as an unprivileged writer sees it."""

    total_bytes: int
    avail_bytes: int
    fs_id: str  # host and filesystem id: equal for directories on one filesystem

    @property
    def used_bytes(self) -> int:
        return max(self.total_bytes - self.avail_bytes, 0)

    @property
    def used_ratio(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 0.0


def device_usage(path: str | os.PathLike) -> DeviceUsage:
    """statvfs of `path`. Available counts f_bavail (ext4's root reserve excluded), so
    daemons running as root keep that reserve as extra headroom for deletes."""
    st = os.statvfs(path)
    return DeviceUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize,
                       f"{socket.gethostname()}:{st.f_fsid:x}")


def used_ratio(stats: dict) -> float:
    """Fraction in use of one OSD's row of the manager digest."""
    total = int(stats.get("total_bytes", 0))
    return int(stats.get("used_bytes", 0)) / total if total else 0.0


def by_filesystem(osd_stats: dict[str, dict]) -> dict[str, dict]:
    """One row per filesystem of the digest's OSD rows: OSDs sharing a filesystem (same
    fs_id) report the same device, which must count once. Rows without an fs_id (older
    OSDs) count as their own filesystem."""
    out: dict[str, dict] = {}
    for osd_id, s in osd_stats.items():
        key = s.get("fs_id") or f"osd.{osd_id}"
        row = out.setdefault(key, {"total_bytes": 0, "used_bytes": 0, "osds": []})
        row["total_bytes"] = max(row["total_bytes"], int(s.get("total_bytes", 0)))
        row["used_bytes"] = max(row["used_bytes"], int(s.get("used_bytes", 0)))
        row["osds"].append(int(osd_id))
    return out


def pool_max_avail(shares: dict[int, int], osd_stats: dict[str, dict], full_ratio: float,
                   size: int) -> int:
    """Bytes a pool can still store before its fullest OSD reaches the full ratio (Ceph's
    MAX AVAIL): each filesystem's room up to the full ratio, divided by the share of the
    pool's replicas that land on it; the smallest such projection, divided by size.
    `shares` counts the pool's PG replicas per OSD."""
    known = {k: v for k, v in osd_stats.items() if shares.get(int(k))}
    total_shares = sum(shares.values())
    if not known or not total_shares or size <= 0:
        return 0
    projections = []
    for row in by_filesystem(known).values():
        share = sum(shares.get(o, 0) for o in row["osds"]) / total_shares
        room = max(full_ratio * row["total_bytes"] - row["used_bytes"], 0.0)
        projections.append(room / share)
    return int(min(projections) / size)
