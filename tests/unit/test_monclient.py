"""MonClient applies incrementals in order and asks again when one went missing."""

import asyncio
from types import SimpleNamespace

from sds.client.monclient import MonClient
from sds.common.config import Config
from sds.common.messenger import Messenger
from sds.proto import maps_pb2, mon_pb2


def make_client() -> MonClient:
    return MonClient(Config(None), Messenger("client.test", b"k" * 32))


def inc(epoch: int, pool: str) -> maps_pb2.OsdMapIncremental:
    i = maps_pb2.OsdMapIncremental(epoch=epoch)
    i.new_pools.add(id=epoch, name=pool, pg_num=8, size=3)
    return i


async def test_full_map_then_incrementals():
    c = make_client()
    c.apply(mon_pb2.MonMaps(full_osdmap=maps_pb2.OsdMap(epoch=3)))
    c.apply(mon_pb2.MonMaps(osdmap_incs=[inc(4, "a"), inc(5, "b")]))
    assert c.osdmap.epoch == 5
    assert set(c.pools) == {"a", "b"}
    c.apply(mon_pb2.MonMaps(osdmap_incs=[inc(5, "b")]))  # duplicate: ignored
    assert c.osdmap.epoch == 5


async def test_gap_triggers_resubscribe_from_current_epoch():
    c = make_client()
    c.apply(mon_pb2.MonMaps(full_osdmap=maps_pb2.OsdMap(epoch=3)))
    asked = []

    async def fake_subscribe(addr):
        asked.append((addr, c.osdmap.epoch))
    c._subscribe = fake_subscribe
    c._conn = SimpleNamespace(closed=False, addr="127.0.0.1:1")
    c.apply(mon_pb2.MonMaps(osdmap_incs=[inc(5, "b")]))  # epoch 4 is missing
    await asyncio.sleep(0)
    assert c.osdmap.epoch == 3
    assert asked == [("127.0.0.1:1", 3)]
