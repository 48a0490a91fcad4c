"""Mutual HMAC challenge/response at connection set-up, and the capability hook.

Both sides prove they know the entity's secret without sending it: the server sends
a nonce, the client answers HMAC(key, "client"|server_nonce|client_nonce|entity),
the server answers HMAC(key, "server"|...). A wrong or missing key is refused
before any request is read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from sds.common.errors import PermissionDenied

NONCE_BYTES = 16

# entity name -> (secret key, caps) or None when the entity is unknown
KeyLookup = Callable[[str], "tuple[bytes, dict[str, str]] | None"]


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
    """Who is on the other end of an authenticated connection."""

    entity: str
    caps: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.entity.split(".", 1)[0]

    def require(self, service: str, access: str) -> None:
        """Capability hook: `access` is a subset of "rwx" for `service` (mon, osd, mgr).

        Daemons (mon., osd.N, mgr.x) are trusted; clients need a cap like "allow rw"
        or "allow *". Fine-grained caps (per pool, profiles) plug in here.
        """
        if self.role in ("mon", "osd", "mgr", "mds"):
            return
        cap = self.caps.get(service, "")
        granted = cap.replace("allow", "").strip()
        if granted == "*" or all(c in granted for c in access):
            return
        raise PermissionDenied(f"{self.entity} lacks '{access}' capability on {service}")
