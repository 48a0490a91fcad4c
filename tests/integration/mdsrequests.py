"""Helpers for tests that talk to the MDS directly: which MDS is active, listings, and
inode records as the metadata pool holds them."""

from __future__ import annotations

from sds.client.mdsclient import MdsClient
from sds.common.errors import NotFound
from sds.mds import layout
from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest


async def active_mds(rados) -> str:
    fs = (await rados.mon_command({"prefix": "fs status"}))["filesystems"][0]
    return fs["active"]["name"] if fs["active"] else ""


async def listdir(client: MdsClient, ino: int) -> set[str]:
    names, offset, more = set(), 0, True
    while more:
        reply = await client.request(Req(op=Req.READDIR, ino=ino, offset=offset))
        names |= {e.name for e in reply.entries}
        more = reply.more
        if reply.entries:
            offset = reply.entries[-1].offset
    return names


async def table_record(meta, ino: int) -> mds_pb2.InodeRecord | None:
    """The record of `ino` in the metadata pool's inode table (None: not there)."""
    try:
        found = await meta.omap_get(layout.inode_shard_oid(ino), [layout.inode_key(ino)])
    except NotFound:
        return None
    raw = found.get(layout.inode_key(ino))
    return layout.decode_record(raw) if raw is not None else None
