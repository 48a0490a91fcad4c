"""`sds fs ...`: filesystems (via the monitors) and namespace admin (via the active MDS)."""

from __future__ import annotations

import json
import time

from sds.cli import format as fmt
from sds.cli.commands import Context, Output, arg, byte_count_arg, cli, mon
from sds.cli.generated import mon_cli
from sds.client.mdsclient import MdsClient
from sds.mds import admin
from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest
_FS = arg("--fs", default=None, help="filesystem name (default: the first one)")


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


@cli("fs new", args=(arg("fs_name"), arg("metadata_pool"), arg("data_pool")))
async def fs_new(ctx: Context, rados, a) -> Output:
    """Create a filesystem on existing metadata and data pools."""
    data = await rados.mon_command(mon("fs new", fs_name=a.fs_name, metadata=a.metadata_pool,
                                       data=a.data_pool))
    data.pop("osdmap_epoch", None)
    return Output(data, f"new fs '{a.fs_name}' with metadata pool {a.metadata_pool} and "
                        f"data pool {a.data_pool}")


mon_cli("fs ls", _fs_table)


@cli("fs status", args=(arg("fs_name", nargs="?"),))
async def fs_status(ctx: Context, rados, a) -> Output:
    """Active MDS (name, address, generation) and standbys."""
    data = await rados.mon_command(mon("fs status", fs_name=a.fs_name))
    return Output(data, _fs_table(data))


@cli("fs set", args=(arg("fs_name"), arg("var", metavar="VAR", help="max_file_size"),
                     arg("val", metavar="VALUE")))
async def fs_set(ctx: Context, rados, a) -> Output:
    """Change a filesystem setting: max_file_size (bytes; EFBIG past it)."""
    data = await rados.mon_command(mon("fs set", fs_name=a.fs_name, var=a.var, val=a.val))
    return Output(data, f"set {a.var} of fs '{a.fs_name}' to {data.get(a.var, a.val)}")


@cli("fs rm", args=(arg("fs_name"), arg("--yes-i-really-mean-it", action="store_true"),
                    arg("--force", action="store_true",
                        help="remove even while an MDS is active for it")))
async def fs_rm(ctx: Context, rados, a) -> Output:
    """Remove a filesystem (its pools stay); refused while an MDS serves it unless --force."""
    data = await rados.mon_command(mon("fs rm", fs_name=a.fs_name,
                                       yes_i_really_mean_it=a.yes_i_really_mean_it or None,
                                       force=a.force or None))
    data.pop("osdmap_epoch", None)
    return Output(data, f"removed fs '{a.fs_name}'")


def _mds_op(prefix: str, *args):
    """A subcommand for an MDS admin operation: its help is the descriptor's."""
    return cli(prefix, args=args, descriptor=admin.MDS.commands[prefix])


async def _mds(rados, a, req: Req) -> mds_pb2.MdsReply:
    client = await MdsClient(rados, a.fs, timeout=60.0).open()
    try:
        return await client.request(req)
    finally:
        await client.close()


@_mds_op("fs check", _FS)
async def fs_check(ctx: Context, rados, a) -> Output:
    report = json.loads((await _mds(rados, a, admin.request("fs check"))).report)
    lines = [f"{'clean' if report.get('ok') else 'DAMAGED'}: {report.get('inodes', 0)} inodes, "
             f"{report.get('directories', 0)} directories, {report.get('strays', 0)} strays"]
    lines += [f"  {e}" for e in report.get("errors", [])]
    return Output(report, "\n".join(lines), code=0 if report.get("ok") else 1)


def _quota(q: mds_pb2.Quota) -> dict:
    return {"path": q.path, "max_bytes": q.max_bytes, "max_files": q.max_files,
            "used_bytes": q.used_bytes, "used_files": q.used_files}


def _quota_text(q: dict) -> str:
    def limit(n: int, human: bool) -> str:
        return "unlimited" if not n else fmt.human_bytes(n) if human else str(n)

    return (f"{q['path']}: bytes {fmt.human_bytes(q['used_bytes'])} of "
            f"{limit(q['max_bytes'], True)}, files {q['used_files']} of "
            f"{limit(q['max_files'], False)}")


@_mds_op("fs quota set", arg("path"), arg("--max-bytes", type=byte_count_arg, default=0),
          arg("--max-files", type=int, default=0), _FS)
async def fs_quota_set(ctx: Context, rados, a) -> Output:
    reply = await _mds(rados, a, admin.request(
        "fs quota set", path=a.path, max_bytes=a.max_bytes, max_files=a.max_files))
    data = _quota(reply.quota)
    return Output(data, _quota_text(data))


@_mds_op("fs quota get", arg("path"), _FS)
async def fs_quota_get(ctx: Context, rados, a) -> Output:
    data = _quota((await _mds(rados, a, admin.request("fs quota get", path=a.path))).quota)
    return Output(data, _quota_text(data))


def _snaps(reply: mds_pb2.MdsReply) -> list[dict]:
    return [{"name": s.name, "id": s.snap_id, "created": s.created_ns / 1e9}
            for s in reply.snaps]


@_mds_op("fs snapshot create", arg("path"), arg("snap_name", metavar="NAME"), _FS)
async def fs_snapshot_create(ctx: Context, rados, a) -> Output:
    reply = await _mds(rados, a, admin.request("fs snapshot create", path=a.path,
                                                   name=a.snap_name))
    return Output({"path": a.path, "snapshots": _snaps(reply)},
                  f"created snapshot {a.path.rstrip('/')}/.snap/{a.snap_name}")


@_mds_op("fs snapshot ls", arg("path"), _FS)
async def fs_snapshot_ls(ctx: Context, rados, a) -> Output:
    snaps = _snaps(await _mds(rados, a, admin.request("fs snapshot ls", path=a.path)))
    rows = [(s["name"], s["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s["created"])))
            for s in snaps]
    return Output({"path": a.path, "snapshots": snaps},
                  fmt.table(["NAME", "ID", "CREATED"], rows, left=["NAME", "CREATED"]))


@_mds_op("fs snapshot rm", arg("path"), arg("snap_name", metavar="NAME"), _FS)
async def fs_snapshot_rm(ctx: Context, rados, a) -> Output:
    await _mds(rados, a, admin.request("fs snapshot rm", path=a.path, name=a.snap_name))
    return Output({"path": a.path, "removed": a.snap_name}, f"removed snapshot {a.snap_name}")


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
