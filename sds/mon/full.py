"""Full OSDs and monitors, as the monitors see them: ratios, the FULL flag, MON_DISK_*.

Pure like the rest of sds.mon.commands (view in, result out); registered by importing
this module. Usage comes from the manager's digest (statvfs of each OSD's data
directory); the ratios live in the OSDMap so every OSD judges by the same ones. The
leader sets the map's FULL flag while any OSD is at the full ratio and clears it once
none is (see sds.osd.fullness for what OSDs then refuse). The OSD_* and POOL_*
fullness checks are the manager's (sds.mgr.health); the monitors' disks only the
monitors know.
"""

from __future__ import annotations

from sds.common import fullness as fu
from sds.common import osdmap as om
from sds.common.errors import InvalidArgument
from sds.common.health import ERR, WARN, HealthCheck, plural
from sds.mgr.health import osd_levels
from sds.mon.commands import (
    HEALTH_CHECKS,
    LEADER_TICKS,
    CommandResult,
    MonView,
    _update,
    command,
)


def ratios(view: MonView) -> fu.Ratios:
    return fu.ratios_of(view.osdmap, view.config)


def check_mon_disk(view: MonView) -> list[HealthCheck]:
    """MON_DISK_CRIT / MON_DISK_LOW from each monitor's filesystem (mon_status["disks"]:
    name -> available percent, as far as this monitor knows)."""
    warn = float(view.config.get("mon_data_avail_warn"))
    crit = float(view.config.get("mon_data_avail_crit"))
    disks = view.mon_status.get("disks") or {}
    checks = []
    for code, severity, low, hint in (
            ("MON_DISK_CRIT", ERR, lambda p: p < crit,
             "a monitor stops when it cannot write its store: free space on its disk now"),
            ("MON_DISK_LOW", WARN, lambda p: crit <= p < warn,
             "free space on the monitor's disk (mon_data_avail_warn)")):
        hit = sorted((name, pct) for name, pct in disks.items() if low(pct))
        if hit:
            checks.append(HealthCheck(
                code, severity,
                f"{plural(len(hit), 'mon')} {'critically ' if severity == ERR else ''}"
                "low on available space", len(hit),
                [f"mon.{name} has {pct:.0f}% available" for name, pct in hit], hint))
    return checks


HEALTH_CHECKS.append(check_mon_disk)


def _want_full(view: MonView) -> bool:
    return any(level == fu.FULL for level, _ in osd_levels(view).values())


def _flag_change(view: MonView) -> bool | None:
    """True/False to set/clear the FULL flag, None when it is right already. Without a
    digest nothing is known: keep the flag as it is."""
    if view.digest is None:
        return None
    want, have = _want_full(view), fu.FULL_FLAG in view.osdmap.flags
    return want if want != have else None


def _tick(view: MonView) -> list[dict]:
    """Leader, once a second: keep the FULL flag in step with OSD usage."""
    return [{"prefix": "osd full-flag sync"}] if _flag_change(view) is not None else []


LEADER_TICKS.append(_tick)


@command("osd full-flag sync", write=True)
def cmd_full_flag_sync(view: MonView, cmd: dict) -> CommandResult:
    """Set or clear the FULL flag from OSD usage (the leader runs it itself)."""
    change = _flag_change(view)
    if change is None:
        return CommandResult({"full": fu.FULL_FLAG in view.osdmap.flags, "changed": False})
    flags = set(view.osdmap.flags)
    flags = flags | {fu.FULL_FLAG} if change else flags - {fu.FULL_FLAG}
    inc = om.next_incremental(view.osdmap, view.now)
    inc.new_flags.extend(sorted(flags))
    inc.has_new_flags = True
    return CommandResult({"full": change, "changed": True}, _update(inc))


def _ratio(cmd: dict) -> float:
    value = cmd.get("ratio")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidArgument(f"'{cmd.get('prefix')}' needs 'ratio', a number in (0, 1]")
    try:
        return float(value)
    except ValueError:
        raise InvalidArgument(f"'ratio' must be a number, not {value!r}") from None


def _set_ratio(view: MonView, cmd: dict, which: str) -> CommandResult:
    value = _ratio(cmd)
    current = ratios(view)
    new = fu.Ratios(**{**current.__dict__, which: value}).validate()
    inc = om.next_incremental(view.osdmap, view.now)
    inc.new_nearfull_ratio = new.nearfull
    inc.new_backfillfull_ratio = new.backfillfull
    inc.new_full_ratio = new.full
    return CommandResult({"nearfull_ratio": new.nearfull,
                          "backfillfull_ratio": new.backfillfull,
                          "full_ratio": new.full}, _update(inc))


@command("osd set-nearfull-ratio", write=True)
def cmd_set_nearfull(view: MonView, cmd: dict) -> CommandResult:
    """Set the used fraction at which OSDs are nearfull (<= backfillfull)."""
    return _set_ratio(view, cmd, "nearfull")


@command("osd set-backfillfull-ratio", write=True)
def cmd_set_backfillfull(view: MonView, cmd: dict) -> CommandResult:
    """Set the used fraction at which OSDs refuse backfill (nearfull..full)."""
    return _set_ratio(view, cmd, "backfillfull")


@command("osd set-full-ratio", write=True)
def cmd_set_full(view: MonView, cmd: dict) -> CommandResult:
    """Set the used fraction at which the cluster is full and writes stop (>= backfillfull)."""
    return _set_ratio(view, cmd, "full")
