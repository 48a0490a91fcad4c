"""The issue-2 benchmark table: `sds bench` on a fresh local 3-OSD, size-3 cluster.

    python benchmarks/bench_cluster.py [--runs 3] [--seconds 10] [--dir /tmp/sds-bench]

Starts a cluster (timing `sds cluster up` to healthy), then runs, `--runs` times each and
interleaved, the four rows of DESIGN.md section 12 through the real CLI:

    sds bench bench4m 10 write -b 4M -t 16 --no-cleanup
    sds bench bench4m 10 seq -t 16
    sds bench bench4k 10 write -b 4K -t 16 --no-cleanup
    sds bench bench4k 10 rand -t 16

and a same-run baseline of the disk (4 MiB and 4 KiB writes + fdatasync, 16 threads), so the
medians can be read against what the machine did at that moment. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROWS = [
    ("4 MiB write, 16 concurrent", "bench4m", ["write", "-b", "4M", "-t", "16", "--no-cleanup"],
     "bandwidth_mb_s", "MB/s", "~220 MiB/s"),
    ("4 MiB seq read, 16 concurrent", "bench4m", ["seq", "-t", "16"], "bandwidth_mb_s", "MB/s",
     "~730-990 MiB/s"),
    ("4 KiB write, 16 concurrent", "bench4k", ["write", "-b", "4K", "-t", "16", "--no-cleanup"],
     "iops", "IOPS", "~1,200 IOPS"),
    ("4 KiB rand read, 16 concurrent", "bench4k", ["rand", "-t", "16"], "iops", "IOPS",
     "~11,500 IOPS"),
]


def sds(conf: Path, *args: str, timeout: float = 300) -> str:
    out = subprocess.run([sys.executable, "-m", "sds", "--conf", str(conf), *args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"sds {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def disk_baseline(directory: Path, size: int, count: int) -> float:
    """MB/s of `count` fresh files of `size` bytes, written and fdatasync'd by 16 threads."""
    buf = os.urandom(size)
    directory.mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        fd = os.open(directory / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, buf)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(count)))
    elapsed = time.perf_counter() - start
    for i in range(count):
        os.unlink(directory / f"f{i}")
    return size * count / elapsed / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="sds-bench-"))
    cluster_dir = base / "cluster"
    up = subprocess.run([sys.executable, "-m", "sds", "cluster", "up", "--dir", str(cluster_dir),
                         "--format", "json"], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        raise SystemExit(f"cluster up failed: {up.stderr}")
    conf = cluster_dir / "sds.conf"
    try:
        seconds_up = json.loads(up.stdout)["seconds_to_healthy"]
        for pool in ("bench4m", "bench4k"):
            sds(conf, "pool", "create", pool, "32", "--size", "3")
        results: dict[str, list[float]] = {row[0]: [] for row in ROWS}
        disk4m, disk4k = [], []
        for run in range(args.runs):
            disk4m.append(disk_baseline(base / "disk", 4 << 20, 200))
            disk4k.append(disk_baseline(base / "disk", 4096, 2000) * 1e6 / 4096)
            for name, pool, bench_args, key, _unit, _ceph in ROWS:
                out = sds(conf, "--format", "json", "bench", pool, str(args.seconds), *bench_args)
                value = json.loads(out)[key]
                results[name].append(value)
                print(f"run {run + 1}: {name}: {value:,.1f}", file=sys.stderr, flush=True)
        print(f"\n`sds cluster up` to healthy: {seconds_up:.1f} s "
              f"(3 mons, 3 OSDs, mgr; Ceph 16.2 vstart-like: ~27 s)\n")
        print("| figure | SDS median (runs) | Ceph 16.2 here |")
        print("|---|---|---|")
        for name, _pool, _args, _key, unit, ceph in ROWS:
            vals = results[name]
            runs = ", ".join(f"{v:,.0f}" for v in vals)
            print(f"| {name} | {statistics.median(vals):,.0f} {unit} ({runs}) | {ceph} |")
        print(f"\nsame-run disk baseline, 16 threads, write+fdatasync of fresh files: "
              f"4 MiB {statistics.median(disk4m):,.0f} MB/s, "
              f"4 KiB {statistics.median(disk4k):,.0f} files/s")
    finally:
        subprocess.run([sys.executable, "-m", "sds", "cluster", "down", "--dir", str(cluster_dir)],
                       capture_output=True, timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
