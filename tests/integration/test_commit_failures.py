"""A store commit that fails after a PG's state moved on (issue 9 item 3 wedged the PG):
the OSD stops with a FATAL line, and once restarted the PG is active+clean again with
every acknowledged write, at each step of the write path and of recovery.

osd.1 is restarted with `osd_inject_commit_failure` (environment, so only it fails):
write   the 3rd client write it commits as primary fails
repop   the 3rd write it commits as a replica fails
push    the 3rd recovered object it commits fails (it was down while objects changed)
peering the 2nd commit of peering state alone fails (while it peers after its restart)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fault_helpers import all_up_and_clean, assert_replicas_identical, osd_is_up, wait_for

from sds.client import Rados
from sds.common.errors import SdsError

pytestmark = pytest.mark.integration

POOL = "commits"
TARGET = 1
FAULTS = {"write": "write:3", "repop": "repop:3", "push": "push:3", "peering": "peering:2"}


class Writes:
    """What the client was told: per object the last acknowledged content, and what it
    tried after that without an answer (such a write may or may not have happened)."""

    def __init__(self, io):
        self.io = io
        self.acked: dict[str, bytes] = {}
        self.unsure: dict[str, list[bytes]] = {}

    async def put(self, count: int, seq: int) -> None:
        for n in range(count):
            name = f"obj-{n}"
            data = f"{name}:{seq}:".encode() + os.urandom(64)
            try:
                await self.io.write_full(name, data)
            except SdsError:
                self.unsure.setdefault(name, []).append(data)
                continue
            self.acked[name] = data
            self.unsure.pop(name, None)

    async def check(self) -> dict[str, bytes]:
        """Every acked object reads back as acked (or as a later unanswered write); no
        object appears that was never written. Returns what is stored."""
        stored = {}
        listed = {n async for n in self.io.list_objects()}
        assert listed <= self.acked.keys() | self.unsure.keys()
        for name in listed:
            data = await self.io.read(name)
            allowed = ([self.acked[name]] if name in self.acked else []) + \
                self.unsure.get(name, [])
            assert data in allowed, f"{name} holds bytes the client never had acked"
            stored[name] = data
        assert self.acked.keys() <= listed, "an acknowledged object is missing"
        return stored




def _log(cluster, name: str) -> str:
    return (Path(cluster.dir) / "out" / f"{name}.log").read_text(errors="replace")


async def _stopped_by_failure(cluster, name: str) -> bool:
    """Its log says FATAL and its process is gone (a pid alone misses one just forked)."""
    return "FATAL" in _log(cluster, name) and cluster.pid(name) is None


def _start_with_fault(cluster, name: str, spec: str) -> None:
    os.environ["SDS_OSD_INJECT_COMMIT_FAILURE"] = spec
    try:
        cluster.start(name)
    finally:
        del os.environ["SDS_OSD_INJECT_COMMIT_FAILURE"]


@pytest.mark.parametrize("step", list(FAULTS))
async def test_a_failed_commit_stops_the_osd_and_it_comes_back_clean(cluster, step):
    name = f"osd.{TARGET}"
    async with Rados(cluster.conf) as r:
        await r.pool_create(POOL, pg_num=8, size=3, min_size=2)
        writes = Writes(r.ioctx(POOL))
        await writes.put(20, 0)
        cluster.stop(name)
        await wait_for(lambda: osd_is_up(r, TARGET, False), 20, f"{name} marked down")
        if step in ("push", "peering"):
            await writes.put(20, 1)        # to be recovered by osd.1 when it returns
        _start_with_fault(cluster, name, FAULTS[step])
        if step in ("write", "repop"):
            await wait_for(lambda: all_up_and_clean(r), 60, "clean before the writes")
            await writes.put(40, 2)
        await wait_for(lambda: _stopped_by_failure(cluster, name), 60,
                       f"{name} stopped by the failure")
        assert "injected store failure" in _log(cluster, name)
        await wait_for(lambda: osd_is_up(r, TARGET, False), 20, f"{name} marked down")
        await writes.put(10, 3)            # served by the others meanwhile
        cluster.start(name)
        await wait_for(lambda: all_up_and_clean(r), 90, "every PG active+clean after the restart")
        await writes.put(5, 4)
        stored = await writes.check()
    for daemon in cluster.names("osd"):
        cluster.stop(daemon)
    await assert_replicas_identical(cluster, stored)
