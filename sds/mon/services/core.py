"""What every monitor service shares: the view a command reads, its result, the registry.

A command is a JSON object like Ceph's: ``{"prefix": "osd pool create", "pool": "rbd"}``.
Its handler reads only the `MonView` it is given and the arguments the registry has
validated, and returns the JSON-able output plus, for a write, the map changes
(`MapUpdate`) the daemon proposes through Paxos before it replies. Nothing here does
I/O, so every command is unit-tested by applying its update with `apply_incremental`.
Service modules import this one and nothing of each other's but `health`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sds.common import osdmap as om
from sds.common.caps import Caps
from sds.common.command import Cli, Param, Registry
from sds.common.config import Config
from sds.common.errors import NotFound
from sds.crush.cache import placement_for  # noqa: F401 (the services' one table per epoch)
from sds.mon.beacons import BeaconTracker
from sds.proto import crush_pb2, maps_pb2

MON = Registry()
command = MON.command

# Hooks of the services: extra health checks, and leader ticks returning commands the
# leader runs once a second.
HEALTH_CHECKS: list[Callable[[MonView], list]] = []
LEADER_TICKS: list[Callable[[MonView], list[dict]]] = []

MAX_PG_NUM = 65536
MAX_POOL_SIZE = 10
POOL_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
POOL_VARS = ("size", "min_size", "pg_num", "crush_rule", "application")
IDS = Param("ids", "ids", lo=0, help="OSD ids (N or osd.N)")
ONE_ID = Param("ids", "ids", lo=0, help="OSD id (N or osd.N)", cli=Cli(kind="one_id", metavar="id"))
MGR_DOWN_AFTER_S = 15.0  # the mgr reports every 2 s; this many seconds of silence is MGR_DOWN


@dataclass
class MonView:
    """Everything a command may read; built by the mon daemon for each command."""

    osdmap: maps_pb2.OsdMap
    auth: dict[str, maps_pb2.AuthEntity]
    monmap: maps_pb2.MonMap
    mon_status: dict  # {"leader": rank|None, "quorum": [ranks], "election_epoch": n, ...}
    digest: dict | None  # latest statistics from the mgr, None before the first report
    config: Config
    now: float
    mdsmap: maps_pb2.MdsMap = field(default_factory=maps_pb2.MdsMap)
    auth_failures: dict[str, int] = field(default_factory=dict)  # at this mon, per address
    caller: Caps | None = None  # the caller's parsed caps; None for the mons' own commands
    caller_name: str | None = None
    rotating: dict[str, list[maps_pb2.RotatingSecret]] = field(default_factory=dict)
    beacons: BeaconTracker = field(default_factory=BeaconTracker)  # the daemon's own
    mgr_report_age: float | None = None  # seconds since the last mgr report (or mon start)


@dataclass
class CommandResult:
    output: dict
    update: maps_pb2.MapUpdate | None = None
    more_updates: list[maps_pb2.MapUpdate] = field(default_factory=list)  # other maps, in order

    def updates(self) -> list[maps_pb2.MapUpdate]:
        """Every map change to propose, one Paxos value each (a value changes one map)."""
        return ([self.update] if self.update is not None else []) + self.more_updates


# ---------------------------------------------------------------- small helpers

def _update(inc: maps_pb2.OsdMapIncremental) -> maps_pb2.MapUpdate:
    return maps_pb2.MapUpdate(osdmap=inc)


def _weight(fixed: int) -> float:
    return round(fixed / om.FULL_WEIGHT, 5)


def _crush_copy(osdmap: maps_pb2.OsdMap) -> crush_pb2.CrushMap:
    crush = crush_pb2.CrushMap()
    crush.CopyFrom(osdmap.crush)
    return crush


def _crush_apply(crush: crush_pb2.CrushMap, fn: Callable, *args) -> crush_pb2.CrushMap:
    """Run a builder mutation; tolerate builders that return a new map."""
    result = fn(crush, *args)
    return result if isinstance(result, crush_pb2.CrushMap) else crush


def _rule(crush: crush_pb2.CrushMap, ref: Any) -> crush_pb2.CrushRule:
    for rule in crush.rules:
        if rule.name == ref or (not isinstance(ref, bool) and str(rule.id) == str(ref)):
            return rule
    known = ", ".join(r.name for r in crush.rules) or "none"
    raise NotFound(f"CRUSH rule '{ref}' does not exist (rules: {known})")


def _rule_name(crush: crush_pb2.CrushMap, rule_id: int) -> str:
    for rule in crush.rules:
        if rule.id == rule_id:
            return rule.name
    return str(rule_id)


def _in_crush(crush: crush_pb2.CrushMap, osd_id: int) -> bool:
    return any(d.id == osd_id for d in crush.devices)


def default_min_size(config: Config, size: int) -> int:
    """Ceph's rule: a majority of the replicas (size - size//2), capped by the config."""
    majority = size - size // 2
    configured = int(config.get("osd_pool_default_min_size"))
    return max(1, min(majority, configured)) if configured > 0 else majority


def _pool_dict(pool: maps_pb2.Pool, crush: crush_pb2.CrushMap) -> dict:
    return {
        "pool": pool.id,
        "pool_name": pool.name,
        "size": pool.size,
        "min_size": pool.min_size,
        "pg_num": pool.pg_num,
        "crush_rule": _rule_name(crush, pool.crush_rule),
        "crush_rule_id": pool.crush_rule,
        "application": pool.application,
        "created_epoch": pool.created_epoch,
    }


def _osd_dict(osd: maps_pb2.OsdInfo) -> dict:
    return {
        "osd": osd.id,
        "uuid": osd.uuid,
        "up": int(osd.up),
        "in": int(om.is_in(osd)),
        "reweight": _weight(osd.reweight),
        "addr": osd.addr,
        "host": osd.host,
        "up_from": osd.up_from,
        "down_at": osd.down_at,
    }
