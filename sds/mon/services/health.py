"""Cluster health as the monitors compute it: PG states from the manager's digest, the
checks, and the `health` commands. Other services add checks through HEALTH_CHECKS.
"""

from __future__ import annotations

from dataclasses import dataclass

from sds.common import osdmap as om
from sds.common.command import opt
from sds.crush.placement import pg_name
from sds.mon.services.core import (
    HEALTH_CHECKS,
    CommandResult,
    MonView,
    _plural,
    _size_message,
    _size_shortfall,
    command,
)

OK, WARN, ERR = "HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"


# ---------------------------------------------------------------- PG states

def _pg_states(view: MonView) -> dict[str, dict]:
    """Every PG of every pool with its latest reported stats; "unknown" if unreported."""
    reported = {}
    if view.digest:
        reported = {p.get("pgid"): p for p in view.digest.get("pgs", [])}
    states = {}
    for pool in view.osdmap.pools:
        for pg in range(pool.pg_num):
            pgid = pg_name(pool.id, pg)
            states[pgid] = reported.get(pgid) or {"pgid": pgid, "state": "unknown"}
    return states


def _state_parts(state: str) -> set[str]:
    return set(state.split("+"))


def _pgs_by_state(states: dict[str, dict]) -> list[dict]:
    counts: dict[str, int] = {}
    for pg in states.values():
        counts[pg.get("state", "unknown")] = counts.get(pg.get("state", "unknown"), 0) + 1
    return [{"state_name": s, "count": n} for s, n in sorted(counts.items(), key=lambda i: -i[1])]


# ---------------------------------------------------------------- health

@dataclass
class HealthCheck:
    code: str
    severity: str
    summary: str
    count: int
    detail: list[str]
    hint: str

    def to_dict(self, detail: bool) -> dict:
        out = {"severity": self.severity,
               "summary": {"message": self.summary, "count": self.count},
               "hint": self.hint}
        if detail:
            out["detail"] = [{"message": line} for line in self.detail]
        return out


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


def _check_osds(view: MonView) -> list[HealthCheck]:
    down = [o for o in view.osdmap.osds if not o.up and om.is_in(o)]
    if not down:
        return []
    return [HealthCheck(
        "OSD_DOWN", WARN, f"{_plural(len(down), 'osd')} down", len(down),
        [f"osd.{o.id} (host {o.host or '?'}) is down since epoch {o.down_at}" for o in down],
        "restart the OSD daemons; `sds osd tree` shows which are down")]


def _check_pool_sizes(view: MonView) -> list[HealthCheck]:
    lines, severity = [], WARN
    for pool in view.osdmap.pools:
        short = _size_shortfall(view.osdmap, pool)
        if short is None:
            continue
        lines.append(_size_message(pool, *short))
        if short[0] < pool.min_size:
            severity = ERR
    if not lines:
        return []
    summary = lines[0] if len(lines) == 1 else f"{len(lines)} pools want more replicas than " \
        "the cluster has failure domains"
    return [HealthCheck(
        "POOL_SIZE_UNMET", severity, summary, len(lines), lines,
        "add OSDs on more hosts, lower the size (`sds pool set POOL size N`), or use "
        "failure domain osd on a single host")]


def _check_pgs(view: MonView) -> list[HealthCheck]:
    states = _pg_states(view)
    inactive, degraded, undersized = [], [], []
    for pgid, pg in sorted(states.items()):
        parts = _state_parts(pg.get("state", "unknown"))
        if "active" not in parts:
            inactive.append((pgid, pg))
        if "degraded" in parts:
            degraded.append((pgid, pg))
        if "undersized" in parts:
            undersized.append((pgid, pg))
    checks = []
    if inactive:
        unknown = sum(1 for _, pg in inactive if pg.get("state") == "unknown")
        words = [f"{_plural(len(inactive), 'pg')} inactive"]
        if unknown:
            words.append(f"{unknown} unknown")
        if view.digest is None:
            words.append("no statistics from the mgr yet, expected while the cluster starts")
        checks.append(HealthCheck(
            "PG_AVAILABILITY", WARN, "Reduced data availability: " + ", ".join(words),
            len(inactive), [_pg_line(pgid, pg, "inactive") for pgid, pg in inactive],
            "check `sds osd tree` for down OSDs and `sds health detail` for POOL_SIZE_UNMET"))
    if degraded or undersized:
        words = []
        if degraded:
            words.append(f"{_plural(len(degraded), 'pg')} degraded")
        if undersized:
            words.append(f"{_plural(len(undersized), 'pg')} undersized")
        seen = dict(degraded + undersized)
        checks.append(HealthCheck(
            "PG_DEGRADED", WARN, "Degraded data redundancy: " + ", ".join(words), len(seen),
            [_pg_line(pgid, pg, "degraded") for pgid, pg in sorted(seen.items())],
            "recovery runs by itself once the OSDs are back; otherwise add OSDs"))
    return checks


def _pg_line(pgid: str, pg: dict, what: str) -> str:
    line = f"pg {pgid} is {what}, current state {pg.get('state', 'unknown')}"
    if "acting" in pg:
        line += f", last acting {pg['acting']}"
    if pg.get("reason"):
        line += f": {pg['reason']}"
    return line


def _check_scrub_errors(view: MonView) -> list[HealthCheck]:
    damaged = [(pgid, pg) for pgid, pg in sorted(_pg_states(view).items())
               if pg.get("inconsistent") or "inconsistent" in _state_parts(pg.get("state", ""))]
    if not damaged:
        return []
    objects = sum(len(pg.get("inconsistent") or []) for _, pg in damaged)
    lines = [f"pg {pgid} is {pg.get('state')}, inconsistent objects: "
             + ", ".join(pg.get("inconsistent") or ["(see `sds pg PGID query`)"])
             for pgid, pg in damaged]
    return [HealthCheck(
        "PG_DAMAGED", ERR,
        f"Possible data damage: {_plural(len(damaged), 'pg')} inconsistent, "
        f"{_plural(objects, 'scrub error')}", len(damaged), lines,
        "`sds pg repair PGID` rewrites the bad copies from a good replica")]


def recovery_progress(view: MonView) -> dict | None:
    """Objects still to recover or backfill, the rate, and an ETA (None when idle)."""
    total = done = 0
    for pg in _pg_states(view).values():
        total += int(pg.get("recovery_total", 0))
        done += int(pg.get("recovery_done", 0))
    if total <= done:
        return None
    rate = float(((view.digest or {}).get("io") or {}).get("recovered_objects_sec", 0.0))
    left = total - done
    return {"objects_left": left, "objects_total": total, "objects_per_sec": rate,
            "eta_seconds": (left / rate) if rate > 0 else None}


def health_checks(view: MonView) -> list[HealthCheck]:
    return (_check_mons(view) + _check_osds(view) + _check_pgs(view)
            + _check_scrub_errors(view) + _check_pool_sizes(view)
            + [c for check in HEALTH_CHECKS for c in check(view)])


def _health(view: MonView, detail: bool) -> dict:
    checks = health_checks(view)
    status = OK
    if any(c.severity == ERR for c in checks):
        status = ERR
    elif checks:
        status = WARN
    return {"status": status, "checks": {c.code: c.to_dict(detail) for c in checks}}


@command("health", opt("detail", "bool", False))
def cmd_health(view: MonView, args: dict) -> CommandResult:
    """Cluster health: HEALTH_OK/WARN/ERR and the checks that fail."""
    return CommandResult(_health(view, args["detail"]))


@command("health detail")
def cmd_health_detail(view: MonView, args: dict) -> CommandResult:
    """Cluster health with one detail line per affected daemon, PG or pool."""
    return CommandResult(_health(view, True))

