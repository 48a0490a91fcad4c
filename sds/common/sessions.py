"""Revocation on live sessions: when the auth database changes, re-check every
connection a daemon accepted.

An entity that was removed loses its connections at once (requests in flight get no
reply, the client's reconnect fails authentication); one whose caps changed keeps its
connection with the new caps, so `auth caps` narrows what an open session may do from
its next request on. Daemons call `revalidate` whenever they apply an auth update (the
mons on commit, the others when the pushed update arrives), so the bound is one map
push after the change commits.
"""

from __future__ import annotations

import logging

from sds.common import auth
from sds.common.errors import ConnectionLost

log = logging.getLogger("sds.auth")


def revalidate(messenger, caps_of: auth.CapsLookup) -> tuple[list[str], list[str]]:
    """Drop accepted connections of vanished entities, refresh the caps of changed ones.

    `caps_of` gives an entity's caps now (None: removed); sessions opened with an entity
    key and with a ticket are judged alike. Returns (dropped, refreshed) entity names.
    Connections we dialled carry no caps and are left alone.
    """
    dropped, refreshed = [], []
    for conn in list(messenger.connections()):
        peer = conn.peer
        if not peer.verified or conn.closed:
            continue
        found = caps_of(peer.entity)
        if found is None:
            dropped.append(peer.entity)
            # abort, not close: handlers already running finish their store work
            conn._shutdown(ConnectionLost(f"{peer.entity} was removed from the auth database"))
            continue
        caps = dict(found)
        if caps != peer.caps:
            conn.peer = auth.Peer(peer.entity, caps)
            refreshed.append(peer.entity)
    if dropped or refreshed:
        log.info("auth change: dropped sessions of %s, new caps for %s",
                 sorted(set(dropped)) or "nobody", sorted(set(refreshed)) or "nobody")
    return dropped, refreshed
