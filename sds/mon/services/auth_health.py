"""AUTH_FAILURES: the health warning for repeated failed authentications (like Ceph's
AUTH_* checks), from the counters (Messenger.auth_failures) of the answering monitor's
own messenger and of every OSD and the mgr, which reach it in the mgr's digest (OSDs
report theirs in their statistics). An MDS reports its own as an MDS_AUTH_FAILURES
entry of its beacon health, shown with the other MDS health.
"""

from __future__ import annotations

from sds.common.health import WARN, HealthCheck
from sds.common.ratelimit import WARN_AT
from sds.mon.services.core import HEALTH_CHECKS, MonView


def _counters(view: MonView) -> list[tuple[str, dict]]:
    """(where, {address: failures}) for this monitor and each daemon in the digest."""
    out = [("this monitor", view.auth_failures)]
    daemons = (view.digest or {}).get("auth_failures") or {}
    if isinstance(daemons, dict):
        out += [(str(name), counts) for name, counts in sorted(daemons.items())
                if isinstance(counts, dict)]
    return out


def check_auth(view: MonView) -> list[HealthCheck]:
    bad = [(where, addr, int(n)) for where, counts in _counters(view)
           for addr, n in sorted(counts.items()) if isinstance(n, int) and n >= WARN_AT]
    if not bad:
        return []
    window = view.config.get("ms_auth_fail_window")
    total = sum(n for _, _, n in bad)
    addrs = {addr for _, addr, _ in bad}
    return [HealthCheck(
        "AUTH_FAILURES", WARN,
        f"{total} failed authentications from {len(addrs)} address(es) in the last {window:.0f} s",
        total, [f"{n} failed attempts from {addr} at {where}" for where, addr, n in bad],
        "a client uses a wrong or revoked key, or someone is guessing keys: find it by its "
        "address; repeated failures are banned for ms_auth_fail_ban_time seconds")]


HEALTH_CHECKS.append(check_auth)
