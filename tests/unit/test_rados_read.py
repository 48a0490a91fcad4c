"""IoCtx.read against a fake OSD: one request for a small read, and the rest asked for
when the OSD returns fewer bytes than asked (its osd_max_read_size may be smaller)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sds.client.rados import IoCtx
from sds.common.messenger import Response
from sds.proto import messenger_pb2 as mpb
from sds.proto import osd_pb2


class FakeOsd(IoCtx):
    def __init__(self, content: bytes, chunk: int, osd_max: int):
        super().__init__(SimpleNamespace(read_chunk=chunk), "pool")
        self.content, self.osd_max, self.calls = content, osd_max, []

    async def _call(self, code, oid, data=b"", **fields):
        assert code == osd_pb2.OsdOp.READ
        off, asked = fields["offset"], fields["length"]
        self.calls.append((off, asked))
        want = min(asked, self.osd_max)
        reply = osd_pb2.OsdOpReply(size=len(self.content)).SerializeToString()
        return Response(mpb.Envelope(reply=True, payload=reply),
                        memoryview(bytearray(self.content[off:off + want])))


def read(io: FakeOsd, length: int | None, offset: int = 0) -> bytes:
    return asyncio.run(io.read("obj", length, offset))


def test_small_read_is_one_request_and_no_copy():
    io = FakeOsd(bytes(range(256)) * 64, chunk=1 << 20, osd_max=1 << 20)
    data = read(io, 4096, 100)
    assert data == io.content[100:4196] and isinstance(data, bytearray)
    assert io.calls == [(100, 4096)]


def test_read_cut_short_by_the_osd_asks_for_the_rest():
    io = FakeOsd(bytes(range(256)) * 64, chunk=1 << 20, osd_max=1000)
    assert read(io, 4096, 10) == io.content[10:4106]
    assert io.calls == [(10, 4096), (1010, 3096), (2010, 2096), (3010, 1096), (4010, 96)]


def test_read_past_the_end_and_whole_object():
    io = FakeOsd(b"x" * 5000, chunk=2048, osd_max=1 << 20)
    assert read(io, 4096, 3000) == b"x" * 2000
    assert read(io, 4096, 6000) == b""
    assert read(io, None) == b"x" * 5000
