"""`sds`: the admin command line. `main()` parses, connects, runs one command, prints.

The seam for tests is `main(argv, rados_factory=...)`: the factory is called as
``factory(conf, entity, keyring)`` and must return an async context manager
yielding a Rados-like object (`mon_command`, `ioctx`, `osdmap`).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO

import sds.cli.csi_commands  # noqa: F401 - registers `csi`
import sds.cli.fs_commands  # noqa: F401 - registers `fs ...`
import sds.cli.mount_commands  # noqa: F401 - registers `mount` and `umount`
from sds.cli import commands as cmds
from sds.cli import errors
from sds.cli import format as fmt
from sds.common.errors import InvalidArgument

RadosFactory = Callable[[str | None, str, str | None], Any]


class Parser(argparse.ArgumentParser):
    """Usage errors become InvalidArgument: one line on stderr, exit code EINVAL."""

    def error(self, message: str):  # type: ignore[override]
        raise InvalidArgument(f"{message} (see `{self.prog} -h`)")


def default_rados_factory(conf: str | None, entity: str, keyring: str | None) -> Any:
    from sds.client import Rados
    from sds.common.config import find_conf

    return Rados(str(find_conf(conf)), entity=entity, keyring=keyring)


def _global_flags(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--conf/--name/--keyring/--format, accepted before and after the subcommand."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("global options")
    group.add_argument("--conf", "-c", default=default(None),
                       help="sds.conf (default $SDS_CONF, else the last `sds cluster up`)")
    group.add_argument("--name", "-n", default=default("client.admin"),
                       help="entity to authenticate as (default client.admin)")
    group.add_argument("--keyring", "-k", default=default(None), help="keyring file")
    group.add_argument("--format", choices=fmt.FORMATS, default=default("plain"),
                       help="output format (default plain)")


def build_parser() -> Parser:
    top = Parser(prog="sds", description="Administer an SDS storage cluster.")
    _global_flags(top, suppress=False)
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {}
    parsers: dict[tuple[str, ...], argparse.ArgumentParser] = {(): top}

    def subparsers(path: tuple[str, ...]) -> argparse._SubParsersAction:
        if path not in groups:
            groups[path] = parsers[path].add_subparsers(metavar="COMMAND", title="commands")
        return groups[path]

    for command in cmds.COMMANDS:
        for path in command.paths:
            for depth in range(1, len(path)):
                prefix = path[:depth]
                if prefix not in parsers:
                    group = subparsers(prefix[:-1]).add_parser(
                        prefix[-1], help=f"{' '.join(prefix)} commands", prog=f"sds {' '.join(prefix)}")
                    group.set_defaults(_group=prefix)
                    parsers[prefix] = group
            leaf = subparsers(path[:-1]).add_parser(
                path[-1], help=command.help, description=command.description,
                prog=f"sds {' '.join(path)}")
            for a in command.args:
                leaf.add_argument(*a.flags, **a.kwargs)
            _global_flags(leaf, suppress=True)
            leaf.set_defaults(_command=command)
            parsers[path] = leaf
    return top


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def _with_rados(ctx: cmds.Context, command: cmds.CliCommand, factory: RadosFactory,
                      args: argparse.Namespace) -> cmds.Output:
    async with factory(args.conf, args.name, args.keyring) as rados:
        return await command.fn(ctx, rados, args)


def _emit(ctx: cmds.Context, out: cmds.Output) -> int:
    if ctx.json:
        if out.data is not None:
            print(fmt.to_json(out.data), file=ctx.stdout)
    elif out.text:
        print(out.text, file=ctx.stdout)
    ctx.stdout.flush()
    return out.code


def _missing_subcommand(args: argparse.Namespace, parser: Parser) -> int:
    group = getattr(args, "_group", None)
    if group is None:
        parser.print_help()
        return 0
    names = sorted({c.paths[i][len(group)] for c in cmds.COMMANDS for i in range(len(c.paths))
                    if c.paths[i][:len(group)] == group and len(c.paths[i]) > len(group)})
    raise InvalidArgument(f"`sds {' '.join(group)}` needs a subcommand: {', '.join(names)}")


def _ceph_spellings(argv: list[str]) -> list[str]:
    """Accept `pg PGID query` (ceph's word order) as `pg query PGID`."""
    for i in range(len(argv) - 2):
        if argv[i] == "pg" and argv[i + 2] == "query" and "." in argv[i + 1]:
            return argv[:i] + ["pg", "query", argv[i + 1]] + argv[i + 3:]
    return argv


def main(argv: list[str] | None = None, *, rados_factory: RadosFactory | None = None,
         stdin: BinaryIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit code (0, or the errno of the error)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    stdin = stdin or sys.stdin.buffer
    parser = build_parser()
    try:
        args = parser.parse_args(_ceph_spellings(sys.argv[1:] if argv is None else argv))
        command: cmds.CliCommand | None = getattr(args, "_command", None)
        if command is None:
            return _missing_subcommand(args, parser)
        ctx = cmds.Context(args, stdin, stdout, stderr)
        if command.needs_rados:
            out = _run_async(_with_rados(ctx, command, rados_factory or default_rados_factory,
                                         args))
        else:
            out = command.fn(ctx, args)
            if inspect.isawaitable(out):
                out = _run_async(out)
        return _emit(ctx, out)
    except SystemExit as e:  # -h / --help
        return e.code if isinstance(e.code, int) else 0
    except BrokenPipeError:
        return 0
    except BaseException as e:  # noqa: BLE001 - the one place errors become exit codes
        return errors.report(e, stderr)


if __name__ == "__main__":
    sys.exit(main())
