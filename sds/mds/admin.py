"""The MDS's admin operations as command descriptors: quotas, snapshots, fsck.

Declared once here, beside the MDS that serves them: each names the MdsRequest op it
becomes, and its parameters are that request's fields, so a client (the CLI now, CSI
and the dashboard next) builds the request from checked arguments with `request`
instead of filling protobufs by hand. Who may run them stays the MDS's own check
(sds.mds.authz.ADMIN: an MDS cap with `w` or `p`).
"""

from __future__ import annotations

from sds.common.command import Descriptor, Param, Registry, opt
from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest
MDS = Registry()
OPS: dict[str, int] = {}
PATH = Param("path", help="directory, from the filesystem root")
SNAP = Param("name", help="snapshot name")


def _declare(prefix: str, op: int, help: str, *params: Param, write: bool = False) -> None:
    MDS.add(Descriptor(prefix, params, help, write))
    OPS[prefix] = op


_declare("fs quota set", Req.QUOTA_SET,
         "Limit a directory tree's bytes and files (0 = unlimited); beyond them: EDQUOT.",
         PATH, opt("max_bytes", "int", 0, lo=0, hi=(1 << 64) - 1),
         opt("max_files", "int", 0, lo=0, hi=(1 << 64) - 1), write=True)
_declare("fs quota get", Req.QUOTA_GET, "A directory's quota and current usage.", PATH)
_declare("fs snapshot create", Req.SNAP_CREATE,
         "Read-only copy of a directory tree, visible as PATH/.snap/NAME.", PATH, SNAP,
         write=True)
_declare("fs snapshot ls", Req.SNAP_LIST, "Snapshots of a directory.", PATH)
_declare("fs snapshot rm", Req.SNAP_REMOVE, "Remove a snapshot and its data.", PATH, SNAP,
         write=True)
_declare("fs check", Req.CHECK,
         "fsck: no orphan inodes, no dentries to missing inodes, right link counts.")


def request(prefix: str, **fields) -> mds_pb2.MdsRequest:
    """The MdsRequest of an admin operation, from its checked arguments."""
    desc = MDS.find({"prefix": prefix, **fields})
    args = desc.validate(fields)
    return Req(op=OPS[desc.prefix], **{p.name: args[p.name] for p in desc.params})
