"""SETATTR changes other than the size: mode, owner and times, with their POSIX rules.

The MDS applies them; a client that holds a file open for writing applies them ahead
with the same function (attribute write-back, sds/fs/fuse_ops.py) and sends them with
its next WRITE_DONE, where the MDS checks them again.
"""

from __future__ import annotations

import stat
import time

from sds.common.errors import NotPermitted
from sds.fsrules import perms
from sds.proto import mds_pb2

OWNER_BITS = mds_pb2.SET_UID | mds_pb2.SET_GID
TIME_BITS = (mds_pb2.SET_ATIME | mds_pb2.SET_MTIME | mds_pb2.SET_ATIME_NOW
             | mds_pb2.SET_MTIME_NOW)
WRITE_BACK_BITS = mds_pb2.SET_MODE | OWNER_BITS | TIME_BITS  # all but size (and ctime)


def new_attr(ino: int, mode: int, caller: mds_pb2.Caller,
             parent: mds_pb2.InodeAttr | None, at: int) -> mds_pb2.InodeAttr:
    """A new inode's attributes (the umask already applied to `mode`): the MDS records
    them, and a mount answering a create itself (sds.fs.asynccreate) answers with them."""
    gid = caller.gid
    if parent is not None and parent.mode & stat.S_ISGID:
        gid = parent.gid  # setgid directory: new entries inherit its group
        if stat.S_ISDIR(mode):
            mode |= stat.S_ISGID
    return mds_pb2.InodeAttr(ino=ino, mode=mode, nlink=1, uid=caller.uid, gid=gid,
                             atime_ns=at, mtime_ns=at, ctime_ns=at, version=1)


def set_attrs(attr: mds_pb2.InodeAttr, new: mds_pb2.InodeAttr, mask: int,
              caller: mds_pb2.Caller, now_ns: int | None = None) -> None:
    """Apply the mode, owner and time bits of `mask` to `attr`, or raise EPERM/EACCES."""
    if mask & mds_pb2.SET_MODE:
        mode = stat.S_IMODE(new.mode)
        if not _kills_privileges(attr, mode, caller):
            perms.check_owner(attr, caller)
        if not perms.is_root(caller) and not perms.in_group(caller, attr.gid):
            mode &= ~stat.S_ISGID
        attr.mode = stat.S_IFMT(attr.mode) | mode
    if mask & OWNER_BITS:
        _chown(attr, new, mask, caller)
    if mask & TIME_BITS:
        _set_times(attr, new, mask, caller, now_ns or time.time_ns())


def _kills_privileges(attr: mds_pb2.InodeAttr, mode: int, caller: mds_pb2.Caller) -> bool:
    """A change that only clears S_ISUID/S_ISGID, by someone who may write the file: what
    the kernel sends (with the writer's credentials) before a write or truncate by a
    non-owner, as Linux clears those bits itself on such a write. (It may also change
    nothing: the write it came with, applied first, already cleared them.)"""
    old = stat.S_IMODE(attr.mode)
    removed = old & ~mode
    return (not mode & ~old and not removed & ~(stat.S_ISUID | stat.S_ISGID)
            and perms.allowed(attr, caller, perms.W))


def _chown(attr: mds_pb2.InodeAttr, new: mds_pb2.InodeAttr, mask: int,
           caller: mds_pb2.Caller) -> None:
    uid = new.uid if mask & mds_pb2.SET_UID else attr.uid
    gid = new.gid if mask & mds_pb2.SET_GID else attr.gid
    if not perms.is_root(caller):
        if uid != attr.uid or caller.uid != attr.uid:
            raise NotPermitted("only root may change the owner")
        if gid != attr.gid and not perms.in_group(caller, gid):
            raise NotPermitted("not a member of the new group")
    if (uid, gid) != (attr.uid, attr.gid) and not stat.S_ISDIR(attr.mode):
        attr.mode &= ~(stat.S_ISUID | (stat.S_ISGID if attr.mode & 0o010 else 0))
    attr.uid, attr.gid = uid, gid


def _set_times(attr: mds_pb2.InodeAttr, new: mds_pb2.InodeAttr, mask: int,
               caller: mds_pb2.Caller, at: int) -> None:
    explicit = mask & (mds_pb2.SET_ATIME | mds_pb2.SET_MTIME)
    if explicit:
        perms.check_owner(attr, caller)
    elif caller.uid != attr.uid:  # to "now": write permission is enough
        perms.check(attr, caller, perms.W)
    if mask & mds_pb2.SET_ATIME_NOW:
        attr.atime_ns = at
    elif mask & mds_pb2.SET_ATIME:
        attr.atime_ns = new.atime_ns
    if mask & mds_pb2.SET_MTIME_NOW:
        attr.mtime_ns = at
    elif mask & mds_pb2.SET_MTIME:
        attr.mtime_ns = new.mtime_ns
