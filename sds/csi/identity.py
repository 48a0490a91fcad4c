"""CSI Identity service: who the plugin is, what it offers, whether it can work now."""

from __future__ import annotations

from google.protobuf import wrappers_pb2

from sds.csi import DRIVER_NAME
from sds.csi.cluster import Cluster
from sds.proto import csi_pb2, csi_pb2_grpc

Service = csi_pb2.PluginCapability.Service


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("sds")
    except PackageNotFoundError:
        return "0.0.0"


class IdentityService(csi_pb2_grpc.IdentityServicer):
    def __init__(self, cluster: Cluster, controller: bool, name: str = DRIVER_NAME,
                 topology: bool = False):
        self.cluster, self.controller, self.name = cluster, controller, name
        self.topology = topology

    async def GetPluginInfo(self, request, context):
        return csi_pb2.GetPluginInfoResponse(name=self.name, vendor_version=version())

    async def GetPluginCapabilities(self, request, context):
        reply = csi_pb2.GetPluginCapabilitiesResponse()
        if self.controller:
            reply.capabilities.add().service.type = Service.CONTROLLER_SERVICE
        if self.topology:
            reply.capabilities.add().service.type = Service.VOLUME_ACCESSIBILITY_CONSTRAINTS
        reply.capabilities.add().volume_expansion.type = \
            csi_pb2.PluginCapability.VolumeExpansion.ONLINE
        return reply

    async def Probe(self, request, context):
        """Ready only while the monitors answer: kubelet's liveness probe restarts a plugin
        that cannot reach the cluster, the sidecars wait for it."""
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=await self.cluster.probe()))
