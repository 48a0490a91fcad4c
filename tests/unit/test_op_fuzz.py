"""Random ops against the OSD's op code and both stores: only typed errors come out, and
an op that passes the limits (sds.common.limits) always commits, so a commit never fails
for its size after the PG log moved on (what wedged PGs in issue 9 item 3)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sds.common import errorlog
from sds.common.errors import SdsError
from sds.common.limits import Limits
from sds.osd import ops
from sds.osd.store.base import Transaction
from sds.osd.store.durable import DurableStore
from sds.osd.store.memory import MemoryStore
from sds.proto import osd_pb2

Op = osd_pb2.OsdOp
COLL = "1.1f"
LIMITS = Limits(object_name_len=2048, attr_name_len=255, attr_size=4096, omap_key_len=4096,
                omap_value_size=4096, object_size=1 << 20, write_size=1 << 20)

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_long = st.one_of(_text, st.integers(0, 2100).map(lambda n: "n" * n))
_sizes = st.sampled_from([0, 1, 4095, 1 << 20, (1 << 20) + 1, 1 << 40, (1 << 64) - 1])
_kv = st.builds(osd_pb2.KeyValue, key=st.binary(max_size=600), value=st.binary(max_size=5000))
ops_ = st.builds(
    Op, code=st.sampled_from(list(Op.Code.values())), oid=_long, name=_long,
    offset=st.one_of(_sizes, st.integers(0, 70000)), length=st.one_of(_sizes, st.integers(0, 9)),
    value=st.binary(max_size=5000), kvs=st.lists(_kv, max_size=3),
    keys=st.lists(st.binary(max_size=600), max_size=3), exclusive=st.booleans())


class Stores:
    """One MemoryStore and one DurableStore, each with the collection the ops act on."""

    def __init__(self, path):
        self.loop = asyncio.new_event_loop()
        self.stores = [MemoryStore(), DurableStore(str(path / "store"))]
        for store in self.stores:
            self.loop.run_until_complete(store.apply(Transaction().create_collection(COLL)))

    def close(self):
        for store in self.stores:
            self.loop.run_until_complete(store.close())
        self.loop.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    s = Stores(tmp_path_factory.mktemp("fuzz"))
    yield s
    s.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(op=ops_, data=st.binary(max_size=3000))
def test_random_ops_give_typed_errors_and_checked_writes_commit(stores, op, data):
    for store in stores.stores:
        try:
            LIMITS.check_op(op, len(data))
            if ops.is_read(op.code):
                ops.execute_read(store, COLL, op, max_read=1 << 16)
                continue
            txn = ops.build_write(store, COLL, op, memoryview(data), 1.0, 7, LIMITS)
        except SdsError:
            continue
        # the limits let it through: the store must hold it, whatever it is
        stores.loop.run_until_complete(store.apply(txn))


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_garbage_payloads_parse_or_are_einval(raw):
    try:
        Op().ParseFromString(raw)
    except Exception as e:
        assert errorlog.classify(e) is not None, repr(e)
