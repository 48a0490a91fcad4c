"""cephx-like tickets: issue, verify offline, rotation, expiry, tampering."""

from __future__ import annotations

import pytest

from sds.common import tickets
from sds.common.errors import AuthError, InvalidArgument

NOW = 1_000_000.0
TTL = 3600.0
KEY = b"k" * 32


def secrets_at(now=NOW):
    return tickets.rotate([], now, TTL)


def test_rotation_keeps_a_current_and_a_next_secret():
    first = secrets_at()
    assert [s.id for s in first] == [1, 2]
    assert all(s.expires - NOW >= TTL for s in first)
    assert tickets.rotate(first, NOW + 10, TTL) == first  # nothing due yet
    later = tickets.rotate(first, NOW + TTL + 1, TTL)
    assert [s.id for s in later][-1] == 3 and first[1] in later
    much_later = tickets.rotate(later, NOW + 10 * TTL, TTL)
    assert min(s.id for s in much_later) > 3  # expired ones are gone


def test_a_ticket_verifies_offline_with_the_same_session_key():
    rotating = secrets_at()
    signer = tickets.signing_secret(rotating, NOW)
    ticket, sealed = tickets.issue("client.app", {"osd": "allow rw pool=a"}, "osd", signer,
                                   KEY, NOW, TTL)
    got = tickets.verify(ticket, "osd", rotating, NOW + 5)
    assert got.entity == "client.app" and got.caps == {"osd": "allow rw pool=a"}
    assert got.session_key == tickets.open_session_key(KEY, sealed)
    assert tickets.open_session_key(b"x" * 32, sealed) != got.session_key
    assert got.expires <= NOW + TTL


def test_rotation_does_not_cut_a_ticket_short():
    rotating = secrets_at()
    ticket, _ = tickets.issue("client.a", {}, "osd", tickets.signing_secret(rotating, NOW),
                              KEY, NOW, TTL)
    rotated = tickets.rotate(rotating, NOW + TTL - 1, TTL)
    tickets.verify(ticket, "osd", rotated, NOW + TTL - 1)


@pytest.mark.parametrize("case", ["expired", "other service", "tampered caps",
                                  "unknown secret", "truncated", "garbage"])
def test_bad_tickets_are_refused(case):
    rotating = secrets_at()
    ticket, _ = tickets.issue("client.a", {"osd": "allow r"}, "osd",
                              tickets.signing_secret(rotating, NOW), KEY, NOW, TTL)
    now, service = NOW + 1, "osd"
    if case == "expired":
        now = NOW + TTL + 1
    elif case == "other service":
        service = "mds"
    elif case == "tampered caps":
        ticket = ticket.replace(b"allow r", b"allow *")
    elif case == "unknown secret":
        rotating = tickets.rotate([], NOW + 100 * TTL, TTL)
    elif case == "truncated":
        ticket = ticket[:20]
    else:
        ticket = b"{" + b"x" * 40
    with pytest.raises(AuthError):
        tickets.verify(ticket, service, rotating, now)


def test_no_tickets_for_unknown_services_or_without_secrets():
    with pytest.raises(InvalidArgument):
        tickets.issue("client.a", {}, "mon", secrets_at()[0], KEY, NOW)
    with pytest.raises(AuthError):
        tickets.signing_secret([], NOW)


def test_mon_rotates_and_issues_tickets_a_daemon_verifies():
    import base64
    import time

    from sds.common.config import Config
    from sds.common.keyring import Keyring
    from sds.mon import commands, genesis
    from sds.mon.services.tickets import _tick

    keyring = Keyring()
    keyring.add("client.app", KEY, {"osd": "allow rw pool=a"})
    now = time.time()
    view = commands.MonView(
        osdmap=genesis.initial_osdmap("f", "osd", now), auth=genesis.initial_auth(keyring),
        monmap=genesis.initial_monmap("f", ["h:1"]), mon_status={}, digest=None,
        config=Config(None), now=now, caller_name="client.app")
    assert _tick(view) == [{"prefix": "auth rotate"}]
    result = commands.handle(view, {"prefix": "auth rotate"})
    rotated = result.update.rotating.services
    assert sorted(s.service for s in rotated) == ["mds", "mgr", "osd"]
    for s in rotated:
        view.rotating[s.service] = list(s.secrets)
    assert _tick(view) == []  # nothing due until the current secret runs short
    assert commands.handle(view, {"prefix": "auth rotate"}).update is None

    out = commands.handle(view, {"prefix": "auth get-ticket", "service": "osd"}).output
    ticket = base64.b64decode(out["ticket"])
    osd_secrets = [tickets.RotatingSecret(s.id, s.secret, s.expires)
                   for s in view.rotating["osd"]]
    got = tickets.verify(ticket, "osd", osd_secrets, now + 1)  # the OSD, offline
    assert got.entity == "client.app" and got.caps == {"osd": "allow rw pool=a"}
    assert got.session_key == tickets.open_session_key(KEY, base64.b64decode(out["sealed_key"]))
    mds_secrets = [tickets.RotatingSecret(s.id, s.secret, s.expires)
                   for s in view.rotating["mds"]]
    with pytest.raises(AuthError):
        tickets.verify(ticket, "osd", mds_secrets, now + 1)
