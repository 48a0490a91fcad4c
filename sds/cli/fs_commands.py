"""`sds fs ...`: filesystems (via the monitors) and namespace admin (via the active MDS)."""

from __future__ import annotations

import json
import time

from sds.cli import format as fmt
from sds.cli.commands import Context, Output, arg, byte_count_arg, cli
from sds.cli.generated import _FS, mds_cli, mon_cli
from sds.proto import mds_pb2


def _fs_table(data: dict) -> str:
    rows = [(fs["name"], fs["metadata_pool"], fs["data_pool"],
             (fs.get("active") or {}).get("name", "-"), (fs.get("active") or {}).get("addr", "-"),
             fs.get("generation", 0)) for fs in data.get("filesystems", [])]
    text = fmt.table(["NAME", "METADATA", "DATA", "ACTIVE", "ADDR", "GENERATION"], rows,
                     left=["NAME", "METADATA", "DATA", "ACTIVE", "ADDR"])
    if "standbys" in data:
        names = ", ".join(f"mds.{s['name']} ({s['addr']})" for s in data["standbys"])
        text += f"\nstandby: {names or 'none'}"
    return text


def _new(data: dict, f: dict) -> str:
    return (f"new fs '{f['fs_name']}' with metadata pool {f['metadata']} and "
            f"data pool {f['data']}")


mon_cli("fs new", _new, drop=("osdmap_epoch",))
mon_cli("fs ls", _fs_table)
mon_cli("fs status", _fs_table)
mon_cli("fs set", lambda d, f: f"set {f['var']} of fs '{f['fs_name']}' to {d.get(f['var'], f['val'])}")
mon_cli("fs rm", lambda d, f: f"removed fs '{f['fs_name']}'", drop=("osdmap_epoch",))


def _check(reply: mds_pb2.MdsReply, f: dict) -> Output:
    report = json.loads(reply.report)
    lines = [f"{'clean' if report.get('ok') else 'DAMAGED'}: {report.get('inodes', 0)} inodes, "
             f"{report.get('directories', 0)} directories, {report.get('strays', 0)} strays"]
    lines += [f"  {e}" for e in report.get("errors", [])]
    return Output(report, "\n".join(lines), code=0 if report.get("ok") else 1)


def _quota(reply: mds_pb2.MdsReply, f: dict) -> Output:
    q = reply.quota
    data = {"path": q.path, "max_bytes": q.max_bytes, "max_files": q.max_files,
            "used_bytes": q.used_bytes, "used_files": q.used_files}
    return Output(data, _quota_text(data))


def _quota_text(q: dict) -> str:
    def limit(n: int, human: bool) -> str:
        return "unlimited" if not n else fmt.human_bytes(n) if human else str(n)

    return (f"{q['path']}: bytes {fmt.human_bytes(q['used_bytes'])} of "
            f"{limit(q['max_bytes'], True)}, files {q['used_files']} of "
            f"{limit(q['max_files'], False)}")


def _snaps(reply: mds_pb2.MdsReply) -> list[dict]:
    return [{"name": s.name, "id": s.snap_id, "created": s.created_ns / 1e9}
            for s in reply.snaps]


def _snap_created(reply: mds_pb2.MdsReply, f: dict) -> Output:
    return Output({"path": f["path"], "snapshots": _snaps(reply)},
                  f"created snapshot {f['path'].rstrip('/')}/.snap/{f['name']}")


def _snap_ls(reply: mds_pb2.MdsReply, f: dict) -> Output:
    snaps = _snaps(reply)
    rows = [(s["name"], s["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["created"])))
            for s in snaps]
    return Output({"path": f["path"], "snapshots": snaps},
                  fmt.table(["NAME", "ID", "CREATED"], rows, left=["NAME", "CREATED"]))


def _snap_removed(reply: mds_pb2.MdsReply, f: dict) -> Output:
    return Output({"path": f["path"], "removed": f["name"]}, f"removed snapshot {f['name']}")


for _prefix, _render in (("fs check", _check), ("fs quota set", _quota), ("fs quota get", _quota),
                         ("fs snapshot create", _snap_created), ("fs snapshot ls", _snap_ls),
                         ("fs snapshot rm", _snap_removed)):
    mds_cli(_prefix, _render)


# -- subvolumes (sds.client.fsadmin: the same API CSI uses) ------------------------------
_GROUP = arg("--group", default="csi", help="subvolume group (default csi)")


async def _admin(rados, a):
    from sds.client.fsadmin import FsAdmin

    return await FsAdmin(rados, a.fs).open()


def _subvolume_text(info: dict) -> str:
    quota = fmt.human_bytes(info["bytes_quota"]) if info["bytes_quota"] else "unlimited"
    meta = ", ".join(f"{k}={v}" for k, v in sorted(info["metadata"].items())) or "-"
    return (f"{info['path']}: {fmt.human_bytes(info['bytes_used'])} of {quota} used, "
            f"{info['files_used']} files; metadata: {meta}")


@cli("fs subvolume create", args=(arg("subvolume", metavar="NAME"), _GROUP, _FS,
                                  arg("--size", type=byte_count_arg, default=0,
                                      help="byte quota (0 = unlimited)")))
async def fs_subvolume_create(ctx: Context, rados, a) -> Output:
    """Create /volumes/GROUP/NAME with a byte quota."""
    admin = await _admin(rados, a)
    try:
        info = await admin.subvolume_create(a.group, a.subvolume, size=a.size)
    finally:
        await admin.close()
    return Output(info, _subvolume_text(info))


@cli("fs subvolume resize", args=(arg("subvolume", metavar="NAME"), arg("size", type=byte_count_arg), _GROUP, _FS))
async def fs_subvolume_resize(ctx: Context, rados, a) -> Output:
    """Change a subvolume's byte quota."""
    admin = await _admin(rados, a)
    try:
        info = await admin.subvolume_resize(a.group, a.subvolume, a.size)
    finally:
        await admin.close()
    return Output(info, _subvolume_text(info))


@cli("fs subvolume info", args=(arg("subvolume", metavar="NAME"), _GROUP, _FS))
async def fs_subvolume_info(ctx: Context, rados, a) -> Output:
    """A subvolume's quota, usage and metadata."""
    admin = await _admin(rados, a)
    try:
        info = await admin.subvolume_info(a.group, a.subvolume)
    finally:
        await admin.close()
    return Output(info, _subvolume_text(info))


@cli("fs subvolume ls", args=(_GROUP, _FS))
async def fs_subvolume_ls(ctx: Context, rados, a) -> Output:
    """Subvolumes of a group."""
    admin = await _admin(rados, a)
    try:
        names = await admin.subvolume_ls(a.group)
    finally:
        await admin.close()
    return Output({"group": a.group, "subvolumes": names}, "\n".join(names))


@cli("fs subvolume rm", args=(arg("subvolume", metavar="NAME"), _GROUP, _FS))
async def fs_subvolume_rm(ctx: Context, rados, a) -> Output:
    """Remove a subvolume with its snapshots and files."""
    admin = await _admin(rados, a)
    try:
        removed = await admin.subvolume_rm(a.group, a.subvolume)
    finally:
        await admin.close()
    return Output({"removed": removed}, f"removed {a.group}/{a.subvolume}" if removed
                  else f"no subvolume {a.group}/{a.subvolume}")


@cli("fs subvolume snapshot create", args=(arg("subvolume", metavar="NAME"), arg("snap_name", metavar="SNAP"),
                                           _GROUP, _FS))
async def fs_subvolume_snapshot_create(ctx: Context, rados, a) -> Output:
    """Snapshot a subvolume."""
    admin = await _admin(rados, a)
    try:
        snap = await admin.snapshot_create(a.group, a.subvolume, a.snap_name)
    finally:
        await admin.close()
    return Output(snap, f"created snapshot {a.snap_name} of {a.group}/{a.subvolume}")


@cli("fs subvolume snapshot ls", args=(arg("subvolume", metavar="NAME"), _GROUP, _FS))
async def fs_subvolume_snapshot_ls(ctx: Context, rados, a) -> Output:
    """Snapshots of a subvolume."""
    admin = await _admin(rados, a)
    try:
        snaps = await admin.snapshot_ls(a.group, a.subvolume)
    finally:
        await admin.close()
    return Output({"snapshots": snaps}, "\n".join(s["name"] for s in snaps))


@cli("fs subvolume snapshot rm", args=(arg("subvolume", metavar="NAME"), arg("snap_name", metavar="SNAP"),
                                       _GROUP, _FS))
async def fs_subvolume_snapshot_rm(ctx: Context, rados, a) -> Output:
    """Remove a snapshot of a subvolume."""
    admin = await _admin(rados, a)
    try:
        removed = await admin.snapshot_rm(a.group, a.subvolume, a.snap_name)
    finally:
        await admin.close()
    return Output({"removed": removed}, f"removed snapshot {a.snap_name}" if removed
                  else f"no snapshot {a.snap_name}")


@cli("fs subvolume clone", args=(arg("subvolume", metavar="NAME"), arg("target"), _GROUP, _FS,
                                 arg("--snapshot", default=None,
                                     help="clone this snapshot (default: the live subvolume)"),
                                 arg("--size", type=byte_count_arg, default=0)))
async def fs_subvolume_clone(ctx: Context, rados, a) -> Output:
    """A new subvolume TARGET with NAME's content (or that of one of its snapshots)."""
    admin = await _admin(rados, a)
    try:
        info = await admin.clone(a.group, a.subvolume, a.group, a.target, snap=a.snapshot,
                                 size=a.size)
    finally:
        await admin.close()
    return Output(info, _subvolume_text(info))
