"""Capabilities: Ceph's cap grammar, parsed once, and the one function that evaluates it.

An entity holds one cap string per service (mon, osd, mds, mgr), e.g.
``{"mon": "allow r", "osd": "allow rw pool=scratch, allow r pool=logs"}``. Strings are
parsed when they are set (`auth get-or-create`, `auth add`, `auth caps`), so an invalid
one is refused there, with the offending token; `parse` is cached, so a daemon that meets
the same string on every connection parses it once.

Grammar (per service; grants separated by ',' or ';'):

    allow PERM [pool=NAME]           PERM: r w x rw rx wx rwx or *  (pool=: osd only)
    allow command "PREFIX"           mon, mgr: that command (and its sub-commands), any access
    [allow] profile NAME [pool=NAME] a named bundle (PROFILES below)

Meaning (Ceph's): r reads, w changes, x is "execute": on the mon it reads and changes the
auth database (secrets), on the MDS it sets quotas, takes snapshots and runs fsck; `*` is
everything. Access accumulates over the grants that apply. Daemon *powers* (speaking Paxos,
booting as an OSD, reporting statistics, reading the auth database) come only from the
daemon profiles, never from `allow *` and never from an entity's name.

`namespace=` is refused: SDS pools have no namespaces. `path=` is refused on mds for now.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sds.common.errors import InvalidArgument

SERVICES = ("mon", "osd", "mds", "mgr")
LETTERS = "rwx"
DAEMON_ROLES = ("mon", "osd", "mds", "mgr")


@dataclass(frozen=True)
class Grant:
    """One clause of a cap string, profiles already expanded."""

    perms: frozenset[str] = frozenset()  # subset of r, w, x
    everything: bool = False             # allow *: every access and every command
    pool: str | None = None              # osd: only this pool
    command: str | None = None           # mon/mgr: only this command prefix
    powers: frozenset[str] = frozenset()  # daemon powers (from daemon profiles only)


@dataclass(frozen=True)
class Need:
    """What a request needs on one service; `perms` "*" means admin-only."""

    service: str
    perms: str = ""
    pool: str | None = None
    command: str | None = None
    power: str | None = None


@dataclass(frozen=True)
class Caps:
    """An entity's parsed caps: grants per service, and the strings they came from."""

    grants: Mapping[str, tuple[Grant, ...]] = field(default_factory=dict)
    text: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- profiles

def _g(perms: str = "", everything: bool = False, command: str | None = None,
       powers: tuple[str, ...] = ()) -> Grant:
    return Grant(frozenset(perms), everything, None, command, frozenset(powers))


# service -> profile -> grants. Pool-limitable profiles (osd) take the pool of the clause.
PROFILES: dict[str, dict[str, tuple[Grant, ...]]] = {
    "mon": {
        "mon": (_g(everything=True, powers=("mon",)),),
        "osd": (_g("r", powers=("osd",)),),
        "mds": (_g("r", powers=("mds",)), _g(command="osd blocklist add")),
        "mgr": (_g("r", powers=("mgr",)), _g(command="osd balance")),
        "read-only": (_g("r"),),
        "read-write": (_g("r"),),
        # the CSI plugin fences the clients of a node it unstages (as Ceph CSI does)
        "csi": (_g("r"), _g(command="osd blocklist")),
        # the S3 gateway creates its own pools on first use
        "rgw": (_g("r"), _g(command="osd pool create")),
    },
    "osd": {
        "read-only": (_g("r"),),
        "read-write": (_g("rw"),),
        "csi": (_g("rw"),),
        "rgw": (_g("rwx"),),
    },
    "mds": {
        "mds": (_g(everything=True, powers=("mds",)),),
        "read-only": (_g("r"),),
        "read-write": (_g("rw"),),
        "csi": (_g("rwx"),),  # subvolumes are directories with quotas and snapshots
    },
    "mgr": {
        "osd": (_g(powers=("osd",)),),
        "mds": (_g("r", powers=("mds",)),),
        "mgr": (_g(everything=True, powers=("mgr",)),),
        "read-only": (_g("r"),),
        "csi": (_g("r"),),
        "rgw": (_g("r"),),
    },
}

POOL_SERVICES = ("osd",)
COMMAND_SERVICES = ("mon", "mgr")


# ---------------------------------------------------------------- parsing

_TOKEN = re.compile(r"\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[=,;]|[^\s=,;\"']+)")
_PERM = re.compile(r"^(\*|r?w?x?)$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class _Tokens:
    def __init__(self, service: str, text: str):
        self.service, self.text = service, text
        self.items: list[tuple[str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or not m.group(1):
                if text[pos:].strip() == "":
                    break
                self.fail(pos, "a closing quote")
            self.items.append((m.group(1), m.start(1)))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.items[self.i][0] if self.i < len(self.items) else None

    def take(self, expected: str) -> str:
        tok = self.peek()
        if tok is None:
            self.fail(len(self.text), f"{expected} after the end")
        self.i += 1
        return tok

    def fail(self, pos: int | None, expected: str) -> None:
        if pos is None:
            pos = self.items[self.i][1] if self.i < len(self.items) else len(self.text)
        found = self.text[pos:].split(",")[0].strip() or "end of string"
        raise InvalidArgument(f"invalid {self.service} cap {self.text!r}: at '{found}' "
                              f"(position {pos}): expected {expected}")

    def fail_here(self, expected: str) -> None:
        self.fail(None, expected)


def _unquote(tok: str) -> str:
    if len(tok) >= 2 and tok[0] == tok[-1] and tok[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", tok[1:-1])
    return tok


def _kv(t: _Tokens, key: str) -> str:
    """`key=value` or `key value` (Ceph accepts both); the key is already taken."""
    if t.peek() == "=":
        t.take("'='")
    if t.peek() in (None, ",", ";", "="):
        t.fail_here(f"a value after '{key}'")
    return _unquote(t.take("a value"))


def _restrictions(t: _Tokens) -> str | None:
    """Optional `pool=NAME` (osd only); refuses namespaces, paths and unknown words."""
    pool = None
    while t.peek() not in (None, ",", ";"):
        word = t.peek()
        if word == "pool" and t.service in POOL_SERVICES and pool is None:
            t.take("pool")
            pool = _kv(t, "pool")
            if not _NAME.match(pool):
                t.i -= 1
                t.fail_here("a pool name (letters, digits, '_', '-', '.')")
        elif word == "namespace":
            t.fail_here("no 'namespace=': SDS pools have no namespaces")
        elif word == "path":
            t.fail_here("no 'path=': path-limited MDS caps are not supported yet")
        else:
            allowed = "pool=NAME, " if t.service in POOL_SERVICES and pool is None else ""
            t.fail_here(f"{allowed}',' or the end of the grant")
    return pool


def _profile(t: _Tokens) -> tuple[Grant, ...]:
    known = PROFILES.get(t.service, {})
    if t.peek() in (None, ",", ";"):
        t.fail_here("a profile name")
    name = _unquote(t.take("a profile name"))
    if name not in known:
        t.i -= 1
        t.fail_here(f"a {t.service} profile ({', '.join(sorted(known)) or 'none'})")
    pool = _restrictions(t)
    return tuple(Grant(g.perms, g.everything, pool, g.command, g.powers) for g in known[name])


def _grant(t: _Tokens) -> tuple[Grant, ...]:
    first = t.take("'allow' or 'profile'")
    if first == "profile":
        return _profile(t)
    if first != "allow":
        t.i -= 1
        t.fail_here("'allow' or 'profile'")
    word = t.peek()
    if word is None or word in (",", ";"):
        t.fail_here("r, w, x, rw, rwx, *, 'command' or 'profile' after 'allow'")
    if word == "profile":
        t.take("profile")
        return _profile(t)
    if word == "command":
        t.take("command")
        if t.service not in COMMAND_SERVICES:
            t.i -= 1
            t.fail_here(f"a permission ('allow command' is for {', '.join(COMMAND_SERVICES)})")
        if t.peek() in (None, ",", ";"):
            t.fail_here("a quoted command prefix, e.g. \"auth get\"")
        prefix = " ".join(_unquote(t.take("a command")).split())
        if not prefix:
            t.i -= 1
            t.fail_here("a non-empty command prefix")
        if t.peek() not in (None, ",", ";"):
            t.fail_here("',' or the end of the grant (command arguments are not supported)")
        return (Grant(command=prefix),)
    if not _PERM.match(word) or word == "":
        t.fail_here("r, w, x, rw, rx, wx, rwx or * (letters in that order)")
    t.take("a permission")
    pool = _restrictions(t)
    if word == "*":
        return (Grant(frozenset(LETTERS), True, pool),)
    return (Grant(frozenset(word), False, pool),)


@functools.lru_cache(maxsize=4096)
def parse_service(service: str, text: str) -> tuple[Grant, ...]:
    """The grants of one service's cap string; InvalidArgument names the bad token."""
    if service not in SERVICES:
        raise InvalidArgument(f"unknown cap service '{service}' (known: {', '.join(SERVICES)})")
    if not isinstance(text, str):
        raise InvalidArgument(f"the {service} cap must be a string, not {text!r}")
    t = _Tokens(service, text)
    grants: list[Grant] = []
    if t.peek() is None:
        return ()
    while True:
        grants.extend(_grant(t))
        sep = t.peek()
        if sep is None:
            break
        if sep not in (",", ";"):
            t.fail_here("',' between grants")
        t.take("separator")
        if t.peek() is None:
            t.fail_here("another grant after the separator")
    return tuple(grants)


def parse(caps: Mapping[str, str] | None) -> Caps:
    """Parse every service's string; the first invalid one raises InvalidArgument."""
    caps = dict(caps or {})
    return Caps({s: parse_service(s, v) for s, v in caps.items()}, caps)


def check(caps: Mapping[str, str] | None) -> dict[str, str]:
    """Validate caps being set; returns them normalised to a plain dict."""
    if caps is None:
        return {}
    if not isinstance(caps, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in caps.items()):
        raise InvalidArgument("caps must be an object like {\"osd\": \"allow rw pool=x\"}")
    parse(caps)
    return dict(caps)


# ---------------------------------------------------------------- evaluation

def _command_matches(granted: str, command: str | None) -> bool:
    if command is None:
        return False
    return command == granted or command.startswith(granted + " ")


def allows(caps: Caps, need: Need) -> bool:
    """The one evaluator: does `caps` grant `need`? Pure; accumulates over grants."""
    grants = caps.grants.get(need.service, ())
    if need.power is not None:
        return any(need.power in g.powers for g in grants)
    wanted = set(LETTERS) if need.perms == "*" else set(need.perms)
    have: set[str] = set()
    for g in grants:
        if g.pool is not None and g.pool != need.pool:
            continue
        if g.everything:
            return True
        if g.command is not None:
            if _command_matches(g.command, need.command):
                return True
            continue
        if need.perms != "*":
            have |= g.perms
    return bool(wanted) and wanted <= have


def is_daemon(caps: Caps, role: str) -> bool:
    """A daemon of `role` is one whose mon caps carry that daemon profile."""
    return allows(caps, Need("mon", power=role))


def covers(holder: Caps, wanted: Caps) -> bool:
    """Whether `holder` may hand out `wanted` (create such an entity, or read its key).

    Conservative: every grant of `wanted` must be one `holder` itself holds; daemon
    powers need `allow *` on the mon as well as on the service.
    """
    mon_admin = allows(holder, Need("mon", "*"))
    for service, grants in wanted.grants.items():
        for g in grants:
            if g.powers and not (mon_admin and allows(holder, Need(service, "*"))):
                return False
            if g.everything:
                if not allows(holder, Need(service, "*", pool=g.pool)):
                    return False
            elif g.command is not None:
                if not any(h.everything or (h.command is not None
                                            and _command_matches(h.command, g.command))
                           for h in holder.grants.get(service, ())):
                    return False
            elif g.perms and not allows(holder, Need(service, "".join(sorted(g.perms)),
                                                     pool=g.pool)):
                return False
    return True
