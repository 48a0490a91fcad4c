"""Monitor commands about placement groups: `pg stat`, `pg dump`, `pg dump_stuck`.

They read the manager's digest (PG states as the primaries last reported them), like
`ceph pg ...`; commands that act on one PG (query, scrub, repair) go to its primary OSD.
"""

from __future__ import annotations

from sds.common.command import Cli, opt
from sds.common.errors import InvalidArgument
from sds.health.checks import pg_states, state_parts
from sds.mon.services.core import CommandResult, MonView, command
from sds.mon.services.health import _pgs_by_state, recovery_progress

STUCK_KINDS = {
    "inactive": lambda parts: "active" not in parts,
    "unclean": lambda parts: "clean" not in parts,
    "degraded": lambda parts: "degraded" in parts,
    "undersized": lambda parts: "undersized" in parts,
    "stale": lambda parts: "stale" in parts or "unknown" in parts,
}
DEFAULT_STUCK_THRESHOLD_S = 300.0


@command("pg stat")
def cmd_pg_stat(view: MonView, args: dict) -> CommandResult:
    """PG counts by state, objects and bytes (one line, like `ceph pg stat`)."""
    states = pg_states(view)
    return CommandResult({
        "num_pgs": len(states),
        "pgs_by_state": _pgs_by_state(states),
        "num_objects": sum(int(pg.get("objects", 0)) for pg in states.values()),
        "num_bytes": sum(int(pg.get("bytes", 0)) for pg in states.values()),
        "recovery": recovery_progress(view),
        "epoch": view.osdmap.epoch,
    })


def _row(pg: dict) -> dict:
    return {key: pg.get(key) for key in (
        "pgid", "state", "objects", "bytes", "up", "acting", "primary", "reason",
        "last_scrub", "last_deep_scrub", "inconsistent", "state_since")}


@command("pg dump")
def cmd_pg_dump(view: MonView, args: dict) -> CommandResult:
    """Every PG with its state, size, up/acting set, primary and last scrubs."""
    return CommandResult({"pg_stats": [_row(pg) for _, pg in sorted(pg_states(view).items())],
                          "epoch": view.osdmap.epoch})


@command("pg dump_stuck", opt("states", "strs", help=" ".join(STUCK_KINDS),
                               cli=Cli(positional=True)),
         opt("threshold", "float", DEFAULT_STUCK_THRESHOLD_S, lo=0, help="seconds"))
def cmd_pg_dump_stuck(view: MonView, args: dict) -> CommandResult:
    """PGs stuck inactive/unclean/degraded/undersized/stale for longer than a threshold."""
    kinds = args["states"] or ["inactive", "unclean", "stale"]
    unknown = [k for k in kinds if k not in STUCK_KINDS]
    if unknown:
        raise InvalidArgument(f"unknown stuck state {', '.join(unknown)} "
                              f"(known: {', '.join(STUCK_KINDS)})")
    threshold = args["threshold"]
    stuck = []
    for _, pg in sorted(pg_states(view).items()):
        parts = state_parts(pg.get("state", "unknown"))
        since = pg.get("state_since")
        age = view.now - since if since else None
        if any(STUCK_KINDS[k](parts) for k in kinds) and (age is None or age >= threshold):
            stuck.append({**_row(pg), "stuck_seconds": age})
    return CommandResult({"stuck": stuck, "states": kinds, "threshold": threshold})
