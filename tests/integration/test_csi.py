"""The CSI plugin as Kubernetes uses it: a real `sds csi` process on a unix socket, driven
over gRPC like the external-provisioner, -resizer, -snapshotter and kubelet do, against a
real cluster with a filesystem; FUSE mounts and bind mounts are real too."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from csiplugin import (
    GiB,
    MiB,
    create,
    create_retrying,
    leftovers,
    mount_cap,
    plugin,
    stage_publish,
    unpublish_unstage,
    workdir_fixture,
)
from fsmounts import FS_CLUSTER, requires_mds

from sds.client import Rados
from sds.client.fsadmin import FsAdmin
from sds.proto import csi_pb2

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]

Mode = csi_pb2.VolumeCapability.AccessMode
Code = grpc.StatusCode


workdir = workdir_fixture("csi")


@pytest.fixture(scope="module")
def csi(cluster_module, workdir):
    with plugin(cluster_module, workdir) as p:
        yield p


def stats(csi, vol, path):
    reply = csi.node.NodeGetVolumeStats(csi_pb2.NodeGetVolumeStatsRequest(
        volume_id=vol.volume_id, volume_path=str(path)), timeout=30)
    return {u.unit: u for u in reply.usage}, reply.volume_condition


def fill_until_edquot(path: Path, start: int) -> int:
    """Write sparse-then-dense at START until the quota refuses: the bytes that fitted."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    chunk, off = os.urandom(4 * MiB), start
    try:
        with pytest.raises(OSError) as e:
            while True:
                off += os.pwrite(fd, chunk, off)
                os.fsync(fd)
        assert e.value.errno == errno.EDQUOT
    finally:
        try:
            os.close(fd)
        except OSError as e:
            assert e.errno == errno.EDQUOT
    return off - start


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_identity(csi):
    info = csi.identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
    assert info.name == "csi.sds.io" and info.vendor_version
    caps = csi.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
    kinds = {c.WhichOneof("type") for c in caps.capabilities}
    assert kinds == {"service", "volume_expansion"}
    assert csi.identity.Probe(csi_pb2.ProbeRequest()).ready.value
    node = csi.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    assert node.node_id == "node-1"


def test_lifecycle(cluster_module, csi, workdir, record_property):
    t0 = time.monotonic()
    vol = create(csi, "pvc-life")
    assert create(csi, "pvc-life") == vol  # idempotent by name
    assert vol.capacity_bytes == GiB and vol.volume_id.startswith("sds1:")
    staging, target = stage_publish(csi, workdir, vol, "life")
    stage_publish(csi, workdir, vol, "life")  # both again: idempotent
    record_property("create_to_publish_s", round(time.monotonic() - t0, 3))
    assert target.is_mount() if hasattr(target, "is_mount") else os.path.ismount(target)

    (target / "dir").mkdir()
    (target / "dir" / "hello.txt").write_text("hello from a pod")
    (target / "data.bin").write_bytes(os.urandom(3 * MiB))
    usage, cond = stats(csi, vol, target)
    assert not cond.abnormal
    assert usage[csi_pb2.VolumeUsage.BYTES].total == GiB
    assert usage[csi_pb2.VolumeUsage.BYTES].used >= 3 * MiB
    inodes = usage[csi_pb2.VolumeUsage.INODES]  # no file quota: the filesystem's numbers
    assert inodes.total > 0 and 0 <= inodes.used <= inodes.total

    # past the capacity: EDQUOT (sparse up to near the end, then real writes)
    fitted = fill_until_edquot(target / "big", GiB - 16 * MiB)
    assert 0 < fitted <= 16 * MiB

    for _ in range(2):
        grown = csi.controller.ControllerExpandVolume(csi_pb2.ControllerExpandVolumeRequest(
            volume_id=vol.volume_id, capacity_range=csi_pb2.CapacityRange(
                required_bytes=2 * GiB), volume_capability=mount_cap()), timeout=60)
        assert grown.capacity_bytes == 2 * GiB and not grown.node_expansion_required
    node_grown = csi.node.NodeExpandVolume(csi_pb2.NodeExpandVolumeRequest(
        volume_id=vol.volume_id, volume_path=str(target),
        capacity_range=csi_pb2.CapacityRange(required_bytes=2 * GiB)))
    assert node_grown.capacity_bytes == 2 * GiB
    with open(target / "more.bin", "wb") as f:
        f.write(os.urandom(8 * MiB))
    deadline = time.monotonic() + 10
    while os.statvfs(target).f_blocks * os.statvfs(target).f_frsize != 2 * GiB:
        assert time.monotonic() < deadline, "statfs never showed 2 GiB"
        time.sleep(0.2)
    got = csi.controller.ControllerGetVolume(csi_pb2.ControllerGetVolumeRequest(
        volume_id=vol.volume_id))
    assert got.volume.capacity_bytes == 2 * GiB and not got.status.volume_condition.abnormal

    before = digest(target)
    snap_req = csi_pb2.CreateSnapshotRequest(source_volume_id=vol.volume_id, name="snap-life")
    t_snap = time.monotonic()
    snap = csi.controller.CreateSnapshot(snap_req, timeout=300).snapshot
    record_property("snapshot_s", round(time.monotonic() - t_snap, 3))
    assert csi.controller.CreateSnapshot(snap_req, timeout=300).snapshot == snap
    assert snap.ready_to_use and snap.source_volume_id == vol.volume_id
    assert snap.size_bytes >= GiB and snap.creation_time.seconds > 0
    (target / "dir" / "hello.txt").write_text("changed after the snapshot")

    from_snap = create(csi, "pvc-restore", size=2 * GiB, source=csi_pb2.VolumeContentSource(
        snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id)))
    assert from_snap.content_source.snapshot.snapshot_id == snap.snapshot_id
    t_clone = time.monotonic()
    clone = create(csi, "pvc-clone", size=2 * GiB, source=csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=vol.volume_id)))
    record_property("clone_s", round(time.monotonic() - t_clone, 3))
    after = digest(target)
    for v, tag, want in ((from_snap, "restore", before), (clone, "clone", after)):
        s, t = stage_publish(csi, workdir, v, tag, readonly=True)
        assert digest(t) == want
        with pytest.raises(OSError) as e:
            (t / "nope").write_text("x")
        assert e.value.errno == errno.EROFS
        unpublish_unstage(csi, v, s, t)

    unpublish_unstage(csi, vol, staging, target)
    # a snapshot still depends on the volume: refused until it is gone
    with pytest.raises(grpc.RpcError) as e:
        csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id))
    assert e.value.code() == Code.FAILED_PRECONDITION
    for _ in range(2):
        csi.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(
            snapshot_id=snap.snapshot_id))
    for v in (vol, from_snap, clone):
        for _ in range(2):
            csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=v.volume_id),
                                        timeout=120)
    assert asyncio.run(leftovers(cluster_module.conf)) == ([], [])
    assert mount_cap and not [line for line in open("/proc/mounts") if str(workdir) in line]


def test_concurrent_create_same_name_makes_one_volume(cluster_module, csi):
    def one(name):
        try:
            return create(csi, name, size=64 * MiB).volume_id
        except grpc.RpcError as e:
            assert e.code() == Code.ABORTED, e
            return None

    with ThreadPoolExecutor(10) as pool:
        same = list(pool.map(one, ["pvc-same"] * 10))
        distinct = list(pool.map(one, [f"pvc-d{i}" for i in range(10)]))
    winners = {v for v in same if v}
    assert len(winners) == 1
    assert create(csi, "pvc-same", size=64 * MiB).volume_id in winners  # the retry: same one
    assert all(distinct) and len(set(distinct)) == 10
    listed = csi.controller.ListVolumes(csi_pb2.ListVolumesRequest())
    assert {e.volume.volume_id for e in listed.entries} == winners | set(distinct)
    for vid in winners | set(distinct):
        csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid), timeout=60)
    assert asyncio.run(leftovers(cluster_module.conf)) == ([], [])


def test_create_to_publish_latency(csi, workdir, record_property):
    samples = []
    for i in range(int(os.environ.get("SDS_CSI_LATENCY_SAMPLES", "5"))):
        t0 = time.monotonic()
        vol = create(csi, f"pvc-lat{i}", size=64 * MiB)
        staging, target = stage_publish(csi, workdir, vol, f"lat{i}")
        samples.append(time.monotonic() - t0)
        unpublish_unstage(csi, vol, staging, target)
        csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id))
    samples.sort()
    record_property("create_to_publish_median_s", round(statistics.median(samples), 3))
    record_property("create_to_publish_max_s", round(samples[-1], 3))
    print(f"CreateVolume->NodePublish: median {statistics.median(samples):.3f}s "  # max of 20 = p99
          f"max {samples[-1]:.3f}s of {len(samples)}")


# -- the spec's error tables, one row each ------------------------------------------------
C = csi_pb2
CR = C.CapacityRange
BLOCK = C.VolumeCapability(block=C.VolumeCapability.BlockVolume(),
                           access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))
UNKNOWN_VOL = "sds1:sdsfs:csi:csi-vol-nothere"


@pytest.fixture(scope="module")
def existing(csi):
    vol = create(csi, "pvc-errors", size=64 * MiB)
    yield vol
    csi.controller.DeleteVolume(C.DeleteVolumeRequest(volume_id=vol.volume_id))


def rows(existing, workdir):
    v = existing.volume_id
    cap = mount_cap()
    return [
        ("controller", "CreateVolume", C.CreateVolumeRequest(volume_capabilities=[cap]),
         Code.INVALID_ARGUMENT),
        ("controller", "CreateVolume", C.CreateVolumeRequest(name="x"), Code.INVALID_ARGUMENT),
        ("controller", "CreateVolume", C.CreateVolumeRequest(name="x", volume_capabilities=[BLOCK]),
         Code.INVALID_ARGUMENT),
        ("controller", "CreateVolume", C.CreateVolumeRequest(
            name="x", volume_capabilities=[cap], parameters={"bogus": "1"}), Code.INVALID_ARGUMENT),
        ("controller", "CreateVolume", C.CreateVolumeRequest(
            name="x", volume_capabilities=[cap], capacity_range=CR(required_bytes=2 * GiB,
                                                                    limit_bytes=GiB)),
         Code.OUT_OF_RANGE),
        ("controller", "CreateVolume", C.CreateVolumeRequest(
            name="pvc-errors", volume_capabilities=[cap], capacity_range=CR(required_bytes=GiB)),
         Code.ALREADY_EXISTS),
        ("controller", "CreateVolume", C.CreateVolumeRequest(
            name="pvc-errors", volume_capabilities=[cap], parameters={"subvolumeGroup": "other"},
            capacity_range=CR(required_bytes=64 * MiB)), Code.ALREADY_EXISTS),
        ("controller", "CreateVolume", C.CreateVolumeRequest(
            name="from-nothing", volume_capabilities=[cap],
            volume_content_source=C.VolumeContentSource(
                snapshot=C.VolumeContentSource.SnapshotSource(snapshot_id=UNKNOWN_VOL + ":s"))),
         Code.NOT_FOUND),
        ("controller", "CreateVolume", C.CreateVolumeRequest(
            name="from-nothing", volume_capabilities=[cap],
            volume_content_source=C.VolumeContentSource(
                volume=C.VolumeContentSource.VolumeSource(volume_id=UNKNOWN_VOL))),
         Code.NOT_FOUND),
        ("controller", "DeleteVolume", C.DeleteVolumeRequest(), Code.INVALID_ARGUMENT),
        ("controller", "DeleteVolume", C.DeleteVolumeRequest(volume_id=UNKNOWN_VOL), Code.OK),
        ("controller", "DeleteVolume", C.DeleteVolumeRequest(volume_id="garbage"), Code.OK),
        ("controller", "ValidateVolumeCapabilities", C.ValidateVolumeCapabilitiesRequest(
            volume_capabilities=[cap]), Code.INVALID_ARGUMENT),
        ("controller", "ValidateVolumeCapabilities", C.ValidateVolumeCapabilitiesRequest(
            volume_id=v), Code.INVALID_ARGUMENT),
        ("controller", "ValidateVolumeCapabilities", C.ValidateVolumeCapabilitiesRequest(
            volume_id=UNKNOWN_VOL, volume_capabilities=[cap]), Code.NOT_FOUND),
        ("controller", "ListVolumes", C.ListVolumesRequest(starting_token="nonsense"),
         Code.ABORTED),
        ("controller", "ListSnapshots", C.ListSnapshotsRequest(starting_token="99999"),
         Code.ABORTED),
        ("controller", "ControllerExpandVolume", C.ControllerExpandVolumeRequest(
            capacity_range=CR(required_bytes=GiB)), Code.INVALID_ARGUMENT),
        ("controller", "ControllerExpandVolume", C.ControllerExpandVolumeRequest(volume_id=v),
         Code.INVALID_ARGUMENT),
        ("controller", "ControllerExpandVolume", C.ControllerExpandVolumeRequest(
            volume_id=UNKNOWN_VOL, capacity_range=CR(required_bytes=GiB)), Code.NOT_FOUND),
        ("controller", "ControllerExpandVolume", C.ControllerExpandVolumeRequest(
            volume_id=v, capacity_range=CR(limit_bytes=MiB)), Code.OUT_OF_RANGE),
        ("controller", "CreateSnapshot", C.CreateSnapshotRequest(name="s"),
         Code.INVALID_ARGUMENT),
        ("controller", "CreateSnapshot", C.CreateSnapshotRequest(source_volume_id=v),
         Code.INVALID_ARGUMENT),
        ("controller", "CreateSnapshot", C.CreateSnapshotRequest(
            source_volume_id=UNKNOWN_VOL, name="s"), Code.NOT_FOUND),
        ("controller", "DeleteSnapshot", C.DeleteSnapshotRequest(), Code.INVALID_ARGUMENT),
        ("controller", "DeleteSnapshot", C.DeleteSnapshotRequest(
            snapshot_id=UNKNOWN_VOL + ":csi-snap-x"), Code.OK),
        ("controller", "ControllerGetVolume", C.ControllerGetVolumeRequest(volume_id=UNKNOWN_VOL),
         Code.NOT_FOUND),
        ("controller", "ControllerGetVolume", C.ControllerGetVolumeRequest(),
         Code.INVALID_ARGUMENT),
        ("controller", "ControllerPublishVolume", C.ControllerPublishVolumeRequest(
            volume_id=v, node_id="n"), Code.UNIMPLEMENTED),
        ("node", "NodeStageVolume", C.NodeStageVolumeRequest(
            staging_target_path=str(workdir / "s"), volume_capability=cap),
         Code.INVALID_ARGUMENT),
        ("node", "NodeStageVolume", C.NodeStageVolumeRequest(volume_id=v, volume_capability=cap),
         Code.INVALID_ARGUMENT),
        ("node", "NodeStageVolume", C.NodeStageVolumeRequest(
            volume_id=v, staging_target_path=str(workdir / "s")), Code.INVALID_ARGUMENT),
        ("node", "NodeStageVolume", C.NodeStageVolumeRequest(
            volume_id=UNKNOWN_VOL, staging_target_path=str(workdir / "s"),
            volume_capability=cap), Code.NOT_FOUND),
        ("node", "NodePublishVolume", C.NodePublishVolumeRequest(
            staging_target_path=str(workdir / "s"), target_path=str(workdir / "t"),
            volume_capability=cap), Code.INVALID_ARGUMENT),
        ("node", "NodePublishVolume", C.NodePublishVolumeRequest(
            volume_id=v, staging_target_path=str(workdir / "s"), volume_capability=cap),
         Code.INVALID_ARGUMENT),
        ("node", "NodePublishVolume", C.NodePublishVolumeRequest(
            volume_id=v, staging_target_path=str(workdir / "s"), target_path=str(workdir / "t")),
         Code.INVALID_ARGUMENT),
        ("node", "NodePublishVolume", C.NodePublishVolumeRequest(
            volume_id=v, target_path=str(workdir / "t"), volume_capability=cap),
         Code.FAILED_PRECONDITION),
        ("node", "NodePublishVolume", C.NodePublishVolumeRequest(
            volume_id=v, staging_target_path=str(workdir / "never-staged"),
            target_path=str(workdir / "t"), volume_capability=cap), Code.FAILED_PRECONDITION),
        ("node", "NodeUnpublishVolume", C.NodeUnpublishVolumeRequest(
            target_path=str(workdir / "t")), Code.INVALID_ARGUMENT),
        ("node", "NodeUnpublishVolume", C.NodeUnpublishVolumeRequest(volume_id=v),
         Code.INVALID_ARGUMENT),
        ("node", "NodeUnpublishVolume", C.NodeUnpublishVolumeRequest(
            volume_id=v, target_path=str(workdir / "never-published")), Code.OK),
        ("node", "NodeUnstageVolume", C.NodeUnstageVolumeRequest(
            staging_target_path=str(workdir / "s")), Code.INVALID_ARGUMENT),
        ("node", "NodeUnstageVolume", C.NodeUnstageVolumeRequest(volume_id=v),
         Code.INVALID_ARGUMENT),
        ("node", "NodeUnstageVolume", C.NodeUnstageVolumeRequest(
            volume_id=v, staging_target_path=str(workdir / "never-staged")), Code.OK),
        ("node", "NodeGetVolumeStats", C.NodeGetVolumeStatsRequest(
            volume_path=str(workdir)), Code.INVALID_ARGUMENT),
        ("node", "NodeGetVolumeStats", C.NodeGetVolumeStatsRequest(volume_id=v),
         Code.INVALID_ARGUMENT),
        ("node", "NodeGetVolumeStats", C.NodeGetVolumeStatsRequest(
            volume_id=v, volume_path=str(workdir / "gone")), Code.NOT_FOUND),
        ("node", "NodeExpandVolume", C.NodeExpandVolumeRequest(volume_path=str(workdir)),
         Code.INVALID_ARGUMENT),
        ("node", "NodeExpandVolume", C.NodeExpandVolumeRequest(
            volume_id=v, volume_path=str(workdir / "gone")), Code.NOT_FOUND),
    ]


def test_error_table_rows(csi, existing, workdir):
    """Each applicable row of the spec's per-RPC error tables (and the OK of idempotent
    removals of things that are not there)."""
    wrong = []
    for service, method, request, want in rows(existing, workdir):
        stub = getattr(csi, service)
        try:
            getattr(stub, method)(request, timeout=60)
            got = Code.OK
        except grpc.RpcError as e:
            got = e.code()
        if got != want:
            wrong.append(f"{method}({request}) -> {got.name}, want {want.name}")
    assert not wrong, "\n".join(wrong)


def test_stage_twice_with_another_mode_is_already_exists(csi, existing, workdir):
    staging, target = stage_publish(csi, workdir, existing, "modes")
    try:
        with pytest.raises(grpc.RpcError) as e:
            csi.node.NodeStageVolume(C.NodeStageVolumeRequest(
                volume_id=existing.volume_id, staging_target_path=str(staging),
                volume_capability=mount_cap(Mode.MULTI_NODE_READER_ONLY)), timeout=60)
        assert e.value.code() == Code.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as e:
            csi.node.NodePublishVolume(C.NodePublishVolumeRequest(
                volume_id=existing.volume_id, staging_target_path=str(staging),
                target_path=str(target), volume_capability=mount_cap(), readonly=True))
        assert e.value.code() == Code.ALREADY_EXISTS
        confirmed = csi.controller.ValidateVolumeCapabilities(
            C.ValidateVolumeCapabilitiesRequest(volume_id=existing.volume_id,
                                                volume_capabilities=[BLOCK]))
        assert not confirmed.HasField("confirmed") and confirmed.message
    finally:
        unpublish_unstage(csi, existing, staging, target)


def test_list_pagination(csi, existing):
    vols = [create(csi, f"pvc-page{i}", size=16 * MiB) for i in range(3)]
    try:
        seen, token = [], ""
        while True:
            page = csi.controller.ListVolumes(C.ListVolumesRequest(max_entries=2,
                                                                   starting_token=token))
            assert len(page.entries) <= 2
            seen += [e.volume.volume_id for e in page.entries]
            token = page.next_token
            if not token:
                break
        assert set(seen) >= {v.volume_id for v in vols} | {existing.volume_id}
        assert len(seen) == len(set(seen))
    finally:
        for v in vols:
            csi.controller.DeleteVolume(C.DeleteVolumeRequest(volume_id=v.volume_id))


def test_restarted_node_plugin_remounts_dead_volume(cluster_module, csi, workdir):
    """kill -9 the node plugin and the FUSE process of a published volume; the restarted
    plugin finds the staged volume from its records and remounts it: the pod's path works
    again without a new NodeStage or NodePublish from kubelet."""
    from csiplugin import Plugin
    from fsmounts import processes_mentioning

    vol = create(csi, "pvc-restart", size=64 * MiB)
    node = Plugin(cluster_module, workdir, "node-2", "--node").start()
    try:
        staging, target = stage_publish(node, workdir, vol, "restart")
        (target / "f").write_text("before the crash")
        node.kill()
        for pid in processes_mentioning(str(staging)):
            os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while True:
            try:
                os.stat(target / "f")
            except OSError as e:
                assert e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
                break
            assert time.monotonic() < deadline, "the mount did not die"
            time.sleep(0.1)
        node.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                assert (target / "f").read_text() == "before the crash"
                break
            except OSError:
                assert time.monotonic() < deadline, "the volume was not remounted"
                time.sleep(0.2)
        (target / "g").write_text("after")
        usage, cond = stats(node, vol, target)
        assert not cond.abnormal and usage[csi_pb2.VolumeUsage.BYTES].total == 64 * MiB
        unpublish_unstage(node, vol, staging, target)
    finally:
        node.stop()
        csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_two_nodes_share_a_rwx_volume(cluster_module, csi, workdir):
    """Two node plugins (two node ids, two staging roots) publish one MULTI_NODE_MULTI_WRITER
    volume and see each other's files."""
    from csiplugin import Plugin

    vol = create(csi, "pvc-rwx", size=64 * MiB)
    nodes = [Plugin(cluster_module, workdir / name, name, "--node") for name in ("na", "nb")]
    try:
        for n in nodes:
            n.workdir.mkdir(exist_ok=True)
            n.start()
        mounts = [stage_publish(n, n.workdir, vol, "rwx", mode=Mode.MULTI_NODE_MULTI_WRITER)
                  for n in nodes]
        (mounts[0][1] / "from-a").write_text("a")
        (mounts[1][1] / "from-b").write_text("b")
        assert (mounts[1][1] / "from-a").read_text() == "a"
        assert (mounts[0][1] / "from-b").read_text() == "b"
        for n, (staging, target) in zip(nodes, mounts, strict=True):
            unpublish_unstage(n, vol, staging, target)
    finally:
        for n in nodes:
            n.stop()
        csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_killed_during_create_volume_then_retried(cluster_module, csi, workdir):
    """kill -9 the controller in the middle of CreateVolume (a clone, the slowest kind) and
    retry with the same name: one volume, nothing leaked (no second subvolume, no stray
    temporary snapshot, one journal entry)."""
    import random
    import threading

    from csiplugin import Plugin

    before_subvols, before_journal = asyncio.run(leftovers(cluster_module.conf))
    ctrl = Plugin(cluster_module, workdir, "ctrl-kill", "--controller",
                  "--lease-seconds", "5").start()
    src = create(ctrl, "pvc-kill-src", size=256 * MiB)
    staging, target = stage_publish(csi, workdir, src, "kill-src")
    for i in range(8):
        (target / f"f{i}").write_bytes(os.urandom(4 * MiB))
    unpublish_unstage(csi, src, staging, target)
    source = csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=src.volume_id))
    try:
        def interrupted():  # killed mid-way (an RpcError), or done just before the kill
            with contextlib.suppress(grpc.RpcError):
                create(ctrl, "pvc-kill", 256 * MiB, source)

        t = threading.Thread(target=interrupted)
        t.start()
        time.sleep(random.uniform(0.1, 1.5))
        ctrl.kill()
        t.join(30)
        ctrl.start()  # a new process: the killed one's reservation is taken over after 5 s
        vol = create_retrying(ctrl, "pvc-kill", size=256 * MiB, source=source)
        assert create(ctrl, "pvc-kill", size=256 * MiB, source=source) == vol
        subvols, journal = asyncio.run(leftovers(cluster_module.conf))
        names = {v.volume_id.rsplit(":", 1)[1] for v in (src, vol)}
        assert set(subvols) - set(before_subvols) == names
        assert len(set(journal) - set(before_journal)) == 2
        async def snaps():
            async with Rados(cluster_module.conf) as r, FsAdmin(r) as fs:
                return await fs.snapshot_ls("csi", src.volume_id.rsplit(":", 1)[1])
        assert asyncio.run(snaps()) == []
    finally:
        for vid in [e.volume.volume_id for e in ctrl.controller.ListVolumes(
                csi_pb2.ListVolumesRequest()).entries]:
            if vid.rsplit(":", 1)[1] not in before_subvols:
                ctrl.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid),
                                             timeout=60)
        ctrl.stop()
    assert asyncio.run(leftovers(cluster_module.conf)) == (before_subvols, before_journal)


def test_request_secrets_with_a_csi_profile_key(cluster_module, csi, workdir):
    """The StorageClass's secrets name a key with only `profile csi` caps: CreateVolume,
    NodeStage (the FUSE mount runs as that key), writing and DeleteVolume all work with it."""
    import base64
    import json

    from fsmounts import sds

    out = json.loads(sds("--conf", str(cluster_module.conf), "--format", "json", "auth",
                         "get-or-create", "client.csi", "mon", "allow profile csi", "osd",
                         "allow profile csi", "mds", "allow profile csi", "mgr",
                         "allow profile csi").stdout)
    key = out["key"] if "key" in out else out[0]["key"]
    secrets = {"userID": "csi", "userKey": key}
    base64.b64decode(key, validate=True)
    req = csi_pb2.CreateVolumeRequest(
        name="pvc-secrets", capacity_range=csi_pb2.CapacityRange(required_bytes=64 * MiB),
        volume_capabilities=[mount_cap()], secrets=secrets)
    vol = csi.controller.CreateVolume(req, timeout=120).volume
    staging = workdir / "stage-secrets" / "globalmount"
    target = workdir / "pods" / "secrets" / "mount"
    staging.mkdir(parents=True, exist_ok=True)
    csi.node.NodeStageVolume(csi_pb2.NodeStageVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=str(staging),
        volume_capability=mount_cap(), secrets=secrets), timeout=120)
    csi.node.NodePublishVolume(csi_pb2.NodePublishVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=str(staging), target_path=str(target),
        volume_capability=mount_cap()), timeout=60)
    (target / "f").write_text("written as client.csi")
    assert (target / "f").read_text() == "written as client.csi"
    assert key not in (csi.log.read_text())  # never logged
    unpublish_unstage(csi, vol, staging, target)
    csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id,
                                                            secrets=secrets), timeout=60)
