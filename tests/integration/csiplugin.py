"""The CSI plugin as a real process on a unix socket, driven by a gRPC client the way
kubelet and the external-provisioner drive it; always stopped, its mounts always gone.

    with plugin(cluster, workdir) as p:      # `sds csi` subprocess, both roles
        p.controller.CreateVolume(...)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fsmounts import processes_mentioning

from sds.client import Rados
from sds.client.fsadmin import FsAdmin
from sds.csi.journal import Journal
from sds.csi.mounts import mount_entry
from sds.proto import csi_pb2, csi_pb2_grpc

START_TIMEOUT_S = 60
Mode = csi_pb2.VolumeCapability.AccessMode
GiB, MiB = 1 << 30, 1 << 20
SIDECAR = {"csi.storage.k8s.io/pvc/name": "data", "csi.storage.k8s.io/pvc/namespace": "default",
           "csi.storage.k8s.io/pv/name": "pvc-1234"}


def mount_cap(mode=Mode.SINGLE_NODE_WRITER) -> csi_pb2.VolumeCapability:
    return csi_pb2.VolumeCapability(mount=csi_pb2.VolumeCapability.MountVolume(),
                                    access_mode=Mode(mode=mode))


class Plugin:
    def __init__(self, cluster, workdir: Path, node_id: str = "node-1", *roles: str):
        self.cluster, self.workdir, self.node_id, self.roles = cluster, Path(workdir), node_id, roles
        self.sock = self.workdir / f"{node_id}.sock"
        self.state = self.workdir / f"state-{node_id}"
        self.log = self.workdir / f"{node_id}.log"
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None

    def start(self) -> Plugin:
        self.sock.unlink(missing_ok=True)  # left by a killed predecessor
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sds", "--conf", str(self.cluster.conf), "csi",
                 "--endpoint", f"unix://{self.sock}", "--node-id", self.node_id,
                 "--state-dir", str(self.state), *self.roles],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.sock.exists():
            assert self.proc.poll() is None, f"plugin exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "plugin socket never appeared"
            time.sleep(0.05)
        self.channel = grpc.insecure_channel(f"unix://{self.sock}")
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.controller = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)
        while not self._ready():
            assert time.monotonic() < deadline, "plugin never became ready"
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        try:
            return self.identity.Probe(csi_pb2.ProbeRequest(), timeout=30).ready.value
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return False

    def kill(self) -> None:
        """kill -9 (a crash): the FUSE mount processes it started live on."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def create(csi, name, size=GiB, source=None, **params):
    req = csi_pb2.CreateVolumeRequest(
        name=name, capacity_range=csi_pb2.CapacityRange(required_bytes=size),
        volume_capabilities=[mount_cap()], parameters={**SIDECAR, **params})
    if source is not None:
        req.volume_content_source.CopyFrom(source)
    return csi.controller.CreateVolume(req, timeout=120).volume


def stage_publish(csi, workdir, vol, tag, readonly=False, mode=Mode.SINGLE_NODE_WRITER,
                  cap: csi_pb2.VolumeCapability | None = None):
    """NodeStage then NodePublish as kubelet does (CAP, else a mount of MODE): the paths."""
    cap = cap or mount_cap(mode)
    staging = workdir / f"stage-{tag}" / "globalmount"
    target = workdir / "pods" / tag / "mount"
    staging.mkdir(parents=True, exist_ok=True)
    csi.node.NodeStageVolume(csi_pb2.NodeStageVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=str(staging),
        volume_capability=cap, volume_context=vol.volume_context), timeout=120)
    csi.node.NodePublishVolume(csi_pb2.NodePublishVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=str(staging), target_path=str(target),
        volume_capability=cap, readonly=readonly), timeout=60)
    return staging, target


def unpublish_unstage(csi, vol, staging, target):
    """NodeUnpublish and NodeUnstage, each twice (idempotent): the target is gone."""
    for _ in range(2):  # idempotent
        csi.node.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(
            volume_id=vol.volume_id, target_path=str(target)), timeout=60)
    assert not target.exists()
    for _ in range(2):
        csi.node.NodeUnstageVolume(csi_pb2.NodeUnstageVolumeRequest(
            volume_id=vol.volume_id, staging_target_path=str(staging)), timeout=60)


def create_retrying(csi, name, size=GiB, source=None, timeout=120.0, **params):
    """CreateVolume retried on ABORTED, as the external-provisioner does (with backoff)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return create(csi, name, size, source, **params)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ABORTED or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


async def leftovers(conf) -> tuple[list[str], list[str]]:
    async with Rados(conf) as r, FsAdmin(r) as fs:
        fsinfo = (await r.mon_command({"prefix": "fs ls"}))["filesystems"][0]
        journal = Journal(r.ioctx(fsinfo["metadata_pool"]))
        return (await fs.subvolume_ls("csi"),
                await journal.volumes() + await journal.snapshots())


def cleanup_mounts(under: Path) -> None:
    """Detach every mount under UNDER (binds first, deepest first) and kill their clients."""
    under = os.path.abspath(under)
    for _ in range(5):
        with open("/proc/mounts") as f:
            points = [line.split()[1] for line in f
                      if line.split()[1] == under or line.split()[1].startswith(under + "/")]
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            for pid in processes_mentioning(point):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["umount", "-l", point], capture_output=True)
            if mount_entry(point) is not None:
                subprocess.run(["fusermount3", "-uz", point], capture_output=True)
    raise AssertionError(f"mounts left under {under}")


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A directory under /tmp (short: unix socket paths) whose mounts are always removed."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield d
    finally:
        cleanup_mounts(d)  # raises while anything is still mounted there: nothing is lost
        for _ in range(10):  # exiting mount helpers may still write their last log lines
            shutil.rmtree(d, ignore_errors=True)
            if not d.exists():
                break
            time.sleep(0.5)


def workdir_fixture(prefix: str, mode: int | None = None):
    """A module's `workdir` fixture: a scratch_dir (chmod MODE) for its sockets and mounts."""
    @pytest.fixture(scope="module")
    def workdir() -> Iterator[Path]:
        with scratch_dir(prefix) as d:
            if mode is not None:
                os.chmod(d, mode)
            yield d

    return workdir


@contextlib.contextmanager
def plugin(cluster, workdir: Path, node_id: str = "node-1", *roles: str) -> Iterator[Plugin]:
    p = Plugin(cluster, workdir, node_id, *roles)
    try:
        yield p.start()
    finally:
        p.stop()
