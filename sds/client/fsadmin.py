"""Filesystem administration over the MDS client protocol: subvolume groups, subvolumes
(directories `/volumes/<group>/<name>` with a byte quota), their metadata (xattrs on the
subvolume), snapshots and clones. CSI, the CLI (`sds fs subvolume ...`) and the dashboard
share it so that a volume means the same thing everywhere.

    async with FsAdmin(rados, "sdsfs") as fs:
        info = await fs.subvolume_create("csi", "vol-1", size=1 << 30, metadata={...})
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time

from sds.client.mdsclient import MdsClient
from sds.client.striper import Striper
from sds.common.errors import (
    AlreadyExists,
    InvalidArgument,
    NoData,
    NotADirectory,
    NotFound,
    SdsError,
)
from sds.fsrules import admin
from sds.fsrules.layout import ROOT_INO, object_name
from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest
VOLUMES = "volumes"
META_PREFIX = "user.sds.meta."   # subvolume metadata: one xattr per key
CREATED_XATTR = "user.sds.created_ns"
DIR_MODE = 0o755


def _check_component(what: str, name: str) -> None:
    if not name or "/" in name or name in (".", "..") or name.startswith(".") or "\0" in name:
        raise InvalidArgument(f"invalid {what} name {name!r}")


class FsAdmin:
    """One MDS session used for admin operations on one filesystem. Keep one per Rados
    and filesystem, open for as long as it is used: the MDS keeps one session per client
    instance, so a second session of the same Rados takes over the first one's."""

    def __init__(self, rados, fs_name: str | None = None, timeout: float = 60.0):
        self.rados = rados
        self.mds = MdsClient(rados, fs_name, timeout=timeout)

    async def open(self) -> FsAdmin:
        await self.mds.open()
        return self

    async def close(self) -> None:
        await self.mds.close()

    async def __aenter__(self) -> FsAdmin:
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def fs_name(self) -> str | None:
        return self.mds.fs_name

    async def _req(self, **kw) -> mds_pb2.MdsReply:
        return await self.mds.request(Req(**kw))

    async def admin_op(self, prefix: str, **args) -> mds_pb2.MdsReply:
        """An MDS admin operation, its arguments checked by its descriptor."""
        return await self.mds.request(admin.request(prefix, **args))

    # -- paths -----------------------------------------------------------------------------
    @staticmethod
    def group_path(group: str) -> str:
        _check_component("group", group)
        return f"/{VOLUMES}/{group}"

    @classmethod
    def subvolume_path(cls, group: str, name: str) -> str:
        _check_component("subvolume", name)
        return f"{cls.group_path(group)}/{name}"

    async def lookup(self, path: str) -> mds_pb2.InodeAttr:
        """The attributes of PATH (NotFound when any component is missing)."""
        reply = await self._req(op=Req.GETATTR, ino=ROOT_INO)
        for part in [p for p in path.split("/") if p]:
            reply = await self._req(op=Req.LOOKUP, ino=reply.attr.ino, name=part)
        return reply.attr

    async def _mkdir(self, parent: int, name: str, mode: int = DIR_MODE) -> tuple[int, bool]:
        """(ino, made now) of directory NAME in PARENT, made if missing."""
        try:
            return (await self._req(op=Req.MKDIR, ino=parent, name=name, mode=mode)).attr.ino, True
        except AlreadyExists:
            return (await self._req(op=Req.LOOKUP, ino=parent, name=name)).attr.ino, False

    async def _makedirs(self, path: str) -> tuple[int, bool]:
        ino, made = ROOT_INO, False
        for part in [p for p in path.split("/") if p]:
            ino, made = await self._mkdir(ino, part)
        return ino, made

    # -- groups ----------------------------------------------------------------------------
    async def group_create(self, group: str) -> str:
        path = self.group_path(group)
        await self._makedirs(path)
        return path

    async def group_ls(self) -> list[str]:
        try:
            attr = await self.lookup(f"/{VOLUMES}")
        except NotFound:
            return []
        return [name for name, a in await self._entries(attr.ino) if stat.S_ISDIR(a.mode)]

    async def group_rm(self, group: str) -> None:
        """Remove an empty group (ENOTEMPTY while it has subvolumes); missing is fine."""
        vols = await self.lookup(f"/{VOLUMES}")
        with contextlib.suppress(NotFound):
            await self._req(op=Req.RMDIR, ino=vols.ino, name=group)

    # -- subvolumes --------------------------------------------------------------------------
    async def subvolume_create(self, group: str, name: str, size: int = 0,
                               metadata: dict[str, str] | None = None,
                               mode: int = DIR_MODE) -> dict:
        """Make the subvolume with a byte quota of `size` (0 = unlimited); AlreadyExists
        when it exists (callers decide whether that is the same volume)."""
        if size < 0:
            raise InvalidArgument("size must not be negative")
        parent, _ = await self._makedirs(self.group_path(group))
        _check_component("subvolume", name)
        ino = (await self._req(op=Req.MKDIR, ino=parent, name=name, mode=mode)).attr.ino
        await self._setxattr(ino, CREATED_XATTR, str(time.time_ns()).encode())
        for key, value in (metadata or {}).items():
            await self._setxattr(ino, META_PREFIX + key, value.encode())
        if size:
            await self.subvolume_resize(group, name, size)
        return await self.subvolume_info(group, name)

    async def subvolume_resize(self, group: str, name: str, size: int) -> dict:
        """Set the byte quota (shrinking below the bytes used is refused with ENOSPC)."""
        path = self.subvolume_path(group, name)
        info = await self.subvolume_info(group, name)
        if size and size < info["bytes_used"]:
            raise SdsError(f"{path} uses {info['bytes_used']} bytes, more than {size}",
                           errno.ENOSPC)
        await self.admin_op("fs quota set", path=path, max_bytes=size)
        return await self.subvolume_info(group, name)

    async def subvolume_info(self, group: str, name: str) -> dict:
        path = self.subvolume_path(group, name)
        attr = await self.lookup(path)
        q = (await self.admin_op("fs quota get", path=path)).quota
        statfs = (await self._req(op=Req.STATFS, ino=attr.ino)).statfs
        created = await self._getxattr(attr.ino, CREATED_XATTR)
        return {"group": group, "name": name, "path": path, "ino": attr.ino,
                "bytes_quota": q.max_bytes, "bytes_used": q.used_bytes,
                "files_used": q.used_files, "bytes_free": statfs.free_bytes,
                "files_total": statfs.total_files, "files_free": statfs.free_files,
                "mode": stat.S_IMODE(attr.mode), "uid": attr.uid, "gid": attr.gid,
                "created_ns": int(created) if created else attr.ctime_ns,
                "metadata": await self._metadata(attr.ino)}

    async def subvolume_ls(self, group: str) -> list[str]:
        try:
            attr = await self.lookup(self.group_path(group))
        except NotFound:
            return []
        return sorted(n for n, a in await self._entries(attr.ino) if stat.S_ISDIR(a.mode))

    async def subvolume_rm(self, group: str, name: str) -> bool:
        """Remove the subvolume, its snapshots and its files; False when it was not there."""
        path = self.subvolume_path(group, name)
        try:
            group_attr = await self.lookup(self.group_path(group))
            attr = await self.lookup(path)
        except (NotFound, NotADirectory):  # a group that is a file holds no subvolume
            return False
        for snap in await self.snapshot_ls(group, name):
            with contextlib.suppress(NotFound):
                await self.admin_op("fs snapshot rm", path=path, name=snap["name"])
        await self._rm_tree(attr.ino)
        with contextlib.suppress(NotFound):
            await self._req(op=Req.RMDIR, ino=group_attr.ino, name=name)
        return True

    # -- metadata ----------------------------------------------------------------------------
    async def metadata_set(self, group: str, name: str, key: str, value: str) -> None:
        attr = await self.lookup(self.subvolume_path(group, name))
        await self._setxattr(attr.ino, META_PREFIX + key, value.encode())

    async def metadata_get(self, group: str, name: str) -> dict[str, str]:
        return await self._metadata((await self.lookup(self.subvolume_path(group, name))).ino)

    async def metadata_rm(self, group: str, name: str, key: str) -> None:
        attr = await self.lookup(self.subvolume_path(group, name))
        with contextlib.suppress(NoData):
            await self._req(op=Req.REMOVEXATTR, ino=attr.ino, name=META_PREFIX + key)

    async def _metadata(self, ino: int) -> dict[str, str]:
        names = (await self._req(op=Req.LISTXATTR, ino=ino)).names
        out = {}
        for n in names:
            if n.startswith(META_PREFIX):
                value = await self._getxattr(ino, n)
                if value is not None:
                    out[n[len(META_PREFIX):]] = value.decode()
        return out

    async def _setxattr(self, ino: int, name: str, value: bytes) -> None:
        await self._req(op=Req.SETXATTR, ino=ino, name=name, value=value)

    async def _getxattr(self, ino: int, name: str) -> bytes | None:
        try:
            return (await self._req(op=Req.GETXATTR, ino=ino, name=name)).value
        except NoData:
            return None

    # -- snapshots ---------------------------------------------------------------------------
    async def snapshot_create(self, group: str, name: str, snap: str) -> dict:
        _check_component("snapshot", snap)
        reply = await self.admin_op("fs snapshot create", path=self.subvolume_path(group, name),
                                  name=snap)
        s = reply.snaps[0]
        return {"name": s.name, "id": s.snap_id, "created_ns": s.created_ns,
                "bytes": await self._tree_bytes(reply.attr.ino)}

    async def snapshot_ls(self, group: str, name: str) -> list[dict]:
        reply = await self.admin_op("fs snapshot ls", path=self.subvolume_path(group, name))
        return [{"name": s.name, "id": s.snap_id, "created_ns": s.created_ns}
                for s in reply.snaps]

    async def snapshot_info(self, group: str, name: str, snap: str) -> dict:
        for s in await self.snapshot_ls(group, name):
            if s["name"] == snap:
                return {**s, "bytes": await self._tree_bytes(s["id"])}
        raise NotFound(f"no snapshot '{snap}' of {group}/{name}")

    async def snapshot_rm(self, group: str, name: str, snap: str) -> bool:
        """Remove a snapshot; False when it (or its subvolume) was not there."""
        try:
            await self.admin_op("fs snapshot rm", path=self.subvolume_path(group, name),
                              name=snap)
        except NotFound:
            return False
        return True

    # -- clones ------------------------------------------------------------------------------
    async def clone(self, src_group: str, src_name: str, dst_group: str, dst_name: str,
                    snap: str | None = None, size: int = 0,
                    metadata: dict[str, str] | None = None) -> dict:
        """A new subvolume with the content of a snapshot of the source, or of the source
        itself (through a temporary snapshot, so the copy is consistent)."""
        src = self.subvolume_path(src_group, src_name)
        temp = None
        if snap is None:
            temp = snap = f"clone-{dst_group}-{dst_name}-{os.getpid()}-{time.monotonic_ns()}"
            await self.snapshot_create(src_group, src_name, temp)
        try:
            snap_root = await self.lookup(f"{src}/.snap/{snap}")
            info = await self.subvolume_create(dst_group, dst_name, size=size, metadata=metadata)
            await self._copy_tree(snap_root.ino, info["ino"])
        finally:
            if temp is not None:
                await self.snapshot_rm(src_group, src_name, temp)
        return await self.subvolume_info(dst_group, dst_name)

    async def _copy_tree(self, src: int, dst: int) -> None:
        for name, attr in await self._entries(src):
            mode = stat.S_IMODE(attr.mode)
            if stat.S_ISDIR(attr.mode):
                child = (await self._req(op=Req.MKDIR, ino=dst, name=name, mode=mode)).attr
                await self._copy_tree(attr.ino, child.ino)
            elif stat.S_ISLNK(attr.mode):
                target = (await self._req(op=Req.READLINK, ino=attr.ino)).value
                child = (await self._req(op=Req.SYMLINK, ino=dst, name=name, value=target)).attr
            elif stat.S_ISREG(attr.mode):
                child = await self._copy_file(attr, dst, name, mode)
            else:
                child = (await self._req(op=Req.MKNOD, ino=dst, name=name, mode=attr.mode,
                                         rdev=attr.rdev)).attr
            if not stat.S_ISLNK(attr.mode):
                keep = mds_pb2.InodeAttr(uid=attr.uid, gid=attr.gid, atime_ns=attr.atime_ns,
                                         mtime_ns=attr.mtime_ns)
                await self._req(op=Req.SETATTR, ino=child.ino, attr=keep,
                                set_mask=mds_pb2.SET_UID | mds_pb2.SET_GID | mds_pb2.SET_ATIME
                                | mds_pb2.SET_MTIME)

    async def _copy_file(self, attr: mds_pb2.InodeAttr, dst: int, name: str,
                         mode: int) -> mds_pb2.InodeAttr:
        created = (await self._req(op=Req.CREATE, ino=dst, name=name, mode=mode,
                                   flags=os.O_CREAT | os.O_EXCL | os.O_WRONLY)).attr
        try:
            if attr.size:
                ioctx = await self.mds.data_ioctx()
                striper = Striper(ioctx, self.mds.stripe_size)

                async def copy_object(index: int) -> None:
                    try:
                        data = await ioctx.read(object_name(attr.ino, index))
                    except NotFound:
                        return  # a hole
                    await ioctx.write_full(object_name(created.ino, index), data)

                # only the objects stored: a sparse 1 TiB file costs what it holds
                await striper.each_object(attr.ino, 0, (attr.size - 1) // striper.stripe_size,
                                          copy_object)
                await self._req(op=Req.WRITE_DONE, ino=created.ino,
                                attr=mds_pb2.InodeAttr(size=attr.size, mtime_ns=attr.mtime_ns))
        finally:
            await self._req(op=Req.RELEASE, ino=created.ino)
        return created

    # -- walking -----------------------------------------------------------------------------
    async def _entries(self, ino: int) -> list[tuple[str, mds_pb2.InodeAttr]]:
        out, offset = [], 0
        while True:
            reply = await self._req(op=Req.READDIR, ino=ino, offset=offset)
            for e in reply.entries:
                out.append((e.name, e.attr))
                offset = e.offset
            if not reply.more or not reply.entries:
                return out

    async def _tree_bytes(self, ino: int) -> int:
        total = 0
        for _name, attr in await self._entries(ino):
            if stat.S_ISDIR(attr.mode):
                total += await self._tree_bytes(attr.ino)
            elif stat.S_ISREG(attr.mode):
                total += attr.size
        return total

    async def _rm_tree(self, ino: int) -> None:
        for name, attr in await self._entries(ino):
            with contextlib.suppress(NotFound):
                if stat.S_ISDIR(attr.mode):
                    await self._rm_tree(attr.ino)
                    await self._req(op=Req.RMDIR, ino=ino, name=name)
                else:
                    await self._req(op=Req.UNLINK, ino=ino, name=name)
