"""`sds cluster up --csi`: the local cluster runs one CSI plugin with both roles, as
client.csi (profile csi only), on <dir>/csi.0/csi.sock; a volume goes through it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc
import pytest
from csiplugin import cleanup_mounts, mount_cap
from fsmounts import requires_mds

from sds.proto import csi_pb2, csi_pb2_grpc

pytestmark = [pytest.mark.integration, requires_mds, pytest.mark.cluster_opts(mds=1, csi=True)]


def test_cluster_up_runs_a_plugin(cluster):
    sock = Path(cluster.dir) / "csi.0" / "csi.sock"
    assert sock.exists()
    work = Path(tempfile.mkdtemp(prefix="csiup", dir="/tmp"))
    try:
        with grpc.insecure_channel(f"unix://{sock}") as ch:
            identity, ctrl, node = (csi_pb2_grpc.IdentityStub(ch),
                                    csi_pb2_grpc.ControllerStub(ch), csi_pb2_grpc.NodeStub(ch))
            assert identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest()).name == "csi.sds.io"
            assert identity.Probe(csi_pb2.ProbeRequest(), timeout=30).ready.value
            vol = ctrl.CreateVolume(csi_pb2.CreateVolumeRequest(
                name="pvc-up", capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 26),
                volume_capabilities=[mount_cap()]), timeout=120).volume
            staging, target = work / "stage", work / "target"
            staging.mkdir()
            node.NodeStageVolume(csi_pb2.NodeStageVolumeRequest(
                volume_id=vol.volume_id, staging_target_path=str(staging),
                volume_capability=mount_cap()), timeout=120)
            node.NodePublishVolume(csi_pb2.NodePublishVolumeRequest(
                volume_id=vol.volume_id, staging_target_path=str(staging),
                target_path=str(target), volume_capability=mount_cap()), timeout=60)
            (target / "f").write_text("via the cluster's plugin")
            assert (target / "f").read_text() == "via the cluster's plugin"
            node.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(
                volume_id=vol.volume_id, target_path=str(target)), timeout=60)
            node.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(
                volume_id=vol.volume_id, staging_target_path=str(staging)), timeout=60)
            ctrl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=60)
    finally:
        cleanup_mounts(work)
