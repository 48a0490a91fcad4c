"""Which volume capabilities SDS volumes satisfy: filesystem (mount) access in every
access mode, since the filesystem is shared (RWX); no raw block devices."""

from __future__ import annotations

from collections.abc import Iterable

from sds.common.errors import InvalidArgument
from sds.proto import csi_pb2

Mode = csi_pb2.VolumeCapability.AccessMode
SUPPORTED_MODES = {Mode.SINGLE_NODE_WRITER, Mode.SINGLE_NODE_READER_ONLY,
                   Mode.MULTI_NODE_READER_ONLY, Mode.MULTI_NODE_SINGLE_WRITER,
                   Mode.MULTI_NODE_MULTI_WRITER, Mode.SINGLE_NODE_SINGLE_WRITER,
                   Mode.SINGLE_NODE_MULTI_WRITER}
READ_ONLY_MODES = {Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY}
FS_TYPES = {"", "sds", "fuse.sds"}


def problem_of(cap: csi_pb2.VolumeCapability) -> str:
    """Why this capability cannot be met ('' when it can)."""
    if cap.WhichOneof("access_type") == "block":
        return "block volumes are not supported: SDS volumes are filesystems"
    if cap.WhichOneof("access_type") != "mount":
        return "access_type (mount) is missing"
    if cap.mount.fs_type not in FS_TYPES:
        return f"fs_type {cap.mount.fs_type!r} is not supported (SDS volumes are fuse.sds)"
    if not cap.HasField("access_mode") or cap.access_mode.mode not in SUPPORTED_MODES:
        return f"access mode {Mode.Mode.Name(cap.access_mode.mode)} is not supported"
    return ""


def problem_of_all(caps: Iterable[csi_pb2.VolumeCapability]) -> str:
    return next((p for p in map(problem_of, caps) if p), "")


def check(cap: csi_pb2.VolumeCapability | None) -> None:
    if cap is None or not cap.ByteSize():
        raise InvalidArgument("volume_capability is missing")
    problem = problem_of(cap)
    if problem:
        raise InvalidArgument(problem)


def check_all(caps) -> None:
    if not caps:
        raise InvalidArgument("volume_capabilities is missing")
    for cap in caps:
        check(cap)


def read_only(cap: csi_pb2.VolumeCapability) -> bool:
    return cap.access_mode.mode in READ_ONLY_MODES
