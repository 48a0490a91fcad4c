"""`sds bench POOL SECONDS write|seq|rand`: throughput, IOPS and latency, like `rados bench`.

The write phase writes `benchmark_data_<host>_<pid>_object<N>` with CONCURRENCY
writes in flight and, with --no-cleanup, records what it wrote in the object
`benchmark_last_metadata` so that a later `seq` or `rand` run reads them back.
A progress line is printed each second; the summary gives bandwidth, IOPS and
latency avg/min/max/p50/p95/p99 in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from sds.common.errors import InvalidArgument, NotFound, SdsError

METADATA_OBJECT = "benchmark_last_metadata"
MODES = ("write", "seq", "rand")
MB = 1 << 20
DEFAULT_OBJECT_SIZE = 4 * MB
DEFAULT_CONCURRENCY = 16
HEADER = "  sec Cur ops   started  finished  avg MB/s  cur MB/s last lat(s)  avg lat(s)"
HEADER_EVERY = 20

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int, lo: int = 1, hi: int = 1 << 30) -> int:
    """"4K" / "4KiB" / "4M" / "4096" -> bytes (binary units, as rados bench)."""
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE_RE.match(str(text))
        if not match:
            raise InvalidArgument(f"invalid size '{text}': use bytes or a K/M/G/T suffix, "
                                  "e.g. 4K")
        value = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < lo or value > hi:
        raise InvalidArgument(f"invalid size '{text}': must be between {lo} and {hi} bytes")
    return value


def object_prefix(host: str | None = None, pid: int | None = None) -> str:
    host = host or socket.gethostname()
    pid = os.getpid() if pid is None else pid
    return f"benchmark_data_{host}_{pid}_object"


# ---------------------------------------------------------------- statistics

def percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); [] -> 0."""
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def _stddev(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(mode: str, object_size: int, concurrency: int, elapsed: float,
              latencies: list[float], total_bytes: int, per_second_mb: list[float]) -> dict:
    """The JSON summary of one run; latencies in seconds in, milliseconds out."""
    lat = sorted(latencies)
    ops = len(lat)
    elapsed = max(elapsed, 1e-9)
    if not per_second_mb and ops:  # shorter than a second: one sample, the whole run
        per_second_mb = [total_bytes / MB / elapsed]

    def ms(value: float) -> float:
        return round(value * 1000.0, 3)

    return {
        "mode": mode,
        "object_size": object_size,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "ops": ops,
        "bytes": total_bytes,
        "bandwidth_mb_s": round(total_bytes / MB / elapsed, 3),
        "bandwidth_stddev_mb_s": round(_stddev(per_second_mb), 3),
        "bandwidth_max_mb_s": round(max(per_second_mb, default=0.0), 3),
        "bandwidth_min_mb_s": round(min(per_second_mb, default=0.0), 3),
        "iops": round(ops / elapsed, 2),
        "latency_ms": {
            "avg": ms(sum(lat) / ops) if ops else 0.0,
            "min": ms(lat[0]) if ops else 0.0,
            "max": ms(lat[-1]) if ops else 0.0,
            "stddev": ms(_stddev(lat)),
            "p50": ms(percentile(lat, 50)),
            "p95": ms(percentile(lat, 95)),
            "p99": ms(percentile(lat, 99)),
        },
    }


def summary_text(s: dict) -> str:
    verb = {"write": "writes", "seq": "reads", "rand": "reads"}[s["mode"]]
    lat = s["latency_ms"]
    rows = [
        ("Total time run", f"{s['seconds']:.3f}"),
        (f"Total {verb} made", s["ops"]),
        ("Object size", s["object_size"]),
        ("Concurrency", s["concurrency"]),
        ("Bandwidth (MB/sec)", f"{s['bandwidth_mb_s']:.3f}"),
        ("Stddev Bandwidth", f"{s['bandwidth_stddev_mb_s']:.3f}"),
        ("Max bandwidth (MB/sec)", f"{s['bandwidth_max_mb_s']:.3f}"),
        ("Min bandwidth (MB/sec)", f"{s['bandwidth_min_mb_s']:.3f}"),
        ("Average IOPS", f"{s['iops']:.0f}"),
        ("Average Latency(ms)", f"{lat['avg']:.3f}"),
        ("Stddev Latency(ms)", f"{lat['stddev']:.3f}"),
        ("Min latency(ms)", f"{lat['min']:.3f}"),
        ("Max latency(ms)", f"{lat['max']:.3f}"),
        ("p50 latency(ms)", f"{lat['p50']:.3f}"),
        ("p95 latency(ms)", f"{lat['p95']:.3f}"),
        ("p99 latency(ms)", f"{lat['p99']:.3f}"),
    ]
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{(k + ':').ljust(width)}{v}" for k, v in rows)


def progress_line(sec: int, cur_ops: int, started: int, finished: int, avg_mb: float,
                  cur_mb: float, last_lat: float | None, avg_lat: float) -> str:
    last = f"{last_lat:11.6f}" if last_lat is not None else f"{'-':>11}"
    return (f"{sec:5d} {cur_ops:7d} {started:9d} {finished:9d} {avg_mb:9.3f} {cur_mb:9.3f} "
            f"{last} {avg_lat:11.6f}")


# ---------------------------------------------------------------- one run

@dataclass
class Recorder:
    """Counters shared by the workers and the once-a-second progress printer."""

    clock: Callable[[], float]
    started: int = 0
    finished: int = 0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)
    last_latency: float | None = None
    per_second_mb: list[float] = field(default_factory=list)
    _bytes_at_tick: int = 0

    async def timed(self, op: Awaitable[Any], nbytes: int) -> Any:
        self.started += 1
        t0 = self.clock()
        result = await op
        latency = self.clock() - t0
        self.finished += 1
        self.bytes += nbytes
        self.latencies.append(latency)
        self.last_latency = latency
        return result

    def tick(self, sec: int, elapsed: float) -> str:
        cur_mb = (self.bytes - self._bytes_at_tick) / MB
        self._bytes_at_tick = self.bytes
        self.per_second_mb.append(cur_mb)
        avg_lat = sum(self.latencies) / len(self.latencies) if self.latencies else 0.0
        return progress_line(sec, self.started - self.finished, self.started, self.finished,
                             self.bytes / MB / max(elapsed, 1e-9), cur_mb, self.last_latency,
                             avg_lat)


async def _workers(count: int, worker: Callable[[], Awaitable[None]]) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(worker())
    except BaseExceptionGroup as eg:  # surface the first real error, as one line
        first = eg.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def _with_progress(rec: Recorder, body: Awaitable[None], out: TextIO | None) -> float:
    """Run the phase while printing a line per second; returns the phase's duration."""
    start = rec.clock()

    async def printer() -> None:
        sec = 0
        while True:
            if out is not None and sec % HEADER_EVERY == 0:
                print(HEADER, file=out, flush=True)
            await asyncio.sleep(max(0.0, start + sec + 1 - rec.clock()))
            sec += 1
            line = rec.tick(sec, rec.clock() - start)
            if out is not None:
                print(line, file=out, flush=True)

    ticker = asyncio.create_task(printer())
    try:
        await body
    finally:
        ticker.cancel()
        try:
            await ticker
        except asyncio.CancelledError:
            pass
    return rec.clock() - start


async def write_phase(ioctx: Any, seconds: float, object_size: int, concurrency: int,
                      prefix: str, out: TextIO | None, clock=time.monotonic) -> tuple[dict, list[str]]:
    data = os.urandom(object_size)
    rec = Recorder(clock)
    written: dict[int, str] = {}
    next_index = iter(range(1 << 62))
    deadline = clock() + seconds

    async def worker() -> None:
        while clock() < deadline:
            index = next(next_index)
            name = f"{prefix}{index}"
            await rec.timed(ioctx.write_full(name, data), object_size)
            written[index] = name

    elapsed = await _with_progress(rec, _workers(concurrency, worker), out)
    names = [written[i] for i in sorted(written)]
    stats = summarize("write", object_size, concurrency, elapsed, rec.latencies, rec.bytes,
                      rec.per_second_mb)
    return stats, names


async def read_phase(ioctx: Any, mode: str, seconds: float, concurrency: int, meta: dict,
                     out: TextIO | None, clock=time.monotonic, rng: random.Random | None = None
                     ) -> dict:
    names, size = list(meta["names"]), int(meta["object_size"])
    if not names:
        raise NotFound("the last benchmark wrote no objects: run a longer `write --no-cleanup`")
    rng = rng or random.Random()
    rec = Recorder(clock)
    order = iter(names)
    deadline = clock() + seconds

    async def worker() -> None:
        while clock() < deadline:
            if mode == "seq":
                name = next(order, None)
                if name is None:
                    return
            else:
                name = rng.choice(names)
            data = await rec.timed(ioctx.read(name), size)
            if len(data) != size:
                raise SdsError(f"benchmark object {name} has {len(data)} bytes, expected {size}")

    elapsed = await _with_progress(rec, _workers(concurrency, worker), out)
    return summarize(mode, size, concurrency, elapsed, rec.latencies, rec.bytes, rec.per_second_mb)


async def load_metadata(ioctx: Any, pool: str) -> dict:
    try:
        raw = await ioctx.read(METADATA_OBJECT)
    except NotFound:
        raise NotFound(f"no benchmark data in pool '{pool}': run `sds bench {pool} 10 write "
                       "--no-cleanup` first") from None
    try:
        meta = json.loads(bytes(raw))
        meta["names"], meta["object_size"]  # noqa: B018 - validate the shape
    except (ValueError, KeyError, TypeError):
        raise SdsError(f"{METADATA_OBJECT} in pool '{pool}' is not benchmark metadata") from None
    return meta


async def remove_objects(ioctx: Any, names: list[str], concurrency: int) -> int:
    pending = iter(names)
    removed = 0

    async def worker() -> None:
        nonlocal removed
        for name in pending:
            try:
                await ioctx.remove(name)
                removed += 1
            except NotFound:
                pass

    await _workers(max(1, concurrency), worker)
    return removed


async def cleanup(ioctx: Any, pool: str, concurrency: int = DEFAULT_CONCURRENCY) -> dict:
    """Remove the objects the last `write --no-cleanup` left, and its metadata."""
    meta = await load_metadata(ioctx, pool)
    removed = await remove_objects(ioctx, list(meta["names"]), concurrency)
    await remove_objects(ioctx, [METADATA_OBJECT], 1)
    return {"pool": pool, "removed": removed}


async def run(ioctx: Any, pool: str, mode: str, seconds: float, object_size: int = DEFAULT_OBJECT_SIZE,
              concurrency: int = DEFAULT_CONCURRENCY, no_cleanup: bool = False,
              out: TextIO | None = None, clock=time.monotonic, prefix: str | None = None) -> dict:
    """One benchmark run; returns the summary dict (see `summarize`)."""
    if mode not in MODES:
        raise InvalidArgument(f"unknown bench mode '{mode}' (use {', '.join(MODES)})")
    if not seconds > 0:
        raise InvalidArgument(f"bench needs a positive number of seconds, not {seconds}")
    if concurrency < 1:
        raise InvalidArgument(f"concurrency must be at least 1, not {concurrency}")
    if mode != "write":
        meta = await load_metadata(ioctx, pool)
        if out is not None:
            print(f"reading {len(meta['names'])} objects of {meta['object_size']} bytes, "
                  f"{concurrency} concurrent reads, for up to {seconds:g} seconds", file=out)
        return await read_phase(ioctx, mode, seconds, concurrency, meta, out, clock)
    prefix = prefix or object_prefix()
    if out is not None:
        print(f"writing {object_size} byte objects to pool '{pool}', {concurrency} concurrent "
              f"writes, for up to {seconds:g} seconds; object prefix: {prefix}", file=out)
    stats, names = await write_phase(ioctx, seconds, object_size, concurrency, prefix, out, clock)
    if no_cleanup:
        meta = {"version": 1, "prefix": prefix, "object_size": object_size, "names": names}
        await ioctx.write_full(METADATA_OBJECT, json.dumps(meta).encode())
        stats["cleanup"] = False
    else:
        if out is not None:
            print("cleaning up (deleting benchmark objects)", file=out)
        t0 = clock()
        await remove_objects(ioctx, names, concurrency)
        stats["cleanup"] = True
        stats["cleanup_seconds"] = round(clock() - t0, 3)
    return stats
