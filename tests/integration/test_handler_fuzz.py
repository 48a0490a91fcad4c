"""Every message handler of the mon, OSD, MDS and mgr fuzzed over authenticated
connections to real daemons: random bytes, mutated valid protobufs and random field values
as the payload, random bytes as the data section. Every reply is a legitimate answer or a
typed error (EINVAL for malformed), never EIO/internal error; the connection may drop but
every daemon stays up, healthy, bounded in memory and free of tracebacks in its log.

Two identities send: client.admin (what any client could send, with every client cap) and,
for OSD-to-OSD and statistics traffic that only daemons may send, osd.0 with its own key
(a confused or buggy peer daemon). Paxos is sent by the client only: a monitor's peers are
trusted with the consensus itself. Likewise an OSD is trusted with the PGs it shares (a
lying peer can stall one, in Ceph too), so osd.0's garbage addresses a pool that does not
exist: parsing, caps and the PG lookup must answer it, and nothing of it may stick.
"""

from __future__ import annotations

import asyncio
import errno
import json
import re
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sds.client import Rados
from sds.client.monclient import MonClient
from sds.common.errors import ConnectionLost, SdsError, TimedOut
from sds.common.messenger import Messenger
from sds.crush.placement import object_to_pg
from sds.proto import mds_pb2, mon_pb2, osd_pb2, paxos_pb2
from sds.proto import messenger_pb2 as mpb

pytestmark = [pytest.mark.integration, pytest.mark.cluster_opts(mds=1)]

EXAMPLES = 40
POOL = "fuzz"
KEEP = "fuzz-kept-object"
RSS_BOUND = 300 << 20
HOST_CHECKS = {"MON_DISK_LOW"}  # the test machine's own disk, shared with other work
SRC = Path(__file__).resolve().parents[2] / "sds"

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# message type -> (daemon role, payload class, a valid sample)
TARGETS = {
    mpb.MON_COMMAND: ("mon", mon_pb2.MonCommand,
                      mon_pb2.MonCommand(cmd_json=json.dumps({"prefix": "status"}))),
    mpb.MON_SUBSCRIBE: ("mon", mon_pb2.MonSubscribe, mon_pb2.MonSubscribe(osdmap=True)),
    mpb.PAXOS: ("mon", paxos_pb2.PaxosMsg, paxos_pb2.PaxosMsg(src=0, dst=1)),
    mpb.OSD_OP: ("osd", osd_pb2.OsdOp,
                 osd_pb2.OsdOp(code=osd_pb2.OsdOp.WRITE, oid="o", length=4)),
    mpb.OSD_REPOP: ("osd", osd_pb2.RepOp, osd_pb2.RepOp()),
    mpb.OSD_PEERING: ("osd", osd_pb2.PeeringMessage, osd_pb2.PeeringMessage(src=0, dst=1)),
    mpb.OSD_PG_PUSH: ("osd", osd_pb2.ObjectState, osd_pb2.ObjectState(oid="o")),
    mpb.OSD_PG_PULL: ("osd", osd_pb2.ObjectState, osd_pb2.ObjectState(oid="o", length=16)),
    mpb.OSD_PG_SCRUB: ("osd", osd_pb2.ScrubRequest, osd_pb2.ScrubRequest(deep=True)),
    mpb.OSD_PG_COMMAND: ("osd", osd_pb2.PgCommand,
                         osd_pb2.PgCommand(cmd_json=json.dumps({"prefix": "query"}))),
    mpb.PING: ("osd", None, None),
    mpb.MDS_REQUEST: ("mds", mds_pb2.MdsRequest,
                      mds_pb2.MdsRequest(op=mds_pb2.MdsRequest.GETATTR, ino=1)),
    mpb.MON_STATS: ("mgr", mon_pb2.OsdStats, mon_pb2.OsdStats(osd=0)),
}
PRIMARY = {mpb.OSD_OP, mpb.OSD_PG_COMMAND, mpb.PING}
DAEMON_ONLY = {mpb.OSD_REPOP, mpb.OSD_PEERING, mpb.OSD_PG_PUSH, mpb.OSD_PG_PULL,
               mpb.OSD_PG_SCRUB, mpb.MON_STATS}


def registered_types() -> set[int]:
    """Message types the four daemons register, read from their source."""
    found = set()
    for role in ("mon", "osd", "mds", "mgr"):
        text = (SRC / role / "daemon.py").read_text()
        for name in re.findall(r"register\(mpb\.(\w+)", text) + \
                re.findall(r"\(mpb\.(\w+), self\._on_\w+\)", text):
            found.add(mpb.MsgType.Value(name))
    return found


def test_every_registered_handler_is_fuzzed():
    assert registered_types() == set(TARGETS)


# ------------------------------------------------------------------ payload strategies

INTS = st.one_of(st.integers(-2, 300), st.sampled_from([2**31 - 1, -2**31, 2**32 - 1,
                                                        2**63 - 1, 2**64 - 1, -2**63]))
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "{}", "[]", "null", "o",
                                                        '{"prefix": 1}', "\x00" * 8]))


def _scalar(f) -> st.SearchStrategy:
    t = f.cpp_type
    if t in (FD.CPPTYPE_INT32, FD.CPPTYPE_ENUM):
        return INTS.filter(lambda v: -2**31 <= v < 2**31)
    if t == FD.CPPTYPE_UINT32:
        return INTS.filter(lambda v: 0 <= v < 2**32)
    if t == FD.CPPTYPE_INT64:
        return INTS.filter(lambda v: -2**63 <= v < 2**63)
    if t == FD.CPPTYPE_UINT64:
        return INTS.filter(lambda v: 0 <= v < 2**64)
    if t == FD.CPPTYPE_BOOL:
        return st.booleans()
    if t == FD.CPPTYPE_DOUBLE:
        return st.floats()
    if t == FD.CPPTYPE_FLOAT:
        return st.floats(width=32)
    if t == FD.CPPTYPE_STRING:
        return TEXT if f.type == FD.TYPE_STRING else st.binary(max_size=64)
    raise AssertionError(f"unhandled field type {t}")


def _fill(draw, msg, depth: int) -> None:
    """Random values in a random subset of a message's fields (maps and nesting too)."""
    for f in msg.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        repeated = f.is_repeated
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key_f, val_f = f.message_type.fields_by_name["key"], \
                f.message_type.fields_by_name["value"]
            target = getattr(msg, f.name)
            for _ in range(draw(st.integers(0, 3))):
                key = draw(_scalar(key_f))
                if val_f.message_type is not None:
                    if depth < 2:
                        _fill(draw, target[key], depth + 1)
                else:
                    target[key] = draw(_scalar(val_f))
        elif f.message_type is not None:
            if depth >= 2:
                continue
            if repeated:
                for _ in range(draw(st.integers(0, 3))):
                    _fill(draw, getattr(msg, f.name).add(), depth + 1)
            else:
                _fill(draw, getattr(msg, f.name), depth + 1)
        elif repeated:
            getattr(msg, f.name).extend(draw(st.lists(_scalar(f), max_size=4)))
        else:
            setattr(msg, f.name, draw(_scalar(f)))


@st.composite
def random_message(draw, cls, where: tuple[int, int] | None = None) -> bytes:
    """Random fields; with `where`, addressed to that pool and PG (so it reaches one)."""
    msg = cls()
    _fill(draw, msg, 0)
    fields = msg.DESCRIPTOR.fields_by_name
    if where is not None and "pool" in fields and "pg" in fields:
        msg.pool, msg.pg = where
    return msg.SerializeToString()


# read-only commands only: the admin's garbage must not reconfigure the cluster under test
MON_PREFIXES = ["status", "health", "df", "osd dump", "osd tree", "osd df", "pg dump",
                "pg dump_stuck", "mon stat", "osd map", "fs status", "osd pool ls", "nonsense"]
PG_PREFIXES = ["query", "scrub", "deep-scrub", "nonsense"]
JSON = st.recursive(st.none() | st.booleans() | INTS | st.floats() | TEXT,
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
ARGS = st.dictionaries(st.sampled_from(["detail", "format", "pool", "pgid", "id", "name",
                                        "object", "threshold", "epoch"]) | TEXT, JSON,
                       max_size=4)


@st.composite
def command(draw, cls, prefixes: list[str], where: tuple[int, int] | None) -> bytes:
    """A JSON command with a known prefix and random arguments."""
    cmd = {**draw(ARGS), "prefix": draw(st.sampled_from(prefixes))}
    msg = cls(cmd_json=json.dumps(cmd))
    if where is not None:
        msg.pool, msg.pg = where
    return msg.SerializeToString()


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """A valid encoding with bytes flipped, cut, inserted or repeated."""
    buf = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(buf)))
        how = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if how == "flip" and at < len(buf):
            buf[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del buf[at:]
        elif how == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            buf += buf[at:]
    return bytes(buf)


def payloads(msg_type: int, valid: bytes, where: tuple[int, int] | None) -> st.SearchStrategy:
    _role, cls, _sample = TARGETS[msg_type]
    kinds = [st.binary(max_size=256), mutated(valid)]
    if cls is not None:
        kinds += [random_message(cls), random_message(cls, where)]
    if msg_type == mpb.MON_COMMAND:
        kinds.append(command(cls, MON_PREFIXES, None))
    elif msg_type == mpb.OSD_PG_COMMAND:
        kinds.append(command(cls, PG_PREFIXES, where))
    return st.one_of(*kinds)


DATA = st.one_of(st.just(b""), st.binary(max_size=4096))


# ------------------------------------------------------------------ the cluster side


class Fuzzer:
    """One event loop for the module: a client.admin session and an osd.0 one."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self.rados = Rados(cluster.conf)
        config = cluster.config("osd.0")
        self.daemon = Messenger("osd.0", cluster.key("osd.0"), config=config)
        self.daemon_monc = MonClient(config, self.daemon)  # its service tickets
        self.replies: dict[str, dict[str, int]] = {}  # message type -> outcome -> count
        self.run(self._start())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _start(self) -> None:
        await self.rados.connect()
        await self.daemon_monc.connect()
        await self.rados.pool_create(POOL, pg_num=8, size=3)
        await self.rados.ioctx(POOL).write_full("o", b"fuzz target")
        await self.rados.ioctx(POOL).write_full(KEEP, b"kept")  # a name no example uses

    def where(self) -> tuple[int, int, int]:
        """Pool, PG and primary OSD of the fuzz target object."""
        pool = self.rados.monc.pools[POOL]
        ps = object_to_pg(pool, "o")
        return pool.id, ps, self.rados.placement.primary(pool.id, ps)

    def addr(self, msg_type: int) -> str:
        role = TARGETS[msg_type][0]
        if role == "mon":
            return self.rados.config.mon_addrs[0]
        if role == "osd":  # client ops to the primary, OSD-to-OSD traffic to osd.1
            primary = self.where()[2]
            return self.cluster.addr(f"osd.{primary if msg_type in PRIMARY else 1}")
        return self.cluster.addr(self.cluster.names(role)[0])

    def valid(self, msg_type: int, as_daemon: bool) -> bytes:
        """The sample, addressed to the fuzz object's PG where it has one (for a daemon's
        messages, the same PG number of a pool that does not exist)."""
        _role, cls, sample = TARGETS[msg_type]
        if sample is None:
            return b"ping"
        msg = cls()
        msg.CopyFrom(sample)
        pool, ps, _primary = self.where()
        fields = msg.DESCRIPTOR.fields_by_name
        if "pool" in fields:
            msg.pool = pool + 1000 if as_daemon else pool
        if "pg" in fields:
            msg.pg = ps
        return msg.SerializeToString()

    def send(self, msg_type: int, payload: bytes, data: bytes, as_daemon: bool) -> None:
        self.run(self._send(msg_type, payload, data, as_daemon))

    async def _send(self, msg_type: int, payload: bytes, data: bytes, as_daemon: bool) -> None:
        messenger = self.daemon if as_daemon else self.rados.messenger
        conn = await messenger.connect(self.addr(msg_type))
        try:
            await conn.call(msg_type, payload, data, epoch=self.rados.osdmap.epoch, timeout=30)
            self._count(msg_type, "ok")
        except ConnectionLost:
            self._count(msg_type, "dropped")
        except TimedOut as e:
            raise AssertionError(f"{mpb.MsgType.Name(msg_type)}: no answer: {e}") from None
        except SdsError as e:
            assert e.code != errno.EIO and "internal error" not in str(e), \
                f"{mpb.MsgType.Name(msg_type)} {payload!r}: {e.code} {e}"
            self._count(msg_type, errno.errorcode.get(e.code, str(e.code)))

    def _count(self, msg_type: int, outcome: str) -> None:
        counts = self.replies.setdefault(mpb.MsgType.Name(msg_type), {})
        counts[outcome] = counts.get(outcome, 0) + 1

    def close(self) -> None:
        async def stop():
            await self.daemon_monc.close()
            await self.daemon.close()
            await self.rados.close()
        self.run(stop())
        self.loop.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    return 0


def _tracebacks(cluster) -> int:
    return sum(p.read_text(errors="replace").count("Traceback")
               for p in (Path(cluster.dir) / "out").glob("*.log"))


@pytest.fixture(scope="module")
def fuzzer(cluster_module):
    f = Fuzzer(cluster_module)
    f.tracebacks = _tracebacks(cluster_module)
    f.rss = {n: _rss(cluster_module.pid(n)) for n in cluster_module.names()}
    yield f
    f.close()


def _fuzz_one(msg_type: int, as_daemon: bool):
    @FUZZ
    @given(data=st.data())
    def run(fuzzer, data):
        pool, ps, _primary = fuzzer.where()
        where = (pool + 1000 if as_daemon else pool, ps)
        payload = data.draw(payloads(msg_type, fuzzer.valid(msg_type, as_daemon), where),
                            label="payload")
        fuzzer.send(msg_type, payload, data.draw(DATA, label="data"), as_daemon)
    return run


# Order: the MDS last (random requests may end the admin's session there).
ORDER = [t for t in TARGETS if t != mpb.MDS_REQUEST] + [mpb.MDS_REQUEST]


@pytest.mark.parametrize("msg_type", ORDER, ids=[mpb.MsgType.Name(t) for t in ORDER])
def test_client_garbage(fuzzer, msg_type):
    _fuzz_one(msg_type, as_daemon=False)(fuzzer)


@pytest.mark.parametrize("msg_type", sorted(DAEMON_ONLY),
                         ids=[mpb.MsgType.Name(t) for t in sorted(DAEMON_ONLY)])
def test_daemon_garbage(fuzzer, msg_type):
    _fuzz_one(msg_type, as_daemon=True)(fuzzer)


def test_every_daemon_is_up_healthy_bounded_and_quiet(fuzzer, cluster_module):
    print("\nreplies by message type:")
    for name, counts in sorted(fuzzer.replies.items()):
        print(f"  {name}: {counts}")
    cluster = cluster_module
    for name in cluster.names():
        assert cluster.pid(name) is not None, f"{name} died:\n{cluster.log_tail(name)}"

    async def healthy() -> dict:
        for _ in range(60):
            h = await fuzzer.rados.mon_command({"prefix": "health", "detail": True})
            if not set(h["checks"]) - HOST_CHECKS:
                break
            await asyncio.sleep(1)
        return h
    h = fuzzer.run(healthy())
    assert not set(h["checks"]) - HOST_CHECKS, h
    after = {n: _rss(cluster.pid(n)) for n in cluster.names()}
    print("RSS MiB before -> after:",
          {n: f"{fuzzer.rss[n] >> 20}->{after[n] >> 20}" for n in after})
    assert all(v < RSS_BOUND for v in after.values()), after
    assert _tracebacks(cluster) == fuzzer.tracebacks
    assert fuzzer.run(fuzzer.rados.ioctx(POOL).read(KEEP)) == b"kept"
