"""Malformed requests are EINVAL without a traceback; internal errors log theirs once."""

from __future__ import annotations

import errno
import json
import logging

from sds.common import errorlog
from sds.proto import osd_pb2


def _decode_error() -> Exception:
    try:
        osd_pb2.OsdOp().ParseFromString(b"\xff\xff\xff\xff")
    except Exception as e:
        return e
    raise AssertionError("garbage parsed")


def _recursion_error() -> Exception:
    try:
        json.loads("[" * 100000 + "]" * 100000)
    except Exception as e:
        return e
    raise AssertionError("nesting parsed")


def test_malformed_requests_are_einval():
    for exc in (_decode_error(), _recursion_error()):
        code, reason = errorlog.classify(exc)
        assert code == errno.EINVAL and reason.startswith("malformed request")
        assert len(reason) < 300
    assert errorlog.classify(KeyError("x")) is None


def test_traceback_once_per_distinct_error(caplog):
    errors = errorlog.ErrorLog(logging.getLogger("test.errorlog"))

    def fail(kind):
        try:
            raise kind("boom")
        except Exception as e:
            return errors.internal("handler", e)

    with caplog.at_level(logging.ERROR, logger="test.errorlog"):
        for _ in range(errorlog.REPEAT_EVERY):
            assert fail(KeyError).startswith("internal error: KeyError")
        fail(ValueError)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2  # KeyError once, ValueError once
    assert any("1000 times" in r.getMessage() for r in caplog.records)
