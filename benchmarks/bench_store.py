"""Object-store micro-benchmark: write_full and read of 4 KiB and 4 MiB objects.

    python benchmarks/bench_store.py [--dir DIR] [--seconds 1] [--repeat 3] [--modes lmdb,extent,auto]
        [--sizes 4K,4M]

Modes: `lmdb` keeps all data inline in LMDB (threshold = infinity), `extent` puts every
write in a copy-on-write extent file (threshold = 1 byte), `auto` is the default threshold
(sds.osd.store.durable.DEFAULT_EXTENT_THRESHOLD), `memory` is MemoryStore. Each write is
one transaction (write_full + touch) applied by `concurrency` concurrent tasks, so
concurrency > 1 measures group commit. Pattern `new` writes a new object each time (like
`rados bench write`); `overwrite` cycles over 16 objects (freed extents get reused).
Reads are synchronous, one at a time. Extent data is written and read with O_DIRECT where
the filesystem allows it, so 4M reads come from the disk, not the page cache.
CPU-s/GB is user + sys CPU seconds of the whole process (all threads) per GB moved: on a
2-core box shared by 3 OSDs and a client it bounds cluster throughput more than MB/s does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time

from sds.osd.store.base import Transaction
from sds.osd.store.durable import DEFAULT_EXTENT_THRESHOLD, DurableStore
from sds.osd.store.memory import MemoryStore

KiB, MiB = 1 << 10, 1 << 20
THRESHOLDS = {"lmdb": 1 << 62, "extent": 1, "auto": DEFAULT_EXTENT_THRESHOLD}


def cpu_seconds() -> float:
    """user + sys CPU of this process, all threads (writer, sync pool, preallocation)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def bench_writes(store, size: int, concurrency: int, seconds: float, nobjs: int | None):
    payload = os.urandom(size)
    await store.apply(Transaction().create_collection("b"))
    deadline = time.perf_counter() + seconds
    count = 0

    async def worker(w: int) -> None:
        nonlocal count
        i = w
        while time.perf_counter() < deadline:
            oid = f"obj{i % nobjs if nobjs else i}"
            await store.apply(Transaction().write_full("b", oid, payload).touch("b", oid, 1.0, i))
            count += 1
            i += concurrency

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return count, time.perf_counter() - t0


def bench_reads(store, size: int, seconds: float, nobjs: int):
    deadline = time.perf_counter() + seconds
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() < deadline:
        data = store.read("b", f"obj{count % nobjs}")
        assert len(data) == size
        count += 1
    return count, time.perf_counter() - t0


def baselines(base: str, seconds: float) -> None:
    """Raw figures of this disk right now, to read the store's figures against."""
    import lmdb

    d = tempfile.mkdtemp(dir=base)
    env = lmdb.open(d, map_size=1 << 32)
    v4k, v4m = os.urandom(4 * KiB), os.urandom(4 * MiB)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        with env.begin(write=True) as t:
            t.put(b"k%d" % (n % 100), v4k)
        n += 1
    print(f"baseline: raw LMDB 4 KiB put + sync commit: {n / (time.perf_counter() - t0):,.0f}/s")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        with env.begin(write=True) as t:
            t.put(b"k%d" % (n % 16), v4m)
        n += 1
    dt = time.perf_counter() - t0
    print(f"baseline: raw LMDB 4 MiB put + sync commit: {n / dt:,.0f}/s {n * 4 * MiB / dt / 1e6:,.0f} MB/s")
    env.close()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        p = os.path.join(d, f"f{n % 16}")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, v4m)
        os.fdatasync(fd)
        os.close(fd)
        n += 1
    dt = time.perf_counter() - t0
    print(f"baseline: new file 4 MiB write + fdatasync: {n / dt:,.0f}/s {n * 4 * MiB / dt / 1e6:,.0f} MB/s")
    shutil.rmtree(d, ignore_errors=True)


async def run_case(mode: str, size: int, concurrency: int, pattern: str, seconds: float, base: str):
    path = tempfile.mkdtemp(dir=base)
    store = MemoryStore() if mode == "memory" else DurableStore(path, extent_threshold=THRESHOLDS[mode])
    nobjs = 16 if pattern == "overwrite" else None
    try:
        c0 = cpu_seconds()
        n, dt = await bench_writes(store, size, concurrency, seconds, nobjs)
        wcpu = (cpu_seconds() - c0) / (n * size / 1e9)
        commits = getattr(store, "commits", n) or 1
        w = (n / dt, n * size / dt / 1e6, n / commits, wcpu)
        r = None
        if concurrency == 1:
            c0 = cpu_seconds()
            rn, rdt = bench_reads(store, size, seconds / 2, min(nobjs or n, n))
            r = (rn / rdt, rn * size / rdt / 1e6, (cpu_seconds() - c0) / (rn * size / 1e9))
        return w, r
    finally:
        await store.close()
        shutil.rmtree(path, ignore_errors=True)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="where to create stores (default: a temp dir)")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--modes", default="lmdb,extent,auto")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--patterns", default="new,overwrite",
                    help="new: every write creates an object; overwrite: cycle over 16 objects")
    ap.add_argument("--sizes", default="4K,4M", help="object sizes, e.g. 4K,256K,4M")
    ap.add_argument("--repeat", type=int, default=3, help="median of this many interleaved runs")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench_store.", dir=args.dir)
    print(f"load average: {os.getloadavg()[0]:.2f} (other work on this machine skews figures)")
    if not args.no_baseline:
        baselines(base, args.seconds)
    print(f"{'mode':7} {'size':>6} {'conc':>4} {'objects':>9} {'write ops/s':>12} {'write MB/s':>11} "
          f"{'txn/commit':>10} {'wCPU-s/GB':>9} {'read ops/s':>11} {'read MB/s':>10} {'rCPU-s/GB':>9}")
    sizes = [int(x[:-1]) * (MiB if x[-1] in "Mm" else KiB) for x in args.sizes.split(",")]
    cases = [(m, sz, c, p) for sz in sizes for p in args.patterns.split(",") for c in (1, 16)
             for m in args.modes.split(",")]
    results: dict[tuple, list] = {case: [] for case in cases}
    try:
        for _ in range(args.repeat):  # interleaved, so load bursts hit every mode alike
            for case in cases:
                results[case].append(await run_case(*case, args.seconds, base))
        for (mode, size, conc, pattern), runs in results.items():
            runs.sort(key=lambda r: r[0][0])
            (wops, wmb, per, _), _ = runs[len(runs) // 2]
            wcpu = sorted(w[3] for w, _ in runs)[len(runs) // 2]  # median on its own
            reads = sorted((r for _, r in runs if r), key=lambda r: r[0])
            r = reads[len(reads) // 2] if reads else None
            if r:
                rcpu = sorted(x[2] for x in reads)[len(reads) // 2]
                rtxt = f"{r[0]:11,.0f} {r[1]:10,.0f} {rcpu:9.2f}"
            else:
                rtxt = f"{'':11} {'':10} {'':9}"
            label = f"{size // KiB}K" if size % MiB else f"{size // MiB}M"
            print(f"{mode:7} {label:>6} {conc:4d} {pattern:>9} {wops:12,.0f} {wmb:11,.1f} "
                  f"{per:10.1f} {wcpu:9.2f} {rtxt}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
