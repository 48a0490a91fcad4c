"""Which filesystem changes the MDS may answer before its journal has them (unsafe
replies, as Ceph's MDS gives early replies), for a client that keeps them and replays
them to the next MDS should this one fail first (sds.client.mdsclient)."""

from __future__ import annotations

from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest

MAKE_OPS = frozenset({Req.CREATE, Req.MKNOD, Req.MKDIR, Req.SYMLINK})
REMOVE_OPS = frozenset({Req.UNLINK, Req.RMDIR})
UNSAFE_OPS = MAKE_OPS | REMOVE_OPS | {Req.SETATTR}
# a replay of these names the inode its early reply gave (MdsRequest.replay_ino): the
# one to create under that number, or the one to remove only if the name still has it
REPLAY_INO_OPS = MAKE_OPS | REMOVE_OPS
