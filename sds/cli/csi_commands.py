"""`sds csi`: run the Kubernetes CSI plugin (sds.csi.server) in the foreground."""

from __future__ import annotations

import asyncio

from sds.cli.commands import Context, Output, arg, cli


@cli("csi", rados=False, args=(
    arg("--endpoint", required=True, help="unix:///path/csi.sock (tcp://host:port for tests)"),
    arg("--node-id", dest="node_id", required=True, help="this node's name (NodeGetInfo)"),
    arg("--controller", action="store_true", help="serve the Controller service"),
    arg("--node", action="store_true", help="serve the Node service"),
    arg("--fs", default=None, help="default filesystem (StorageClass fsName overrides it)"),
    arg("--state-dir", dest="state_dir", default=None,
        help="where staged-volume index and mount logs live (default /var/lib/sds-csi/NODE)"),
    arg("--driver-name", dest="driver_name", default=None, help="default csi.sds.io"),
    arg("--lease-seconds", dest="lease_s", type=float, default=None,
        help="after how long another controller's unfinished CreateVolume is taken over "
             "(default 20)"),
    arg("--topology", action="append", default=[], metavar="KEY=VALUE",
        help="this node's topology segment (repeatable); offers topology constraints"),
    arg("--log-level", dest="log_level", default="INFO"),
))
def csi(ctx: Context, a) -> Output:
    """Serve CSI v1 (Identity, and Controller and/or Node; both when neither is named)."""
    from sds.common.config import find_conf
    from sds.common.log import setup_logging
    from sds.csi import DRIVER_NAME
    from sds.csi.server import PluginOptions, serve
    from sds.csi.topology import parse

    both = not a.controller and not a.node
    opts = PluginOptions(endpoint=a.endpoint, node_id=a.node_id, conf=str(find_conf(a.conf)),
                         entity=a.name, keyring=a.keyring, controller=a.controller or both,
                         node=a.node or both, state_dir=a.state_dir,
                         driver_name=a.driver_name or DRIVER_NAME, fs=a.fs,
                         topology=parse(a.topology),
                         **({"lease_s": a.lease_s} if a.lease_s else {}))
    setup_logging(f"csi.{a.node_id}", None, a.log_level)
    asyncio.run(serve(opts))  # the default loop: the plugin spawns mount helpers, not data
    return Output({"endpoint": a.endpoint, "stopped": True}, "CSI plugin stopped")
