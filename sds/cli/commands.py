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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sds.cli import bench as bench_mod
from sds.cli import format as fmt
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


COMMANDS: list[CliCommand] = []


def cli(*paths: str, args: tuple[Arg, ...] = (), rados: bool = True):
    """Register a subcommand under one or more word paths; docstring = help."""

    def register(fn: Callable) -> Callable:
        doc = inspect.cleandoc(fn.__doc__ or "")
        COMMANDS.append(CliCommand(
            [tuple(p.split()) for p in paths], fn, list(args),
            doc.splitlines()[0] if doc else "", doc, needs_rados=rados))
        return fn

    return register


def mon(prefix: str, **fields: Any) -> dict:
    return {"prefix": prefix, **{k: v for k, v in fields.items() if v is not None}}


# ---------------------------------------------------------------- cluster state

@cli("status")
async def status(ctx: Context, rados, a) -> Output:
    """Cluster overview: health, monitors, OSDs, pools, PGs and usage."""
    data = await rados.mon_command(mon("status"))
    return Output(data, fmt.status(data))


@cli("health", args=(arg("detail", nargs="?", choices=["detail"]),))
async def health(ctx: Context, rados, a) -> Output:
    """Health status and failing checks; `health detail` explains each one."""
    detail = a.detail == "detail"
    data = await rados.mon_command(mon("health detail" if detail else "health"))
    return Output(data, fmt.health(data, detail))


@cli("mon stat")
async def mon_stat(ctx: Context, rados, a) -> Output:
    """Monitors, quorum and leader."""
    data = await rados.mon_command(mon("mon stat"))
    return Output(data, fmt.mon_stat(data))


@cli("osd tree")
async def osd_tree(ctx: Context, rados, a) -> Output:
    """The CRUSH hierarchy with OSD status, weights and reweights."""
    data = await rados.mon_command(mon("osd tree"))
    return Output(data, fmt.osd_tree(data))


@cli("osd ls")
async def osd_ls(ctx: Context, rados, a) -> Output:
    """OSD ids."""
    data = await rados.mon_command(mon("osd ls"))
    return Output(data, fmt.osd_ls(data))


@cli("osd dump")
async def osd_dump(ctx: Context, rados, a) -> Output:
    """The OSDMap: pools, OSD states and addresses, CRUSH rules."""
    data = await rados.mon_command(mon("osd dump"))
    return Output(data, fmt.osd_dump(data))


@cli("osd df")
async def osd_df(ctx: Context, rados, a) -> Output:
    """Per-OSD capacity, usage and PG count."""
    data = await rados.mon_command(mon("osd df"))
    return Output(data, fmt.osd_df(data))


@cli("osd map", args=(arg("pool"), arg("object")))
async def osd_map(ctx: Context, rados, a) -> Output:
    """Where an object lives: PG, up/acting OSDs and primary."""
    data = await rados.mon_command(mon("osd map", pool=a.pool, object=a.object))
    return Output(data, fmt.osd_map(data))


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


@cli("pg scrub", args=(arg("pgid"),))
async def pg_scrub(ctx: Context, rados, a) -> Output:
    """Light scrub: compare object lists, sizes and versions across the PG's replicas."""
    data = await rados.pg_command(a.pgid, {"prefix": "scrub"})
    return Output(data, _pg_report(data))


@cli("pg deep-scrub", args=(arg("pgid"),))
async def pg_deep_scrub(ctx: Context, rados, a) -> Output:
    """Deep scrub: also compare the CRC32C of every replica's data, xattrs and omap."""
    data = await rados.pg_command(a.pgid, {"prefix": "deep-scrub"})
    return Output(data, _pg_report(data))


@cli("pg repair", args=(arg("pgid"),))
async def pg_repair(ctx: Context, rados, a) -> Output:
    """Deep-scrub, then overwrite damaged copies with the authoritative one."""
    data = await rados.pg_command(a.pgid, {"prefix": "repair"})
    return Output(data, _pg_report(data))


@cli("pg query", args=(arg("pgid"),))
async def pg_query(ctx: Context, rados, a) -> Output:
    """A PG's state and why (also spelled `sds pg PGID query`, like ceph)."""
    data = await rados.pg_command(a.pgid, {"prefix": "query"})
    return Output(data, fmt.to_json(data))


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


_IDS = (arg("ids", nargs="+", metavar="ID"),)


@cli("osd down", args=_IDS)
async def osd_down(ctx: Context, rados, a) -> Output:
    """Mark OSDs down (a running OSD marks itself up again)."""
    data = await rados.mon_command(mon("osd down", ids=_ids(a.ids)))
    return Output(data, fmt.osd_mark(data))


@cli("osd out", args=_IDS)
async def osd_out(ctx: Context, rados, a) -> Output:
    """Mark OSDs out: their data moves to other OSDs."""
    data = await rados.mon_command(mon("osd out", ids=_ids(a.ids)))
    return Output(data, fmt.osd_mark(data))


@cli("osd in", args=_IDS)
async def osd_in(ctx: Context, rados, a) -> Output:
    """Mark OSDs in again."""
    data = await rados.mon_command(mon("osd in", ids=_ids(a.ids)))
    return Output(data, fmt.osd_mark(data))


@cli("df")
async def df(ctx: Context, rados, a) -> Output:
    """Cluster capacity and per-pool usage."""
    data = await rados.mon_command(mon("df"))
    return Output(data, fmt.df(data))


# ---------------------------------------------------------------- pools

@cli("pool create", "osd pool create", args=(
    arg("pool", metavar="NAME"),
    arg("pg_num", nargs="?", type=int, metavar="PG_NUM"),
    arg("--size", type=int, help="replicas (default osd_pool_default_size)"),
    arg("--min-size", type=int, dest="min_size", help="replicas needed to accept writes"),
    arg("--crush-rule", dest="crush_rule", help="CRUSH rule name (default replicated_rule)"),
    arg("--application", help="application tag, e.g. rbd, cephfs, rgw"),
))
async def pool_create(ctx: Context, rados, a) -> Output:
    """Create a replicated pool (an existing pool is left unchanged)."""
    data = await rados.mon_command(mon("osd pool create", pool=a.pool, pg_num=a.pg_num,
                                       size=a.size, min_size=a.min_size,
                                       crush_rule=a.crush_rule, application=a.application))
    return Output(data, fmt.pool_create(data))


@cli("pool ls", "osd pool ls", args=(arg("detail", nargs="?", choices=["detail"]),))
async def pool_ls(ctx: Context, rados, a) -> Output:
    """Pool names; `pool ls detail` shows their settings."""
    data = await rados.mon_command(mon("osd pool ls", detail="detail" if a.detail else None))
    return Output(data, fmt.pool_ls(data))


@cli("pool rm", "osd pool rm", "osd pool delete", args=(
    arg("pool", metavar="NAME"),
    arg("pool2", nargs="?", metavar="NAME", help="the name again, to confirm"),
    arg("--yes-i-really-really-mean-it", dest="confirm", action="store_true",
        help="confirm that all data of the pool is destroyed"),
))
async def pool_rm(ctx: Context, rados, a) -> Output:
    """Delete a pool and all its data: `pool rm NAME NAME --yes-i-really-really-mean-it`."""
    confirm = bool(a.confirm and a.pool2 is not None)
    data = await rados.mon_command(mon("osd pool rm", pool=a.pool, pool2=a.pool2,
                                       confirm=confirm or None))
    return Output(data, fmt.pool_rm(data))


@cli("pool get", "osd pool get", args=(arg("pool", metavar="NAME"), arg("var", metavar="VAR")))
async def pool_get(ctx: Context, rados, a) -> Output:
    """One pool setting (size, min_size, pg_num, crush_rule, application) or `all`."""
    data = await rados.mon_command(mon("osd pool get", pool=a.pool, var=a.var))
    return Output(data, fmt.pool_get(data))


@cli("pool set", "osd pool set", args=(arg("pool", metavar="NAME"), arg("var", metavar="VAR"),
                                       arg("val", metavar="VAL")))
async def pool_set(ctx: Context, rados, a) -> Output:
    """Change a pool setting: size, min_size, crush_rule, application."""
    data = await rados.mon_command(mon("osd pool set", pool=a.pool, var=a.var, val=a.val))
    return Output(data, fmt.pool_set(data))


# ---------------------------------------------------------------- auth

@cli("auth ls")
async def auth_ls(ctx: Context, rados, a) -> Output:
    """Entities and their capabilities (keys are not shown)."""
    data = await rados.mon_command(mon("auth ls"))
    return Output(data, fmt.auth_ls(data))


@cli("auth get", args=(arg("entity"),))
async def auth_get(ctx: Context, rados, a) -> Output:
    """One entity in keyring format, with its secret key."""
    data = await rados.mon_command(mon("auth get", entity=a.entity))
    return Output(data, fmt.auth_get(data))


@cli("auth get-or-create", args=(arg("entity"), arg("caps", nargs="*",
                                  help="SERVICE CAP pairs, e.g. osd 'allow rw'")))
async def auth_get_or_create(ctx: Context, rados, a) -> Output:
    """An entity's key in keyring format, created with the given caps if missing."""
    data = await rados.mon_command(mon("auth get-or-create", entity=a.entity,
                                       caps=_cap_pairs(a.caps)))
    return Output(data, fmt.auth_get(data))


def _cap_pairs(words: list[str]) -> dict[str, str]:
    if len(words) % 2:
        raise InvalidArgument("caps come in pairs: SERVICE CAP (e.g. osd 'allow rw')")
    return dict(zip(words[::2], words[1::2], strict=True))


@cli("auth add", args=(arg("entity"), arg("caps", nargs="*",
                       help="SERVICE CAP pairs, e.g. mon 'allow r' osd 'allow rw pool=x'")))
async def auth_add(ctx: Context, rados, a) -> Output:
    """Create an entity with a new key and the given caps."""
    data = await rados.mon_command(mon("auth add", entity=a.entity, caps=_cap_pairs(a.caps)))
    return Output(data, f"added {a.entity}" if data.get("created") else f"{a.entity} exists")


@cli("auth caps", args=(arg("entity"), arg("caps", nargs="*",
                        help="SERVICE CAP pairs: they replace all of the entity's caps")))
async def auth_caps(ctx: Context, rados, a) -> Output:
    """Replace an entity's caps; its open sessions get them at once."""
    data = await rados.mon_command(mon("auth caps", entity=a.entity, caps=_cap_pairs(a.caps)))
    return Output(data, f"updated caps for {a.entity}")


@cli("auth rm", "auth del", args=(arg("entity"),))
async def auth_rm(ctx: Context, rados, a) -> Output:
    """Remove an entity: its key stops working and its open sessions are dropped."""
    data = await rados.mon_command(mon("auth rm", entity=a.entity))
    return Output(data, f"removed {a.entity}")


@cli("auth print-key", args=(arg("entity"),))
async def auth_print_key(ctx: Context, rados, a) -> Output:
    """Only an entity's secret key (base64)."""
    data = await rados.mon_command(mon("auth print-key", entity=a.entity))
    return Output(data, data["key"])


@cli("auth export", args=(arg("entity", nargs="?"),))
async def auth_export(ctx: Context, rados, a) -> Output:
    """Entities with their keys in keyring format (all of them, or the one named)."""
    data = await rados.mon_command(mon("auth export", entity=a.entity))
    return Output(data, "\n".join(fmt.auth_get(e) for e in data["auth"]))


# ---------------------------------------------------------------- maintenance

@cli("osd set", args=(arg("flag"),))
async def osd_set(ctx: Context, rados, a) -> Output:
    """Set a cluster flag (noout: down OSDs are not marked out, for maintenance)."""
    data = await rados.mon_command(mon("osd set", flag=a.flag))
    return Output(data, f"{a.flag} is set" + ("" if data.get("changed") else " (already)"))


@cli("osd unset", args=(arg("flag"),))
async def osd_unset(ctx: Context, rados, a) -> Output:
    """Clear a cluster flag."""
    data = await rados.mon_command(mon("osd unset", flag=a.flag))
    return Output(data, f"{a.flag} is unset" + ("" if data.get("changed") else " (already)"))


def _ratio_line(data: dict) -> str:
    return (f"nearfull {data['nearfull_ratio']:g}, backfillfull {data['backfillfull_ratio']:g}, "
            f"full {data['full_ratio']:g}")


@cli("osd set-nearfull-ratio", args=(arg("ratio", type=float),))
async def osd_set_nearfull_ratio(ctx: Context, rados, a) -> Output:
    """Used fraction of an OSD's device that warns (OSD_NEARFULL), default 0.85."""
    data = await rados.mon_command(mon("osd set-nearfull-ratio", ratio=a.ratio))
    return Output(data, _ratio_line(data))


@cli("osd set-backfillfull-ratio", args=(arg("ratio", type=float),))
async def osd_set_backfillfull_ratio(ctx: Context, rados, a) -> Output:
    """Used fraction at which an OSD takes no more backfill/recovery, default 0.90."""
    data = await rados.mon_command(mon("osd set-backfillfull-ratio", ratio=a.ratio))
    return Output(data, _ratio_line(data))


@cli("osd set-full-ratio", args=(arg("ratio", type=float),))
async def osd_set_full_ratio(ctx: Context, rados, a) -> Output:
    """Used fraction at which the cluster is full and writes get ENOSPC, default 0.95."""
    data = await rados.mon_command(mon("osd set-full-ratio", ratio=a.ratio))
    return Output(data, _ratio_line(data))


@cli("osd blocklist add", args=(arg("addr"), arg("--expire", type=float, default=None)))
async def osd_blocklist_add(ctx: Context, rados, a) -> Output:
    """Fence a client instance off the OSDs (default for 1 hour)."""
    data = await rados.mon_command(mon("osd blocklist add", addr=a.addr, expire=a.expire))
    return Output(data, f"blocklisted {a.addr} until {time.ctime(data['until'])}")


@cli("osd blocklist rm", args=(arg("addr"),))
async def osd_blocklist_rm(ctx: Context, rados, a) -> Output:
    """Let a client instance use the OSDs again."""
    data = await rados.mon_command(mon("osd blocklist rm", addr=a.addr))
    return Output(data, f"un-blocklisted {a.addr}" + ("" if data["changed"] else " (was not)"))


@cli("osd blocklist ls")
async def osd_blocklist_ls(ctx: Context, rados, a) -> Output:
    """Client instances the OSDs refuse, and until when."""
    data = await rados.mon_command(mon("osd blocklist ls"))
    rows = [[e["addr"], time.ctime(e["until"]), "yes" if e["expired"] else "no"]
            for e in data["blocklist"]]
    return Output(data, fmt.table(["ADDR", "UNTIL", "EXPIRED"], rows))


@cli("osd reweight", args=(arg("id"), arg("weight", type=float)))
async def osd_reweight(ctx: Context, rados, a) -> Output:
    """Give an OSD a smaller share of data (0.0-1.0); data moves proportionally."""
    data = await rados.mon_command(mon("osd reweight", ids=_ids([a.id]), weight=a.weight))
    return Output(data, f"reweighted osd.{data['osd']} to {data['reweight']:.5f}")


@cli("osd ok-to-stop", args=_IDS)
async def osd_ok_to_stop(ctx: Context, rados, a) -> Output:
    """Whether stopping these OSDs keeps every PG writable (exit 16 EBUSY if not)."""
    data = await rados.mon_command(mon("osd ok-to-stop", ids=_ids(a.ids)))
    return Output(data, data["message"])


@cli("osd safe-to-destroy", args=_IDS)
async def osd_safe_to_destroy(ctx: Context, rados, a) -> Output:
    """Whether these OSDs hold no data still needed (exit 16 EBUSY if they do)."""
    data = await rados.mon_command(mon("osd safe-to-destroy", ids=_ids(a.ids)))
    return Output(data, data["message"])


@cli("osd purge", args=(arg("id"), arg("--yes-i-really-mean-it", action="store_true",
                                       dest="confirm")))
async def osd_purge(ctx: Context, rados, a) -> Output:
    """Remove a stopped OSD from the OSDMap, CRUSH and the auth database."""
    data = await rados.mon_command(mon("osd purge", ids=_ids([a.id]), confirm=a.confirm))
    return Output(data, f"purged osd.{data['purged']}")


@cli("osd balance")
async def osd_balance(ctx: Context, rados, a) -> Output:
    """Even out PG replicas per OSD with upmap exceptions (the mgr also does this)."""
    data = await rados.mon_command(mon("osd balance"))
    return Output(data, f"{data.get('changes', 0)} PG moves; max deviation "
                        f"{data.get('max_deviation_before', 0):.1%} -> "
                        f"{data.get('max_deviation_after', 0):.1%}")


@cli("osd balance status")
async def osd_balance_status(ctx: Context, rados, a) -> Output:
    """PG replicas per OSD against each OSD's weight share."""
    data = await rados.mon_command(mon("osd balance status"))
    return Output(data, fmt.to_json(data))


@cli("pg stat")
async def pg_stat(ctx: Context, rados, a) -> Output:
    """PG counts by state, objects and bytes."""
    data = await rados.mon_command(mon("pg stat"))
    states = ", ".join(f"{s['count']} {s['state_name']}" for s in data["pgs_by_state"])
    return Output(data, f"{data['num_pgs']} pgs: {states or 'none'}; {data['num_objects']} "
                        f"objects, {fmt.human_bytes(data['num_bytes'])}")


@cli("pg dump")
async def pg_dump(ctx: Context, rados, a) -> Output:
    """Every PG: state, objects, bytes, acting set, primary, last deep scrub."""
    data = await rados.mon_command(mon("pg dump"))
    return Output(data, fmt.pg_table(data["pg_stats"]))


@cli("pg dump_stuck", args=(arg("states", nargs="*", help="inactive unclean degraded "
                                                            "undersized stale"),
                            arg("--threshold", type=float, default=None)))
async def pg_dump_stuck(ctx: Context, rados, a) -> Output:
    """PGs stuck in a bad state longer than the threshold (default 300 s)."""
    data = await rados.mon_command(mon("pg dump_stuck", states=a.states or None,
                                       threshold=a.threshold))
    return Output(data, fmt.pg_table(data["stuck"]) if data["stuck"] else "no stuck pgs")


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
