"""The OSD statistics loop outlives a device it cannot sample: logged once, kept going."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from sds.osd.daemon import OsdDaemon


class _Device:
    def __init__(self, failures: int):
        self.failures = failures

    def tend(self, ratios, store) -> None:
        if self.failures:
            raise OSError(5, "Input/output error")


class _Conn:
    def __init__(self, sent: list):
        self.sent = sent

    async def send(self, msg_type, payload) -> None:
        self.sent.append(payload)


def test_a_statvfs_error_is_logged_once_and_the_loop_goes_on(caplog):
    sent: list = []
    device = _Device(failures=3)

    def stats():
        if device.failures:
            device.failures -= 1
            raise OSError(5, "Input/output error")
        return "report"

    async def connect(addr, timeout):
        return _Conn(sent)

    fake = SimpleNamespace(
        config=SimpleNamespace(get=lambda k: {"osd_stats_interval": 0.01,
                                              "mgr_addr": "127.0.0.1:1"}[k]),
        device=device, store=None, ratios=lambda: None, stats=stats,
        messenger=SimpleNamespace(connect=connect))

    async def run():
        task = asyncio.create_task(OsdDaemon._report_stats(fake))
        for _ in range(200):
            if len(sent) >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    with caplog.at_level(logging.INFO, logger="sds.osd"):
        asyncio.run(run())
    assert len(sent) >= 2, "reports resume once the device can be sampled"
    warnings = [r for r in caplog.records if "cannot sample" in r.getMessage()]
    assert len(warnings) == 1
