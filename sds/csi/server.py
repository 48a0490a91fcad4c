"""`sds csi`: the plugin process. One grpc.aio server on a unix socket (or tcp:// for tests)
serving Identity and the Controller and/or Node services, every handler behind the error
interceptor; SIGTERM stops it gracefully (staged FUSE mounts stay up)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from sds.common.errors import InvalidArgument
from sds.common.tasks import TaskSet
from sds.csi import DRIVER_NAME
from sds.csi.cluster import Cluster
from sds.csi.controller import ControllerService
from sds.csi.errors import ErrorInterceptor
from sds.csi.identity import IdentityService
from sds.csi.mounts import NodeMounts
from sds.csi.node import NodeService
from sds.csi.reservations import LEASE_S
from sds.proto import csi_pb2_grpc

log = logging.getLogger("sds.csi")
GRACE_S = 5.0


@dataclass
class PluginOptions:
    endpoint: str
    node_id: str
    conf: str
    entity: str = "client.admin"
    keyring: str | None = None
    controller: bool = True
    node: bool = True
    state_dir: str | None = None
    driver_name: str = DRIVER_NAME
    fs: str | None = None
    lease_s: float = LEASE_S  # see reservations.py
    topology: dict[str, str] = field(default_factory=dict)  # see topology.py


def grpc_address(endpoint: str) -> tuple[str, str | None]:
    """(address for grpc, socket path) of unix:///path/csi.sock or tcp://host:port."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidArgument(f"endpoint {endpoint}: the socket path must be absolute")
        return f"unix://{path}", path
    if endpoint.startswith("tcp://"):
        return endpoint[len("tcp://"):], None
    raise InvalidArgument(f"endpoint {endpoint}: use unix:///path or tcp://host:port")


def default_state_dir(node_id: str) -> Path:
    base = Path("/var/lib/sds-csi") if os.geteuid() == 0 else Path.home() / ".sds" / "csi"
    return base / node_id


class PluginServer:
    """The gRPC server with the services `opts` asks for; start() returns once it listens."""

    def __init__(self, opts: PluginOptions):
        self.opts = opts
        self.address, self.sock = grpc_address(opts.endpoint)
        self.cluster = Cluster(opts.conf, opts.entity, opts.keyring)
        self.server: grpc.aio.Server | None = None
        self.background = TaskSet("csi")  # the node's recovery of staged mounts

    async def start(self) -> None:
        opts = self.opts
        if self.sock:
            Path(self.sock).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.sock)  # a socket left by a killed predecessor
        server = self.server = grpc.aio.server(interceptors=[ErrorInterceptor()])
        csi_pb2_grpc.add_IdentityServicer_to_server(
            IdentityService(self.cluster, opts.controller, opts.driver_name,
                            topology=bool(opts.topology)), server)
        node = None
        if opts.controller:
            csi_pb2_grpc.add_ControllerServicer_to_server(
                ControllerService(self.cluster, opts.fs, opts.lease_s,
                                  topology=bool(opts.topology)), server)
        if opts.node:
            state = Path(opts.state_dir) if opts.state_dir else default_state_dir(opts.node_id)
            mounts = NodeMounts(opts.conf, opts.entity, opts.keyring, state)
            node = NodeService(self.cluster, mounts, opts.node_id, topology=opts.topology)
            csi_pb2_grpc.add_NodeServicer_to_server(node, server)
        if server.add_insecure_port(self.address) == 0 and not self.sock:
            raise InvalidArgument(f"cannot listen on {opts.endpoint}")
        await server.start()
        if self.sock:
            os.chmod(self.sock, 0o660)
        roles = "+".join(r for r, on in (("controller", opts.controller), ("node", opts.node))
                         if on)
        log.info("CSI driver %s (%s) on %s, node %s", opts.driver_name, roles, opts.endpoint,
                 opts.node_id)
        if node is not None:
            self.background.spawn(node.recover())

    async def stop(self) -> None:
        log.info("stopping")
        await self.background.stop()
        if self.server is not None:
            await self.server.stop(GRACE_S)
        await self.cluster.close()
        if self.sock:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.sock)


async def serve(opts: PluginOptions, started=lambda: None) -> None:
    """Serve until SIGTERM or SIGINT (staged FUSE mounts stay up)."""
    plugin = PluginServer(opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await plugin.start()
    started()
    try:
        await stop.wait()
    finally:
        await plugin.stop()
