"""What each MDS request needs from the client's mds caps.

Ceph's meaning: `r` to look, `rw` to change the namespace. The admin operations
(quotas, snapshots, fsck) need what their descriptors declare (sds.fsrules.admin: `x`
for what changes more than one file's worth). Opening a file for writing is a write.
"""

from __future__ import annotations

import os

from sds.fsrules.admin import BY_OP
from sds.proto.mds_pb2 import MdsRequest as Req

READS = frozenset({
    Req.SESSION_OPEN, Req.SESSION_CLOSE, Req.LOOKUP, Req.GETATTR, Req.READLINK,
    Req.READDIR, Req.RELEASE, Req.GETXATTR, Req.LISTXATTR, Req.STATFS, Req.FLOCK,
    Req.CAPS_ACK, Req.SYNC,
})


def need(req: Req) -> str:
    """The mds permission letters `req` needs."""
    if req.op == Req.OPEN:
        return "r" if (req.flags & os.O_ACCMODE) == os.O_RDONLY and \
            not req.flags & os.O_TRUNC else "rw"
    if req.op in BY_OP:
        return BY_OP[req.op].needs
    if req.op in READS:
        return "r"
    return "rw"
