"""Admin commands declared once: prefix, typed parameters, help, write flag and needs.

In the spirit of Ceph's MonCommands.h: a `Descriptor` is data, so the server that runs
a command validates its arguments and authorizes its caller from it, and the CLI, the
help listing and (next) the REST API and CSI are generated from the same declaration.
Validation turns a JSON command into a dict of checked, typed values; an error is
InvalidArgument (EINVAL) naming the parameter. `authorize` is the one place a caller's
caps meet a command.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sds.common.auth import Peer
from sds.common.errors import InvalidArgument, PermissionDenied

TYPES = ("str", "text", "int", "float", "bool", "ids", "strs", "any")
TRUE_WORDS = ("true", "yes", "1")


@dataclass(frozen=True)
class Cli:
    """How the `sds` CLI spells a parameter where its type alone does not say.

    `positional` None: positional iff required. `flag`: the option's own spelling (a
    confirmation like --yes-i-really-mean-it). `word`: an optional positional that can
    only be that word and means true (`health detail`). `kind`: what the CLI parses
    itself: "pairs" (SERVICE CAP words into a dict), "bytes" (10G, 512M), "one_id" (one
    OSD id for an `ids` parameter). `only_with`: the flag is sent only when that other
    argument is given too. `help` replaces the help made from the parameter's."""

    positional: bool | None = None
    metavar: str | None = None
    flag: str | None = None
    word: str | None = None
    kind: str | None = None
    only_with: str | None = None
    help: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


CLI_KINDS = ("pairs", "bytes", "one_id")


@dataclass(frozen=True)
class Param:
    """One argument of a command. `default` None with `required` False: absent means
    the handler decides (e.g. a default read from the config)."""

    name: str
    type: str = "str"
    required: bool = True
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    cli: Cli | None = None  # the CLI's spelling, when not the default one

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "type": self.type, "required": self.required}
        for key in ("default", "lo", "hi"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices:
            out["choices"] = list(self.choices)
        if self.help:
            out["help"] = self.help
        if self.cli is not None:
            out["cli"] = self.cli.to_dict()
        return out


def opt(name: str, type: str = "str", default: Any = None, **kw: Any) -> Param:
    """An optional parameter."""
    return Param(name, type, required=False, default=default, **kw)


@dataclass(frozen=True)
class Access:
    """Who may run a command (Ceph's caps). `caps` are permission letters on `service`
    ("" means r, or rw for a write); `daemon` limits it to that daemon profile; `self_arg` names the argument
    that must name the calling daemon; `self_service` lets that daemon run it for itself
    while everyone else needs `caps`; `any_entity` allows any authenticated session."""

    caps: str = ""
    service: str = "mon"  # whose caps `caps` are: the mons', or e.g. the OSDs' (PG commands)
    daemon: str | None = None
    self_arg: str | None = None
    self_service: str | None = None
    any_entity: bool = False


@dataclass(frozen=True)
class Descriptor:
    prefix: str
    params: tuple[Param, ...] = ()
    help: str = ""
    write: bool = False
    access: Access = field(default_factory=Access)
    fn: Callable | None = None  # None: the daemon handles it itself
    cli_paths: tuple[str, ...] = ()  # the `sds` words for it, first the main one; () = prefix

    @property
    def paths(self) -> tuple[str, ...]:
        """The `sds` subcommands that run it."""
        return self.cli_paths or (self.prefix,)

    @property
    def needs(self) -> str:
        """The mon permission letters a non-daemon caller needs."""
        return self.access.caps or ("rw" if self.write else "r")

    def validate(self, cmd: dict) -> dict:
        """The command's arguments, checked and typed; keys it does not declare pass as
        they are (older callers may send more)."""
        args = dict(cmd)
        args["prefix"] = self.prefix
        for param in self.params:
            args[param.name] = _check(self.prefix, param, cmd.get(param.name))
        return args

    def to_dict(self) -> dict:
        return {"prefix": self.prefix, "help": self.help, "write": self.write,
                "needs": None if self.access.daemon else self.needs,
                "service": self.access.service,
                "daemon_only": self.access.daemon,
                "params": [p.to_dict() for p in self.params],
                **({"cli_paths": list(self.cli_paths)} if self.cli_paths else {})}


def _check(prefix: str, param: Param, value: Any) -> Any:
    if value is None or (param.type in ("ids", "strs") and value == []):
        if param.required:
            raise InvalidArgument(f"'{prefix}' needs the argument '{param.name}'")
        return param.default
    checked = _CHECKS[param.type](param, value)
    if param.choices and checked not in param.choices:
        raise InvalidArgument(f"unknown {param.name} {value!r} "
                              f"(known: {', '.join(param.choices)})")
    return checked


def _number(param: Param, value: Any, kind: type) -> float | int:
    word = "an integer" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float | str) or \
            (kind is int and isinstance(value, float)):
        raise InvalidArgument(f"'{param.name}' must be {word}, not {value!r}")
    try:
        number = kind(value)
    except ValueError:
        raise InvalidArgument(f"'{param.name}' must be {word}, not {value!r}") from None
    if not number == number:  # NaN
        raise InvalidArgument(f"'{param.name}' must be {word}, not {value!r}")
    if (param.lo is not None and number < param.lo) or \
            (param.hi is not None and number > param.hi):
        raise InvalidArgument(f"'{param.name}' must be between {param.lo} and {param.hi}, "
                              f"not {number}")
    return number


def as_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """An integer argument whose bounds depend on others (checked by the handler)."""
    return int(_number(Param(name, "int", lo=lo, hi=hi), value, int))


def _str(param: Param, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"'{param.name}' must be a non-empty string, not {value!r}")
    return value


def _text(param: Param, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"'{param.name}' must be a string, not {value!r}")
    return value


def _bool(param: Param, value: Any) -> bool:
    return value is True or (isinstance(value, str)
                             and value.lower() in (*TRUE_WORDS, param.name))


def _ids(param: Param, value: Any) -> list[int]:
    """OSD ids: a list (or one) of N or "osd.N", duplicates dropped, order kept."""
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        if isinstance(item, str) and item.startswith("osd."):
            item = item[4:]
        ids.append(int(_number(param, item, int)))
    return list(dict.fromkeys(ids))


def _strs(param: Param, value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [_str(param, item) for item in items]


_CHECKS: dict[str, Callable[[Param, Any], Any]] = {
    "str": _str,
    "text": _text,
    "int": lambda p, v: _number(p, v, int),
    "float": lambda p, v: _number(p, v, float),
    "bool": _bool,
    "ids": _ids,
    "strs": _strs,
    "any": lambda p, v: v,
}


class Registry:
    """Descriptors by prefix; one per server kind (the mons', the MDS's, the OSDs')."""

    def __init__(self, what: str = "command", hint: str | None = "try 'help'") -> None:
        self.what, self.hint = what, hint  # for the unknown-command error; hint None: list them
        self.commands: dict[str, Descriptor] = {}

    def add(self, desc: Descriptor) -> Descriptor:
        if desc.prefix in self.commands:
            raise ValueError(f"command '{desc.prefix}' is declared twice")
        for param in desc.params:
            if param.type not in TYPES:
                raise ValueError(f"{desc.prefix}: unknown parameter type {param.type!r}")
            if param.cli is not None and param.cli.kind not in (None, *CLI_KINDS):
                raise ValueError(f"{desc.prefix}: unknown CLI kind {param.cli.kind!r}")
        self.commands[desc.prefix] = desc
        return desc

    def command(self, prefix: str, *params: Param, write: bool = False,
                access: Access | None = None, cli_paths: tuple[str, ...] = ()):
        """Decorator: declare a command run by `fn`; its docstring's first line is its help."""

        def register(fn: Callable) -> Callable:
            self.add(Descriptor(prefix, params, help_of(fn), write, access or Access(), fn,
                                cli_paths))
            return fn

        return register

    def find(self, cmd: Any) -> Descriptor:
        """The descriptor a JSON command names, or InvalidArgument."""
        if not isinstance(cmd, dict):
            raise InvalidArgument("a command is a JSON object with a 'prefix'")
        prefix = cmd.get("prefix")
        if not isinstance(prefix, str) or not prefix.strip():
            raise InvalidArgument("the command has no 'prefix'")
        found = self.commands.get(" ".join(prefix.split()))
        if found is None:
            hint = self.hint or ", ".join(sorted(self.commands))
            raise InvalidArgument(f"unknown {self.what} '{prefix}' ({hint})")
        return found

    def describe(self) -> list[dict]:
        return [d.to_dict() for _, d in sorted(self.commands.items())]


def help_of(fn: Callable) -> str:
    """The first paragraph of a docstring, on one line."""
    return " ".join(inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].split())


def _names(peer: Peer, role: str, value: Any) -> bool:
    if isinstance(value, list):
        if len(value) != 1:
            return False
        value = value[0]
    if isinstance(value, str) and value.startswith(f"{role}."):
        value = value[len(role) + 1:]
    return peer.entity == f"{role}.{value}"


def authorize(peer: Peer, desc: Descriptor, cmd: dict) -> None:
    """Raise PermissionDenied unless `peer` may run `cmd` as `desc` declares."""
    access, prefix = desc.access, desc.prefix
    if access.daemon is not None:
        peer.require_daemon(access.daemon)
        if access.self_arg is not None and not _names(peer, access.daemon,
                                                      cmd.get(access.self_arg)):
            raise PermissionDenied(f"{peer.entity} may run '{prefix}' only for itself")
        return
    if access.any_entity:
        if not peer.verified:
            raise PermissionDenied(f"'{prefix}' needs an authenticated session")
        return
    if access.self_service is not None and peer.allows_daemon(access.self_service) and \
            _names(peer, access.self_service, cmd.get(access.self_arg)):
        return
    peer.require(access.service, desc.needs, command=prefix)
