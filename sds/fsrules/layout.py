"""The part of the filesystem's layout every side knows: the root inode, and the data
objects a file's bytes live in (``<ino:016x>.<index:08x>`` of `DEFAULT_STRIPE_SIZE`
bytes in the data pool). The MDS names them to copy and purge, clients to read and
write; the metadata pool's own encoding stays with the MDS (sds.mds.layout)."""

from __future__ import annotations

ROOT_INO = 1
SNAPDIR = ".snap"  # every directory's snapshots, made by the MDS when first looked up
DEFAULT_STRIPE_SIZE = 4 << 20


def object_name(ino: int, index: int) -> str:
    return f"{ino:016x}.{index:08x}"


def parse_index(name: str) -> int | None:
    """The stripe index of a data object's name (None if it is not one)."""
    _, dot, index = name.partition(".")
    try:
        return int(index, 16) if dot else None
    except ValueError:
        return None
