"""Random ops against the OSD's op code and both stores: only typed errors come out, and
an op that passes the limits (sds.common.limits) always commits, so a commit never fails
for its size after the PG log moved on (what wedged PGs in issue 9 item 3)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sds.common import errorlog
from sds.common.errors import CompareFailed, InvalidArgument, NameTooLong, SdsError, TooBig
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
    keys=st.lists(st.binary(max_size=600), max_size=3), exclusive=st.booleans(),
    omap_cmp=st.lists(_kv, max_size=2), omap_absent=st.lists(st.binary(max_size=600), max_size=2))


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


def _apply(stores, store, op):
    txn = ops.build_write(store, COLL, op, memoryview(b""), 1.0, 7, LIMITS)
    stores.loop.run_until_complete(store.apply(txn))


def test_omap_guards_compare_and_set(stores):
    """A guarded write applies only when the object's omap is as the guards say, and a
    refused one changes nothing (the compare-and-set the CSI journal is built on)."""
    kv = osd_pb2.KeyValue
    for store in stores.stores:
        oid = f"guarded-{type(store).__name__}"
        claim = Op(code=Op.OMAP_SET, oid=oid, kvs=[kv(key=b"name/a", value=b"1")],
                   omap_absent=[b"name/a"])
        _apply(stores, store, claim)  # absent on a missing object: holds
        with pytest.raises(CompareFailed):
            _apply(stores, store, claim)
        swap = Op(code=Op.OMAP_SET, oid=oid, kvs=[kv(key=b"name/a", value=b"2")],
                  omap_cmp=[kv(key=b"name/a", value=b"1")])
        _apply(stores, store, swap)
        with pytest.raises(CompareFailed):
            _apply(stores, store, swap)  # the value is 2 now
        with pytest.raises(CompareFailed):
            _apply(stores, store, Op(code=Op.OMAP_RM, oid=oid, keys=[b"name/a"],
                                     omap_cmp=[kv(key=b"name/a", value=b"1")]))
        assert store.omap_get(COLL, oid, [b"name/a"]) == {b"name/a": b"2"}
        _apply(stores, store, Op(code=Op.OMAP_RM, oid=oid, keys=[b"name/a"],
                                 omap_cmp=[kv(key=b"name/a", value=b"2")]))
        assert store.omap_get(COLL, oid, [b"name/a"]) == {}
        with pytest.raises(CompareFailed):  # an expected value on a missing object
            _apply(stores, store, Op(code=Op.OMAP_SET, oid=f"{oid}-none",
                                     kvs=[kv(key=b"k", value=b"v")],
                                     omap_cmp=[kv(key=b"k", value=b"")]))
        assert not store.exists(COLL, f"{oid}-none")


def test_omap_guards_are_for_writes_and_within_limits():
    with pytest.raises(InvalidArgument):
        LIMITS.check_op(Op(code=Op.OMAP_GET, oid="o", omap_absent=[b"k"]), 0)
    with pytest.raises(NameTooLong):
        LIMITS.check_op(Op(code=Op.OMAP_SET, oid="o", omap_absent=[b"k" * 5000]), 0)
    with pytest.raises(TooBig):
        LIMITS.check_op(Op(code=Op.OMAP_SET, oid="o", omap_cmp=[
            osd_pb2.KeyValue(key=b"k", value=b"v" * 5000)]), 0)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_garbage_payloads_parse_or_are_einval(raw):
    try:
        Op().ParseFromString(raw)
    except Exception as e:
        assert errorlog.classify(e) is not None, repr(e)
