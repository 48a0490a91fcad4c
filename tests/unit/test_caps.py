"""The cap grammar and its one evaluator, table-driven."""

from __future__ import annotations

import pytest

from sds.common import caps
from sds.common.auth import Peer
from sds.common.caps import Need
from sds.common.errors import InvalidArgument, PermissionDenied

# (caps, need, allowed)
CASES = [
    # plain permissions, every form
    ({"mon": "allow r"}, Need("mon", "r"), True),
    ({"mon": "allow r"}, Need("mon", "rw"), False),
    ({"mon": "allow r"}, Need("mon", "rx"), False),
    ({"mon": "allow w"}, Need("mon", "r"), False),
    ({"mon": "allow rw"}, Need("mon", "rw"), True),
    ({"mon": "allow rw"}, Need("mon", "rx"), False),
    ({"mon": "allow rw"}, Need("mon", "*"), False),
    ({"mon": "allow x"}, Need("mon", "x"), True),
    ({"mon": "allow rx"}, Need("mon", "rx"), True),
    ({"mon": "allow wx"}, Need("mon", "w"), True),
    ({"mon": "allow rwx"}, Need("mon", "rwx"), True),
    ({"mon": "allow rwx"}, Need("mon", "*"), False),
    ({"mon": "allow *"}, Need("mon", "*"), True),
    ({"mon": "allow *"}, Need("mon", "rwx"), True),
    ({"mon": "allow *"}, Need("mon", "r", command="auth get"), True),
    # access accumulates over grants
    ({"mon": "allow r, allow w"}, Need("mon", "rw"), True),
    ({"osd": "allow r pool=a, allow w pool=a"}, Need("osd", "rw", pool="a"), True),
    ({"osd": "allow r pool=a; allow w pool=b"}, Need("osd", "rw", pool="a"), False),
    # nothing is granted on a service without caps, or for an empty need
    ({"mon": "allow *"}, Need("osd", "r", pool="p"), False),
    ({}, Need("mon", "r"), False),
    ({"mon": ""}, Need("mon", "r"), False),
    ({"mon": "allow r"}, Need("mon", ""), False),
    # every service takes permissions
    ({"osd": "allow rw"}, Need("osd", "w", pool="any"), True),
    ({"mds": "allow r"}, Need("mds", "r"), True),
    ({"mds": "allow r"}, Need("mds", "rw"), False),
    ({"mds": "allow rw"}, Need("mds", "rwx"), False),
    ({"mgr": "allow r"}, Need("mgr", "r"), True),
    ({"mgr": "allow r"}, Need("mgr", "w"), False),
    # pool restriction
    ({"osd": "allow rw pool=scratch"}, Need("osd", "w", pool="scratch"), True),
    ({"osd": "allow rw pool=scratch"}, Need("osd", "w", pool="other"), False),
    ({"osd": "allow rw pool=scratch"}, Need("osd", "r", pool="scratch2"), False),
    ({"osd": "allow rw pool scratch"}, Need("osd", "w", pool="scratch"), True),
    ({"osd": "allow * pool=scratch"}, Need("osd", "*", pool="scratch"), True),
    ({"osd": "allow * pool=scratch"}, Need("osd", "r", pool="other"), False),
    # the "every letter appears somewhere in the string" bug: rawx grants no write
    ({"osd": "allow r pool=rawx"}, Need("osd", "r", pool="rawx"), True),
    ({"osd": "allow r pool=rawx"}, Need("osd", "w", pool="rawx"), False),
    ({"osd": "allow r pool=wx"}, Need("osd", "w", pool="wx"), False),
    # command restriction (mon, mgr); a command grant gives any access to that command
    ({"mon": 'allow command "auth get"'}, Need("mon", "rx", command="auth get"), True),
    ({"mon": 'allow command "auth get"'}, Need("mon", "rx", command="auth get-or-create"), False),
    ({"mon": 'allow command "auth get"'}, Need("mon", "r", command="status"), False),
    ({"mon": "allow command 'osd blocklist'"},
     Need("mon", "rw", command="osd blocklist add"), True),
    ({"mon": 'allow command "osd blocklist"'}, Need("mon", "rw", command="osd blocklister"), False),
    ({"mon": 'allow r, allow command "osd pool create"'},
     Need("mon", "rw", command="osd pool create"), True),
    ({"mon": 'allow r, allow command "osd pool create"'},
     Need("mon", "rw", command="osd pool rm"), False),
    ({"mgr": 'allow command "osd balance"'}, Need("mgr", "rw", command="osd balance"), True),
    # daemon profiles give powers; `allow *` and plain permissions never do
    ({"mon": "allow profile osd"}, Need("mon", power="osd"), True),
    ({"mon": "profile osd"}, Need("mon", power="osd"), True),
    ({"mon": "allow profile osd"}, Need("mon", "r"), True),
    ({"mon": "allow profile osd"}, Need("mon", "w"), False),
    ({"mon": "allow profile osd"}, Need("mon", power="mds"), False),
    ({"mon": "allow *"}, Need("mon", power="osd"), False),
    ({"mon": "allow rwx"}, Need("mon", power="mon"), False),
    ({"mon": "allow profile mon"}, Need("mon", power="mon"), True),
    ({"mon": "allow profile mon"}, Need("mon", "*"), True),
    ({"mon": "allow profile mds"}, Need("mon", power="mds"), True),
    ({"mon": "allow profile mds"}, Need("mon", "rw", command="osd blocklist add"), True),
    ({"mon": "allow profile mds"}, Need("mon", "rw", command="osd pool rm"), False),
    ({"mon": "allow profile mgr"}, Need("mon", power="mgr"), True),
    ({"mon": "allow profile mgr"}, Need("mon", "rw", command="osd balance"), True),
    ({"mgr": "allow profile osd"}, Need("mgr", power="osd"), True),
    ({"mgr": "allow profile osd"}, Need("mgr", "r"), False),
    ({"mgr": "allow profile mgr"}, Need("mgr", "*"), True),
    ({"mds": "allow profile mds"}, Need("mds", power="mds"), True),
    # client profiles
    ({"mon": "profile read-only"}, Need("mon", "r"), True),
    ({"mon": "profile read-only"}, Need("mon", "w"), False),
    ({"osd": "profile read-only pool=p"}, Need("osd", "r", pool="p"), True),
    ({"osd": "profile read-only pool=p"}, Need("osd", "w", pool="p"), False),
    ({"osd": "profile read-write pool=p"}, Need("osd", "w", pool="p"), True),
    ({"osd": "profile read-write pool=p"}, Need("osd", "w", pool="q"), False),
    ({"osd": "profile read-write"}, Need("osd", "rw", pool="q"), True),
    ({"mds": "profile read-write"}, Need("mds", "rw"), True),
    ({"mds": "profile read-only"}, Need("mds", "w"), False),
    ({"mgr": "profile read-only"}, Need("mgr", "r"), True),
    ({"mon": "profile csi"}, Need("mon", "r"), True),
    ({"mon": "profile csi"}, Need("mon", "rw", command="osd blocklist add"), True),
    ({"mon": "profile csi"}, Need("mon", "rx", command="auth get"), False),
    ({"osd": "profile csi pool=vols"}, Need("osd", "rw", pool="vols"), True),
    ({"osd": "profile csi pool=vols"}, Need("osd", "r", pool="other"), False),
    ({"mds": "profile csi"}, Need("mds", "rwx"), True),
    ({"mon": "profile rgw"}, Need("mon", "rw", command="osd pool create"), True),
    ({"mon": "profile rgw"}, Need("mon", "rw", command="osd pool rm"), False),
    ({"osd": "profile rgw pool=buckets"}, Need("osd", "rwx", pool="buckets"), True),
]


@pytest.mark.parametrize(("text", "need", "allowed"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_evaluator(text, need, allowed):
    assert caps.allows(caps.parse(text), need) is allowed


# (service, string, a word the error must point at)
INVALID = [
    ("mon", "allow", "end of string"),
    ("mon", "allow rwz", "rwz"),
    ("mon", "allow wr", "wr"),
    ("mon", "alow r", "alow"),
    ("mon", "allow r,", "end of string"),
    ("mon", "allow r allow w", "allow w"),
    ("mon", "allow r pool=x", "pool"),             # pools are an osd restriction
    ("osd", "allow rw pool=", "end of string"),
    ("osd", "allow rw poool=x", "poool"),
    ("osd", "allow rw pool=a pool=b", "pool=b"),
    ("osd", "allow rw namespace=ns", "namespace"),  # no namespaces in SDS
    ("osd", "allow rw pool=x namespace=ns", "namespace"),
    ("osd", 'allow command "osd pool rm"', "command"),  # commands are mon/mgr caps
    ("mon", "allow command", "end of string"),
    ("mon", 'allow command "auth get', '"auth get'),  # no closing quote
    ("mon", 'allow command "auth get" with entity=x', "with"),
    ("mon", "profile", "end of string"),
    ("mon", "profile nosuch", "nosuch"),
    ("osd", "allow profile osd", "osd"),           # no osd profile on the osd service
    ("mds", "allow rw path=/volumes", "path"),
    ("mds", "profile rgw", "rgw"),
]


@pytest.mark.parametrize(("service", "text", "token"), INVALID)
def test_invalid_strings_are_refused_at_the_bad_token(service, text, token):
    with pytest.raises(InvalidArgument) as exc:
        caps.parse({service: text})
    assert f"at '{token}" in str(exc.value), str(exc.value)
    assert exc.value.code == 22  # EINVAL


def test_unknown_service_and_non_strings_are_refused():
    with pytest.raises(InvalidArgument, match="unknown cap service 'rgw'"):
        caps.check({"rgw": "allow r"})
    with pytest.raises(InvalidArgument):
        caps.check({"mon": 7})
    with pytest.raises(InvalidArgument):
        caps.check(["allow r"])
    assert caps.check({"mon": "allow r", "osd": "allow rw pool=a"}) == \
        {"mon": "allow r", "osd": "allow rw pool=a"}
    assert caps.check(None) == {}


def test_parsing_is_cached():
    text = "allow rw pool=cached-once"
    first = caps.parse_service("osd", text)
    assert caps.parse_service("osd", text) is first


ADMIN = caps.parse({s: "allow *" for s in caps.SERVICES})
OSD_DAEMON = {"mon": "allow profile osd", "osd": "allow *", "mgr": "allow profile osd"}

# (holder, wanted, may hand out)
COVERS = [
    (ADMIN, OSD_DAEMON, True),
    (ADMIN, {"mon": "allow profile mon"}, True),
    (caps.parse({"mon": "allow rwx", "osd": "allow *"}), OSD_DAEMON, False),
    (caps.parse({"mon": "allow rw"}), {"mon": "allow *"}, False),
    (caps.parse({"mon": "allow rw"}), {"mon": "allow r"}, True),
    (caps.parse({"mon": "allow rw"}), {"mon": "allow rwx"}, False),
    (caps.parse({"mon": "allow rw"}), {"osd": "allow r"}, False),
    (caps.parse({"osd": "allow rw pool=a"}), {"osd": "allow r pool=a"}, True),
    (caps.parse({"osd": "allow rw pool=a"}), {"osd": "allow r pool=b"}, False),
    (caps.parse({"osd": "allow rw pool=a"}), {"osd": "allow r"}, False),
    (caps.parse({"osd": "allow rw"}), {"osd": "profile read-only pool=x"}, True),
    (caps.parse({"mon": "allow r"}), {"mon": 'allow command "auth get"'}, False),
    (caps.parse({"mon": 'allow command "osd blocklist"'}),
     {"mon": 'allow command "osd blocklist add"'}, True),
    (caps.parse({"mon": "allow *", "mgr": "allow r"}), {"mgr": "allow profile osd"}, False),
    (caps.parse({"mon": "allow r"}), {}, True),
]


@pytest.mark.parametrize(("holder", "wanted", "ok"), COVERS)
def test_covers(holder, wanted, ok):
    assert caps.covers(holder, caps.parse(wanted)) is ok


def test_daemon_is_a_daemon_by_its_caps_never_its_name():
    assert not caps.is_daemon(caps.parse({"mon": "allow *", "osd": "allow *"}), "osd")
    assert caps.is_daemon(caps.parse(OSD_DAEMON), "osd")
    named = Peer("osd.77", {"mon": "allow r"})
    with pytest.raises(PermissionDenied, match="osd daemon profile"):
        named.require_daemon("osd")
    with pytest.raises(PermissionDenied):
        named.require("osd", "w", pool="p")
    Peer("client.anything", OSD_DAEMON).require_daemon("osd")


def test_peer_we_dialled_is_granted_nothing():
    outgoing = Peer("mon.")
    assert not outgoing.verified
    with pytest.raises(PermissionDenied):
        outgoing.require("mon", "r")
    Peer("client.ro", {"mon": "allow r"}).require("mon", "r")


def test_stored_invalid_caps_grant_nothing():
    peer = Peer("client.old", {"osd": "allow rw namespace=x"})
    assert not peer.allows(Need("osd", "r", pool="x"))
