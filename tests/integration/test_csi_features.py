"""CSI features kubelet and the external-provisioner use beyond the basic flow, against a
real plugin started with a topology segment: VOLUME_MOUNT_GROUP (the pod's fsGroup
without a recursive chown), topology, the honest published_node_ids, and GetCapacity
from the data pool's MAX AVAIL as `sds df` reports it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time

import grpc
import pytest
from csiplugin import (
    GiB,
    MiB,
    create,
    mount_cap,
    plugin,
    stage_publish,
    unpublish_unstage,
    workdir_fixture,
)
from fsmounts import FS_CLUSTER, requires_mds, sds

from sds.proto import csi_pb2

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]
C = csi_pb2
ZONE = "topology.sds.io/zone"
FS_GROUP, POD_UID = 24680, 13579  # a pod's fsGroup, and a user that is not in it by default


workdir = workdir_fixture("csif", 0o755)  # the pod's user walks down to its target


@pytest.fixture(scope="module")
def csi(cluster_module, workdir):
    with plugin(cluster_module, workdir, "node-z1", "--topology", f"{ZONE}=z1") as p:
        yield p


def as_pod_user(script: str) -> subprocess.CompletedProcess:
    """Run a shell script as POD_UID whose only supplementary group is FS_GROUP (its
    primary group is its own), as a container with that fsGroup runs."""
    return subprocess.run(["/bin/sh", "-ec", script], user=POD_UID, group=POD_UID,
                          extra_groups=[FS_GROUP], capture_output=True, text=True, timeout=60)


def test_volume_mount_group(csi, workdir):
    caps = csi.node.NodeGetCapabilities(C.NodeGetCapabilitiesRequest())
    assert C.NodeServiceCapability.RPC.VOLUME_MOUNT_GROUP in {
        c.rpc.type for c in caps.capabilities}
    vol = create(csi, "pvc-fsgroup", size=64 * MiB)
    cap = mount_cap()
    cap.mount.volume_mount_group = str(FS_GROUP)
    staging, target = stage_publish(csi, workdir, vol, "fsgroup", cap=cap)
    try:
        root = os.stat(target)
        assert root.st_gid == FS_GROUP and root.st_mode & stat.S_ISGID
        assert root.st_mode & stat.S_IRWXG == stat.S_IRWXG
        done = as_pod_user(f"cd {target}; echo 'written by the pod' > by-pod; mkdir dir; "
                           "stat -c %g by-pod dir")
        assert done.returncode == 0, done.stderr
        # the new file and directory belong to the fsGroup, not to the user's own group
        assert done.stdout.split() == [str(FS_GROUP), str(FS_GROUP)]
        assert (target / "by-pod").read_text() == "written by the pod\n"
        assert os.stat(target / "dir").st_mode & stat.S_ISGID  # inherited further down
        # staged and published again (kubelet retries): the same, idempotently
        stage_publish(csi, workdir, vol, "fsgroup", cap=cap)
        assert os.stat(target).st_gid == FS_GROUP
    finally:
        unpublish_unstage(csi, vol, staging, target)
        csi.controller.DeleteVolume(C.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=60)


def test_volume_mount_group_must_be_a_gid(csi, workdir):
    vol = create(csi, "pvc-badgroup", size=16 * MiB)
    try:
        cap = mount_cap()
        cap.mount.volume_mount_group = "wheel"
        staging = workdir / "stage-badgroup"
        staging.mkdir(exist_ok=True)
        with pytest.raises(grpc.RpcError) as e:
            csi.node.NodeStageVolume(C.NodeStageVolumeRequest(
                volume_id=vol.volume_id, staging_target_path=str(staging),
                volume_capability=cap), timeout=60)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert not os.path.ismount(staging)  # refused before anything was mounted
    finally:
        csi.controller.DeleteVolume(C.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=60)


def test_topology(csi):
    caps = csi.identity.GetPluginCapabilities(C.GetPluginCapabilitiesRequest())
    assert C.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS in {
        c.service.type for c in caps.capabilities if c.HasField("service")}
    info = csi.node.NodeGetInfo(C.NodeGetInfoRequest())
    assert dict(info.accessible_topology.segments) == {ZONE: "z1"}
    z1, z2 = C.Topology(segments={ZONE: "z1"}), C.Topology(segments={ZONE: "z2"})
    req = C.CreateVolumeRequest(
        name="pvc-topo", capacity_range=C.CapacityRange(required_bytes=16 * MiB),
        volume_capabilities=[mount_cap()],
        accessibility_requirements=C.TopologyRequirement(requisite=[z1, z2], preferred=[z2]))
    vol = csi.controller.CreateVolume(req, timeout=60).volume
    try:  # reachable from every segment asked for: the scheduler keeps its choice
        assert sorted(t.segments[ZONE] for t in vol.accessible_topology) == ["z1", "z2"]
        assert csi.controller.CreateVolume(req, timeout=60).volume == vol
    finally:
        csi.controller.DeleteVolume(C.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=60)


def test_published_node_ids_are_not_offered(csi, workdir):
    """No ControllerPublish (attachRequired false), so LIST_VOLUMES_PUBLISHED_NODES is not
    offered and published_node_ids stays empty even while the volume is published; the
    volume condition (VOLUME_CONDITION) is in both ControllerGetVolume and ListVolumes."""
    rpcs = {c.rpc.type for c in csi.controller.ControllerGetCapabilities(
        C.ControllerGetCapabilitiesRequest()).capabilities}
    RPC = C.ControllerServiceCapability.RPC
    assert RPC.LIST_VOLUMES_PUBLISHED_NODES not in rpcs
    assert RPC.PUBLISH_UNPUBLISH_VOLUME not in rpcs
    vol = create(csi, "pvc-published", size=16 * MiB)
    staging, target = stage_publish(csi, workdir, vol, "published")
    try:
        got = csi.controller.ControllerGetVolume(C.ControllerGetVolumeRequest(
            volume_id=vol.volume_id))
        assert list(got.status.published_node_ids) == []
        assert not got.status.volume_condition.abnormal
        listed = {e.volume.volume_id: e for e in csi.controller.ListVolumes(
            C.ListVolumesRequest()).entries}
        status = listed[vol.volume_id].status
        assert list(status.published_node_ids) == []
        assert status.HasField("volume_condition") and "bytes used" in \
            status.volume_condition.message
    finally:
        unpublish_unstage(csi, vol, staging, target)
        csi.controller.DeleteVolume(C.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=60)


# -- GetCapacity ---------------------------------------------------------------------------
def pool_max_avail(cluster, pool: str) -> int:
    out = json.loads(sds("--conf", str(cluster.conf), "--format", "json", "df").stdout)
    return next(int(p["stats"]["max_avail"]) for p in out["pools"] if p["name"] == pool)


def data_pool(cluster) -> str:
    out = json.loads(sds("--conf", str(cluster.conf), "--format", "json", "fs", "ls").stdout)
    fss = out["filesystems"] if isinstance(out, dict) else out
    return fss[0]["data_pool"]


def capacity(csi, **kw) -> int:
    return csi.controller.GetCapacity(C.GetCapacityRequest(
        volume_capabilities=[mount_cap()], **kw), timeout=30).available_capacity


def test_get_capacity_is_the_data_pools_max_avail(cluster_module, csi):
    pool = data_pool(cluster_module)
    # the disk is shared with other work: compare while `sds df` is steady around the call
    for _ in range(20):
        before = pool_max_avail(cluster_module, pool)
        got = capacity(csi)
        if before == pool_max_avail(cluster_module, pool):
            break
        time.sleep(0.5)
    assert got == before > 0
    # the StorageClass's parameters choose the same pool; the topology changes nothing
    same = [capacity(csi, parameters={"pool": pool, "fsName": "sdsfs"}),
            capacity(csi, accessible_topology=C.Topology(segments={ZONE: "z1"})),
            capacity(csi, parameters={"csi.storage.k8s.io/pvc/name": "x"})]
    assert all(abs(v - got) < 256 * MiB for v in same), (got, same)
    for params, code in (({"pool": "not-the-data-pool"}, grpc.StatusCode.INVALID_ARGUMENT),
                         ({"fsName": "nosuchfs"}, grpc.StatusCode.NOT_FOUND),
                         ({"bogus": "1"}, grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as e:
            capacity(csi, parameters=params)
        assert e.value.code() == code, params
    block = C.VolumeCapability(block=C.VolumeCapability.BlockVolume(),
                               access_mode=mount_cap().access_mode)
    assert csi.controller.GetCapacity(C.GetCapacityRequest(
        volume_capabilities=[block])).available_capacity == 0  # no room for what we lack


def test_get_capacity_shrinks_as_data_is_written(cluster_module, csi, workdir):
    vol = create(csi, "pvc-capacity", size=2 * GiB)
    staging, target = stage_publish(csi, workdir, vol, "capacity")
    try:
        start = capacity(csi)
        chunk = os.urandom(4 * MiB)
        with open(target / "fill", "wb") as f:
            for _ in range(1024 // 4):  # 1 GiB of real data, three replicas of it
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        deadline = time.monotonic() + 90
        while (now := capacity(csi)) > start - GiB // 2:
            assert time.monotonic() < deadline, f"GetCapacity stayed at {now} (from {start})"
            time.sleep(1)
    finally:
        unpublish_unstage(csi, vol, staging, target)
        csi.controller.DeleteVolume(C.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=120)


def test_the_manifests_csi_key_is_enough(cluster_module, csi, workdir):
    """The key deploy/kubernetes gives the plugin (sds.cluster.local.csi_caps: profile
    csi, OSD access only to the filesystem's two pools, nothing on the mgr) does the whole
    flow through the request secrets: create, stage, write, snapshot, clone, delete."""
    import base64

    from sds.cluster.local import csi_caps

    out = json.loads(sds("--conf", str(cluster_module.conf), "--format", "json", "fs", "ls").stdout)
    fs = (out["filesystems"] if isinstance(out, dict) else out)[0]
    caps = csi_caps([fs["metadata_pool"], fs["data_pool"]])
    args = [a for service, cap in caps.items() for a in (service, cap)]
    made = json.loads(sds("--conf", str(cluster_module.conf), "--format", "json", "auth",
                          "get-or-create", "client.csik", *args).stdout)
    key = made["key"] if "key" in made else made[0]["key"]
    base64.b64decode(key, validate=True)
    secrets = {"userID": "csik", "userKey": key}
    ctrl = csi.controller

    def create_with(name, source=None):
        req = C.CreateVolumeRequest(name=name, capacity_range=C.CapacityRange(
            required_bytes=64 * MiB), volume_capabilities=[mount_cap()], secrets=secrets)
        if source is not None:
            req.volume_content_source.CopyFrom(source)
        return ctrl.CreateVolume(req, timeout=120).volume

    vol = create_with("pvc-k8s-key")
    staging = workdir / "stage-k8s-key"
    target = workdir / "pods" / "k8s-key" / "mount"
    staging.mkdir(exist_ok=True)
    csi.node.NodeStageVolume(C.NodeStageVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=str(staging),
        volume_capability=mount_cap(), secrets=secrets), timeout=120)
    csi.node.NodePublishVolume(C.NodePublishVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=str(staging), target_path=str(target),
        volume_capability=mount_cap()), timeout=60)
    (target / "f").write_bytes(os.urandom(MiB))
    unpublish_unstage(csi, vol, staging, target)
    snap = ctrl.CreateSnapshot(C.CreateSnapshotRequest(
        source_volume_id=vol.volume_id, name="snap-k8s-key", secrets=secrets),
        timeout=120).snapshot
    clone = create_with("pvc-k8s-clone", C.VolumeContentSource(
        volume=C.VolumeContentSource.VolumeSource(volume_id=vol.volume_id)))
    assert clone.capacity_bytes == 64 * MiB
    ctrl.DeleteSnapshot(C.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id,
                                                secrets=secrets), timeout=60)
    for v in (clone, vol):
        ctrl.DeleteVolume(C.DeleteVolumeRequest(volume_id=v.volume_id, secrets=secrets),
                          timeout=60)
