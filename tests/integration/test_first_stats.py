"""A fresh cluster answers `df` with real numbers at once: OSDs report right after boot
and the mgr digests as soon as an OSD reports for the first time."""

from __future__ import annotations

import asyncio
import time

import pytest

from sds.client import Rados

pytestmark = pytest.mark.integration

BOUND_S = 1.5  # before: up to one OSD interval plus one mgr interval (~4 s)


def test_df_has_statistics_right_after_start(cluster):
    async def first_stats() -> float:
        started = time.monotonic()
        async with Rados(cluster.conf) as r:
            while True:
                stats = (await r.mon_command({"prefix": "df"}))["stats"]
                if stats["stats_available"] and stats["total_bytes"]:
                    return time.monotonic() - started
                await asyncio.sleep(0.05)
    elapsed = asyncio.run(first_stats())
    print(f"df had statistics {elapsed:.2f}s after every OSD was up")
    assert elapsed < BOUND_S
