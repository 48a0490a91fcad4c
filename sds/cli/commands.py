"""Every `sds` subcommand, declared once with `@cli(...)`.

A command names its word path(s) (``"pool create"``, ``"osd pool create"``), its
arguments (argparse specs) and its docstring (the help). Cluster commands are
coroutines `fn(ctx, rados, args) -> Output` that get a connected Rados; local
commands (`daemon`, `cluster ...`) are plain functions `fn(ctx, args)`. Each
returns the JSON-able data and its plain rendering (`format.py`), so
`--format json` and the human output always carry the same facts.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sds.cli import bench as bench_mod
from sds.cli import format as fmt
from sds.common.command import Descriptor
from sds.common.errors import InvalidArgument, NotFound


@dataclass
class Output:
    data: Any = None          # printed as JSON with --format json; None prints nothing
    text: str | None = None   # printed in plain format; None prints nothing
    code: int = 0             # exit code


@dataclass
class Context:
    args: argparse.Namespace
    stdin: BinaryIO
    stdout: TextIO
    stderr: TextIO

    @property
    def json(self) -> bool:
        return getattr(self.args, "format", "plain") == "json"

    @property
    def progress_out(self) -> TextIO:
        """Progress goes to stdout in plain format, to stderr when stdout carries JSON."""
        return self.stderr if self.json else self.stdout

    def write_bytes(self, data: bytes) -> None:
        self.stdout.flush()
        binary = getattr(self.stdout, "buffer", None)
        if binary is None:
            raise InvalidArgument("cannot write binary data to this output")
        binary.write(data)
        binary.flush()


@dataclass(frozen=True)
class Arg:
    flags: tuple[str, ...]
    kwargs: dict


def arg(*flags: str, **kwargs: Any) -> Arg:
    return Arg(flags, kwargs)


@dataclass
class CliCommand:
    paths: list[tuple[str, ...]]
    fn: Callable
    args: list[Arg]
    help: str
    description: str
    needs_rados: bool = True
    extra: dict = field(default_factory=dict)
    descriptor: Descriptor | None = None  # the server command it runs, when generated


COMMANDS: list[CliCommand] = []


def cli(*paths: str, args: tuple[Arg, ...] = (), rados: bool = True,
        descriptor: Descriptor | None = None):
    """Register a subcommand under one or more word paths; docstring = help."""

    def register(fn: Callable) -> Callable:
        doc = inspect.cleandoc(fn.__doc__ or (descriptor.help if descriptor else ""))
        COMMANDS.append(CliCommand(
            [tuple(p.split()) for p in paths], fn, list(args),
            doc.splitlines()[0] if doc else "", doc, needs_rados=rados,
            descriptor=descriptor))
        return fn

    return register


def mon(prefix: str, **fields: Any) -> dict:
    return {"prefix": prefix, **{k: v for k, v in fields.items() if v is not None}}


# ---------------------------------------------------------------- cluster state

# ---------------------------------------------------------------- PGs (run by their primary)

def _pg_report(data: dict) -> str:
    found = data.get("inconsistent") or []
    lines = [f"pg {data.get('pgid')}: " + (f"{len(found)} inconsistent objects" if found
                                           else "no inconsistencies")]
    for f in found:
        bad = ", ".join(f"{osd} ({why})" for osd, why in f.get("bad", {}).items())
        lines.append(f"    {f['object']}: bad copies on {bad}")
    for f in data.get("repaired") or []:
        lines.append(f"    repaired {f['object']}")
    return "\n".join(lines)


@cli("osd deep-scrub", args=(arg("id"),))
async def osd_deep_scrub(ctx: Context, rados, a) -> Output:
    """Deep-scrub every PG the OSD is primary of."""
    osd_id = _ids([a.id])[0]
    if all(o.id != osd_id for o in rados.osdmap.osds):
        raise NotFound(f"osd.{osd_id} does not exist")
    results = []
    for pool in rados.osdmap.pools:
        for ps in range(pool.pg_num):
            if rados.placement.primary(pool.id, ps) == osd_id:
                pgid = f"{pool.id}.{ps:x}"
                print(f"deep-scrubbing pg {pgid}", file=ctx.progress_out, flush=True)
                results.append(await rados.pg_command(pgid, {"prefix": "deep-scrub"}))
    bad = [r for r in results if r.get("inconsistent")]
    text = f"osd.{osd_id}: deep-scrubbed {len(results)} PGs, {len(bad)} inconsistent"
    if bad:
        text += "\n" + "\n".join(_pg_report(r) for r in bad)
    return Output({"osd": osd_id, "pgs": results}, text)


def _ids(values: list[str]) -> list[int]:
    ids = []
    for v in values:
        text = v[4:] if v.startswith("osd.") else v
        if not text.isdigit():
            raise InvalidArgument(f"'{v}' is not an OSD id (use e.g. 3 or osd.3)")
        ids.append(int(text))
    return ids


# ---------------------------------------------------------------- objects

_OBJ = (arg("pool"), arg("object"))


@cli("put", args=_OBJ + (arg("file", metavar="FILE", help="file to store, or - for stdin"),))
async def put(ctx: Context, rados, a) -> Output:
    """Store a file (or stdin) as an object."""
    ioctx = rados.ioctx(a.pool)
    if a.file == "-":
        data = ctx.stdin.read()
    else:
        with open(a.file, "rb") as f:
            data = f.read()
    await ioctx.write_full(a.object, data)
    return Output({"pool": a.pool, "object": a.object, "bytes": len(data)})


@cli("get", args=_OBJ + (arg("file", metavar="FILE", help="where to write, or - for stdout"),))
async def get(ctx: Context, rados, a) -> Output:
    """Read an object into a file (or stdout), chunk by chunk: any size, bounded memory."""
    ioctx = rados.ioctx(a.pool)
    chunks = ioctx.read_stream(a.object)
    first = await anext(chunks)  # a missing object fails before any file is made
    if a.file == "-":
        ctx.write_bytes(first)
        async for chunk in chunks:
            ctx.write_bytes(chunk)
        return Output()
    size = len(first)
    with open(a.file, "wb") as f:
        f.write(first)
        async for chunk in chunks:
            f.write(chunk)
            size += len(chunk)
    return Output({"pool": a.pool, "object": a.object, "bytes": size, "file": a.file})


@cli("rm", args=_OBJ)
async def rm(ctx: Context, rados, a) -> Output:
    """Remove an object."""
    await rados.ioctx(a.pool).remove(a.object)
    return Output({"pool": a.pool, "object": a.object, "removed": True})


@cli("ls", args=(arg("pool"),))
async def ls(ctx: Context, rados, a) -> Output:
    """List the objects of a pool."""
    names = [name async for name in rados.ioctx(a.pool).list_objects()]
    return Output({"pool": a.pool, "objects": names}, "\n".join(names) if names else None)


@cli("stat", args=_OBJ)
async def stat(ctx: Context, rados, a) -> Output:
    """Size, modification time and version of an object."""
    st = await rados.ioctx(a.pool).stat(a.object)
    data = {"pool": a.pool, "object": a.object, "size": st.size, "mtime": st.mtime,
            "version": st.version}
    return Output(data, fmt.object_stat(data))


# ---------------------------------------------------------------- bench

def _size_arg(text: str) -> int:
    try:
        return bench_mod.parse_size(text)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def byte_count_arg(text: str) -> int:
    """argparse type for amounts like 10G, 512M or plain bytes (0 allowed)."""
    try:
        return bench_mod.parse_size(text, lo=0, hi=1 << 62)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive integer")
    return int(text)


@cli("bench", args=(
    arg("pool"),
    arg("seconds", type=_positive_float, metavar="SECONDS"),
    arg("mode", choices=bench_mod.MODES),
    arg("-b", "--block-size", dest="block_size", type=_size_arg,
        default=bench_mod.DEFAULT_OBJECT_SIZE, help="object size: 4096, 4K, 4M (default 4M)"),
    arg("-t", "--concurrent-ios", dest="concurrency", type=_positive_int,
        default=bench_mod.DEFAULT_CONCURRENCY, help="operations in flight (default 16)"),
    arg("--no-cleanup", dest="no_cleanup", action="store_true",
        help="keep the written objects for a later seq/rand run"),
))
async def bench(ctx: Context, rados, a) -> Output:
    """Measure write/seq/rand throughput, IOPS and latency, like `rados bench`."""
    ioctx = rados.ioctx(a.pool)
    summary = await bench_mod.run(ioctx, a.pool, a.mode, a.seconds, a.block_size, a.concurrency,
                                  a.no_cleanup, out=ctx.progress_out)
    return Output(summary, bench_mod.summary_text(summary))


@cli("cleanup", args=(arg("pool"),))
async def cleanup(ctx: Context, rados, a) -> Output:
    """Remove the objects a `bench ... write --no-cleanup` left in a pool."""
    data = await bench_mod.cleanup(rados.ioctx(a.pool), a.pool)
    return Output(data, f"removed {data['removed']} benchmark objects from pool '{a.pool}'")


# ---------------------------------------------------------------- local daemons

@cli("daemon", rados=False, args=(
    arg("role", choices=["mon", "osd", "mgr", "mds", "gateway", "csi"]),
    arg("--id", required=True, dest="daemon_id", help="daemon id, e.g. 0"),
    arg("-f", "--foreground", action="store_true", help="stay in the foreground (always)"),
))
def daemon(ctx: Context, a) -> Output:
    """Run one daemon process (used by `sds cluster up` and service managers)."""
    from sds.common.config import find_conf
    from sds.common.daemon import run_daemon

    conf = str(find_conf(getattr(a, "conf", None)))
    return Output(code=run_daemon(a.role, a.daemon_id, conf))


_DIR = arg("--dir", default=None, help="cluster directory (default: the last one started)")


@cli("cluster up", rados=False, args=(
    _DIR,
    arg("--osds", type=int, default=3, help="number of OSDs (default 3)"),
    arg("--mons", type=int, default=3, help="number of monitors (default 3)"),
    arg("--csi", action="store_true",
        help="also run the Kubernetes CSI plugin (both roles) on <dir>/csi.0/csi.sock"),
))
def cluster_up(ctx: Context, a) -> Output:
    """Create and start a local cluster (mons, OSDs, mgr) in a directory."""
    from sds.cluster import local

    if a.osds < 1 or a.mons < 1:
        raise InvalidArgument("a cluster needs at least one OSD and one monitor")

    def progress(line: str) -> None:
        print(line, file=ctx.progress_out, flush=True)

    result = local.cluster_up(a.dir, osds=a.osds, mons=a.mons, progress=progress, csi=a.csi)
    daemons = result.get("daemons") or local.cluster_status(result.get("dir", a.dir))
    text = fmt.cluster_status(daemons)
    status = local.probe_status(result["conf"]) if result.get("conf") else {}
    if status:
        text += "\n\n" + fmt.status(status)
    if result.get("conf"):
        text += f"\n\nconfig: {result['conf']}  (or: export SDS_CONF={result['conf']})"
    if a.csi:
        from sds.csi import DRIVER_NAME

        sock = Path(result["dir"]) / "csi.0" / "csi.sock"
        result["csi"] = {"endpoint": f"unix://{sock}", "driver": DRIVER_NAME}
        text += f"\nCSI plugin: driver {DRIVER_NAME} on unix://{sock}"
    return Output({**result, "daemons": daemons, "status": status}, text)


@cli("osd add", rados=False, args=(_DIR, arg("--id", type=int, default=None,
                                             help="OSD id (default: the next free one)")))
def osd_add(ctx: Context, a) -> Output:
    """Add an OSD to a local cluster: key, config, data directory, daemon; data rebalances."""
    from sds.cluster import local

    name = local.add_osd(local.resolve_dir(a.dir), a.id)
    return Output({"added": name}, f"started {name}: CRUSH places data on it as it boots")


@cli("osd fsck", rados=False, args=(
    arg("path", help="data directory of a stopped OSD (osd.N) or its store directory"),
))
async def osd_fsck(ctx: Context, a) -> Output:
    """Check a stopped OSD's store offline: checksums of every record, references, counters."""
    from sds.osd.store import fsck

    problems = await fsck.check(a.path)
    text = "\n".join(problems) if problems else f"{a.path}: store is consistent"
    if problems:
        text += (f"\n{len(problems)} problems: let the cluster repair the damaged objects from "
                 "replicas (`sds pg repair`), or rebuild this OSD from its replicas")
    return Output({"path": a.path, "problems": problems}, text, code=1 if problems else 0)


@cli("cluster down", rados=False, args=(_DIR,))
def cluster_down(ctx: Context, a) -> Output:
    """Stop every daemon of a local cluster."""
    from sds.cluster import local

    result = local.cluster_down(a.dir)
    stopped = result.get("stopped", []) + result.get("killed", [])
    text = f"stopped {len(stopped)} daemons" + (f": {', '.join(stopped)}" if stopped else "")
    if result.get("survivors"):
        text += f"\nstill running: {', '.join(result['survivors'])}"
    return Output(result, text, code=1 if result.get("survivors") else 0)


@cli("cluster status", rados=False, args=(_DIR,))
def cluster_status(ctx: Context, a) -> Output:
    """The daemons of a local cluster: address, pid, running."""
    from sds.cluster import local

    daemons = local.cluster_status(a.dir)
    return Output({"daemons": daemons}, fmt.cluster_status(daemons))
