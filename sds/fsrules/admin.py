"""The MDS's admin operations as command descriptors: quotas, snapshots, fsck.

Declared once here, where the MDS and its clients both see them: each names the
MdsRequest op it becomes, and its parameters are that request's fields, so a client
(the CLI, the filesystem admin API under CSI, the dashboard next) builds the request
from checked arguments with `request` instead of filling protobufs by hand, and the
MDS takes what each needs from the caller's mds caps from here (sds.mds.authz).
"""

from __future__ import annotations

from sds.common.command import Access, Cli, Descriptor, Param, Registry, opt
from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest
MDS = Registry()
OPS: dict[str, int] = {}
BY_OP: dict[int, Descriptor] = {}
PATH = Param("path", help="directory, from the filesystem root")
SNAP = Param("name", help="snapshot name", cli=Cli(metavar="NAME"))


def _declare(prefix: str, op: int, help: str, *params: Param, write: bool = False,
             caps: str = "") -> None:
    """`caps`: the mds letters it needs beyond r (or rw for a write). SDS spends `x` on
    what changes more than one file's worth, which the CSI profile has and a plain
    read-write client has not."""
    desc = MDS.add(Descriptor(prefix, params, help, write, Access(caps, service="mds")))
    OPS[prefix] = op
    BY_OP[op] = desc


_declare("fs quota set", Req.QUOTA_SET,
         "Limit a directory tree's bytes and files (0 = unlimited); beyond them: EDQUOT.",
         PATH, opt("max_bytes", "int", 0, lo=0, hi=(1 << 64) - 1,
                   cli=Cli(kind="bytes", help="byte limit, e.g. 10G (0 = unlimited)")),
         opt("max_files", "int", 0, lo=0, hi=(1 << 64) - 1,
             cli=Cli(help="file limit (0 = unlimited)")), write=True, caps="rwx")
_declare("fs quota get", Req.QUOTA_GET, "A directory's quota and current usage.", PATH)
_declare("fs snapshot create", Req.SNAP_CREATE,
         "Read-only copy of a directory tree, visible as PATH/.snap/NAME.", PATH, SNAP,
         write=True, caps="rwx")
_declare("fs snapshot ls", Req.SNAP_LIST, "Snapshots of a directory.", PATH)
_declare("fs snapshot rm", Req.SNAP_REMOVE, "Remove a snapshot and its data.", PATH, SNAP,
         write=True, caps="rwx")
_declare("fs check", Req.CHECK,
         "fsck: no orphan inodes, no dentries to missing inodes, right link counts.",
         caps="rwx")


def request(prefix: str, **fields) -> mds_pb2.MdsRequest:
    """The MdsRequest of an admin operation, from its checked arguments."""
    desc = MDS.find({"prefix": prefix, **fields})
    args = desc.validate(fields)
    return Req(op=OPS[desc.prefix], **{p.name: args[p.name] for p in desc.params})
