"""cephx-like service tickets: the mons vouch for an entity once, services verify offline.

Where it is used: the mons keep the secrets in Paxos (MapUpdate.rotating) and the leader
rotates them (sds/mon/ticket_commands.py, which also serves `auth get-ticket SERVICE`);
each daemon's auth subscription carries its own service's secrets and names and caps
but no keys; clients hold and renew tickets (sds/client/tickets.py) and the messenger
handshake shows them to OSDs, MDSs and the mgr (sds/common/messenger.py).

A ticket names an entity, its caps, the service it is for (osd, mds, mgr), the id of the
service's rotating secret that signed it, and its expiry; it is HMAC-SHA256-signed with
that secret, which only the mons (in Paxos) and the service's daemons know. The session
key the holder proves itself with is derived from the signed ticket with the same
secret, so a service recomputes it from the ticket alone; the mon hands it to the holder
sealed under the holder's own key (an HMAC keystream), so only the mon, the service and
the holder know it. A daemon therefore verifies a connection with the rotating secrets
of its own service instead of every entity's key: it no longer needs the auth database.

Rotation, as Ceph: each service keeps its previous, current and next secret; tickets are
signed with the current one and verified against any one that has not expired, so a
rotation never invalidates a ticket before its own expiry.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from sds.common.errors import AuthError, InvalidArgument, TicketExpired

SIG_BYTES = 32
KEY_BYTES = 32
DEFAULT_TTL_S = 3600.0  # Ceph's auth_service_ticket_ttl
SERVICES = ("osd", "mds", "mgr")


@dataclass(frozen=True)
class RotatingSecret:
    id: int
    secret: bytes
    expires: float


@dataclass(frozen=True)
class Ticket:
    """What a verified ticket tells a service."""

    entity: str
    caps: dict[str, str]
    service: str
    expires: float
    session_key: bytes


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"|".join(parts), hashlib.sha256).digest()


def rotate(current: list[RotatingSecret], now: float,
           ttl: float = DEFAULT_TTL_S) -> list[RotatingSecret]:
    """The secrets after a rotation check: expired ones dropped, and always one current
    (valid for at least `ttl` more) and one next, each living 2*ttl from its start.
    Pure apart from drawing new random secrets; the leader proposes the result."""
    alive = sorted((s for s in current if s.expires > now), key=lambda s: s.id)
    next_id = max((s.id for s in current), default=0) + 1  # ids are never reused
    while len([s for s in alive if s.expires - now >= ttl]) < 2:
        start = max([now] + [s.expires - ttl for s in alive])
        alive.append(RotatingSecret(next_id, secrets.token_bytes(KEY_BYTES), start + 2 * ttl))
        next_id += 1
    return alive


def signing_secret(rotating: list[RotatingSecret], now: float) -> RotatingSecret:
    """The secret new tickets are signed with: the oldest one still valid for long."""
    usable = [s for s in sorted(rotating, key=lambda s: s.id) if s.expires > now]
    if not usable:
        raise AuthError("no rotating secret is valid: the mons have not rotated them")
    return usable[0] if len(usable) == 1 else usable[-2]


def _seal(key: bytes, nonce: bytes, data: bytes) -> bytes:
    stream = _mac(key, b"sds-ticket-seal", nonce)
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def issue(entity: str, caps: dict[str, str], service: str, secret: RotatingSecret,
          entity_key: bytes, now: float, ttl: float = DEFAULT_TTL_S) -> tuple[bytes, bytes]:
    """(ticket, sealed session key) for `entity` to show `service`; the mon runs this."""
    if service not in SERVICES:
        raise InvalidArgument(f"no tickets for service '{service}' (known: {', '.join(SERVICES)})")
    expires = min(now + ttl, secret.expires)
    nonce = secrets.token_bytes(16)
    body = json.dumps({"entity": entity, "caps": dict(caps), "service": service,
                       "secret_id": secret.id, "expires": expires, "nonce": nonce.hex()},
                      sort_keys=True, separators=(",", ":")).encode()
    ticket = body + _mac(secret.secret, b"ticket", body)
    session_key = _mac(secret.secret, b"session", ticket)
    return ticket, nonce + _seal(entity_key, nonce, session_key)


def open_session_key(entity_key: bytes, sealed: bytes) -> bytes:
    """The holder's side: the session key the mon sealed under its own key."""
    if len(sealed) != 16 + KEY_BYTES:
        raise AuthError("malformed sealed session key")
    return _seal(entity_key, sealed[:16], sealed[16:])


def verify(ticket: bytes, service: str, rotating: list[RotatingSecret], now: float) -> Ticket:
    """The service's side: check signature, service and expiry; AuthError otherwise."""
    if len(ticket) <= SIG_BYTES:
        raise AuthError("malformed ticket")
    body, sig = ticket[:-SIG_BYTES], ticket[-SIG_BYTES:]
    try:
        fields = json.loads(body)
        secret_id = int(fields["secret_id"])
        expires = float(fields["expires"])
        entity, caps, for_service = fields["entity"], fields["caps"], fields["service"]
    except (ValueError, KeyError, TypeError):
        raise AuthError("malformed ticket") from None
    secret = next((s for s in rotating if s.id == secret_id), None)
    if secret is None and secret_id > max((s.id for s in rotating), default=0):
        # the mons rotated and signed with it before our copy of the secrets arrived
        raise AuthError(f"ticket of {entity} is signed with a secret this service has not "
                        "received yet; retry", code=errno.EAGAIN)
    if secret is None:  # ids are never reused: an older one was dropped when it expired
        raise TicketExpired(f"ticket of {entity} is signed with a secret that expired")
    if secret.expires <= now:  # a ticket never outlives its secret: it expired too
        raise TicketExpired(f"ticket of {entity} expired with its secret; renew it")
    if not hmac.compare_digest(sig, _mac(secret.secret, b"ticket", body)):
        raise AuthError("ticket signature does not verify")
    if for_service != service:
        raise AuthError(f"ticket of {entity} is for {for_service}, not {service}")
    if expires <= now:
        raise TicketExpired(f"ticket of {entity} expired; renew it from the monitors")
    if not isinstance(caps, dict) or not isinstance(entity, str):
        raise AuthError("malformed ticket")
    return Ticket(entity, dict(caps), service, expires,
                  _mac(secret.secret, b"session", ticket))
