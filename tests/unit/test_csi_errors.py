"""The CSI error table and log redaction, without a cluster."""

from __future__ import annotations

import grpc
import pytest

from sds.common import errors as e
from sds.csi import ids
from sds.csi.controller import BadToken, _page, fits, size_for
from sds.csi.errors import redacted, status_of
from sds.csi.locks import OperationLocks
from sds.proto import csi_pb2

S = grpc.StatusCode


@pytest.mark.parametrize("exc,code", [
    (e.InvalidArgument("x"), S.INVALID_ARGUMENT), (e.NotFound("x"), S.NOT_FOUND),
    (e.AlreadyExists("x"), S.ALREADY_EXISTS), (e.Range("x"), S.OUT_OF_RANGE),
    (e.NoSpace("x"), S.RESOURCE_EXHAUSTED), (e.Aborted("x"), S.ABORTED),
    (e.FailedPrecondition("x"), S.FAILED_PRECONDITION), (e.Unavailable("x"), S.UNAVAILABLE),
    (e.TimedOut("x"), S.UNAVAILABLE), (NotImplementedError(), S.UNIMPLEMENTED),
    (RuntimeError("bug"), S.INTERNAL), (e.SdsError("eio"), S.INTERNAL),
    (e.CompareFailed("x"), S.ABORTED), (e.NotADirectory("x"), S.FAILED_PRECONDITION),
])
def test_status_table(exc, code):
    assert status_of("CreateVolume", exc) == code


def test_secrets_never_logged():
    req = csi_pb2.NodeStageVolumeRequest(volume_id="v", secrets={"userKey": "SECRETKEY=="},
                                         volume_context={"a": "b"})
    text = redacted(req)
    assert "SECRETKEY" not in text and "userKey" in text and 'volume_id: "v"' in text
    assert req.secrets["userKey"] == "SECRETKEY=="  # the request itself is untouched
    create = csi_pb2.CreateVolumeRequest(name="n", secrets={"k": "hunter2"})
    assert "hunter2" not in redacted(create)


def test_capacity_ranges():
    CR = csi_pb2.CapacityRange
    assert size_for(None) == 1 << 30
    assert size_for(CR(required_bytes=5)) == 5
    assert size_for(CR(limit_bytes=100)) == 100
    with pytest.raises(e.Range):
        size_for(CR(required_bytes=10, limit_bytes=5))
    with pytest.raises(e.Range):
        size_for(CR(limit_bytes=5), current=10)
    assert fits(CR(required_bytes=5, limit_bytes=10), 7) and not fits(CR(required_bytes=8), 7)


def test_pagination_tokens():
    items = [str(i) for i in range(5)]
    assert _page(items, "", 2) == (["0", "1"], "2")
    assert _page(items, "4", 2) == (["4"], "")
    assert _page(items, "", 0) == (items, "")
    for bad in ("x", "6", "-1"):
        with pytest.raises(BadToken):
            _page(items, bad, 2)


def test_ids_round_trip():
    vid = ids.make_volume_id("sdsfs", "csi", "csi-vol-1")
    assert ids.parse_volume_id(str(vid)) == vid
    sid = ids.SnapshotId(vid, "csi-snap-1")
    assert ids.parse_snapshot_id(str(sid)) == sid
    assert ids.parse_volume_id("nonsense") is None and ids.parse_snapshot_id(str(vid)) is None
    with pytest.raises(e.InvalidArgument):
        ids.make_volume_id("sdsfs", "../x", "y")


def test_operation_locks():
    locks = OperationLocks()
    with locks.hold("v1"):
        with pytest.raises(e.Aborted):
            with locks.hold("v1"):
                pass
        with locks.hold("v2"):
            pass
    with locks.hold("v1"):
        pass
