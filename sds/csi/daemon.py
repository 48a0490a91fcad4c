"""The CSI plugin as a daemon of a local cluster (`sds daemon csi --id 0`, started by
`sds cluster up --csi`): both roles, its socket in its data directory, its own key
(client.csi, profile csi) from its section's keyring."""

from __future__ import annotations

import socket

from sds.common.config import Config
from sds.common.daemon import Daemon, daemon_paths
from sds.csi.server import PluginOptions, PluginServer

ENTITY = "client.csi"


def socket_path(config: Config, daemon_id: str):
    return daemon_paths(config, "csi", daemon_id)["data_dir"] / "csi.sock"


class CsiDaemon(Daemon):
    role = "csi"

    def __init__(self, config: Config, daemon_id: str):
        super().__init__(config, daemon_id)
        data = daemon_paths(config, "csi", daemon_id)["data_dir"]
        keyring = config.get("keyring")
        self.opts = PluginOptions(
            endpoint=f"unix://{socket_path(config, daemon_id)}", node_id=socket.gethostname(),
            conf=str(config.path), entity=ENTITY,
            keyring=str(config.resolve_path(keyring)) if keyring else None,
            state_dir=str(data / "state"))
        self.plugin: PluginServer | None = None

    async def start(self) -> None:
        self.plugin = PluginServer(self.opts)
        await self.plugin.start()
        self.addr = self.opts.endpoint

    async def stop(self) -> None:
        if self.plugin is not None:
            await self.plugin.stop()


def create(config: Config, daemon_id: str) -> CsiDaemon:
    return CsiDaemon(config, daemon_id)
