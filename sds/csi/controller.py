"""CSI Controller service: volumes are subvolumes with a byte quota, snapshots are the
filesystem's snapshots of them, clones are copies; every call is idempotent by name or id
(see journal.py) and serialized per volume (see locks.py)."""

from __future__ import annotations

import logging
import uuid

from google.protobuf import timestamp_pb2, wrappers_pb2

from sds.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Range,
    SdsError,
)
from sds.csi import caps, ids, topology
from sds.csi.cluster import Cluster
from sds.csi.journal import Entry
from sds.csi.locks import OperationLocks
from sds.csi.reservations import LEASE_S, Reservation, Reservations
from sds.proto import csi_pb2, csi_pb2_grpc

log = logging.getLogger("sds.csi.controller")
GiB = 1 << 30
DEFAULT_SIZE = GiB
DEFAULT_GROUP = "csi"
# StorageClass parameters the plugin understands; the sidecars add csi.storage.k8s.io/*
P_FS, P_POOL, P_GROUP = "fsName", "pool", "subvolumeGroup"
KNOWN = {P_FS, P_POOL, P_GROUP}
SIDECAR_PREFIX = "csi.storage.k8s.io/"
META_NAME = "csi.volume.name"  # the request name, on the subvolume (survives the journal)
RPC = csi_pb2.ControllerServiceCapability.RPC
CAPABILITIES = (RPC.CREATE_DELETE_VOLUME, RPC.LIST_VOLUMES, RPC.GET_CAPACITY,
                RPC.CREATE_DELETE_SNAPSHOT, RPC.LIST_SNAPSHOTS, RPC.CLONE_VOLUME,
                RPC.EXPAND_VOLUME, RPC.VOLUME_CONDITION, RPC.GET_VOLUME,
                RPC.SINGLE_NODE_MULTI_WRITER)


def size_for(cr: csi_pb2.CapacityRange | None, current: int = 0) -> int:
    """The bytes to give a volume for a capacity_range (Range when none fits)."""
    required = cr.required_bytes if cr else 0
    limit = cr.limit_bytes if cr else 0
    if required < 0 or limit < 0:
        raise Range("capacity_range bytes must not be negative")
    if limit and required > limit:
        raise Range(f"required_bytes {required} exceeds limit_bytes {limit}")
    size = max(required, current) or (min(DEFAULT_SIZE, limit) if limit else DEFAULT_SIZE)
    if limit and size > limit:
        raise Range(f"the volume has {size} bytes, more than limit_bytes {limit}")
    return size


def fits(cr: csi_pb2.CapacityRange | None, size: int) -> bool:
    required = cr.required_bytes if cr else 0
    limit = cr.limit_bytes if cr else 0
    return size >= required and (not limit or size <= limit)


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def _page(items: list[str], token: str, max_entries: int) -> tuple[list[str], str]:
    """One page of a sorted list; the token is the index to resume at (ABORTED-worthy
    InvalidArgument is raised by the caller's check below when it is not one of ours)."""
    if max_entries < 0:
        raise InvalidArgument("max_entries must not be negative")
    start = 0
    if token:
        if not token.isdigit() or int(token) > len(items):
            raise BadToken(f"starting_token {token!r} is not valid")
        start = int(token)
    end = len(items) if not max_entries else min(len(items), start + max_entries)
    return items[start:end], (str(end) if end < len(items) else "")


class BadToken(Exception):
    """A starting_token this plugin did not hand out (ABORTED, per the spec)."""


class ControllerService(csi_pb2_grpc.ControllerServicer):
    def __init__(self, cluster: Cluster, default_fs: str | None = None,
                 lease_s: float = LEASE_S, topology: bool = False):
        self.cluster = cluster
        self.default_fs = default_fs
        self.topology = topology
        self.locks = OperationLocks()
        self.reservations = Reservations(lease_s)

    # -- helpers -----------------------------------------------------------------------------
    async def _storage(self, params: dict, secrets: dict) -> dict:
        """The filesystem (its pools) that StorageClass parameters choose; InvalidArgument
        for parameters this plugin does not know or a pool that is not its data pool."""
        unknown = [k for k in params if k not in KNOWN and not k.startswith(SIDECAR_PREFIX)]
        if unknown:
            raise InvalidArgument(f"unknown parameters {', '.join(sorted(unknown))}")
        fsinfo = await self.cluster.filesystem(params.get(P_FS) or self.default_fs, secrets)
        if params.get(P_POOL) and params[P_POOL] != fsinfo["data_pool"]:
            raise InvalidArgument(f"pool {params[P_POOL]} is not the data pool of "
                                  f"filesystem {fsinfo['name']} ({fsinfo['data_pool']})")
        return fsinfo

    async def _fs_name(self, params: dict, secrets: dict) -> str:
        return (await self.cluster.filesystem(params.get(P_FS) or self.default_fs,
                                              secrets))["name"]

    async def _volume(self, volume_id: str, secrets: dict) -> tuple[ids.VolumeId, dict]:
        """The id's parts and the subvolume's info; NotFound when there is none."""
        if not volume_id:
            raise InvalidArgument("volume_id is missing")
        vid = ids.parse_volume_id(volume_id)
        if vid is None:
            raise NotFound(f"volume {volume_id} does not exist (not an id of this driver)")
        async with self.cluster.fsadmin(vid.fs, secrets) as fs:
            return vid, await fs.subvolume_info(vid.group, vid.name)

    @staticmethod
    def _volume_msg(vid: ids.VolumeId, info: dict,
                    source: csi_pb2.VolumeContentSource | None = None) -> csi_pb2.Volume:
        vol = csi_pb2.Volume(capacity_bytes=info["bytes_quota"], volume_id=str(vid),
                             volume_context={"fsName": vid.fs, "subvolumeGroup": vid.group,
                                             "subvolumeName": vid.name,
                                             "subvolumePath": vid.path})
        if source is not None and source.WhichOneof("type"):
            vol.content_source.CopyFrom(source)
        return vol

    # -- volumes -------------------------------------------------------------------------------
    async def CreateVolume(self, request, context):
        if not request.name:
            raise InvalidArgument("name is missing")
        caps.check_all(request.volume_capabilities)
        params = dict(request.parameters)
        size = size_for(request.capacity_range if request.HasField("capacity_range") else None)
        secrets = dict(request.secrets)
        cr = request.capacity_range if request.HasField("capacity_range") else None
        with self.locks.hold(f"name/{request.name}"):
            fsinfo = await self._storage(params, secrets)
            group = ids.check_part("subvolumeGroup", params.get(P_GROUP) or DEFAULT_GROUP)
            source = request.volume_content_source
            want = {"parameters": {k: v for k, v in sorted(params.items())
                                   if not k.startswith(SIDECAR_PREFIX)},
                    "source": source.SerializeToString(deterministic=True).hex()}
            journal = await self.cluster.journal(fsinfo["name"], secrets)
            entry = await journal.volume_entry(request.name)
            if entry is not None and entry.value["request"] != want:
                if entry.value["state"] == "ready":
                    raise AlreadyExists(f"volume {request.name} exists with other parameters "
                                        f"or content source")
                await self._discard(journal, request.name, entry, secrets)
                entry = None
            if entry is None:
                await self._check_source(fsinfo["name"], source, size, secrets)
            made = await self._made(entry, secrets)
            if made is None:
                def fresh() -> dict:
                    vid = ids.make_volume_id(fsinfo["name"], group, f"csi-vol-{uuid.uuid4()}")
                    return {"id": str(vid), "request": want}

                made = await self._make(journal, entry, fresh, size, request, secrets)
            vid, info = made
            if not fits(cr, info["bytes_quota"]):
                raise AlreadyExists(f"volume {request.name} exists with "
                                    f"{info['bytes_quota']} bytes")
        vol = self._volume_msg(vid, info, source)
        if self.topology and request.HasField("accessibility_requirements"):
            vol.accessible_topology.extend(topology.accessible(request.accessibility_requirements))
        return csi_pb2.CreateVolumeResponse(volume=vol)

    async def _made(self, entry: Entry | None, secrets) -> tuple[ids.VolumeId, dict] | None:
        """(id, info) of the volume of a ready journal entry whose subvolume is whole."""
        if entry is None or entry.value["state"] != "ready":
            return None
        vid = ids.parse_volume_id(entry.id)
        async with self.cluster.fsadmin(vid.fs, secrets) as fs:
            try:
                info = await fs.subvolume_info(vid.group, vid.name)
            except NotFound:
                return None  # removed behind the journal's back: make it again
        return (vid, info) if info["metadata"].get("csi.ready") == "1" else None

    async def _make(self, journal, entry: Entry | None, fresh, size: int, request,
                    secrets) -> tuple[ids.VolumeId, dict]:
        """Make the volume under a reservation this controller owns (see reservations.py);
        a failure rolls back what was made, so a retry, with corrected parameters too,
        starts clean and nothing leaks."""
        async with self.reservations.own(journal, request.name, entry, fresh) as res:
            vid = ids.parse_volume_id(res.volume_id)
            with self.locks.hold(str(vid)):
                try:
                    info = await self._ensure_volume(vid, size, request, secrets)
                except SdsError as e:
                    await self._roll_back(vid, res, secrets, e)
                    raise
                await res.ready()
        return vid, info

    async def _discard(self, journal, name: str, entry: Entry, secrets) -> None:
        """Drop what an unfinished CreateVolume with other parameters left (its controller
        died before it could roll back), once that reservation is this controller's:
        the retry with corrected parameters starts clean."""
        async with self.reservations.own(journal, name, entry, dict) as res:
            vid = ids.parse_volume_id(res.volume_id)
            log.info("CreateVolume %s: dropping the unfinished %s made with other parameters",
                     name, vid)
            async with self.cluster.fsadmin(vid.fs, secrets) as fs:
                await fs.subvolume_rm(vid.group, vid.name)
            await res.release()

    async def _roll_back(self, vid: ids.VolumeId, res: Reservation, secrets,
                         why: SdsError) -> None:
        """Remove what a failed CreateVolume made, then its reservation; when the cluster
        cannot be reached for that, the reservation stays this controller's and the
        retry takes it over."""
        if res.lost:
            return  # the volume is another controller's to make now
        log.info("CreateVolume %s failed (%s): rolling back %s", res.name, why, vid)
        try:
            async with self.cluster.fsadmin(vid.fs, secrets) as fs:
                await fs.subvolume_rm(vid.group, vid.name)
            await res.release()
        except SdsError as e:
            log.warning("CreateVolume %s: rollback of %s left for the retry: %s", res.name,
                        vid, e)

    async def _check_source(self, fs_name: str, source, size: int, secrets) -> None:
        """NotFound / Range for a content source that cannot be used, before anything is
        reserved (so a refused request leaves nothing behind)."""
        kind = source.WhichOneof("type")
        if kind is None:
            return
        async with self.cluster.fsadmin(fs_name, secrets) as fs:
            if kind == "snapshot":
                sid = ids.parse_snapshot_id(source.snapshot.snapshot_id)
                if sid is None or sid.volume.fs != fs_name:
                    raise NotFound(f"snapshot {source.snapshot.snapshot_id} does not exist")
                await fs.snapshot_info(sid.volume.group, sid.volume.name, sid.snap)
            else:
                src = ids.parse_volume_id(source.volume.volume_id)
                if src is None or src.fs != fs_name:
                    raise NotFound(f"volume {source.volume.volume_id} does not exist")
                info = await fs.subvolume_info(src.group, src.name)
                if info["bytes_quota"] > size:
                    raise Range(f"the source volume has {info['bytes_quota']} bytes, more "
                                f"than the {size} asked for")

    async def _ensure_volume(self, vid: ids.VolumeId, size: int, request, secrets) -> dict:
        """Make the reserved subvolume (from its content source), or finish what an
        interrupted call left; returns its info."""
        meta = {META_NAME: request.name,
                **{k: v for k, v in request.parameters.items() if k.startswith(SIDECAR_PREFIX)}}
        source = request.volume_content_source
        async with self.cluster.fsadmin(vid.fs, secrets) as fs:
            try:
                info = await fs.subvolume_info(vid.group, vid.name)
                if info["metadata"].get("csi.ready") == "1":
                    return info
                await fs.subvolume_rm(vid.group, vid.name)  # a half-made copy: start over
            except NotFound:
                pass
            kind = source.WhichOneof("type")
            if kind == "snapshot":
                sid = ids.parse_snapshot_id(source.snapshot.snapshot_id)
                if sid is None or sid.volume.fs != vid.fs:
                    raise NotFound(f"snapshot {source.snapshot.snapshot_id} does not exist")
                snap = await fs.snapshot_info(sid.volume.group, sid.volume.name, sid.snap)
                await fs.clone(sid.volume.group, sid.volume.name, vid.group, vid.name,
                               snap=sid.snap, size=max(size, snap["bytes"]), metadata=meta)
            elif kind == "volume":
                src = ids.parse_volume_id(source.volume.volume_id)
                if src is None or src.fs != vid.fs:
                    raise NotFound(f"volume {source.volume.volume_id} does not exist")
                src_info = await fs.subvolume_info(src.group, src.name)
                if src_info["bytes_quota"] > size:
                    raise Range(f"the source volume has {src_info['bytes_quota']} bytes, "
                                f"more than the {size} asked for")
                # a named temporary snapshot, so a retry after a crash finds and drops it
                temp = f"csi-clone-{vid.name}"
                await fs.snapshot_rm(src.group, src.name, temp)
                await fs.snapshot_create(src.group, src.name, temp)
                try:
                    await fs.clone(src.group, src.name, vid.group, vid.name, snap=temp,
                                   size=size, metadata=meta)
                finally:
                    await fs.snapshot_rm(src.group, src.name, temp)
            else:
                await fs.subvolume_create(vid.group, vid.name, size=size, metadata=meta,
                                          mode=0o777)
            await fs.metadata_set(vid.group, vid.name, "csi.ready", "1")
            return await fs.subvolume_info(vid.group, vid.name)

    async def DeleteVolume(self, request, context):
        if not request.volume_id:
            raise InvalidArgument("volume_id is missing")
        vid = ids.parse_volume_id(request.volume_id)
        if vid is None:
            return csi_pb2.DeleteVolumeResponse()  # never ours: nothing to delete
        secrets = dict(request.secrets)
        with self.locks.hold(str(vid)):
            try:
                journal = await self.cluster.journal(vid.fs, secrets)
            except NotFound:
                return csi_pb2.DeleteVolumeResponse()  # its filesystem is gone
            async with self.cluster.fsadmin(vid.fs, secrets) as fs:
                try:
                    snaps = await fs.snapshot_ls(vid.group, vid.name)
                except NotFound:
                    snaps = []
                if [s for s in snaps if s["name"].startswith("csi-snap-")]:
                    raise FailedPrecondition(f"volume {vid} has snapshots: delete them first")
                await fs.subvolume_rm(vid.group, vid.name)
            await journal.forget_volume(str(vid))
        return csi_pb2.DeleteVolumeResponse()

    async def ValidateVolumeCapabilities(self, request, context):
        if not request.volume_capabilities:
            raise InvalidArgument("volume_capabilities is missing")
        vid, _info = await self._volume(request.volume_id, dict(request.secrets))
        reply = csi_pb2.ValidateVolumeCapabilitiesResponse()
        problem = caps.problem_of_all(request.volume_capabilities)
        if problem:
            reply.message = problem
            return reply
        reply.confirmed.volume_context.update(request.volume_context)
        reply.confirmed.volume_capabilities.extend(request.volume_capabilities)
        reply.confirmed.parameters.update(request.parameters)
        return reply

    async def _all_volumes(self) -> list[str]:
        fs = await self.cluster.filesystem(self.default_fs)
        return await (await self.cluster.journal(fs["name"])).volumes()

    async def ListVolumes(self, request, context):
        try:
            page, next_token = _page(await self._all_volumes(), request.starting_token,
                                     request.max_entries)
        except BadToken as e:
            raise Aborted(str(e)) from None
        reply = csi_pb2.ListVolumesResponse(next_token=next_token)
        for volume_id in page:
            try:
                vid, info = await self._volume(volume_id, {})
            except NotFound:
                continue  # deleted meanwhile
            entry = reply.entries.add(volume=self._volume_msg(vid, info))
            entry.status.volume_condition.CopyFrom(self._condition(info))  # VOLUME_CONDITION
        return reply

    async def GetCapacity(self, request, context):
        """The data pool's MAX AVAIL, as `sds df` reports it: what a new volume of this
        StorageClass can hold. Every node reaches the pool, so the topology asked about
        changes nothing (see topology.py)."""
        problem = caps.problem_of_all(request.volume_capabilities) \
            if request.volume_capabilities else ""
        if problem:
            return csi_pb2.GetCapacityResponse(available_capacity=0)
        fsinfo = await self._storage(dict(request.parameters), {})
        df = await (await self.cluster.rados()).mon_command({"prefix": "df"})
        avail = next((p["stats"]["max_avail"] for p in df.get("pools", [])
                      if p["name"] == fsinfo["data_pool"]), 0)
        return csi_pb2.GetCapacityResponse(
            available_capacity=int(avail),
            maximum_volume_size=wrappers_pb2.Int64Value(value=int(avail)))

    async def ControllerGetCapabilities(self, request, context):
        reply = csi_pb2.ControllerGetCapabilitiesResponse()
        for t in CAPABILITIES:
            reply.capabilities.add().rpc.type = t
        return reply

    async def ControllerExpandVolume(self, request, context):
        if not request.volume_id:
            raise InvalidArgument("volume_id is missing")
        if not request.HasField("capacity_range"):
            raise InvalidArgument("capacity_range is missing")
        secrets = dict(request.secrets)
        with self.locks.hold(request.volume_id):
            vid, info = await self._volume(request.volume_id, secrets)
            size = size_for(request.capacity_range, info["bytes_quota"])
            if size != info["bytes_quota"]:
                async with self.cluster.fsadmin(vid.fs, secrets) as fs:
                    info = await fs.subvolume_resize(vid.group, vid.name, size)
        return csi_pb2.ControllerExpandVolumeResponse(capacity_bytes=info["bytes_quota"],
                                                      node_expansion_required=False)

    async def ControllerGetVolume(self, request, context):
        vid, info = await self._volume(request.volume_id, {})
        reply = csi_pb2.ControllerGetVolumeResponse(volume=self._volume_msg(vid, info))
        reply.status.volume_condition.CopyFrom(self._condition(info))
        # published_node_ids stays empty: there is no ControllerPublish (attachRequired
        # false), so LIST_VOLUMES_PUBLISHED_NODES is not offered and the CO ignores it
        return reply

    @staticmethod
    def _condition(info: dict) -> csi_pb2.VolumeCondition:
        full = info["bytes_quota"] and info["bytes_used"] >= info["bytes_quota"]
        return csi_pb2.VolumeCondition(
            abnormal=False, message=f"{info['bytes_used']} of {info['bytes_quota']} bytes "
                                    "used" + (" (full)" if full else ""))

    # -- snapshots ----------------------------------------------------------------------------
    def _snapshot_msg(self, sid: ids.SnapshotId, snap: dict) -> csi_pb2.Snapshot:
        return csi_pb2.Snapshot(size_bytes=snap["bytes"], snapshot_id=str(sid),
                                source_volume_id=str(sid.volume),
                                creation_time=_timestamp(snap["created_ns"]), ready_to_use=True)

    async def CreateSnapshot(self, request, context):
        if not request.source_volume_id:
            raise InvalidArgument("source_volume_id is missing")
        if not request.name:
            raise InvalidArgument("name is missing")
        secrets = dict(request.secrets)
        with self.locks.hold(f"snapname/{request.name}"):
            vid, _info = await self._volume(request.source_volume_id, secrets)
            journal = await self.cluster.journal(vid.fs, secrets)
            entry = await journal.snapshot_by_name(request.name)
            if entry is not None and entry["source"] != str(vid):
                raise AlreadyExists(f"snapshot {request.name} exists for volume "
                                    f"{entry['source']}")
            if entry is None:
                sid = ids.SnapshotId(vid, f"csi-snap-{uuid.uuid4()}")
                entry = await journal.reserve_snapshot(request.name, str(sid), str(vid))
                if entry["source"] != str(vid):  # another controller reserved it first
                    raise AlreadyExists(f"snapshot {request.name} exists for volume "
                                        f"{entry['source']}")
            sid = ids.parse_snapshot_id(entry["id"])
            with self.locks.hold(str(vid)):
                async with self.cluster.fsadmin(vid.fs, secrets) as fs:
                    try:
                        snap = await fs.snapshot_info(vid.group, vid.name, sid.snap)
                    except NotFound:
                        try:
                            snap = await fs.snapshot_create(vid.group, vid.name, sid.snap)
                        except AlreadyExists:  # made by another controller just now
                            snap = await fs.snapshot_info(vid.group, vid.name, sid.snap)
                if entry["state"] != "ready":
                    await journal.snapshot_ready(request.name, entry)
        return csi_pb2.CreateSnapshotResponse(snapshot=self._snapshot_msg(sid, snap))

    async def DeleteSnapshot(self, request, context):
        if not request.snapshot_id:
            raise InvalidArgument("snapshot_id is missing")
        sid = ids.parse_snapshot_id(request.snapshot_id)
        if sid is None:
            return csi_pb2.DeleteSnapshotResponse()
        secrets = dict(request.secrets)
        with self.locks.hold(str(sid.volume)):
            try:
                journal = await self.cluster.journal(sid.volume.fs, secrets)
            except NotFound:
                return csi_pb2.DeleteSnapshotResponse()
            async with self.cluster.fsadmin(sid.volume.fs, secrets) as fs:
                await fs.snapshot_rm(sid.volume.group, sid.volume.name, sid.snap)
            await journal.forget_snapshot(str(sid))
        return csi_pb2.DeleteSnapshotResponse()

    async def ListSnapshots(self, request, context):
        fs = await self.cluster.filesystem(self.default_fs)
        all_ids = await (await self.cluster.journal(fs["name"])).snapshots()
        if request.snapshot_id:
            all_ids = [s for s in all_ids if s == request.snapshot_id]
        if request.source_volume_id:
            all_ids = [s for s in all_ids
                       if s.rsplit(":", 1)[0] == request.source_volume_id]
        try:
            page, next_token = _page(all_ids, request.starting_token, request.max_entries)
        except BadToken as e:
            raise Aborted(str(e)) from None
        reply = csi_pb2.ListSnapshotsResponse(next_token=next_token)
        for text in page:
            sid = ids.parse_snapshot_id(text)
            if sid is None:
                continue
            try:
                async with self.cluster.fsadmin(sid.volume.fs) as admin:
                    snap = await admin.snapshot_info(sid.volume.group, sid.volume.name, sid.snap)
            except NotFound:
                continue
            reply.entries.add(snapshot=self._snapshot_msg(sid, snap))
        return reply
