"""AUTH_FAILURES: the health warning for repeated failed authentications (like Ceph's
AUTH_* checks), from the counter of the answering monitor's own messenger.

Why only the monitor's own port: it is where keys are guessed first, and the count is
at hand without new messages; OSD, MDS and mgr counters (Messenger.auth_failures) are
not yet reported through their statistics.
"""

from __future__ import annotations

from sds.common.health import WARN, HealthCheck
from sds.mon.commands import HEALTH_CHECKS, MonView

WARN_AT = 10   # failures from one address within ms_auth_fail_window


def check_auth(view: MonView) -> list[HealthCheck]:
    bad = {addr: n for addr, n in view.auth_failures.items() if n >= WARN_AT}
    if not bad:
        return []
    window = view.config.get("ms_auth_fail_window")
    total = sum(bad.values())
    return [HealthCheck(
        "AUTH_FAILURES", WARN,
        f"{total} failed authentications from {len(bad)} address(es) in the last {window:.0f} s",
        total, [f"{n} failed attempts from {addr} at this monitor" for addr, n in sorted(bad.items())],
        "a client uses a wrong or revoked key, or someone is guessing keys: find it by its "
        "address; repeated failures are banned for ms_auth_fail_ban_time seconds")]


HEALTH_CHECKS.append(check_auth)
