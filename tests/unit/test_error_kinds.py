"""Errors keep their class across the messenger (errnos collide, kinds do not), and each
front door maps classes to its codes with its own table."""

import errno

import pytest

from sds.cli.errors import EXIT_CODES, describe
from sds.common import errors as e
from sds.common.messenger import Messenger
from sds.fs.errnos import ERRNO, to_errno
from sds.proto import messenger_pb2 as mpb

KEYS = {"client.admin": b"k" * 32, "mds.a": b"m" * 32}
ALL = [cls for cls in e._BY_KIND.values() if cls is not e.SdsError]


def lookup(entity):
    return (KEYS[entity], {"mds": "allow *"}) if entity in KEYS else None


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.kind)
async def test_every_class_comes_back_as_itself(cls):
    server = Messenger("mds.a", KEYS["mds.a"], key_lookup=lookup)

    async def refuse(conn, env, data):
        raise cls("refused by the peer")

    server.register(mpb.MDS_REQUEST, refuse)
    addr = await server.listen("127.0.0.1:0")
    client = Messenger("client.admin", KEYS["client.admin"])
    try:
        with pytest.raises(cls, match="refused by the peer") as got:
            await client.call(addr, mpb.MDS_REQUEST)
        assert type(got.value) is cls and got.value.code == cls.code
    finally:
        await client.close()
        await server.close()


def test_not_permitted_is_not_an_authentication_error():
    err = e.from_wire(errno.EPERM, "not_permitted", "not the owner")
    assert isinstance(err, e.NotPermitted) and not isinstance(err, e.AuthError)
    assert isinstance(e.from_wire(errno.EPERM, "auth_error"), e.AuthError)


def test_a_plain_error_keeps_its_errno_and_an_unknown_kind_falls_back_to_it():
    err = e.from_wire(errno.ENOLINK, "error", "odd")
    assert type(err) is e.SdsError and err.code == errno.ENOLINK
    assert isinstance(e.from_wire(errno.ENOENT, "from_a_newer_peer"), e.NotFound)


def test_kinds_are_unique_and_required():
    with pytest.raises(TypeError, match="taken"):
        type("Again", (e.SdsError,), {}, kind="not_found")
    with pytest.raises(TypeError, match="kind"):
        type("Nameless", (e.SdsError,), {})
    refined = type("Refined", (e.Retry,), {})  # travels as its base
    assert refined.kind == "retry" and e.from_wire(errno.EAGAIN, refined.kind).__class__ is e.Retry


@pytest.mark.parametrize("table", [ERRNO, EXIT_CODES], ids=["fuse", "cli"])
def test_every_class_has_a_row(table):
    assert set(ALL) <= set(table)


def test_front_doors_map_by_class():
    assert to_errno(e.StaleSession("gone")) == errno.ESTALE
    assert to_errno(e.NotPermitted("x")) == errno.EPERM
    assert to_errno(e.SdsError("odd", errno.ENOLINK)) == errno.ENOLINK
    assert to_errno(ValueError()) == errno.EIO
    assert to_errno(e.PermissionDenied("x", code=errno.EPERM)) == errno.EPERM  # its own
    assert describe(e.TooBig("attribute value too large")) == (
        "Error E2BIG: attribute value too large", errno.E2BIG)
