"""POSIX permission checks of the MDS, from the FUSE caller's uid, gid and groups."""

from __future__ import annotations

import os
import stat

from sds.common.errors import NotPermitted, PermissionDenied
from sds.proto import mds_pb2

R, W, X = 4, 2, 1


def is_root(caller: mds_pb2.Caller) -> bool:
    return caller.uid == 0


def in_group(caller: mds_pb2.Caller, gid: int) -> bool:
    return caller.gid == gid or gid in caller.groups


def allowed(attr: mds_pb2.InodeAttr, caller: mds_pb2.Caller, mask: int) -> bool:
    """Whether `caller` may access the inode for `mask` (R|W|X); root may do anything
    except execute a file nobody may execute."""
    if is_root(caller):
        return not (mask & X) or stat.S_ISDIR(attr.mode) or bool(attr.mode & 0o111)
    if caller.uid == attr.uid:
        bits = (attr.mode >> 6) & 7
    elif in_group(caller, attr.gid):
        bits = (attr.mode >> 3) & 7
    else:
        bits = attr.mode & 7
    return bits & mask == mask


def check(attr: mds_pb2.InodeAttr, caller: mds_pb2.Caller, mask: int) -> None:
    if not allowed(attr, caller, mask):
        raise PermissionDenied(f"permission denied on inode {attr.ino:#x}")


def check_owner(attr: mds_pb2.InodeAttr, caller: mds_pb2.Caller) -> None:
    if not is_root(caller) and caller.uid != attr.uid:
        raise NotPermitted(f"not the owner of inode {attr.ino:#x}")


def check_sticky(dir_attr: mds_pb2.InodeAttr, victim: mds_pb2.InodeAttr,
                 caller: mds_pb2.Caller) -> None:
    """In a sticky directory (/tmp) only the owner of a file or of the directory removes it."""
    if (dir_attr.mode & stat.S_ISVTX and not is_root(caller)
            and caller.uid not in (dir_attr.uid, victim.uid)):
        raise NotPermitted("sticky directory: only the owner may remove or rename this")


def open_mask(flags: int) -> int:
    acc = flags & os.O_ACCMODE
    mask = R if acc == os.O_RDONLY else W if acc == os.O_WRONLY else R | W
    if flags & os.O_TRUNC:
        mask |= W
    return mask


def privileges_killed_by_write(attr: mds_pb2.InodeAttr, caller: mds_pb2.Caller) -> int:
    """The setuid/setgid bits a write clears, as Linux's setattr_should_drop_sgid: setuid
    always, setgid when group-executable or the writer is not in the file's group; none
    for root (CAP_FSETID)."""
    if is_root(caller):
        return 0
    bits = stat.S_ISUID
    if attr.mode & stat.S_ISGID and (attr.mode & stat.S_IXGRP or not in_group(caller, attr.gid)):
        bits |= stat.S_ISGID
    return bits
