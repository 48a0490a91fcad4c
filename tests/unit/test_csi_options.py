"""The plugin's topology option and the node's volume_mount_group, without a cluster."""

from __future__ import annotations

import pytest

from sds.common.errors import InvalidArgument
from sds.csi import topology
from sds.csi.node import mount_group
from sds.proto import csi_pb2 as C


def test_topology_options():
    assert topology.parse([]) == {}
    assert topology.parse(["topology.sds.io/zone=z1", "rack=r-7"]) == {
        "topology.sds.io/zone": "z1", "rack": "r-7"}
    assert topology.parse(["topology.sds.io/zone="]) == {"topology.sds.io/zone": ""}
    for bad in (["zone"], ["=z1"], ["zone=a b"], ["Zone/x=1"], ["a=1", "a=2"],
                ["k=" + "v" * 64], ["-k=v"]):
        with pytest.raises(InvalidArgument):
            topology.parse(bad)


def test_a_volume_is_accessible_from_every_segment_asked_for():
    z = [C.Topology(segments={"zone": f"z{i}"}) for i in range(3)]
    req = C.TopologyRequirement(requisite=[z[0], z[1]], preferred=[z[1], z[2]])
    assert [t.segments["zone"] for t in topology.accessible(req)] == ["z0", "z1", "z2"]
    assert topology.accessible(None) == []
    assert topology.accessible(C.TopologyRequirement()) == []


def _cap(group: str) -> C.VolumeCapability:
    return C.VolumeCapability(mount=C.VolumeCapability.MountVolume(volume_mount_group=group))


def test_volume_mount_group_is_a_numeric_gid():
    assert mount_group(_cap("")) is None
    assert mount_group(_cap("0")) == 0 and mount_group(_cap("2000")) == 2000
    for bad in ("wheel", "-1", "1.5", " 7", str(1 << 32)):
        with pytest.raises(InvalidArgument):
            mount_group(_cap(bad))
