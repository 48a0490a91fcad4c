"""Mutual HMAC challenge/response at connection set-up, and the capability hook.

Both sides prove they know a shared secret without sending it: the server sends
a nonce, the client answers HMAC(key, "client"|server_nonce|client_nonce|entity),
the server answers HMAC(key, "server"|...). A wrong or missing key is refused
before any request is read.

With the mons the secret is the entity's key. With a service (OSD, MDS, mgr) it is
the session key of a ticket the client shows (sds.common.tickets): the service opens
the ticket with its rotating secrets, so it needs no entity's key at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sds.common import caps as caps_mod
from sds.common import tickets
from sds.common.errors import PermissionDenied, SdsError

NONCE_BYTES = 16

# entity name -> (secret key, caps) or None when the entity is unknown
KeyLookup = Callable[[str], "tuple[bytes, dict[str, str]] | None"]

# entity name -> its caps now, or None when the entity is unknown (removed)
CapsLookup = Callable[[str], "dict[str, str] | None"]

# service -> a held ticket (with .ticket and .session_key) to show it, or None for the key
TicketSource = Callable[[str], Awaitable[Any]]


@dataclass
class TicketCheck:
    """How a daemon of `service` verifies tickets: the rotating secrets it holds now, and
    the caps its auth map holds now. Those caps win over a ticket's when they differ, so
    a reconnect with an older ticket cannot bring back caps that `auth caps` removed, and
    an entity `auth rm` removed is refused even while its ticket lives."""

    service: str
    secrets: Callable[[], list[tickets.RotatingSecret]]
    caps_of: CapsLookup | None = None


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def proof(key: bytes, side: bytes, server_nonce: bytes, client_nonce: bytes, entity: str,
          extra: bytes = b"") -> bytes:
    """`extra` binds what else the handshake agreed (the server's chosen mode) to the proof."""
    msg = side + b"|" + server_nonce + b"|" + client_nonce + b"|" + entity.encode() + extra
    return hmac.new(key, msg, hashlib.sha256).digest()


def verify(expected: bytes, got: bytes) -> bool:
    return hmac.compare_digest(expected, got)


@dataclass
class Peer:
    """Who is on the other end of a connection, and what its caps let it do.

    `caps` is None on connections we opened: the server proved only that it knows *our*
    key, so it is granted nothing. On connections we accepted, the caps are the entity's
    in the auth database; `refresh` replaces them when that database changes.
    """

    entity: str
    caps: dict[str, str] | None = None
    parsed: caps_mod.Caps = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            self.parsed = caps_mod.parse(self.caps)
        except SdsError:  # an invalid string stored before caps were checked: grants nothing
            self.parsed = caps_mod.Caps()

    @property
    def verified(self) -> bool:
        return self.caps is not None

    def allows(self, need: caps_mod.Need) -> bool:
        return self.verified and caps_mod.allows(self.parsed, need)

    def require(self, service: str, access: str = "", pool: str | None = None,
                command: str | None = None, power: str | None = None) -> None:
        """Raise PermissionDenied unless the caps grant `access` (letters of "rwx", or "*")
        on `service`, for that pool or command, or the daemon `power`."""
        if self.allows(caps_mod.Need(service, access, pool, command, power)):
            return
        what = f"the {power} daemon profile" if power else f"'{access}'"
        where = f" on pool '{pool}'" if pool is not None else ""
        where += f" for '{command}'" if command else ""
        raise PermissionDenied(f"{self.entity or 'peer'} lacks {what} on {service}{where}")

    def allows_daemon(self, role: str) -> bool:
        return self.allows(caps_mod.Need("mon", power=role))

    def require_daemon(self, role: str) -> None:
        """Only a daemon of `role` (by its mon caps' profile, never by its name)."""
        self.require("mon", power=role)
