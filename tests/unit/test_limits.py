"""The op limits of sds.common.limits: each boundary, its errno, and the option it names."""

from __future__ import annotations

import errno

import pytest

from sds.common.errors import SdsError
from sds.common.limits import Limits
from sds.proto import osd_pb2

Op = osd_pb2.OsdOp
L = Limits(object_name_len=64, attr_name_len=8, attr_size=16, omap_key_len=10,
           omap_value_size=20, object_size=1000, write_size=500)


def refused(op: osd_pb2.OsdOp, data_len: int = 0) -> tuple[int, str]:
    with pytest.raises(SdsError) as e:
        L.check_op(op, data_len)
    return e.value.code, str(e.value)


@pytest.mark.parametrize("op,data_len,code,option", [
    (Op(code=Op.WRITE_FULL, oid="o" * 65), 0, errno.ENAMETOOLONG, "osd_max_object_name_len"),
    (Op(code=Op.STAT, oid="é" * 33), 0, errno.ENAMETOOLONG, "osd_max_object_name_len"),
    (Op(code=Op.SETXATTR, oid="o", name="n" * 9), 0, errno.ENAMETOOLONG,
     "osd_max_attr_name_len"),
    (Op(code=Op.SETXATTR, oid="o", name="n", value=b"v" * 17), 0, errno.E2BIG,
     "osd_max_attr_size"),
    (Op(code=Op.OMAP_SET, oid="o", kvs=[osd_pb2.KeyValue(key=b"k" * 11)]), 0,
     errno.ENAMETOOLONG, "osd_max_omap_key_len"),
    (Op(code=Op.OMAP_RM, oid="o", keys=[b"k" * 11]), 0, errno.ENAMETOOLONG,
     "osd_max_omap_key_len"),
    (Op(code=Op.OMAP_SET, oid="o", kvs=[osd_pb2.KeyValue(key=b"k", value=b"v" * 21)]), 0,
     errno.E2BIG, "osd_max_omap_value_size"),
    (Op(code=Op.WRITE_FULL, oid="o"), 501, errno.E2BIG, "osd_max_write_size"),
    (Op(code=Op.WRITE, oid="o", offset=600), 401, errno.EFBIG, "osd_max_object_size"),
    (Op(code=Op.TRUNCATE, oid="o", offset=1001), 0, errno.EFBIG, "osd_max_object_size"),
])
def test_each_limit_is_refused_with_its_errno_and_option(op, data_len, code, option):
    got, message = refused(op, data_len)
    assert got == code and option in message


@pytest.mark.parametrize("op,data_len", [
    (Op(code=Op.WRITE_FULL, oid="o" * 64), 500),
    (Op(code=Op.SETXATTR, oid="o", name="n" * 8, value=b"v" * 16), 0),
    (Op(code=Op.OMAP_SET, oid="o", kvs=[osd_pb2.KeyValue(key=b"k" * 10, value=b"v" * 20)]), 0),
    (Op(code=Op.WRITE, oid="o", offset=500), 500),
    (Op(code=Op.TRUNCATE, oid="o", offset=1000), 0),
    (Op(code=Op.LIST, oid="c" * 100), 0),  # a listing cursor is not a new name
])
def test_at_the_limit_is_accepted(op, data_len):
    L.check_op(op, data_len)


def test_long_message_names_are_cut():
    _, message = refused(Op(code=Op.WRITE_FULL, oid="o" * 10000))
    assert len(message) < 200
