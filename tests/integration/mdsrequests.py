"""Helpers for tests that talk to the MDS directly: which MDS is active, and listings."""

from __future__ import annotations

from sds.client.mdsclient import MdsClient
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
