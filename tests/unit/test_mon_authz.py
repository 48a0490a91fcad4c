"""Mon command authorization (sds.mon.authz), the auth commands' hand-out rules, MDS
request needs, and revalidation of open sessions: all pure, no daemons."""

from __future__ import annotations

import os
import time

import pytest

from sds.common import caps, sessions
from sds.common.auth import Peer
from sds.common.config import Config
from sds.common.errors import AlreadyExists, InvalidArgument, PermissionDenied
from sds.mds import authz as mds_authz
from sds.mon import authz, commands, genesis
from sds.proto import maps_pb2
from sds.proto.mds_pb2 import MdsRequest as Req

ADMIN = {s: "allow *" for s in caps.SERVICES}
OSD = {"mon": "allow profile osd", "osd": "allow *", "mgr": "allow profile osd"}
MDS = {"mon": "allow profile mds", "osd": "allow *", "mds": "allow profile mds"}
MGR = {"mon": "allow profile mgr", "osd": "allow *", "mgr": "allow profile mgr"}

# (entity, caps, command, allowed)
MON_CASES = [
    ("client.ro", {"mon": "allow r"}, {"prefix": "status"}, True),
    ("client.ro", {"mon": "allow r"}, {"prefix": "osd pool ls"}, True),
    ("client.ro", {"mon": "allow r"}, {"prefix": "osd pool create", "pool": "p"}, False),
    ("client.ro", {"mon": "allow r"}, {"prefix": "auth get", "entity": "client.admin"}, False),
    ("client.ro", {"mon": "allow r"}, {"prefix": "auth ls"}, False),
    ("client.rw", {"mon": "allow rw"}, {"prefix": "osd pool create", "pool": "p"}, True),
    ("client.rw", {"mon": "allow rw"}, {"prefix": "auth get-or-create", "entity": "osd.0"},
     False),
    ("client.rw", {"mon": "allow rw"}, {"prefix": "auth rm", "entity": "client.x"}, False),
    ("client.rw", {"mon": "allow rw"}, {"prefix": "osd purge", "ids": [1]}, False),
    ("client.rx", {"mon": "allow rx"}, {"prefix": "auth get", "entity": "client.x"}, True),
    ("client.rx", {"mon": "allow rx"}, {"prefix": "auth caps", "entity": "client.x"}, False),
    ("client.rwx", {"mon": "allow rwx"}, {"prefix": "auth caps", "entity": "client.x"}, True),
    ("client.g", {"mon": 'allow command "auth get"'}, {"prefix": "auth get"}, True),
    ("client.g", {"mon": 'allow command "auth get"'}, {"prefix": "status"}, False),
    ("client.admin", ADMIN, {"prefix": "auth export"}, True),
    # daemon-only commands: the profile, and only for itself
    ("osd.1", OSD, {"prefix": "osd boot", "id": 1}, True),
    ("osd.1", OSD, {"prefix": "osd boot", "id": 0}, False),
    ("client.admin", ADMIN, {"prefix": "osd boot", "id": 0}, False),
    ("osd.1", {"mon": "allow *"}, {"prefix": "osd boot", "id": 1}, False),
    ("osd.1", OSD, {"prefix": "osd failure", "target": 0, "reporter": 1}, True),
    ("osd.1", OSD, {"prefix": "osd failure", "target": 0, "reporter": 2}, False),
    ("osd.1", OSD, {"prefix": "osd down", "ids": [1]}, True),
    ("osd.1", OSD, {"prefix": "osd down", "ids": [0]}, False),
    ("osd.1", OSD, {"prefix": "osd down", "ids": [0, 1]}, False),
    ("osd.1", OSD, {"prefix": "osd pool create", "pool": "p"}, False),
    ("client.admin", ADMIN, {"prefix": "osd down", "ids": [0, 1]}, True),
    ("mgr.x", MGR, {"prefix": "mgr report"}, True),
    ("mgr.x", MGR, {"prefix": "osd balance"}, True),
    ("client.admin", ADMIN, {"prefix": "mgr report"}, False),
    ("mds.a", MDS, {"prefix": "mds beacon", "name": "a"}, True),
    ("mds.a", MDS, {"prefix": "mds beacon", "name": "b"}, False),
    ("mds.a", MDS, {"prefix": "mds fail", "name": "a"}, True),
    ("mds.a", MDS, {"prefix": "mds fail", "name": "b"}, False),
    ("mds.a", MDS, {"prefix": "osd blocklist add", "addr": "client.x"}, True),
    ("mds.a", MDS, {"prefix": "osd blocklist rm", "addr": "client.x"}, False),
    ("mds.a", MDS, {"prefix": "df"}, True),
]


@pytest.mark.parametrize(("entity", "held", "cmd", "allowed"), MON_CASES)
def test_mon_command_authorization(entity, held, cmd, allowed):
    peer = Peer(entity, held)
    if allowed:
        authz.authorize(peer, cmd)
    else:
        with pytest.raises(PermissionDenied):
            authz.authorize(peer, cmd)


def test_every_registered_command_has_a_need():
    for prefix, command in commands.COMMANDS.items():
        if prefix in authz.DAEMON_ONLY:
            continue
        need = authz.needs(prefix)
        assert need in ("r", "rw", "rx", "rwx"), prefix
        if command.write:
            assert "w" in need, prefix
    handled_by_the_daemon = {"osd failure", "mgr report", "mon disk report"}
    for prefix in {*authz.NEEDS, *authz.DAEMON_ONLY, *authz.SELF_SERVICE} - handled_by_the_daemon:
        assert prefix in commands.COMMANDS, f"the table names unknown command {prefix!r}"


@pytest.fixture
def view():
    from sds.common.keyring import Keyring

    keyring = Keyring()
    keyring.add("client.admin", b"a" * 32, ADMIN)
    keyring.add("mon.", b"m" * 32, {"mon": "allow profile mon"})
    keyring.add("osd.0", b"o" * 32, OSD)
    keyring.add("client.ro", b"r" * 32, {"mon": "allow r", "osd": "allow r"})
    config = Config(None)
    return commands.MonView(
        osdmap=genesis.initial_osdmap("fsid", "osd", time.time()),
        auth=genesis.initial_auth(keyring), monmap=genesis.initial_monmap("fsid", ["h:1"]),
        mon_status={"quorum": [0]}, digest=None, config=config, now=time.time())


def _as(view, held):
    view.caller = caps.parse(held)
    return view


def run(view, cmd):
    return commands.handle(view, cmd)


def test_keys_are_read_only_by_holders_of_their_powers(view):
    rwx = {"mon": "allow rwx", "osd": "allow rw"}
    assert run(_as(view, rwx), {"prefix": "auth get", "entity": "client.ro"}).output["key"]
    for name in ("client.admin", "mon.", "osd.0"):
        for prefix in ("auth get", "auth print-key", "auth get-or-create"):
            with pytest.raises(PermissionDenied):
                run(_as(view, rwx), {"prefix": prefix, "entity": name})
    with pytest.raises(PermissionDenied):
        run(_as(view, rwx), {"prefix": "auth export"})
    everything = run(_as(view, ADMIN), {"prefix": "auth export"}).output["auth"]
    assert {e["entity"] for e in everything} == {"client.admin", "mon.", "osd.0", "client.ro"}


def test_no_entity_with_more_caps_than_its_creator(view):
    rwx = {"mon": "allow rwx", "osd": "allow rw pool=a"}
    for new in ({"mon": "allow profile osd"}, {"mon": "allow *"}, {"osd": "allow rw"},
                {"osd": "allow rw pool=b"}, {"mds": "allow r"}):
        for prefix in ("auth get-or-create", "auth add"):
            with pytest.raises(PermissionDenied):
                run(_as(view, rwx), {"prefix": prefix, "entity": "client.new", "caps": new})
    made = run(_as(view, rwx), {"prefix": "auth get-or-create", "entity": "client.new",
                                "caps": {"mon": "allow r", "osd": "allow r pool=a"}})
    assert made.output["created"] and made.update is not None
    daemon = run(_as(view, ADMIN), {"prefix": "auth get-or-create", "entity": "osd.9",
                                    "caps": OSD})
    assert daemon.output["created"]
    for entity in daemon.update.auth.set:  # as if committed
        view.auth[entity.name] = entity
    again = run(_as(view, ADMIN), {"prefix": "auth get-or-create", "entity": "osd.9",
                                   "caps": OSD})
    assert not again.output["created"]
    with pytest.raises(InvalidArgument, match="other caps"):  # as Ceph: no silent mismatch
        run(_as(view, ADMIN), {"prefix": "auth get-or-create", "entity": "osd.9",
                               "caps": {"mon": "allow r"}})


def test_auth_caps_and_add(view):
    with pytest.raises(InvalidArgument, match="poool"):
        run(_as(view, ADMIN), {"prefix": "auth caps", "entity": "client.ro",
                               "caps": {"osd": "allow r poool=x"}})
    with pytest.raises(PermissionDenied):  # widening beyond the caller's own caps
        run(_as(view, {"mon": "allow rwx", "osd": "allow r"}),
            {"prefix": "auth caps", "entity": "client.ro", "caps": {"osd": "allow rw"}})
    with pytest.raises(PermissionDenied):
        run(_as(view, ADMIN), {"prefix": "auth caps", "entity": "client.admin", "caps": {}})
    changed = run(_as(view, ADMIN), {"prefix": "auth caps", "entity": "client.ro",
                                     "caps": {"mon": "allow r"}})
    assert dict(changed.update.auth.set[0].caps) == {"mon": "allow r"}
    assert changed.update.auth.set[0].key == b"r" * 32  # the key stays
    with pytest.raises(AlreadyExists):
        run(_as(view, ADMIN), {"prefix": "auth add", "entity": "client.ro", "caps": {}})
    with pytest.raises(InvalidArgument):
        run(_as(view, ADMIN), {"prefix": "auth add", "entity": "nodot", "caps": {}})


# (op, flags, need)
MDS_CASES = [
    (Req.LOOKUP, 0, "r"), (Req.GETATTR, 0, "r"), (Req.READDIR, 0, "r"),
    (Req.OPEN, os.O_RDONLY, "r"), (Req.OPEN, os.O_WRONLY, "rw"), (Req.OPEN, os.O_RDWR, "rw"),
    (Req.OPEN, os.O_RDONLY | os.O_TRUNC, "rw"), (Req.CREATE, 0, "rw"), (Req.MKDIR, 0, "rw"),
    (Req.UNLINK, 0, "rw"), (Req.RENAME, 0, "rw"), (Req.SETATTR, 0, "rw"),
    (Req.WRITE_DONE, 0, "rw"), (Req.SETXATTR, 0, "rw"), (Req.QUOTA_SET, 0, "rwx"),
    (Req.SNAP_CREATE, 0, "rwx"), (Req.CHECK, 0, "rwx"), (Req.QUOTA_GET, 0, "r"),
    (Req.SNAP_LIST, 0, "r"), (Req.SNAP_REMOVE, 0, "rwx"),
]


@pytest.mark.parametrize(("op", "flags", "need"), MDS_CASES)
def test_mds_request_needs(op, flags, need):
    assert mds_authz.need(Req(op=op, flags=flags)) == need


class FakeConn:
    def __init__(self, peer):
        self.peer, self.closed, self.why = peer, False, None

    def _shutdown(self, error):
        self.closed, self.why = True, error


class FakeMessenger:
    def __init__(self, conns):
        self.conns = conns

    def connections(self):
        return self.conns


def test_revalidate_drops_removed_and_refreshes_changed():
    gone = FakeConn(Peer("client.gone", {"osd": "allow rw"}))
    narrowed = FakeConn(Peer("client.n", {"osd": "allow rw"}))
    same = FakeConn(Peer("client.same", {"osd": "allow r"}))
    dialled = FakeConn(Peer("osd.1"))  # we connected to it: never judged by caps
    db = {"client.n": {"osd": "allow r"}, "client.same": {"osd": "allow r"}}
    dropped, refreshed = sessions.revalidate(FakeMessenger([gone, narrowed, same, dialled]),
                                             db.get)
    assert dropped == ["client.gone"] and gone.closed
    assert refreshed == ["client.n"] and not narrowed.closed
    assert narrowed.peer.allows(caps.Need("osd", "r", pool="p"))
    assert not narrowed.peer.allows(caps.Need("osd", "w", pool="p"))
    assert not same.closed and not dialled.closed


def test_genesis_entities_are_daemons_by_caps():
    from sds.cluster.local import DAEMON_CAPS

    for role, held in DAEMON_CAPS.items():
        assert caps.is_daemon(caps.parse(held), role), role
    assert not caps.is_daemon(caps.parse(ADMIN), "osd")
    assert isinstance(maps_pb2.AuthEntity(name="x", caps=OSD).caps["mon"], str)


def test_genesis_refuses_invalid_caps():
    from sds.common.keyring import Keyring

    with pytest.raises(InvalidArgument, match="poool"):
        genesis.initial_auth(Keyring({"client.x": (b"k" * 32, {"osd": "allow r poool=a"})}))
