"""What each MDS request needs from the client's mds caps.

Ceph's meaning: `r` to look, `rw` to change the namespace; SDS spends `x` on what
changes more than one file's worth (quotas, snapshots, fsck), which the CSI profile
has and a plain read-write client has not. Opening a file for writing is a write.
"""

from __future__ import annotations

import os

from sds.proto.mds_pb2 import MdsRequest as Req

READS = frozenset({
    Req.SESSION_OPEN, Req.SESSION_CLOSE, Req.LOOKUP, Req.GETATTR, Req.READLINK,
    Req.READDIR, Req.RELEASE, Req.GETXATTR, Req.LISTXATTR, Req.STATFS, Req.QUOTA_GET,
    Req.SNAP_LIST, Req.FLOCK, Req.CAPS_ACK,
})
ADMIN = frozenset({Req.QUOTA_SET, Req.SNAP_CREATE, Req.SNAP_REMOVE, Req.CHECK})


def need(req: Req) -> str:
    """The mds permission letters `req` needs."""
    if req.op == Req.OPEN:
        return "r" if (req.flags & os.O_ACCMODE) == os.O_RDONLY and \
            not req.flags & os.O_TRUNC else "rw"
    if req.op in READS:
        return "r"
    if req.op in ADMIN:
        return "rwx"
    return "rw"
