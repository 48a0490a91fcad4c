"""`sds` subcommands generated from the monitors' command descriptors.

A monitor command whose CLI is "send the arguments, render the answer" is declared
here by its prefix and its renderer only: the word path, the arguments (required
parameters positional, optional ones as --flags), their types and the help all come
from the descriptor in sds.mon.services, so they cannot drift from what the mon checks.
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Callable
from typing import Any

from sds.cli import format as fmt
from sds.cli.commands import Arg, Context, Output, _ids, _pg_report, arg, byte_count_arg, cli, mon
from sds.common.command import Cli, Descriptor, Param
from sds.common.errors import InvalidArgument
from sds.fsrules.admin import MDS
from sds.mon.commands import COMMANDS as MON_COMMANDS
from sds.osd.pg_commands import COMMANDS as PG_COMMANDS

_TYPES = {"int": int, "float": float}
_NO_SHAPE = Cli()
Render = Callable[..., str]  # render(data) or render(data, fields): the plain text


def _bound(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _help(param: Param) -> str | None:
    if param.cli is not None and param.cli.help is not None:
        return param.cli.help
    words = [param.help] if param.help else []
    if param.default is not None and param.type != "bool" and param.default != "":
        words.append(f"(default {param.default})")
    if param.lo is not None or param.hi is not None:
        words.append(f"[{_bound(param.lo)}..{_bound(param.hi)}]")
    return " ".join(words) or None


# What the global flags (main._global_flags) and `--fs` parse into: a parameter of that
# name (a snapshot's `name`) keeps its value under another attribute.
TAKEN = ("conf", "name", "keyring", "format", "fs")


def _dest(param: Param) -> str:
    return f"{param.name}_" if param.name in TAKEN else param.name


def cli_arg(param: Param) -> Arg:
    """The argparse spec of one parameter, shaped by its `Cli` where it has one."""
    shape = param.cli or _NO_SHAPE
    flag = shape.flag or f"--{param.name.replace('_', '-')}"
    dest = _dest(param)
    kwargs: dict = {"help": _help(param)}
    if dest != param.name:
        kwargs["metavar"] = param.name
    if shape.word is not None:
        return arg(dest, nargs="?", choices=[shape.word], **kwargs)
    if param.type == "bool":
        return arg(flag, dest=dest, action="store_true", **kwargs)
    if shape.kind == "bytes":
        kwargs["type"] = byte_count_arg
    elif param.type in _TYPES:
        kwargs["type"] = _TYPES[param.type]
    many = shape.kind == "pairs" or (param.type in ("ids", "strs") and shape.kind != "one_id")
    if many:
        kwargs["nargs"] = "+" if param.required else "*"
    if param.type == "ids" and many:
        kwargs["metavar"] = "ID"
    if shape.metavar is not None:
        kwargs["metavar"] = shape.metavar
    if param.required if shape.positional is None else shape.positional:
        if not param.required and not many:
            kwargs["nargs"] = "?"
        return arg(dest, **kwargs)
    return arg(flag, dest=dest, default=None, **kwargs)


def _cap_pairs(words: list[str]) -> dict[str, str]:
    if len(words) % 2:
        raise InvalidArgument("caps come in pairs: SERVICE CAP (e.g. osd 'allow rw')")
    return dict(zip(words[::2], words[1::2], strict=True))


def _value(param: Param, value: Any) -> Any:
    shape = param.cli or _NO_SHAPE
    if shape.word is not None:
        return True if value == shape.word else None
    if shape.kind == "pairs":
        return _cap_pairs(value)
    if param.type == "ids":
        return _ids([value] if shape.kind == "one_id" else value)
    return None if value is False or value == [] else value  # 0 is a value


def _fields(desc: Descriptor, a: argparse.Namespace) -> dict:
    """The command's JSON arguments from the parsed CLI ones (None: not sent)."""
    fields = {p.name: _value(p, getattr(a, _dest(p))) for p in desc.params}
    for param in desc.params:
        if param.cli is not None and param.cli.only_with and fields[param.cli.only_with] is None:
            fields[param.name] = None
    return fields


def _text(render: Render, data: Any, fields: dict) -> str:
    wants_fields = len([p for p in inspect.signature(render).parameters.values()
                        if p.default is p.empty]) > 1
    return render(data, fields) if wants_fields else render(data)


def mon_cli(prefix: str, render: Render, drop: tuple[str, ...] = ()) -> None:
    """Register `sds PREFIX ...` (and the descriptor's other CLI paths) for the monitor
    command `prefix`; `drop` names output keys the CLI does not show (nor print as JSON)."""
    desc = MON_COMMANDS[prefix]

    async def run(ctx: Context, rados, a) -> Output:
        fields = _fields(desc, a)
        data = await rados.mon_command(mon(prefix, **fields))
        for key in drop:
            data.pop(key, None)
        return Output(data, _text(render, data, fields))

    run.__name__ = prefix.replace(" ", "_").replace("-", "_")
    cli(*desc.paths, args=tuple(cli_arg(p) for p in desc.params), descriptor=desc)(run)


_FS = arg("--fs", default=None, help="filesystem name (default: the first one)")


def mds_cli(prefix: str, render: Callable[[Any, dict], Output]) -> None:
    """Register `sds PREFIX ... [--fs NAME]` for an MDS admin operation, sent through
    FsAdmin; `render(reply, fields)` makes the output from the MDS's reply."""
    desc = MDS.commands[prefix]

    async def run(ctx: Context, rados, a) -> Output:
        from sds.client.fsadmin import FsAdmin

        fields = {k: v for k, v in _fields(desc, a).items() if v is not None}
        async with FsAdmin(rados, a.fs) as fs_admin:
            reply = await fs_admin.admin_op(prefix, **fields)
        return render(reply, fields)

    run.__name__ = prefix.replace(" ", "_")
    cli(prefix, args=(*(cli_arg(p) for p in desc.params), _FS), descriptor=desc)(run)


def pg_cli(prefix: str, render: Callable[[dict], str]) -> None:
    """Register `sds pg PREFIX PGID` for the command `prefix` of a PG's primary OSD."""
    desc = PG_COMMANDS.commands[prefix]

    async def run(ctx: Context, rados, a) -> Output:
        data = await rados.pg_command(a.pgid, mon(prefix, **_fields(desc, a)))
        return Output(data, render(data))

    run.__name__ = f"pg_{prefix.replace('-', '_')}"
    cli(f"pg {prefix}", args=(arg("pgid"), *(cli_arg(p) for p in desc.params)),
        descriptor=desc)(run)


def _flag_line(data: dict) -> str:
    state = "set" if data.get("set") else "unset"
    return f"{data['flag']} is {state}" + ("" if data.get("changed") else " (already)")


def _ratio_line(data: dict) -> str:
    return (f"nearfull {data['nearfull_ratio']:g}, backfillfull {data['backfillfull_ratio']:g}, "
            f"full {data['full_ratio']:g}")


def _balanced(data: dict) -> str:
    return (f"{data.get('changes', 0)} PG moves; max deviation "
            f"{data.get('max_deviation_before', 0):.1%} -> "
            f"{data.get('max_deviation_after', 0):.1%}")


def _pg_stat(data: dict) -> str:
    states = ", ".join(f"{s['count']} {s['state_name']}" for s in data["pgs_by_state"])
    return (f"{data['num_pgs']} pgs: {states or 'none'}; {data['num_objects']} objects, "
            f"{fmt.human_bytes(data['num_bytes'])}")


def _blocklist(data: dict) -> str:
    rows = [[e["addr"], time.ctime(e["until"]), "yes" if e["expired"] else "no"]
            for e in data["blocklist"]]
    return fmt.table(["ADDR", "UNTIL", "EXPIRED"], rows)


for _prefix, _render in (
        ("status", fmt.status), ("mon stat", fmt.mon_stat), ("osd tree", fmt.osd_tree),
        ("osd ls", fmt.osd_ls), ("osd dump", fmt.osd_dump), ("osd df", fmt.osd_df),
        ("osd map", fmt.osd_map), ("df", fmt.df),
        ("osd down", fmt.osd_mark), ("osd out", fmt.osd_mark), ("osd in", fmt.osd_mark),
        ("osd set", _flag_line), ("osd unset", _flag_line),
        ("osd set-nearfull-ratio", _ratio_line), ("osd set-backfillfull-ratio", _ratio_line),
        ("osd set-full-ratio", _ratio_line),
        ("osd ok-to-stop", lambda d: d["message"]),
        ("osd safe-to-destroy", lambda d: d["message"]),
        ("osd blocklist ls", _blocklist),
        ("osd balance", _balanced), ("osd balance status", fmt.to_json),  # leaf before child
        ("osd blocklist add",
         lambda d: f"blocklisted {d['blocklisted']} until {time.ctime(d['until'])}"),
        ("osd blocklist rm",
         lambda d: f"un-blocklisted {d['removed']}" + ("" if d["changed"] else " (was not)")),
        ("pg stat", _pg_stat),
        ("auth ls", fmt.auth_ls), ("auth get", fmt.auth_get),
        ("auth print-key", lambda d: d["key"]),
        ("pg dump", lambda d: fmt.pg_table(d["pg_stats"]))):
    mon_cli(_prefix, _render)
mon_cli("auth rm", lambda d: f"removed {d['entity']}")
mon_cli("health", lambda d, f: fmt.health(d, bool(f["detail"])))
for _prefix, _render in (
        ("osd pool create", fmt.pool_create), ("osd pool ls", fmt.pool_ls),
        ("osd pool rm", fmt.pool_rm), ("osd pool get", fmt.pool_get),
        ("osd pool set", fmt.pool_set), ("auth get-or-create", fmt.auth_get),
        ("auth add", lambda d, f: f"added {f['entity']}" if d.get("created")
         else f"{f['entity']} exists"),
        ("auth caps", lambda d, f: f"updated caps for {f['entity']}"),
        ("auth export", lambda d: "\n".join(fmt.auth_get(e) for e in d["auth"])),
        ("osd reweight", lambda d: f"reweighted osd.{d['osd']} to {d['reweight']:.5f}"),
        ("osd purge", lambda d: f"purged osd.{d['purged']}"),
        ("pg dump_stuck",
         lambda d: fmt.pg_table(d["stuck"]) if d["stuck"] else "no stuck pgs")):
    mon_cli(_prefix, _render)
for _prefix in ("scrub", "deep-scrub", "repair"):
    pg_cli(_prefix, _pg_report)
pg_cli("query", fmt.to_json)


def describe() -> dict:
    """Every `sds` subcommand with its arguments and the descriptor it runs, and every
    monitor command's descriptor: what `sds help --format json` prints."""
    from sds.cli.commands import COMMANDS

    cli_commands = []
    for c in sorted(COMMANDS, key=lambda c: c.paths[0]):
        cli_commands.append({
            "command": " ".join(c.paths[0]), "aliases": [" ".join(p) for p in c.paths[1:]],
            "help": c.help,
            "args": [{"flags": list(a.flags), **{k: v for k, v in a.kwargs.items()
                                                  if isinstance(v, str | int | float | list)}}
                     for a in c.args],
            "mon_command": c.descriptor.prefix if c.descriptor else None})
    return {"cli": cli_commands, "mon": [MON_COMMANDS[p].to_dict() for p in sorted(MON_COMMANDS)],
            "mds": MDS.describe(), "pg": PG_COMMANDS.describe()}


@cli("help", rados=False)
def help_command(ctx: Context, a) -> Output:
    """Every command with its arguments; with --format json, every command descriptor too."""
    data = describe()
    width = max(len(c["command"]) for c in data["cli"])
    return Output(data, "\n".join(f"{c['command']:<{width}}  {c['help']}" for c in data["cli"]))
