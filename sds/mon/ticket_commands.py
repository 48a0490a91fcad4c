"""Monitor commands for cephx-like tickets: rotating the service secrets, issuing tickets.

The leader rotates each service's secrets (sds.common.tickets.rotate) from its once-a-
second tick, as one Paxos value, so every mon and every daemon of the service holds the
same list; any authenticated entity asks for a ticket for itself, carrying its own caps.
"""

from __future__ import annotations

import base64

from sds.common import tickets
from sds.common.errors import PermissionDenied, Unavailable
from sds.mon.commands import LEADER_TICKS, CommandResult, MonView, _str, command
from sds.proto import maps_pb2


def _ttl(view: MonView) -> float:
    return float(view.config.get("auth_service_ticket_ttl"))


def _secrets(view: MonView, service: str) -> list[tickets.RotatingSecret]:
    return [tickets.RotatingSecret(s.id, s.secret, s.expires)
            for s in view.rotating.get(service, [])]


def _due(view: MonView) -> list[str]:
    """Services whose secrets a rotation would change (ids and expiries are deterministic)."""
    due = []
    for service in tickets.SERVICES:
        current = _secrets(view, service)
        after = tickets.rotate(current, view.now, _ttl(view))
        if [(s.id, s.expires) for s in after] != [(s.id, s.expires) for s in current]:
            due.append(service)
    return due


@command("auth rotate", write=True)
def cmd_auth_rotate(view: MonView, cmd: dict) -> CommandResult:
    """(internal) Rotate the ticket secrets of every service that is due."""
    update = maps_pb2.RotatingUpdate()
    for service in _due(view):
        rotated = tickets.rotate(_secrets(view, service), view.now, _ttl(view))
        update.services.add(service=service, secrets=[
            maps_pb2.RotatingSecret(id=s.id, secret=s.secret, expires=s.expires)
            for s in rotated])
    out = {"rotated": [s.service for s in update.services]}
    if not update.services:
        return CommandResult(out)
    return CommandResult(out, maps_pb2.MapUpdate(rotating=update))


@command("auth get-ticket")
def cmd_auth_get_ticket(view: MonView, cmd: dict) -> CommandResult:
    """A ticket for the caller to show a service (osd, mds, mgr), and its sealed session key."""
    service = _str(cmd, "service")
    name = view.caller_name
    entity = view.auth.get(name or "")
    if entity is None:
        raise PermissionDenied("tickets are issued only to authenticated entities, for themselves")
    secrets = _secrets(view, service)
    if not secrets and service in tickets.SERVICES:
        # retried by the client: the leader's first tick after genesis creates them
        raise Unavailable(f"no {service} secrets yet: the monitors rotate them within a second")
    signer = tickets.signing_secret(secrets, view.now) if secrets else None
    ticket, sealed = tickets.issue(entity.name, dict(entity.caps), service, signer,
                                   entity.key, view.now, _ttl(view))
    return CommandResult({"entity": entity.name, "service": service,
                          "ticket": base64.b64encode(ticket).decode(),
                          "sealed_key": base64.b64encode(sealed).decode(),
                          "expires": min(view.now + _ttl(view), signer.expires)})


def _tick(view: MonView) -> list[dict]:
    return [{"prefix": "auth rotate"}] if _due(view) else []


LEADER_TICKS.append(_tick)
