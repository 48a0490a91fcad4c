"""Filesystem and MDS commands of the monitors: `fs new/ls/status/rm`, `mds beacon`.

The MDSMap is replicated through Paxos like the OSDMap (one whole, small map per
value). Beacon arrival times are leader-local soft state, as in Ceph's MDSMonitor:
a new leader starts every MDS's grace period afresh (sds.mon.beacons, the daemon's). An MDS is dropped when its
beacons stop for `mds_beacon_grace`; a filesystem without an active MDS gets a live
standby, with the filesystem's generation bumped so the old one knows it was replaced.
"""

from __future__ import annotations

from sds.common import osdmap as om
from sds.common.command import Access, Cli, Param, as_int, opt
from sds.common.errors import AlreadyExists, Busy, InvalidArgument, NotFound, PermissionDenied
from sds.common.fencing import FENCE_PENDING, active_instance
from sds.common.health import ERR, WARN, HealthCheck
from sds.mon.services.core import HEALTH_CHECKS, LEADER_TICKS, CommandResult, MonView, command
from sds.proto import maps_pb2

ACTIVE, STANDBY = "active", "standby"
FENCE_S = 3600.0              # how long a replaced MDS's instance stays blocklisted
DEFAULT_MAX_FILE_SIZE = 1 << 40  # 1 TiB, as Ceph's max_file_size
FS_VARS = {"max_file_size": (1, (1 << 63) - 1)}  # `fs set` variables and their ranges
MAX_HEALTH = 8  # health entries kept per MDS beacon


def _grace(view: MonView) -> float:
    return float(view.config.get("mds_beacon_grace"))


def _find_fs(mdsmap: maps_pb2.MdsMap, name: str) -> maps_pb2.Filesystem:
    for fs in mdsmap.filesystems:
        if fs.name == name:
            return fs
    raise NotFound(f"filesystem '{name}' does not exist (see `sds fs ls`)")


def _find_mds(mdsmap: maps_pb2.MdsMap, name: str) -> maps_pb2.MdsInfo | None:
    return next((m for m in mdsmap.mds if m.name == name), None)


def _next(view: MonView) -> maps_pb2.MdsMap:
    new = maps_pb2.MdsMap()
    new.CopyFrom(view.mdsmap)
    new.epoch = view.mdsmap.epoch + 1
    return new


def _result(out: dict, new: maps_pb2.MdsMap | None, view: MonView | None = None,
            fenced: list[str] | None = None) -> CommandResult:
    """The MDS map change; first, when active MDSs were replaced, the OSD map change that
    blocklists their client instances (a frozen MDS that wakes up cannot write)."""
    if new is None:
        return CommandResult(out)
    if not fenced:
        return CommandResult(out, maps_pb2.MapUpdate(mdsmap=new))
    inc = om.next_incremental(view.osdmap, view.now)
    for instance in fenced:
        inc.new_blocklist[instance] = view.now + FENCE_S
    for fs in new.filesystems:
        if fs.osd_epoch_barrier == FENCE_PENDING:
            fs.osd_epoch_barrier = inc.epoch
    if out.get("osd_epoch_barrier") == FENCE_PENDING:  # a role computed before the epoch
        out["osd_epoch_barrier"] = inc.epoch            # was known: never send the placeholder
    return CommandResult(out, maps_pb2.MapUpdate(osdmap=inc),
                         [maps_pb2.MapUpdate(mdsmap=new)])


def _reconcile(new: maps_pb2.MdsMap, view: MonView, fenced: list[str] | None = None) -> bool:
    """Drop silent MDSs and give every filesystem without an active one a standby; the
    client instances of dropped active MDSs go to `fenced`."""
    changed = False
    grace = _grace(view)
    for mds in list(new.mds):
        if view.beacons.stale(mds.name, view.now, grace):
            _fence(new, mds, fenced)
            new.mds.remove(mds)
            changed = True
    live = {m.name for m in new.mds}
    for fs in new.filesystems:
        if fs.active and fs.active not in live:
            fs.active = ""
            changed = True
        if fs.active:
            continue
        standby = next((m for m in new.mds if m.state == STANDBY), None)
        if standby is not None:
            standby.state, standby.fs = ACTIVE, fs.name
            fs.active = standby.name
            fs.generation += 1
            changed = True
    return changed


def _fence(new: maps_pb2.MdsMap, mds: maps_pb2.MdsInfo, fenced: list[str] | None) -> None:
    """An active MDS leaves the map: its instance is to be blocklisted, and its
    filesystem's next active waits for the OSD map that does it."""
    if fenced is None or mds.state != ACTIVE or not mds.instance:
        return
    for fs in new.filesystems:
        if fs.name == mds.fs and fs.active == mds.name:
            fenced.append(active_instance(mds.instance, fs.generation))
            fs.osd_epoch_barrier = FENCE_PENDING


def _role(mdsmap: maps_pb2.MdsMap, name: str) -> dict:
    me = _find_mds(mdsmap, name)
    out = {"name": name, "role": STANDBY, "fs": "", "generation": 0,
           "mdsmap_epoch": mdsmap.epoch}
    if me is not None and me.state == ACTIVE:
        fs = next((f for f in mdsmap.filesystems if f.name == me.fs), None)
        if fs is not None and fs.active == name:
            out.update(role=ACTIVE, fs=fs.name, generation=fs.generation,
                       metadata_pool=fs.metadata_pool, data_pool=fs.data_pool,
                       osd_epoch_barrier=fs.osd_epoch_barrier,
                       max_file_size=max_file_size(fs))
    return out


@command("mds beacon", Param("name"), Param("addr"), opt("instance", "text", ""),
         opt("health", "any"), write=True, access=Access(daemon="mds", self_arg="name"))
def cmd_mds_beacon(view: MonView, args: dict) -> CommandResult:
    """An MDS says it is alive; the reply tells it its role (active/standby), fs and generation."""
    name, addr, instance = args["name"], args["addr"], args["instance"]
    view.beacons.seen(name, view.now)
    new = _next(view)
    changed = False
    me = _find_mds(new, name)
    if me is None:
        new.mds.add(name=name, addr=addr, state=STANDBY, instance=instance)
        changed = True
    elif me.instance != instance:
        me.instance = instance
        changed = True
    elif me.addr != addr:  # restarted: its old incarnation's state is gone
        me.addr = addr
        if me.state == ACTIVE:
            fs = next((f for f in new.filesystems if f.name == me.fs), None)
            if fs is not None:
                fs.generation += 1
        changed = True
    health = _beacon_health(args)
    me = _find_mds(new, name)
    if [(h.code, h.message) for h in me.health] != [(h.code, h.message) for h in health]:
        del me.health[:]
        me.health.extend(health)
        changed = True
    fenced: list[str] = []
    changed = _reconcile(new, view, fenced) or changed
    if not changed:
        return CommandResult(_role(view.mdsmap, name))
    return _result(_role(new, name), new, view, fenced)


def _beacon_health(args: dict) -> list[maps_pb2.MdsHealth]:
    """The problems an MDS reports in its beacon: [{"code": "MDS_...", "message"}]."""
    raw = args["health"] or []
    if not isinstance(raw, list):
        raise InvalidArgument("'health' must be a list")
    out = []
    for item in raw[:MAX_HEALTH]:
        if not isinstance(item, dict) or not str(item.get("code", "")).startswith("MDS_"):
            raise InvalidArgument(f"bad MDS health entry {item!r}")
        out.append(maps_pb2.MdsHealth(code=item["code"], message=str(item.get("message", ""))))
    return out


def max_file_size(fs: maps_pb2.Filesystem) -> int:
    return fs.max_file_size or DEFAULT_MAX_FILE_SIZE


@command("fs set", Param("fs_name"),
         Param("var", help=", ".join(sorted(FS_VARS)), cli=Cli(metavar="VAR")),
         Param("val", "any", cli=Cli(metavar="VALUE")), write=True)
def cmd_fs_set(view: MonView, args: dict) -> CommandResult:
    """Change a filesystem setting (max_file_size); the active MDS follows at its next
    beacon and enforces it from then on (EFBIG)."""
    name, var = args["fs_name"], args["var"]
    if var not in FS_VARS:
        raise InvalidArgument(f"unknown filesystem setting '{var}' (known: "
                              f"{', '.join(sorted(FS_VARS))})")
    lo, hi = FS_VARS[var]
    value = as_int("val", args["val"], lo, hi)
    new = _next(view)
    setattr(_find_fs(new, name), var, value)
    return _result({"fs_name": name, var: value}, new)


@command("mds fail", Param("name"), write=True,
         access=Access(self_service="mds", self_arg="name"))
def cmd_mds_fail(view: MonView, args: dict) -> CommandResult:
    """Take an MDS out of the map now (it is stopping, or an admin says so); a standby
    takes over its filesystem without waiting for the beacon grace."""
    name = args["name"]
    new = _next(view)
    me = _find_mds(new, name)
    if me is None:
        raise NotFound(f"mds.{name} is not in the MDS map (see `sds fs status`)")
    fenced: list[str] = []
    _fence(new, me, fenced)
    new.mds.remove(me)
    view.beacons.forget(name)
    _reconcile(new, view, fenced)
    return _result({"failed": name}, new, view, fenced)


def _tick(view: MonView) -> list[dict]:
    """Leader, once a second: drop silent MDSs even when no beacon arrives at all."""
    new = _next(view)
    return [{"prefix": "mds reconcile"}] if _reconcile(new, view) else []


LEADER_TICKS.append(_tick)


@command("mds reconcile", write=True)
def cmd_mds_reconcile(view: MonView, args: dict) -> CommandResult:
    """Drop MDSs whose beacons stopped and promote standbys (the leader runs it itself)."""
    new = _next(view)
    fenced: list[str] = []
    changed = _reconcile(new, view, fenced)
    return _result({"mdsmap_epoch": new.epoch}, new if changed else None, view, fenced)


@command("fs new", Param("fs_name"),
         Param("metadata", help="metadata pool", cli=Cli(metavar="metadata_pool")),
         Param("data", help="data pool", cli=Cli(metavar="data_pool")), write=True)
def cmd_fs_new(view: MonView, args: dict) -> CommandResult:
    """Create a filesystem on a metadata pool and a data pool."""
    name = args["fs_name"]
    meta = om.pool_by_name(view.osdmap, args["metadata"])
    data = om.pool_by_name(view.osdmap, args["data"])
    if meta.id == data.id:
        raise InvalidArgument("the metadata and data pools must differ")
    for fs in view.mdsmap.filesystems:
        if fs.name == name:
            raise AlreadyExists(f"filesystem '{name}' already exists")
        if {fs.metadata_pool, fs.data_pool} & {meta.id, data.id}:
            raise InvalidArgument(f"a pool is already used by filesystem '{fs.name}'")
    new = _next(view)
    new.filesystems.add(name=name, metadata_pool=meta.id, data_pool=data.id,
                        created=view.now)
    _reconcile(new, view)
    return _result(_fs_dict(view, _find_fs(new, name), new), new)


@command("fs rm", Param("fs_name"), opt("yes_i_really_mean_it", "bool", False),
         opt("force", "bool", False, help="remove even while an MDS is active for it"),
         write=True)
def cmd_fs_rm(view: MonView, args: dict) -> CommandResult:
    """Remove a filesystem, its pools stay (needs 'yes_i_really_mean_it'; EBUSY while an
    MDS serves it, unless 'force')."""
    name = args["fs_name"]
    fs = _find_fs(view.mdsmap, name)
    if not args["yes_i_really_mean_it"]:
        raise PermissionDenied(f"removing filesystem '{name}' makes its data unreachable; "
                               "pass --yes-i-really-mean-it")
    if fs.active and not args["force"]:
        raise Busy(f"mds.{fs.active} is active for '{name}'; stop it or pass --force")
    new = _next(view)
    new.filesystems.remove(_find_fs(new, name))
    for mds in new.mds:
        if mds.fs == name:
            mds.state, mds.fs = STANDBY, ""
    _reconcile(new, view)
    return _result({"removed": name}, new)


def _fs_dict(view: MonView, fs: maps_pb2.Filesystem, mdsmap: maps_pb2.MdsMap) -> dict:
    pools = {p.id: p.name for p in view.osdmap.pools}
    active = _find_mds(mdsmap, fs.active) if fs.active else None
    return {"name": fs.name, "metadata_pool": pools.get(fs.metadata_pool, str(fs.metadata_pool)),
            "data_pool": pools.get(fs.data_pool, str(fs.data_pool)),
            "metadata_pool_id": fs.metadata_pool, "data_pool_id": fs.data_pool,
            "active": ({"name": active.name, "addr": active.addr} if active else None),
            "generation": fs.generation, "created": fs.created,
            "max_file_size": max_file_size(fs)}


@command("fs ls")
def cmd_fs_ls(view: MonView, args: dict) -> CommandResult:
    """Filesystems with their pools and active MDS."""
    return CommandResult({"filesystems": [_fs_dict(view, fs, view.mdsmap)
                                          for fs in view.mdsmap.filesystems]})


@command("fs status", opt("fs_name", cli=Cli(positional=True)))
def cmd_fs_status(view: MonView, args: dict) -> CommandResult:
    """Active MDS (name, address, generation) and standbys, of one or every filesystem."""
    name = args["fs_name"]
    chosen = [_find_fs(view.mdsmap, name)] if name else list(view.mdsmap.filesystems)
    return CommandResult({
        "mdsmap_epoch": view.mdsmap.epoch,
        "filesystems": [_fs_dict(view, fs, view.mdsmap) for fs in chosen],
        "standbys": [{"name": m.name, "addr": m.addr} for m in view.mdsmap.mds
                     if m.state == STANDBY]})


def check_fs(view: MonView) -> list[HealthCheck]:
    """FS_DEGRADED: a filesystem has no active MDS; MDS_ALL_DOWN: no MDS at all; and the
    MDS_... problems the MDSs report in their beacons."""
    if not view.mdsmap.filesystems:
        return []
    checks = []
    degraded = [fs.name for fs in view.mdsmap.filesystems if not fs.active]
    if degraded:
        checks.append(HealthCheck(
            "FS_DEGRADED", WARN, f"{len(degraded)} filesystem(s) have no active MDS",
            len(degraded), [f"fs {n} has no active MDS" for n in degraded],
            "start an MDS (`sds daemon mds --id a`); a standby is promoted within "
            "mds_beacon_grace"))
    reported: dict[str, list[str]] = {}
    for mds in view.mdsmap.mds:
        for h in mds.health:
            reported.setdefault(h.code, []).append(f"mds.{mds.name}: {h.message}")
    for code, lines in sorted(reported.items()):
        checks.append(HealthCheck(
            code, WARN, lines[0] if len(lines) == 1 else f"{len(lines)} MDS report {code}",
            len(lines), lines, "see the MDS log; the MDS keeps serving and retries"))
    if not view.mdsmap.mds:
        checks.append(HealthCheck(
            "MDS_ALL_DOWN", ERR, "all MDS daemons are down", len(view.mdsmap.filesystems),
            [f"fs {fs.name} is offline" for fs in view.mdsmap.filesystems],
            "start the MDS daemons"))
    return checks


HEALTH_CHECKS.append(check_fs)
