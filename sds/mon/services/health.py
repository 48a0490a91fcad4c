"""Cluster health as the monitors answer it: the checks only they see (monitors, the
mgr itself), the manager's checks (sds.health.checks) as its last report carries them or
recomputed here when judged by another map, and the `health` commands. Other services
add checks through HEALTH_CHECKS.
"""

from __future__ import annotations

from sds.common import health
from sds.common.command import Cli, opt
from sds.common.health import WARN, HealthCheck
from sds.health import checks as mgr_checks
from sds.health.checks import pg_states
from sds.mon.services.core import (
    HEALTH_CHECKS,
    MGR_DOWN_AFTER_S,
    CommandResult,
    MonView,
    command,
    placement_for,
)

# ---------------------------------------------------------------- PG states


def _pgs_by_state(states: dict[str, dict]) -> list[dict]:
    counts: dict[str, int] = {}
    for pg in states.values():
        counts[pg.get("state", "unknown")] = counts.get(pg.get("state", "unknown"), 0) + 1
    return [{"state_name": s, "count": n} for s, n in sorted(counts.items(), key=lambda i: -i[1])]


# ---------------------------------------------------------------- health

def _quorum(view: MonView) -> list[int]:
    return list(view.mon_status.get("quorum", [m.rank for m in view.monmap.mons]))


def _check_mons(view: MonView) -> list[HealthCheck]:
    quorum = set(_quorum(view))
    down = [m for m in view.monmap.mons if m.rank not in quorum]
    if not down:
        return []
    names = ",".join(m.name for m in view.monmap.mons if m.rank in quorum)
    return [HealthCheck(
        "MON_DOWN", WARN,
        f"{len(down)}/{len(view.monmap.mons)} mons down, quorum {names}", len(down),
        [f"mon.{m.name} (rank {m.rank}) addr {m.addr} is down (out of quorum)" for m in down],
        "start the monitor again (`sds cluster status` shows which are running)")]


def recovery_progress(view: MonView) -> dict | None:
    """Objects still to recover or backfill, the rate, and an ETA (None when idle)."""
    total = done = 0
    for pg in pg_states(view).values():
        total += int(pg.get("recovery_total", 0))
        done += int(pg.get("recovery_done", 0))
    if total <= done:
        return None
    rate = float(((view.digest or {}).get("io") or {}).get("recovered_objects_sec", 0.0))
    left = total - done
    return {"objects_left": left, "objects_total": total, "objects_per_sec": rate,
            "eta_seconds": (left / rate) if rate > 0 else None}


def _check_mgr(view: MonView) -> list[HealthCheck]:
    age = view.mgr_report_age
    if age is None or age <= MGR_DOWN_AFTER_S:
        return []
    if view.digest is None:
        summary = f"no mgr has reported in {age:.0f} s"
        line = "PG states are unknown until a mgr reports"
    else:
        summary = f"no report from the mgr for {age:.0f} s"
        line = f"the PG, OSD and pool checks are those of its last report, {age:.0f} s ago"
    return [HealthCheck("MGR_DOWN", WARN, summary, 1, [line],
                        "start the mgr again (`sds cluster status` shows whether it runs)")]


def _mgr_checks(view: MonView) -> list[HealthCheck]:
    """The manager's checks as its last report carries them. Computed here, by the same
    functions, from the digest when the report has none (no report yet, an older mgr)
    or judged by another map than ours (a pool just created, an OSD just marked down:
    the answer must not lag the map the caller just changed)."""
    digest = view.digest or {}
    reported = digest.get("health")
    if not isinstance(reported, list) or digest.get("health_epoch") != view.osdmap.epoch:
        return mgr_checks.cluster_checks(view, placement_for)
    return [HealthCheck.from_wire(c) for c in reported if isinstance(c, dict)]


def health_checks(view: MonView) -> list[HealthCheck]:
    return (_check_mons(view) + _check_mgr(view) + _mgr_checks(view)
            + [c for check in HEALTH_CHECKS for c in check(view)])


def _health(view: MonView, detail: bool) -> dict:
    return health.report(health_checks(view), detail)


@command("health", opt("detail", "bool", False, cli=Cli(word="detail")))
def cmd_health(view: MonView, args: dict) -> CommandResult:
    """Cluster health: HEALTH_OK/WARN/ERR and the checks that fail."""
    return CommandResult(_health(view, args["detail"]))


@command("health detail")
def cmd_health_detail(view: MonView, args: dict) -> CommandResult:
    """Cluster health with one detail line per affected daemon, PG or pool."""
    return CommandResult(_health(view, True))
