"""The issue-12 CSI figures, driven over the plugin's unix socket the way the sidecars
(external-provisioner, -snapshotter) and kubelet drive it.

    .venv/bin/python benchmarks/bench_csi.py [--samples 20] [--concurrency 10]
        [--volumes 30] [--fill-mib 1024] [--runs 3] [--conf CONF --endpoint unix:///...]

Starts a local cluster with `sds cluster up --csi`'s code (3 mons, 3 OSDs, mgr, 2 MDS and
the plugin, both roles, as client.csi) unless --conf/--endpoint name a running one, then:

1. CreateVolume -> NodeStageVolume -> NodePublishVolume of a 64 MiB volume, --samples
   times one after another: median and p99 of the whole and of each step (cleanup is
   outside the timing);
2. CreateVolume throughput: --volumes volumes with --concurrency requests in flight;
3. a volume filled with --fill-mib MiB of random data through its mount (not sparse),
   then CreateSnapshot, CreateVolume from the snapshot and CreateVolume cloned from the
   volume, each timed --runs times; the baselines of the same go are the fill itself
   (write through the mount) and a plain copy of the same bytes with librados (read each
   4 MiB object, write it under a new name, 16 in flight): the clone's ratio to that copy
   is the clone's overhead over the data path.

Progress goes to stderr, a markdown table to stdout; the cluster and every mount are
removed at the end (--keep keeps the cluster directory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from sds.client import Rados
from sds.cluster.local import cluster_down, cluster_up
from sds.proto import csi_pb2 as C
from sds.proto import csi_pb2_grpc

MiB = 1 << 20
Mode = C.VolumeCapability.AccessMode
CAP = C.VolumeCapability(mount=C.VolumeCapability.MountVolume(),
                         access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))
COPY_IN_FLIGHT = 16


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def p99(values: list[float]) -> float:
    """The nearest-rank 99th percentile (of 20 samples: the largest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-99 * len(ordered) // 100) - 1))]


class Driver:
    """The gRPC stubs of one plugin socket, and the volume steps as the sidecars call them."""

    def __init__(self, endpoint: str, work: Path):
        self.channel = grpc.insecure_channel(endpoint)
        self.ctrl = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.work = work

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(grpc.RpcError):
                if self.identity.Probe(C.ProbeRequest(), timeout=10).ready.value:
                    return
            if time.monotonic() > deadline:
                raise SystemExit("the plugin never became ready")
            time.sleep(0.2)

    def create(self, name: str, size: int, source: C.VolumeContentSource | None = None):
        req = C.CreateVolumeRequest(name=name, volume_capabilities=[CAP],
                                    capacity_range=C.CapacityRange(required_bytes=size))
        if source is not None:
            req.volume_content_source.CopyFrom(source)
        return self.ctrl.CreateVolume(req, timeout=1800).volume

    def paths(self, tag: str) -> tuple[Path, Path]:
        return self.work / f"stage-{tag}" / "globalmount", self.work / "pods" / tag / "mount"

    def stage(self, vol, tag: str) -> None:
        staging, _ = self.paths(tag)
        staging.mkdir(parents=True, exist_ok=True)
        self.node.NodeStageVolume(C.NodeStageVolumeRequest(
            volume_id=vol.volume_id, staging_target_path=str(staging), volume_capability=CAP),
            timeout=300)

    def publish(self, vol, tag: str) -> Path:
        staging, target = self.paths(tag)
        self.node.NodePublishVolume(C.NodePublishVolumeRequest(
            volume_id=vol.volume_id, staging_target_path=str(staging), target_path=str(target),
            volume_capability=CAP), timeout=300)
        return target

    def release(self, vol, tag: str | None) -> None:
        """Unpublish, unstage (when TAG was staged) and delete the volume."""
        if tag is not None:
            staging, target = self.paths(tag)
            self.node.NodeUnpublishVolume(C.NodeUnpublishVolumeRequest(
                volume_id=vol.volume_id, target_path=str(target)), timeout=300)
            self.node.NodeUnstageVolume(C.NodeUnstageVolumeRequest(
                volume_id=vol.volume_id, staging_target_path=str(staging)), timeout=300)
        self.ctrl.DeleteVolume(C.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=600)


def bench_latency(d: Driver, samples: int) -> dict[str, list[float]]:
    steps: dict[str, list[float]] = {"create": [], "stage": [], "publish": [], "total": []}
    for i in range(samples):
        t0 = time.monotonic()
        vol = d.create(f"pvc-lat-{i}", 64 * MiB)
        t1 = time.monotonic()
        d.stage(vol, f"lat{i}")
        t2 = time.monotonic()
        d.publish(vol, f"lat{i}")
        t3 = time.monotonic()
        for k, v in (("create", t1 - t0), ("stage", t2 - t1), ("publish", t3 - t2),
                     ("total", t3 - t0)):
            steps[k].append(v)
        d.release(vol, f"lat{i}")
        log(f"create->publish {i + 1}/{samples}: {t3 - t0:.3f}s")
    return steps


def bench_throughput(d: Driver, volumes: int, concurrency: int, run: int) -> float:
    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.monotonic()
        made = list(pool.map(lambda i: d.create(f"pvc-tp-{run}-{i}", 64 * MiB), range(volumes)))
        seconds = time.monotonic() - t0
        list(pool.map(lambda v: d.release(v, None), made))
    log(f"{volumes} volumes, {concurrency} in flight: {seconds:.2f}s")
    return volumes / seconds


def fill(target: Path, size: int) -> float:
    """Seconds to write SIZE bytes of random data (fsync'd) into the mounted volume."""
    chunk = os.urandom(4 * MiB)
    t0 = time.monotonic()
    with open(target / "data.bin", "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return time.monotonic() - t0


async def rados_copy(conf: str, pool: str, size: int) -> float:
    """Seconds to copy SIZE bytes as 4 MiB objects with librados (read + write_full, 16
    in flight): the data path a clone cannot beat."""
    async with Rados(conf) as r:
        io = r.ioctx(pool)
        count = size // (4 * MiB)
        data = os.urandom(4 * MiB)
        sem = asyncio.Semaphore(COPY_IN_FLIGHT)

        async def put(i: int) -> None:
            async with sem:
                await io.write_full(f"bench-src-{i}", data)

        async def copy(i: int) -> None:
            async with sem:
                await io.write_full(f"bench-dst-{i}", await io.read(f"bench-src-{i}"))

        async def remove(i: int) -> None:
            async with sem:
                for name in (f"bench-src-{i}", f"bench-dst-{i}"):
                    with contextlib.suppress(Exception):
                        await io.remove(name)

        await asyncio.gather(*map(put, range(count)))
        t0 = time.monotonic()
        await asyncio.gather(*map(copy, range(count)))
        seconds = time.monotonic() - t0
        await asyncio.gather(*map(remove, range(count)))
        return seconds


def bench_clone(d: Driver, conf: str, data_pool: str, size: int, runs: int) -> dict:
    out: dict[str, list[float]] = {"fill": [], "rados_copy": [], "snapshot": [],
                                   "from_snapshot": [], "clone": []}
    capacity = size + 256 * MiB
    for run in range(runs):
        src = d.create(f"pvc-src-{run}", capacity)
        d.stage(src, f"src{run}")
        out["fill"].append(fill(d.publish(src, f"src{run}"), size))
        d.node.NodeUnpublishVolume(C.NodeUnpublishVolumeRequest(
            volume_id=src.volume_id, target_path=str(d.paths(f"src{run}")[1])), timeout=300)
        d.node.NodeUnstageVolume(C.NodeUnstageVolumeRequest(
            volume_id=src.volume_id, staging_target_path=str(d.paths(f"src{run}")[0])),
            timeout=300)
        out["rados_copy"].append(asyncio.run(rados_copy(conf, data_pool, size)))
        t0 = time.monotonic()
        snap = d.ctrl.CreateSnapshot(C.CreateSnapshotRequest(
            source_volume_id=src.volume_id, name=f"snap-{run}"), timeout=1800).snapshot
        out["snapshot"].append(time.monotonic() - t0)
        t0 = time.monotonic()
        restored = d.create(f"pvc-restore-{run}", capacity, C.VolumeContentSource(
            snapshot=C.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id)))
        out["from_snapshot"].append(time.monotonic() - t0)
        t0 = time.monotonic()
        clone = d.create(f"pvc-clone-{run}", capacity, C.VolumeContentSource(
            volume=C.VolumeContentSource.VolumeSource(volume_id=src.volume_id)))
        out["clone"].append(time.monotonic() - t0)
        log(f"run {run + 1}: fill {out['fill'][-1]:.2f}s, rados copy "
            f"{out['rados_copy'][-1]:.2f}s, snapshot {out['snapshot'][-1]:.3f}s, from "
            f"snapshot {out['from_snapshot'][-1]:.2f}s, clone {out['clone'][-1]:.2f}s")
        for v in (restored, clone):
            d.release(v, None)
        d.ctrl.DeleteSnapshot(C.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id),
                              timeout=600)
        d.release(src, None)
    return out


def table(lat: dict, tput: list[float], clone: dict, args) -> str:
    med = statistics.median
    rows = ["| figure | median | p99 / spread | unit |", "|---|---|---|---|"]
    for k in ("total", "create", "stage", "publish"):
        name = "CreateVolume -> NodePublish" if k == "total" else f"  of which {k}"
        rows.append(f"| {name} (n={len(lat[k])}) | {med(lat[k]):.3f} | {p99(lat[k]):.3f} | s |")
    rows.append(f"| CreateVolume, {args.concurrency} in flight ({args.volumes} volumes, "
                f"runs={len(tput)}) | {med(tput):.1f} | {min(tput):.1f}-{max(tput):.1f} | "
                "volumes/s |")
    mib = args.fill_mib
    for k, name in (("fill", f"fill {mib} MiB through the mount (baseline)"),
                    ("rados_copy", f"librados copy of {mib} MiB, 16 in flight (baseline)"),
                    ("snapshot", f"CreateSnapshot of the {mib} MiB volume"),
                    ("from_snapshot", "CreateVolume from that snapshot"),
                    ("clone", f"CreateVolume cloned from the {mib} MiB volume")):
        v = clone[k]
        rows.append(f"| {name} (runs={len(v)}) | {med(v):.3f} | {min(v):.3f}-{max(v):.3f} "
                    "| s |")
    copy = med(clone["rados_copy"])
    rows.append(f"| clone / librados copy | {med(clone['clone']) / copy:.2f} | | ratio |")
    rows.append(f"| from snapshot / librados copy | {med(clone['from_snapshot']) / copy:.2f} "
                "| | ratio |")
    rows.append(f"| clone throughput | {mib / med(clone['clone']):.0f} | | MiB/s |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--volumes", type=int, default=30)
    ap.add_argument("--fill-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conf", help="a running cluster's sds.conf (with --endpoint)")
    ap.add_argument("--endpoint", help="its plugin, unix:///path/csi.sock")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directory")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sds-bench-csi-", dir="/tmp"))
    cluster_dir = base / "cluster"
    started = False
    d = None
    try:
        if args.conf:
            conf, endpoint = args.conf, args.endpoint
        else:
            log(f"starting a cluster with its CSI plugin in {cluster_dir}")
            conf = cluster_up(cluster_dir, mds=2, csi=True, remember=False,
                              progress=lambda line: None)["conf"]
            started = True
            endpoint = f"unix://{cluster_dir / 'csi.0' / 'csi.sock'}"
        d = Driver(endpoint, base / "work")
        d.wait_ready()
        data_pool = asyncio.run(_data_pool(conf))
        lat = bench_latency(d, args.samples)
        tput = [bench_throughput(d, args.volumes, args.concurrency, run)
                for run in range(args.runs)]
        clone = bench_clone(d, conf, data_pool, args.fill_mib * MiB, args.runs)
        print(table(lat, tput, clone, args))
    finally:
        if d is not None:
            d.channel.close()
        _unmount_all(base)
        if started:
            cluster_down(cluster_dir)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


async def _data_pool(conf: str) -> str:
    async with Rados(conf) as r:
        return (await r.mon_command({"prefix": "fs ls"}))["filesystems"][0]["data_pool"]


def _unmount_all(under: Path) -> None:
    """Detach whatever a failed run left mounted under UNDER (binds first)."""
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(f"{under}/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
