"""Volume and snapshot ids: they carry everything a node needs to mount a volume without
asking the controller (filesystem, group, subvolume), so NodeStage works from the id alone.

    sds1:<fs>:<group>:<subvolume>             a volume
    sds1:<fs>:<group>:<subvolume>:<snapshot>  a snapshot of it
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sds.common.errors import InvalidArgument

PREFIX = "sds1"
_PART = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
MAX_ID = 128  # what Kubernetes stores in a PV's volumeHandle comfortably


@dataclass(frozen=True)
class VolumeId:
    fs: str
    group: str
    name: str

    def __str__(self) -> str:
        return f"{PREFIX}:{self.fs}:{self.group}:{self.name}"

    @property
    def path(self) -> str:
        return f"/volumes/{self.group}/{self.name}"


@dataclass(frozen=True)
class SnapshotId:
    volume: VolumeId
    snap: str

    def __str__(self) -> str:
        return f"{self.volume}:{self.snap}"


def check_part(what: str, value: str) -> str:
    if not _PART.match(value or "") or value.startswith("."):
        raise InvalidArgument(f"invalid {what} {value!r}: letters, digits, '_', '-', '.'")
    return value


def make_volume_id(fs: str, group: str, name: str) -> VolumeId:
    vid = VolumeId(check_part("filesystem", fs), check_part("subvolume group", group),
                   check_part("subvolume", name))
    if len(str(vid)) > MAX_ID:
        raise InvalidArgument(f"volume id {vid} is longer than {MAX_ID} characters")
    return vid


def parse_volume_id(text: str) -> VolumeId | None:
    """The id's parts, or None when it is not an id this plugin made (callers decide
    whether that is NOT_FOUND or, for deletes, success)."""
    parts = text.split(":")
    if len(parts) != 4 or parts[0] != PREFIX or not all(_PART.match(p) for p in parts[1:]):
        return None
    return VolumeId(*parts[1:])


def parse_snapshot_id(text: str) -> SnapshotId | None:
    parts = text.split(":")
    if len(parts) != 5 or parts[0] != PREFIX or not all(_PART.match(p) for p in parts[1:]):
        return None
    return SnapshotId(VolumeId(*parts[1:4]), parts[4])
