"""The issue-4 filesystem benchmark: the FUSE mount side by side with a local directory.

    python benchmarks/bench_fs.py [--runs 3] [--size-mb 1024] [--seconds 5] [--dir DIR]
                                  [--local DIR] [--read-ahead-kb N]

Starts a local cluster with an MDS (or uses `--conf` of a running one), mounts it with
`sds mount`, and runs each workload `--runs` times, alternating mount and local directory
(same disk as the OSDs by default) so both see the same machine load:

- sequential write of SIZE with 1 MiB blocks, fsync at the end (dd conv=fsync);
- sequential read of it with 1 MiB blocks, page cache dropped first;
- 4 KiB random writes, each followed by fsync, on a 64 MiB file, for SECONDS;
- 4 KiB random reads (queue depth 1) of the big file, page cache dropped, for SECONDS;
- file creates: untar of a tree of small files (this repository's sources), then its
  removal (rm -rf), each timed to the end of a sync.

Prints a markdown table of medians. Drops the page cache (root only) before reads.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[1]


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3")
    except OSError:
        pass  # not root: reads may come from the page cache


def seq_write(path: Path, size: int) -> float:
    buf = os.urandom(MiB)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(size // MiB):
            os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size / MiB / (time.perf_counter() - t0)


def seq_read(path: Path, size: int) -> float:
    drop_caches()
    t0 = time.perf_counter()
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while chunk := os.read(fd, MiB):
            n += len(chunk)
    finally:
        os.close(fd)
    assert n == size, f"read {n} of {size} bytes"
    return size / MiB / (time.perf_counter() - t0)


def timed_ops(op: Callable[[], None], seconds: float) -> tuple[float, float, float]:
    """(ops/s, p50 ms, p99 ms) of `op` called back to back for `seconds`."""
    lat = []
    end = time.perf_counter() + seconds
    while (t := time.perf_counter()) < end:
        op()
        lat.append(time.perf_counter() - t)
    lat.sort()
    return (len(lat) / sum(lat), lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3)


def rand_write_fsync(path: Path, seconds: float) -> tuple[float, float, float]:
    span = 64 * MiB
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    rng = random.Random(1)
    buf = os.urandom(4096)
    try:
        os.ftruncate(fd, span)

        def op() -> None:
            os.pwrite(fd, buf, rng.randrange(span // 4096) * 4096)
            os.fsync(fd)
        return timed_ops(op, seconds)
    finally:
        os.close(fd)


def rand_read(path: Path, size: int, seconds: float) -> tuple[float, float, float]:
    drop_caches()
    fd = os.open(path, os.O_RDONLY)
    rng = random.Random(2)
    try:
        return timed_ops(lambda: os.pread(fd, 4096, rng.randrange(size // 4096) * 4096),
                         seconds)
    finally:
        os.close(fd)


def source_tarball() -> tuple[bytes, int]:
    """A tar of this repository's sources (small files), and how many files it holds."""
    out = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=out, mode="w") as tar:
        for sub in ("sds", "tests", "benchmarks", "proto"):
            for p in sorted((REPO / sub).rglob("*")):
                if "__pycache__" in p.parts or not (p.is_file() or p.is_dir()):
                    continue
                tar.add(p, arcname=str(p.relative_to(REPO)), recursive=False)
                count += 1
    return out.getvalue(), count


def untar_and_remove(directory: Path, tarball: bytes, count: int) -> tuple[float, float]:
    """(files/s of the untar, files/s of its rm -rf), each to the end of a sync."""
    target = directory / f"untar-{time.monotonic_ns()}"
    target.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["tar", "-C", str(target), "-xf", "-"], input=tarball, check=True)
    os.sync()
    t1 = time.perf_counter()
    subprocess.run(["rm", "-rf", str(target)], check=True)
    os.sync()
    return count / (t1 - t0), count / (time.perf_counter() - t1)


def run_all(where: dict[str, Path], size: int, seconds: float, runs: int) -> dict:
    tarball, count = source_tarball()
    results: dict[tuple[str, str], list] = {}

    def record(name: str, side: str, value) -> None:
        results.setdefault((name, side), []).append(value)
        print(f"  {side:6} {name}: {value}", file=sys.stderr, flush=True)

    for run in range(runs):
        print(f"run {run + 1}/{runs}", file=sys.stderr)
        for side, d in where.items():
            big = d / "big.bin"
            record("seq write", side, seq_write(big, size))
            record("seq read", side, seq_read(big, size))
            record("rand read", side, rand_read(big, size, seconds))
            big.unlink()
            record("rand write+fsync", side, rand_write_fsync(d / "rand.bin", seconds))
            (d / "rand.bin").unlink()
            created, removed = untar_and_remove(d, tarball, count)
            record("creates (untar)", side, created)
            record("removes (rm -rf)", side, removed)
    return {"results": results, "files": count}


def median(values: list) -> tuple:
    if isinstance(values[0], tuple):
        return tuple(statistics.median(v[i] for v in values) for i in range(len(values[0])))
    return (statistics.median(values),)


def table(out: dict, size: int, seconds: float, sides: list[str]) -> str:
    rows = [
        ("seq write", f"sequential write {size // MiB} MiB, 1 MiB blocks, fsync", "MiB/s"),
        ("seq read", f"sequential read {size // MiB} MiB, 1 MiB blocks, cold cache", "MiB/s"),
        ("rand write+fsync", f"4 KiB random write + fsync, QD1, {seconds:g} s",
         "IOPS (p50/p99 ms)"),
        ("rand read", f"4 KiB random read, QD1, cold cache, {seconds:g} s", "IOPS (p50/p99 ms)"),
        ("creates (untar)", f"untar {out['files']} small files + sync", "files/s"),
        ("removes (rm -rf)", "rm -rf of them + sync", "files/s"),
    ]
    lines = [f"| workload | unit | {' | '.join(sides)} |", "|---|---|" + "---|" * len(sides)]
    for key, label, unit in rows:
        cells = []
        for side in sides:
            m = median(out["results"][(key, side)])
            cells.append(f"{m[0]:,.0f}" + (f" ({m[1]:.2f}/{m[2]:.2f})" if len(m) == 3 else ""))
        lines.append(f"| {label} | {unit} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conf", help="use this running cluster (with an MDS) instead")
    ap.add_argument("--dir", help="cluster directory to create (default: a temporary one)")
    ap.add_argument("--local", help="local directory to compare with (default: next to it)")
    ap.add_argument("--read-ahead-kb", type=int, default=None,
                    help="override the mount's read-ahead (to tune it)")
    args = ap.parse_args()
    size = args.size_mb * MiB
    base = Path(tempfile.mkdtemp(prefix="sds-bench-fs-", dir="/tmp"))
    cluster_dir = Path(args.dir) if args.dir else base / "cluster"
    mnt, local_dir = base / "mnt", Path(args.local) if args.local else base / "local"
    mnt.mkdir()
    local_dir.mkdir(parents=True, exist_ok=True)
    started = False
    try:
        if args.conf:
            conf = Path(args.conf)
        else:
            from sds.cluster import local
            print(f"starting a cluster in {cluster_dir}", file=sys.stderr)
            conf = Path(local.cluster_up(cluster_dir, mds=1, remember=False,
                                         progress=lambda line: None)["conf"])
            started = True
        subprocess.run([sys.executable, "-m", "sds", "--conf", str(conf), "mount", str(mnt)],
                       check=True)
        if args.read_ahead_kb:
            bdi = next(line.split()[2] for line in open("/proc/self/mountinfo")
                       if line.split()[4] == str(mnt))
            Path(f"/sys/class/bdi/{bdi}/read_ahead_kb").write_text(str(args.read_ahead_kb))
        work = mnt / "bench"
        work.mkdir(exist_ok=True)
        out = run_all({"sds": work, "local": local_dir}, size, args.seconds, args.runs)
        print(table(out, size, args.seconds, ["sds", "local"]))
    finally:
        subprocess.run([sys.executable, "-m", "sds", "umount", str(mnt)], capture_output=True)
        if started:
            from sds.cluster import local
            local.cluster_down(cluster_dir)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
