"""The client's ticket cache renews before expiry and never hands out a stale ticket."""

from __future__ import annotations

import base64

from sds.client.tickets import TicketCache
from sds.common import tickets
from sds.common.errors import Unavailable

KEY = b"c" * 32
TTL = 100.0


class FakeMon:
    def __init__(self):
        self.now = 1000.0
        self.secrets = tickets.rotate([], self.now, TTL)
        self.calls = 0
        self.down = False

    async def command(self, cmd):
        if self.down:
            raise Unavailable("no quorum")
        self.calls += 1
        signer = tickets.signing_secret(self.secrets, self.now)
        ticket, sealed = tickets.issue("client.t", {"osd": "allow r"}, cmd["service"], signer,
                                       KEY, self.now, TTL)
        return {"ticket": base64.b64encode(ticket).decode(),
                "sealed_key": base64.b64encode(sealed).decode(), "expires": self.now + TTL}


async def test_cached_until_due_then_renewed():
    mon = FakeMon()
    cache = TicketCache(mon.command, KEY, clock=lambda: mon.now)
    first = await cache.get("osd")
    assert (await cache.get("osd")) is first and mon.calls == 1
    got = tickets.verify(first.ticket, "osd", mon.secrets, mon.now)
    assert got.session_key == first.session_key
    mon.now += TTL * 0.5
    assert await cache.renew_due() == [] and mon.calls == 1
    mon.now += TTL * 0.3  # past 3/4 of its life
    assert await cache.renew_due() == ["osd"] and mon.calls == 2
    assert cache.held["osd"].issued == mon.now


async def test_a_failed_renewal_keeps_the_old_ticket():
    mon = FakeMon()
    cache = TicketCache(mon.command, KEY, clock=lambda: mon.now)
    held = await cache.get("mds")
    mon.now += TTL * 0.9
    mon.down = True
    assert await cache.renew_due() == []
    assert cache.held["mds"] is held
