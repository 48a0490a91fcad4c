"""CSI Node service: stage = FUSE mount of the subvolume, publish = bind mount of the
staging path; every call idempotent, serialized per volume, and a dead FUSE mount found
on the way (or at start) is remounted instead of failing the pod."""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import logging
import os
import stat

from sds.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SdsError,
)
from sds.csi import caps, ids
from sds.csi.cluster import SECRET_ID, SECRET_KEY, Cluster
from sds.csi.locks import OperationLocks
from sds.csi.mounts import NodeMounts, StageRecord, is_dead, mount_entry
from sds.proto import csi_pb2, csi_pb2_grpc

log = logging.getLogger("sds.csi.node")
RPC = csi_pb2.NodeServiceCapability.RPC
CAPABILITIES = (RPC.STAGE_UNSTAGE_VOLUME, RPC.GET_VOLUME_STATS, RPC.EXPAND_VOLUME,
                RPC.VOLUME_CONDITION, RPC.SINGLE_NODE_MULTI_WRITER, RPC.VOLUME_MOUNT_GROUP)


def _need(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is missing")
    return value


def mount_group(cap: csi_pb2.VolumeCapability) -> int | None:
    """The gid of volume_mount_group (kubelet passes the pod's fsGroup), None when unset."""
    text = cap.mount.volume_mount_group
    if not text:
        return None
    if not text.isdigit() or int(text) >= 1 << 32:
        raise InvalidArgument(f"volume_mount_group {text!r} is not a numeric group id")
    return int(text)


async def give_to_group(path: str, gid: int) -> None:
    """Make the volume's root group-owned by GID, group-writable and setgid, so a pod of
    that fsGroup can write and its new files and directories inherit the group: what
    kubelet would otherwise do by chown/chmod of every file (VOLUME_MOUNT_GROUP). The
    root is shared by every mount of the volume, so the last fsGroup staged wins, as it
    would with kubelet's own recursive chown."""
    def apply() -> None:
        st = os.stat(path)
        if st.st_gid != gid:
            os.chown(path, -1, gid)
        want = stat.S_IMODE(st.st_mode) | stat.S_ISGID | stat.S_IRWXG
        if stat.S_IMODE(st.st_mode) != want or st.st_gid != gid:  # chown drops setgid
            os.chmod(path, want)

    try:
        await asyncio.to_thread(apply)
    except OSError as e:
        raise SdsError(f"cannot give {path} to group {gid}: {e}", e.errno) from None


class NodeService(csi_pb2_grpc.NodeServicer):
    def __init__(self, cluster: Cluster, mounts: NodeMounts, node_id: str,
                 max_volumes: int = 0, topology: dict[str, str] | None = None):
        self.cluster, self.mounts, self.node_id = cluster, mounts, node_id
        self.max_volumes = max_volumes
        self.topology = topology or {}
        self.locks = OperationLocks()

    async def recover(self) -> None:
        """At start: remount every staged volume whose FUSE process is gone."""
        for rec in self.mounts.records():
            try:
                with self.locks.hold(rec.volume_id):
                    if not await self.mounts.healthy(rec):
                        await self.mounts.repair(rec)
            except Exception:
                log.exception("could not remount volume %s at %s", rec.volume_id, rec.staging)

    def _identity(self, secrets) -> tuple[str, str | None]:
        if secrets.get(SECRET_ID) and secrets.get(SECRET_KEY):
            user = secrets[SECRET_ID]
            entity = user if user.startswith("client.") else f"client.{user}"
            try:
                key = base64.b64decode(secrets[SECRET_KEY], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument(f"secret {SECRET_KEY} is not base64") from None
            return entity, self.mounts.keyring_for(entity, key)
        return self.cluster.entity, self.cluster.keyring

    async def NodeStageVolume(self, request, context):
        volume_id = _need(request.volume_id, "volume_id")
        staging = os.path.abspath(_need(request.staging_target_path, "staging_target_path"))
        caps.check(request.volume_capability if request.HasField("volume_capability") else None)
        vid = ids.parse_volume_id(volume_id)
        if vid is None:
            raise NotFound(f"volume {volume_id} does not exist")
        read_only = caps.read_only(request.volume_capability)
        gid = mount_group(request.volume_capability)
        with self.locks.hold(volume_id):
            rec = self.mounts.load(staging)
            if mount_entry(staging) is not None:
                if rec is None or rec.volume_id != volume_id or rec.read_only != read_only:
                    raise AlreadyExists(f"{staging} has another volume or access mode staged")
                if await is_dead(staging):
                    await self.mounts.repair(rec)
                if gid is not None and not read_only:
                    await give_to_group(staging, gid)
                return csi_pb2.NodeStageVolumeResponse()
            secrets = dict(request.secrets)
            async with self.cluster.fsadmin(vid.fs, secrets) as fs:
                await fs.lookup(vid.path)  # NotFound when the volume is gone
            entity, keyring = self._identity(secrets)
            rec = StageRecord(volume_id=volume_id, staging=staging, fs=vid.fs, root=vid.path,
                              read_only=read_only, entity=entity, keyring=keyring)
            await self.mounts.mount(rec)
            try:
                if gid is not None and not read_only:  # read-only: nothing to write anyway
                    await give_to_group(staging, gid)
            except SdsError:
                await self.mounts.unmount_stage(staging)
                raise
            self.mounts.save(rec)
        return csi_pb2.NodeStageVolumeResponse()

    async def NodeUnstageVolume(self, request, context):
        volume_id = _need(request.volume_id, "volume_id")
        staging = os.path.abspath(_need(request.staging_target_path, "staging_target_path"))
        with self.locks.hold(volume_id):
            await self.mounts.unmount_stage(staging)
            self.mounts.forget(staging)
        return csi_pb2.NodeUnstageVolumeResponse()

    async def NodePublishVolume(self, request, context):
        volume_id = _need(request.volume_id, "volume_id")
        target = os.path.abspath(_need(request.target_path, "target_path"))
        caps.check(request.volume_capability if request.HasField("volume_capability") else None)
        if not request.staging_target_path:
            raise FailedPrecondition("staging_target_path is missing (the plugin stages)")
        staging = os.path.abspath(request.staging_target_path)
        gid = mount_group(request.volume_capability)
        with self.locks.hold(volume_id):
            rec = self.mounts.load(staging)
            if rec is None or rec.volume_id != volume_id or mount_entry(staging) is None:
                raise FailedPrecondition(f"volume {volume_id} is not staged at {staging}")
            read_only = request.readonly or rec.read_only
            if not await self.mounts.healthy(rec):
                await self.mounts.repair(rec)
            if gid is not None and not rec.read_only:  # the bind shows the staged root
                await give_to_group(staging, gid)
            entry = mount_entry(target)
            if entry is not None and target in rec.targets:
                if rec.targets[target] != read_only:
                    raise AlreadyExists(f"{target} is published with another read-only flag")
                return csi_pb2.NodePublishVolumeResponse()
            if entry is not None:
                raise AlreadyExists(f"{target} has something else mounted")
            await self.mounts.bind(staging, target, read_only)
            rec.targets[target] = read_only
            self.mounts.save(rec)
        return csi_pb2.NodePublishVolumeResponse()

    async def NodeUnpublishVolume(self, request, context):
        volume_id = _need(request.volume_id, "volume_id")
        target = os.path.abspath(_need(request.target_path, "target_path"))
        with self.locks.hold(volume_id):
            await self.mounts.unbind(target)
            try:
                os.rmdir(target)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.ENOTDIR:
                    raise SdsError(f"cannot remove {target}: {e}", e.errno) from None
                os.unlink(target)
            rec = self.mounts.find_target(target)
            if rec is not None:
                rec.targets.pop(target, None)
                self.mounts.save(rec)
        return csi_pb2.NodeUnpublishVolumeResponse()

    async def _statvfs(self, path: str) -> os.statvfs_result | None:
        """statvfs of a volume path; None when the mount there is broken."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(os.statvfs, path), 10)
        except FileNotFoundError:
            raise NotFound(f"{path} does not exist") from None
        except (TimeoutError, OSError):
            return None

    def _record_of(self, volume_id: str, path: str) -> StageRecord | None:
        rec = self.mounts.load(path) or self.mounts.find_target(path)
        return rec if rec is not None and rec.volume_id == volume_id else None

    async def NodeGetVolumeStats(self, request, context):
        volume_id = _need(request.volume_id, "volume_id")
        path = os.path.abspath(_need(request.volume_path, "volume_path"))
        if not os.path.lexists(path):
            raise NotFound(f"{path} does not exist")
        st = await self._statvfs(path)
        reply = csi_pb2.NodeGetVolumeStatsResponse()
        if st is None:  # dead FUSE process: repair it now, say so this time
            rec = self._record_of(volume_id, path)
            message = f"the mount at {path} is broken"
            if rec is not None:
                try:
                    with self.locks.hold(volume_id):
                        await self.mounts.repair(rec)
                    message += "; remounted"
                except SdsError as e:
                    message += f"; remount failed: {e}"
            reply.volume_condition.abnormal = True
            reply.volume_condition.message = message
            return reply
        total, free, avail = (st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize,
                              st.f_bavail * st.f_frsize)
        U = csi_pb2.VolumeUsage
        reply.usage.add(unit=U.BYTES, total=total, available=avail, used=max(0, total - free))
        reply.usage.add(unit=U.INODES, total=st.f_files, available=st.f_ffree,
                        used=max(0, st.f_files - st.f_ffree))
        reply.volume_condition.abnormal = False
        reply.volume_condition.message = "mounted"
        return reply

    async def NodeExpandVolume(self, request, context):
        _need(request.volume_id, "volume_id")
        path = os.path.abspath(_need(request.volume_path, "volume_path"))
        if not os.path.lexists(path):
            raise NotFound(f"{path} does not exist")
        # the quota is the size and the controller already changed it: nothing to grow here
        st = await self._statvfs(path)
        size = request.capacity_range.required_bytes if request.HasField("capacity_range") \
            else 0
        return csi_pb2.NodeExpandVolumeResponse(
            capacity_bytes=size or (st.f_blocks * st.f_frsize if st else 0))

    async def NodeGetCapabilities(self, request, context):
        reply = csi_pb2.NodeGetCapabilitiesResponse()
        for t in CAPABILITIES:
            reply.capabilities.add().rpc.type = t
        return reply

    async def NodeGetInfo(self, request, context):
        reply = csi_pb2.NodeGetInfoResponse(node_id=self.node_id,
                                            max_volumes_per_node=self.max_volumes)
        if self.topology:
            reply.accessible_topology.segments.update(self.topology)
        return reply
