"""Map distribution and plain-words health on real clusters."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sds.client import Rados
from sds.proto import messenger_pb2 as mpb
from sds.proto import mon_pb2

pytestmark = pytest.mark.integration


async def test_subscribers_get_incrementals_not_full_maps(cluster):
    async with Rados(cluster.conf) as r:
        epoch = r.osdmap.epoch
        await r.pool_create("a", pg_num=4)
        await r.pool_create("b", pg_num=4)
        assert r.osdmap.epoch == epoch + 2
        conn = await r.messenger.connect(r.config.mon_addrs[0])
        resp = await conn.call(mpb.MON_SUBSCRIBE, mon_pb2.MonSubscribe(
            osdmap=True, osdmap_since=epoch))
        maps = resp.parse(mon_pb2.MonMaps)
        assert not maps.HasField("full_osdmap")
        assert [inc.epoch for inc in maps.osdmap_incs] == [epoch + 1, epoch + 2]
        assert [p.name for p in maps.osdmap_incs[0].new_pools] == ["a"]


@pytest.mark.cluster_opts(osds=2)
def test_status_explains_single_host_and_unmet_size(cluster):
    def sds(*args):
        out = subprocess.run([sys.executable, "-m", "sds", "--conf", str(cluster.conf), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "failure domain is osd" in sds("status")
    sds("pool", "create", "three", "8", "--size", "3")
    health = json.loads(sds("health", "detail", "--format", "json"))
    check = health["checks"]["POOL_SIZE_UNMET"]
    assert "three" in json.dumps(check) and "3" in check["summary"]["message"]


def test_health_answers_while_the_mgr_is_down_and_says_so(cluster):
    """The mgr computes the PG/OSD/pool checks; without it the mons still answer `health`,
    with MGR_DOWN saying the rest is the mgr's last report, until it reports again."""
    def sds_json(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "sds", "--conf", str(cluster.conf),
                              *args, "--format", "json"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def health() -> dict:
        return sds_json("health", "detail")

    def wait_for(pred, timeout_s: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            got = health()
            if pred(got) or time.monotonic() > deadline:
                return got
            time.sleep(1.0)

    (mgr,) = cluster.names("mgr")
    cluster.wait_healthy()
    deadline = time.monotonic() + 60
    while sds_json("status")["stats_stamp"] is None and time.monotonic() < deadline:
        time.sleep(1.0)  # until the mgr has reported once
    cluster.stop(mgr)
    down = wait_for(lambda h: "MGR_DOWN" in h["checks"])
    check = down["checks"]["MGR_DOWN"]
    assert check["severity"] == "HEALTH_WARN" and down["status"] == "HEALTH_WARN"
    assert "last report" in check["detail"][0]["message"]
    cluster.start(mgr)
    assert "MGR_DOWN" not in wait_for(lambda h: "MGR_DOWN" not in h["checks"])["checks"]


@pytest.mark.cluster_opts(mons=5, osds=3)
async def test_five_monitors_survive_two_failures(cluster):
    async with Rados(cluster.conf) as r:
        stat = await r.mon_command({"prefix": "mon stat"})
        assert sorted(stat["quorum"]) == [0, 1, 2, 3, 4]
        cluster.kill("mon.0")   # the leader (lowest rank)
        cluster.kill("mon.3")
        out = await r.mon_command({"prefix": "osd pool create", "pool": "p5", "pg_num": 8},
                                  timeout=30)
        assert out["pool"] == "p5"
        stat = await r.mon_command({"prefix": "mon stat"})
        assert sorted(stat["quorum"]) == [1, 2, 4]
        io = r.ioctx("p5")
        await io.write_full("x", b"still works")
        assert await io.read("x") == b"still works"


@pytest.mark.cluster_opts(mons=1, osds=1)
async def test_single_monitor_single_osd(cluster):
    async with Rados(cluster.conf) as r:
        await r.pool_create("solo", pg_num=4, size=1)
        io = r.ioctx("solo")
        await io.write_full("x", b"one copy")
        assert await io.read("x") == b"one copy"
