"""`sds` subcommands generated from the monitors' command descriptors.

A monitor command whose CLI is "send the arguments, render the answer" is declared
here by its prefix and its renderer only: the word path, the arguments (required
parameters positional, optional ones as --flags), their types and the help all come
from the descriptor in sds.mon.services, so they cannot drift from what the mon checks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from sds.cli import format as fmt
from sds.cli.commands import Arg, Context, Output, _ids, _pg_report, arg, cli, mon
from sds.common.command import Descriptor, Param
from sds.fsrules.admin import MDS
from sds.mon.commands import COMMANDS as MON_COMMANDS
from sds.osd.pg_commands import COMMANDS as PG_COMMANDS

_TYPES = {"int": int, "float": float}


def _bound(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def cli_arg(param: Param) -> Arg:
    """The argparse spec of one parameter."""
    words = [param.help] if param.help else []
    if param.default is not None and param.type != "bool" and param.default != "":
        words.append(f"(default {param.default})")
    if param.lo is not None or param.hi is not None:
        words.append(f"[{_bound(param.lo)}..{_bound(param.hi)}]")
    kwargs: dict = {"help": " ".join(words) or None}
    if param.type == "bool":
        return arg(f"--{param.name.replace('_', '-')}", dest=param.name, action="store_true",
                   **kwargs)
    if param.type in _TYPES:
        kwargs["type"] = _TYPES[param.type]
    if param.type in ("ids", "strs"):
        kwargs["nargs"] = "+" if param.required else "*"
    if param.type == "ids":
        kwargs["metavar"] = "ID"
    if param.required:
        return arg(param.name, **kwargs)
    return arg(f"--{param.name.replace('_', '-')}", dest=param.name, default=None, **kwargs)


def _fields(desc: Descriptor, a: argparse.Namespace) -> dict:
    fields = {}
    for param in desc.params:
        value = getattr(a, param.name)
        if param.type == "ids":
            value = _ids(value)
        fields[param.name] = value if value not in (False, []) else None
    return fields


def mon_cli(prefix: str, render: Callable[[dict], str], *paths: str) -> None:
    """Register `sds PREFIX ...` (and aliases) for the monitor command `prefix`."""
    desc = MON_COMMANDS[prefix]

    async def run(ctx: Context, rados, a) -> Output:
        data = await rados.mon_command(mon(prefix, **_fields(desc, a)))
        return Output(data, render(data))

    run.__name__ = prefix.replace(" ", "_").replace("-", "_")
    cli(*(paths or (prefix,)), args=tuple(cli_arg(p) for p in desc.params),
        descriptor=desc)(run)


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
mon_cli("auth rm", lambda d: f"removed {d['entity']}", "auth rm", "auth del")
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
