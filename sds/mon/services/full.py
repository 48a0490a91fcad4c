"""Full OSDs and monitors, as the monitors see them: ratios, the FULL flag, MON_DISK_*.

Pure like the other mon services (view in, result out); registered by importing
this module. Usage comes from the manager's digest (statvfs of each OSD's data
directory); the ratios live in the OSDMap so every OSD judges by the same ones. The
leader sets the map's FULL flag while any OSD is at the full ratio and clears it once
none is (see sds.osd.fullness for what OSDs then refuse). The OSD_* and POOL_*
fullness checks are the manager's (sds.health.checks); the monitors' disks only the
monitors know.
"""

from __future__ import annotations

import functools

from sds.common import fullness as fu
from sds.common import osdmap as om
from sds.common.command import Descriptor, Param
from sds.common.health import ERR, WARN, HealthCheck, plural
from sds.health.checks import osd_levels
from sds.mon.services.core import (
    HEALTH_CHECKS,
    LEADER_TICKS,
    MON,
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
def cmd_full_flag_sync(view: MonView, args: dict) -> CommandResult:
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


RATIO = Param("ratio", "float", help="a used fraction in (0, 1]")


def _set_ratio(view: MonView, args: dict, which: str) -> CommandResult:
    value = args["ratio"]
    current = ratios(view)
    new = fu.Ratios(**{**current.__dict__, which: value}).validate()
    inc = om.next_incremental(view.osdmap, view.now)
    inc.new_nearfull_ratio = new.nearfull
    inc.new_backfillfull_ratio = new.backfillfull
    inc.new_full_ratio = new.full
    return CommandResult({"nearfull_ratio": new.nearfull,
                          "backfillfull_ratio": new.backfillfull,
                          "full_ratio": new.full}, _update(inc))


for _which, _help in (
        ("nearfull", "Set the used fraction at which an OSD warns (OSD_NEARFULL), default 0.85 "
                     "(<= backfillfull)."),
        ("backfillfull", "Set the used fraction at which an OSD takes no more backfill or "
                         "recovery, default 0.90 (nearfull..full)."),
        ("full", "Set the used fraction at which the cluster is full and writes get ENOSPC, "
                 "default 0.95 (>= backfillfull).")):
    MON.add(Descriptor(f"osd set-{_which}-ratio", (RATIO,), _help, write=True,
                       fn=functools.partial(_set_ratio, which=_which)))
