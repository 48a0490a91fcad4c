"""Dentry leases: who is told about a changed name, and for how long."""

from __future__ import annotations

from sds.mds.leases import DentryLeases


def test_others_holding_a_live_lease_are_told_and_expired_ones_dropped():
    now = [100.0]
    leases = DentryLeases(1.5, clock=lambda: now[0])
    leases.grant(10, session=1)
    leases.grant(10, session=2)
    leases.grant(11, session=3)
    leases.grant(10, session=0)  # no session (internal requests): nothing to push to
    assert leases.others(10, session=1) == [2]
    assert leases.others(10, session=9) == [1, 2]
    assert leases.others(12, session=1) == []
    now[0] += 1.0
    leases.grant(10, session=2)  # renewed
    now[0] += 1.0
    assert leases.others(10, session=0) == [2]  # session 1's lease ran out
    now[0] += 2.0
    assert leases.others(10, session=0) == [] and 10 not in leases.holders
