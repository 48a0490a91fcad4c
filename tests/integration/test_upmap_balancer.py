"""The upmap balancer on a real cluster: remapped PGs keep (and move) their data."""

from __future__ import annotations

import asyncio
import time

import pytest

from sds.client import Rados
from sds.common.errors import SdsError

pytestmark = pytest.mark.integration

POOL = "balanced"


async def wait_clean(r: Rados, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    st: dict = {}
    while time.monotonic() < deadline:
        try:
            st = await r.mon_command({"prefix": "status"})
            states = st["pgmap"]["pgs_by_state"]
            if states and all(s["state_name"] == "active+clean" for s in states):
                return st
        except SdsError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"PGs not active+clean after {timeout}s: {st.get('pgmap')}")


@pytest.mark.cluster_opts(osds=4)
async def test_balance_remaps_pgs_and_objects_follow(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create(POOL, pg_num=32, size=2, min_size=1)
        io = r.ioctx(POOL)
        objects = {f"obj-{i}": f"payload {i} ".encode() * (50 + i) for i in range(64)}
        for name, data in objects.items():
            await io.write_full(name, data)

        # The balancer is incremental, as Ceph's is: a PG that is peering or was just
        # moved (by this command or by the mgr's own balancing) is skipped until it is
        # active+clean again, so a few rounds may be needed; it must converge.
        rounds = []
        for _ in range(6):
            await wait_clean(r)
            rounds.append(await r.mon_command({"prefix": "osd balance"}))
            status = await r.mon_command({"prefix": "osd balance status"})
            if status["balanced"]:
                break
        assert status["balanced"], (status, rounds)
        dump = await r.mon_command({"prefix": "osd dump"})
        assert dump["pg_upmap_items"], (rounds, dump)
        await wait_clean(r)
        for name, data in objects.items():
            assert await io.read(name) == data, name

        # Prove the data really lives on the upmap target: take down the PG's other
        # member, so the target alone serves its objects.
        upmapped = {u["pgid"]: u["mappings"] for u in dump["pg_upmap_items"]}
        located = {}
        for name in objects:
            m = await r.mon_command({"prefix": "osd map", "pool": POOL, "object": name})
            if m["pgid"] in upmapped:
                located[name] = m
        assert located, "no test object landed in an upmapped PG"
        name, m = sorted(located.items())[0]
        targets = {mp["to"] for mp in upmapped[m["pgid"]]}
        others = [o for o in m["up"] if o not in targets]
        assert targets <= set(m["up"]) and len(others) == 1, (m, targets)
        victim = others[0]
        cluster.kill(f"osd.{victim}")
        await r.mon_command({"prefix": "osd down", "ids": [victim]})
        same_pg = [n for n, mm in located.items() if mm["pgid"] == m["pgid"]]
        deadline = time.monotonic() + 60
        while True:
            try:
                for n in same_pg:
                    assert await io.read(n) == objects[n], n
                break
            except SdsError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
