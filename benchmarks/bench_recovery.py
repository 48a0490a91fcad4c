"""The issue-3 recovery figures: kill -9 one of 4 OSDs and time the way back to active+clean.

    .venv/bin/python benchmarks/bench_recovery.py [--data-mib 512] [--runs 1] [--seconds 10]
                                                  [--format json] [--dir /tmp/x] [--keep]

Each run starts a fresh local cluster (3 mons, mgr, 4 OSDs, no MDS; one pool, size 3,
min_size 2) with short failure-detection intervals (EXTRA_CONF), then:

1. baseline: 4 MiB write_full, 16 in flight, for --seconds, no failure (into a pool of its
   own, removed afterwards, so the cluster then holds exactly the fill below);
2. fills --data-mib MiB of 4 MiB objects, waits for active+clean and a quiet OSDMap (no
   balancer move for a balancer period), kill -9s the lowest-numbered OSD holding data and
   times kill -> marked down (`osd dump` up=0), down -> out (`osd dump` in=0) and
   out -> every PG active+clean on 3 OSDs without the dead one, seen two ways: `pg stat` /
   `pg dump` (the mgr's digest, what an operator sees) and each PG's primary (`pg query`,
   no mgr in between; the more precise figure). The bytes to re-replicate are one copy of
   each fill object whose PG had the dead OSD among its OSDs (object names mapped with the
   client's placement; the mgr's PG byte counts and recovery object totals are printed as
   cross-checks); recovery throughput = those bytes / (out -> clean);
3. the baseline workload again, connected before the kill and released the moment the OSD
   is seen out, until the PGs are clean (at most --load-max-seconds); the figure is the
   bytes acknowledged in [release, clean by the primaries] / that window, and its ratio to
   the baseline (note: 3 OSDs serve it instead of 4).

The writers run in a child process (this file with --writer) so that the poller's timing is
not skewed by the client's CPU; they stamp each acknowledged write with the wall clock.
Progress goes to stderr, a markdown table (medians over --runs) to stdout. Every wait is
bounded; a cluster that never gets clean fails the run with the stuck PGs and the daemons'
log tails (the cluster directory is then kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import itertools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sds.client import Rados
from sds.cluster.local import LocalCluster, cluster_up, find_daemon_processes
from sds.common.errors import SdsError
from sds.crush.placement import pg_name
from sds.mgr.daemon import BALANCE_INTERVAL_S

MIB = 1 << 20
OBJECT_SIZE = 4 * MIB
CONCURRENCY = 16
POOL = "recovery"
BASELINE_POOL = "baseline"
OSDS = 4
POOL_SIZE = 3
EXTRA_CONF = {
    "osd_heartbeat_interval": 0.5,
    "osd_heartbeat_grace": 3.0,
    "mon_osd_down_out_interval": 6.0,
    "osd_stats_interval": 0.5,
}
POLL_S = 0.1
SETTLE_TIMEOUT_S = 180.0     # pool creation, balancing, fill settling
DOWN_TIMEOUT_S = 60.0        # kill -> down, down -> out (each)
CLEAN = "active+clean"


class BenchError(Exception):
    """A run could not be measured; the message says what the cluster did instead."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the write workload (child)


async def write_load(conf: str, pool: str, prefix: str, seconds: float, max_bytes: int) -> dict:
    """4 MiB write_full, CONCURRENCY in flight, until `seconds`, `max_bytes` or SIGTERM.

    Connects, prints "ready", and starts writing on SIGUSR1 (so the parent can start it
    ahead of time and release it at a precise moment). Returns {"start", "end",
    "acks": [wall time of each acknowledged write], "errors", ...}."""
    data = os.urandom(OBJECT_SIZE)
    stop, go = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: (stop.set(), go.set()))
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    acks: list[float] = []
    errors: list[str] = []
    index = itertools.count()
    async with Rados(conf) as r:
        io = r.ioctx(pool)
        print("ready", flush=True)
        await go.wait()
        start = time.time()
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while not stop.is_set() and time.monotonic() < deadline:
                i = next(index)
                if max_bytes and i * OBJECT_SIZE >= max_bytes:
                    return
                name = f"{prefix}{i}"
                try:
                    await io.write_full(name, data)
                except SdsError as e:
                    errors.append(f"{name}: {type(e).__name__}: {e}")
                    continue
                acks.append(time.time())

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        end = time.time()
    return {"start": start, "end": end, "acks": acks, "object_size": OBJECT_SIZE,
            "objects": len(acks), "errors": len(errors), "first_errors": errors[:5]}


class Writer:
    """The workload in a child process: start(), then stop() (SIGTERM) or wait()."""

    def __init__(self, conf: Path, pool: str, prefix: str, seconds: float, max_bytes: int = 0):
        self.argv = [sys.executable, str(Path(__file__).resolve()), "--writer",
                     "--conf", str(conf), "--pool", pool, "--prefix", prefix,
                     "--seconds", str(seconds), "--max-bytes", str(max_bytes)]
        self.seconds = seconds
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 60) -> None:
        """Start the child and wait until it is connected and ready; go() releases it."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            self.kill()
            err = (await self.proc.stderr.read()).decode(errors="replace").strip()[-2000:]
            raise BenchError(f"the writer did not get ready within {timeout:.0f}s: {err}")

    def go(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> dict:
        assert self.proc is not None
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.kill()
            raise BenchError(f"the writer did not finish within {timeout:.0f}s") from None
        if self.proc.returncode != 0:
            raise BenchError(f"the writer failed (exit {self.proc.returncode}): "
                             f"{err.decode(errors='replace').strip()[-2000:]}")
        return json.loads(out)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def run(self) -> dict:
        await self.start()
        self.go()
        return await self.wait(self.seconds + 180)


def mib_s(result: dict, t0: float | None = None, t1: float | None = None) -> float:
    """MiB/s of the writes acknowledged in [t0, t1] (default: the whole run)."""
    t0 = result["start"] if t0 is None else t0
    t1 = result["end"] if t1 is None else t1
    acked = sum(1 for t in result["acks"] if t0 <= t <= t1)
    return acked * result["object_size"] / MIB / max(t1 - t0, 1e-9)


# ---------------------------------------------------------------- polling the monitors


async def poll(what: str, probe, timeout: float, interval: float = POLL_S):
    """Call `probe()` -> (done, value, state) until done; BenchError with the last state."""
    deadline = time.monotonic() + timeout
    state, last_note = "no answer yet", 0.0
    while True:
        try:
            done, value, state = await probe()
            if done:
                return value
        except SdsError as e:
            state = f"{type(e).__name__}: {e}"
        now = time.monotonic()
        if now >= deadline:
            raise BenchError(f"{what}: not reached within {timeout:.0f}s; last state: {state}")
        if now - last_note >= 10:
            if last_note:
                log(f"  waiting for {what}: {state}")
            last_note = now
        await asyncio.sleep(interval)


async def osd_entry(r: Rados, osd_id: int) -> dict:
    dump = await r.mon_command({"prefix": "osd dump"}, timeout=5)
    return next(o for o in dump["osds"] if o["osd"] == osd_id)


def summarize_states(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for pg in rows:
        counts[pg.get("state") or "unknown"] = counts.get(pg.get("state") or "unknown", 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda i: -i[1]))


def unclean(rows: list[dict], dead: int | None) -> list[dict]:
    """PGs not yet active+clean with a full acting set (without `dead`, if given)."""
    bad = []
    for pg in rows:
        acting = pg.get("acting") or []
        if (pg.get("state") != CLEAN or len(acting) != POOL_SIZE
                or (dead is not None and (dead in acting or pg.get("primary") == dead))):
            bad.append(pg)
    return bad


async def pg_rows(r: Rados) -> list[dict]:
    return (await r.mon_command({"prefix": "pg dump"}, timeout=5))["pg_stats"]


def describe_unclean(bad: list[dict], limit: int = 8) -> str:
    lines = [f"{pg['pgid']} {pg.get('state')} acting={pg.get('acting')} "
             f"primary={pg.get('primary')} reason={pg.get('reason')!r}" for pg in bad[:limit]]
    more = f" (+{len(bad) - limit} more)" if len(bad) > limit else ""
    return "; ".join(lines) + more


async def wait_clean(r: Rados, timeout: float, dead: int | None = None,
                     watch: dict | None = None) -> float:
    """Wait until every PG is active+clean on POOL_SIZE OSDs (none of them `dead`); returns
    the wall time it was first seen. `watch` collects what was seen on the way."""

    async def probe():
        rows = await pg_rows(r)
        bad = unclean(rows, dead)
        if watch is not None:
            stat = await r.mon_command({"prefix": "pg stat"}, timeout=5)
            rec = stat.get("recovery") or {}
            watch["max_objects_to_recover"] = max(watch.get("max_objects_to_recover", 0),
                                                  int(rec.get("objects_total", 0)))
            if "first_recovering" not in watch and any(
                    "recover" in (pg.get("state") or "") or "backfill" in (pg.get("state") or "")
                    for pg in rows):
                watch["first_recovering"] = time.time()
            watch["last"] = f"{summarize_states(rows)}; stuck: {describe_unclean(bad, 3)}"
        state = f"{summarize_states(rows)}" + (f"; e.g. {describe_unclean(bad, 3)}" if bad else "")
        return not bad and bool(rows), time.time(), state

    return await poll("all PGs active+clean", probe, timeout)


async def wait_primaries_clean(r: Rados, dead: int, timeout: float) -> float:
    """Ask each PG's primary (`pg query`, no mgr in between) until every PG is active+clean
    on POOL_SIZE OSDs without `dead`; returns the wall time the last one was seen so."""
    pending = {pg_name(p.id, ps) for p in r.osdmap.pools for ps in range(p.pg_num)}
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    seen_at = time.time()

    async def ask(pgid: str) -> None:
        nonlocal seen_at
        try:
            q = await asyncio.wait_for(r.pg_command(pgid, {"prefix": "query"}), 5)
        except (SdsError, TimeoutError) as e:
            last[pgid] = f"{type(e).__name__}: {e}"
            return
        acting = q.get("acting") or []
        last[pgid] = f"{q.get('state')} acting={acting} ({q.get('reason')})"
        if q.get("state") == CLEAN and len(acting) == POOL_SIZE and dead not in acting:
            pending.discard(pgid)
            seen_at = max(seen_at, time.time())

    while pending:
        if time.monotonic() >= deadline:
            some = "; ".join(f"{p}: {last.get(p)}" for p in sorted(pending)[:5])
            raise BenchError(f"PG primaries: {len(pending)} PGs not active+clean within "
                             f"{timeout:.0f}s, e.g. {some}")
        await asyncio.gather(*(ask(p) for p in sorted(pending)))
        if pending:
            await asyncio.sleep(POLL_S)
    return seen_at


# ---------------------------------------------------------------- one run


async def settle(r: Rados) -> list[dict]:
    """All PGs clean and the OSDMap unchanged for longer than a balancer period, so the mgr's
    balancer (which moves PGs only while everything is clean) will not move data mid-run."""
    quiet_s = BALANCE_INTERVAL_S + 3
    since: dict = {}

    async def quiet():
        epoch = (await r.mon_command({"prefix": "osd dump"}, timeout=5))["epoch"]
        rows = await pg_rows(r)
        now = time.monotonic()
        if unclean(rows, None) or since.get("epoch") != epoch:
            since.update(epoch=epoch, t=now)
        stable = now - since["t"]
        return stable >= quiet_s, rows, (f"epoch {epoch} for {stable:.0f}s, "
                                         f"{summarize_states(rows)}")

    return await poll(f"all PGs clean and no map change for {quiet_s:g}s", quiet,
                      SETTLE_TIMEOUT_S, 1.0)


def objects_on(r: Rados, pool: str, names: list[str], osd: int) -> list[str]:
    """The objects whose PG (as the client maps it now) has `osd` among its up OSDs."""
    pool_id = r.monc.pools[pool].id
    return [n for n in names if osd in r.placement.locate(pool_id, n)[1]]


async def one_run(cluster: LocalCluster, args: argparse.Namespace, run: int) -> dict:
    res: dict = {"run": run, "loadavg_start": os.getloadavg()[0]}
    async with Rados(str(cluster.conf)) as r:
        # The baseline writes to a pool of its own, removed afterwards: the recovery then
        # moves exactly the fill (removing objects in the measured pool instead would leave
        # their deletes in its PG logs, which log-based recovery replays object by object).
        for pool in (BASELINE_POOL, POOL):
            await r.pool_create(pool, pg_num=args.pg_num, size=POOL_SIZE, min_size=2)
        await settle(r)

        log(f"run {run}: baseline: 4 MiB writes x{CONCURRENCY} for {args.seconds:g}s")
        base = await Writer(cluster.conf, BASELINE_POOL, "base-", args.seconds).run()
        if base["errors"]:
            raise BenchError(f"baseline writes failed: {base['first_errors']}")
        res["baseline_mib_s"] = mib_s(base)
        log(f"run {run}: baseline {res['baseline_mib_s']:.1f} MiB/s ({base['objects']} objects)")
        await r.pool_delete(BASELINE_POOL)

        fill_bytes = args.data_mib * MIB
        log(f"run {run}: filling {args.data_mib} MiB")
        fill = await Writer(cluster.conf, POOL, "fill-", 3600, max_bytes=fill_bytes).run()
        if fill["errors"] or fill["objects"] * OBJECT_SIZE != fill_bytes:
            raise BenchError(f"fill wrote {fill['objects']} objects with {fill['errors']} "
                             f"errors: {fill['first_errors']}")
        res["fill_mib_s"] = mib_s(fill)
        res["data_bytes"] = fill_bytes
        rows = await settle(r)

        # The bytes to re-replicate: one copy of every fill object whose PG has the victim
        # among its OSDs, from the objects' names and the client's own placement (exact; the
        # PG byte counts in `pg dump` are reported too, as a cross-check: OSDs recount them
        # lazily and they can lag after PGs moved).
        names = [f"fill-{i}" for i in range(fill["objects"])]
        # victim: the lowest-numbered OSD holding data. (The mgr keeps a dead OSD's last PG
        # report for 30 s and, for a PG reported twice, the higher OSD id wins; a low id keeps
        # its stale "active+clean" rows from shadowing the new primaries' reports.)
        holders = sorted({o for n in names for o in r.placement.locate(
            r.monc.pools[POOL].id, n)[1]})
        victim = args.victim if args.victim is not None else holders[0]
        lost_objects = objects_on(r, POOL, names, victim)
        lost = [pg for pg in rows if victim in (pg.get("acting") or [])]
        res.update(victim=victim, pgs_total=len(rows), pgs_degraded=len(lost),
                   objects_to_recover=len(lost_objects),
                   bytes_to_recover=len(lost_objects) * OBJECT_SIZE,
                   pg_dump_bytes_to_recover=sum(int(pg.get("bytes") or 0) for pg in lost),
                   pg_dump_bytes_total=sum(int(pg.get("bytes") or 0) for pg in rows))
        log(f"run {run}: osd.{victim} is in {len(lost)}/{len(rows)} PGs holding "
            f"{res['bytes_to_recover'] / MIB:.0f} MiB ({len(lost_objects)} objects; `pg dump` "
            f"says {res['pg_dump_bytes_to_recover'] / MIB:.0f} MiB); kill -9")

        load = Writer(cluster.conf, POOL, "load-", args.load_max_seconds)
        await load.start()  # connected now, released right after the OSD is marked out
        try:
            t_kill = time.time()
            cluster.kill(f"osd.{victim}")

            async def marked(key: str):
                entry = await osd_entry(r, victim)
                return (not entry[key], time.time(),
                        f"osd.{victim} up={entry['up']} in={entry['in']}")

            t_down = await poll(f"osd.{victim} marked down", lambda: marked("up"),
                                DOWN_TIMEOUT_S)
            log(f"run {run}: marked down after {t_down - t_kill:.1f}s")
            t_out = await poll(f"osd.{victim} marked out", lambda: marked("in"),
                               DOWN_TIMEOUT_S + args.down_out_interval)
            load.go()
            log(f"run {run}: marked out after {t_out - t_down:.1f}s more; recovery load starts")
            watch: dict = {}
            direct = asyncio.create_task(wait_primaries_clean(r, victim, args.recovery_timeout))
            try:
                t_clean = await wait_clean(r, args.recovery_timeout, dead=victim, watch=watch)
                t_clean_direct = await asyncio.wait_for(direct, 30)
            except BenchError as e:
                raise BenchError(f"{e}\n(recovery watch: {watch.get('last')})") from None
            except TimeoutError:
                raise BenchError("`pg stat` says clean but the PG primaries do not agree "
                                 "within 30s") from None
            finally:
                direct.cancel()
                load.stop()
            during = await load.wait(120)
        finally:
            load.kill()
        log(f"run {run}: all PGs active+clean {t_clean - t_out:.1f}s after out")

    # Recovery throughput and the during-recovery window use the primaries' clean time:
    # `pg stat` sees the same moment later, by up to an OSD stats interval plus a mgr digest.
    recovery_s = max(t_clean_direct - t_out, 1e-9)
    window_end = min(t_clean_direct, during["end"])
    res.update(
        kill_to_down_s=t_down - t_kill,
        down_to_out_s=t_out - t_down,
        out_to_clean_s=t_clean - t_out,
        out_to_clean_primaries_s=t_clean_direct - t_out,
        kill_to_recovering_s=(watch["first_recovering"] - t_kill
                              if "first_recovering" in watch else None),
        recovery_mb_s=res["bytes_to_recover"] / 1e6 / recovery_s,
        recovery_mb_s_pg_stat=res["bytes_to_recover"] / 1e6 / max(t_clean - t_out, 1e-9),
        mgr_max_objects_to_recover=watch.get("max_objects_to_recover", 0),
        during_mib_s=mib_s(during, during["start"], window_end),
        during_window_s=window_end - during["start"],
        during_load_start_after_out_s=during["start"] - t_out,
        during_errors=during["errors"],
        during_first_errors=during["first_errors"],
    )
    res["during_ratio"] = res["during_mib_s"] / res["baseline_mib_s"]
    return res


# ---------------------------------------------------------------- driver and report


def daemon_tails(cluster: LocalCluster, lines: int = 25) -> str:
    return "\n".join(cluster.log_tail(n, lines) for n in cluster.names())


def run_cluster(args: argparse.Namespace, run: int) -> dict:
    base = Path(args.dir) / f"run{run}" if args.dir else Path(
        tempfile.mkdtemp(prefix=f"sds-recovery-{run}-"))
    cluster = LocalCluster(base)
    ok = False
    try:
        log(f"run {run}: starting 3 mons, mgr, {OSDS} OSDs in {base}")
        conf = {**EXTRA_CONF, "mon_osd_down_out_interval": args.down_out_interval}
        opts = {"osds": OSDS, "mons": 3, "mgr": True, "progress": None, "timeout": 120,
                "extra_conf": conf, "remember": False}
        if "mds" in inspect.signature(cluster_up).parameters:
            opts["mds"] = 0  # RADOS only: no MDS daemons, no filesystem pools
        cluster.up(**opts)
        result = asyncio.run(one_run(cluster, args, run))
        ok = True
        return result
    except (BenchError, SdsError) as e:
        log(f"run {run} FAILED: {e}")
        log("daemon log tails:\n" + daemon_tails(cluster))
        raise SystemExit(f"run {run} failed (cluster kept in {base}): {e}") from None
    finally:
        cluster.down()
        for pid, _name, _conf in find_daemon_processes(base):  # belt and braces
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if ok and not args.keep:
            shutil.rmtree(base, ignore_errors=True)


ROWS = [  # key, label, unit, format
    ("baseline_mib_s", "client write, 4 MiB x16, no failure (baseline)", "MiB/s", "{:,.1f}"),
    ("kill_to_down_s", "kill -9 -> marked down (`osd dump`)", "s", "{:.1f}"),
    ("down_to_out_s", "down -> out (`osd dump`)", "s", "{:.1f}"),
    ("out_to_clean_s", "out -> all PGs active+clean (`pg stat`, via mgr)", "s", "{:.1f}"),
    ("out_to_clean_primaries_s", "out -> all PGs active+clean (primaries, `pg query`)", "s",
     "{:.1f}"),
    ("bytes_to_recover_mib", "data re-replicated (one copy of each object of the dead OSD)",
     "MiB", "{:,.0f}"),
    ("recovery_mb_s", "recovery throughput (re-replicated / out->clean by primaries)", "MB/s",
     "{:,.1f}"),
    ("recovery_mb_s_pg_stat", "recovery throughput (same, out->clean by `pg stat`)", "MB/s",
     "{:,.1f}"),
    ("during_mib_s", "client write during recovery (same workload)", "MiB/s", "{:,.1f}"),
    ("during_ratio", "during recovery / baseline", "x", "{:.2f}"),
]


def report(args: argparse.Namespace, results: list[dict]) -> None:
    for res in results:
        res["bytes_to_recover_mib"] = res["bytes_to_recover"] / MIB
    medians = {key: statistics.median(r[key] for r in results) for key, *_ in ROWS}
    if args.format == "json":
        print(json.dumps({"config": {"data_mib": args.data_mib, "runs": args.runs,
                                     "seconds": args.seconds, "pg_num": args.pg_num,
                                     "osds": OSDS, "size": POOL_SIZE,
                                     "extra_conf": {**EXTRA_CONF, "mon_osd_down_out_interval":
                                                    args.down_out_interval}},
                          "median": medians, "runs": results}, indent=2))
        return
    first = results[0]
    print(f"\n{OSDS} OSDs, pool size {POOL_SIZE}, {first['pgs_total']} PGs, "
          f"{args.data_mib} MiB of 4 MiB objects; kill -9 of one OSD "
          f"(in {first['pgs_degraded']}/{first['pgs_total']} PGs); heartbeat "
          f"{EXTRA_CONF['osd_heartbeat_interval']:g}s / grace {EXTRA_CONF['osd_heartbeat_grace']:g}s"
          f", down-out interval {args.down_out_interval:g}s; medians over {len(results)} run(s)\n")
    print("| figure | median | runs |")
    print("|---|---|---|")
    for key, label, unit, fmt in ROWS:
        runs = ", ".join(fmt.format(r[key]) for r in results)
        print(f"| {label} | {fmt.format(medians[key])} {unit} | {runs} |")
    for r in results:
        started = (f"{r['kill_to_recovering_s']:.1f}s after the kill"
                   if r["kill_to_recovering_s"] is not None else "never seen (too quick?)")
        print(f"\nrun {r['run']}: victim osd.{r['victim']}; {r['objects_to_recover']} objects to "
              f"recover (`pg dump` bytes of its PGs: {r['pg_dump_bytes_to_recover'] / MIB:,.0f} "
              f"MiB, of all PGs {r['pg_dump_bytes_total'] / MIB:,.0f} MiB; mgr's largest "
              f"`pg stat` recovery total: {r['mgr_max_objects_to_recover']} objects)"
              f"; first recovering/backfilling PG seen {started}; load started "
              f"{r['during_load_start_after_out_s']:.1f}s after out, measured over "
              f"{r['during_window_s']:.1f}s, {r['during_errors']} failed writes; fill ran at "
              f"{r['fill_mib_s']:.1f} MiB/s; load average at start {r['loadavg_start']:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-mib", type=int, default=512, help="data to fill before the kill")
    ap.add_argument("--runs", type=int, default=1, help="runs, each on a fresh cluster")
    ap.add_argument("--seconds", type=float, default=10, help="baseline write duration")
    ap.add_argument("--load-max-seconds", type=float, default=120,
                    help="cap on the during-recovery load (it stops when the PGs are clean)")
    ap.add_argument("--recovery-timeout", type=float, default=600,
                    help="seconds from out to active+clean before the run fails")
    ap.add_argument("--down-out-interval", type=float,
                    default=EXTRA_CONF["mon_osd_down_out_interval"],
                    help="mon_osd_down_out_interval of the test cluster (default 6)")
    ap.add_argument("--pg-num", type=int, default=32, help="PGs of the pools (default 32)")
    ap.add_argument("--victim", type=int, default=None, help="OSD id to kill (default: lowest "
                    "holding data)")
    ap.add_argument("--format", choices=("table", "json"), default="table",
                    help="stdout: a markdown table (default) or every figure of every run")
    ap.add_argument("--dir", default=None, help="parent directory of the run clusters")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directories")
    # the child-process workload (internal)
    ap.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--conf", help=argparse.SUPPRESS)
    ap.add_argument("--pool", default=POOL, help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="obj-", help=argparse.SUPPRESS)
    ap.add_argument("--max-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer:
        out = asyncio.run(write_load(args.conf, args.pool, args.prefix, args.seconds,
                                     args.max_bytes))
        print(json.dumps(out))
        return 0
    results = [run_cluster(args, run) for run in range(1, args.runs + 1)]
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
