"""Whether a caller may run a monitor command: the one check, from the descriptors.

Each command declares its needs (sds.common.command.Access) where it is declared in
sds.mon.services: reads need mon `r` and writes `rw` unless it says otherwise (the auth
database needs Ceph's `x` as well: `rx` to read keys, `rwx` to change entities);
daemon-only commands need that daemon's profile and, where they name a daemon, must
name the caller itself. The tables below are views of the declarations, for docs and
tests; `authorize` is the only place a mon command is allowed.
"""

from __future__ import annotations

from sds.common import command
from sds.common.auth import Peer
from sds.mon.commands import COMMANDS

NEEDS: dict[str, str] = {p: d.access.caps for p, d in COMMANDS.items()
                         if d.access.caps and d.access.daemon is None}
DAEMON_ONLY: dict[str, tuple[str, str | None]] = {
    p: (d.access.daemon, d.access.self_arg) for p, d in COMMANDS.items() if d.access.daemon}
SELF_SERVICE: dict[str, tuple[str, str]] = {
    p: (d.access.self_service, d.access.self_arg) for p, d in COMMANDS.items()
    if d.access.self_service}
ANY_ENTITY = frozenset(p for p, d in COMMANDS.items() if d.access.any_entity)


def needs(prefix: str) -> str:
    """The mon permission letters a (non-daemon) command needs."""
    desc = COMMANDS.get(prefix)
    return desc.needs if desc is not None else "r"


def authorize(peer: Peer, cmd: dict) -> None:
    """Raise PermissionDenied unless `peer` may run `cmd` (a dict with a 'prefix'); an
    unknown command needs mon `r` (then fails as unknown)."""
    prefix = " ".join(str(cmd.get("prefix", "")).split())
    desc = COMMANDS.get(prefix)
    if desc is None:
        peer.require("mon", "r", command=prefix)
        return
    command.authorize(peer, desc, cmd)
