"""What each monitor command needs from its caller's caps: one table, one check.

Reads need mon `r` and writes `rw` (from the registry's `write` flag) unless the table
says otherwise: the auth database needs Ceph's `x` as well (`rx` to read keys, `rwx` to
change entities). Commands that only daemons send need that daemon's profile, and the
argument naming the daemon must name the caller itself: an OSD boots and reports
failures only as itself. `authorize` is the only place a mon command is allowed.
"""

from __future__ import annotations

from sds.common.auth import Peer
from sds.common.errors import PermissionDenied
from sds.mon import commands

# prefix -> mon permission letters (Ceph's MonCommands: auth is "rx" to read, "rwx" to write)
NEEDS: dict[str, str] = {
    "auth ls": "rx",
    "auth get": "rx",
    "auth print-key": "rx",
    "auth export": "rx",
    "auth get-or-create": "rwx",
    "auth add": "rwx",
    "auth caps": "rwx",
    "auth rm": "rwx",
    "osd purge": "rwx",  # also removes the OSD's key
}

# prefix -> (daemon profile needed, argument that must name the caller, or None)
DAEMON_ONLY: dict[str, tuple[str, str | None]] = {
    "osd boot": ("osd", "id"),
    "osd failure": ("osd", "reporter"),
    "mgr report": ("mgr", None),
    "mds beacon": ("mds", "name"),
    "mon disk report": ("mon", None),  # monitors share the mon. entity
}

# prefix -> (daemon profile, argument): allowed to the daemon it names, else like NEEDS
SELF_SERVICE: dict[str, tuple[str, str]] = {
    "osd down": ("osd", "ids"),
    "mds fail": ("mds", "name"),
}


# commands any authenticated entity may run, for itself
ANY_ENTITY = frozenset({"auth get-ticket"})

DAEMON_ONLY["auth rotate"] = ("mon", None)  # the leader's own tick; no one else


def needs(prefix: str) -> str:
    """The mon permission letters a (non-daemon) command needs."""
    return NEEDS.get(prefix) or ("rw" if commands.is_write(prefix) else "r")


def _names(peer: Peer, role: str, value) -> bool:
    if isinstance(value, list):
        if len(value) != 1:
            return False
        value = value[0]
    if isinstance(value, str) and value.startswith(f"{role}."):
        value = value[len(role) + 1:]
    return peer.entity == f"{role}.{value}"


def authorize(peer: Peer, cmd: dict) -> None:
    """Raise PermissionDenied unless `peer` may run `cmd` (a dict with a 'prefix')."""
    prefix = " ".join(str(cmd.get("prefix", "")).split())
    if prefix in DAEMON_ONLY:
        role, arg = DAEMON_ONLY[prefix]
        peer.require_daemon(role)
        if arg is not None and not _names(peer, role, cmd.get(arg)):
            raise PermissionDenied(f"{peer.entity} may run '{prefix}' only for itself")
        return
    if prefix in ANY_ENTITY:
        if not peer.verified:
            raise PermissionDenied(f"'{prefix}' needs an authenticated session")
        return
    if prefix in SELF_SERVICE:
        role, arg = SELF_SERVICE[prefix]
        if peer.allows_daemon(role) and _names(peer, role, cmd.get(arg)):
            return
    peer.require("mon", needs(prefix), command=prefix)
