"""The `sds` CLI, driven through `main(argv, rados_factory=...)` with an in-memory cluster.

The fake Rados runs the real monitor commands (`sds.mon.commands.handle`) over a
MonView and applies their updates, and keeps objects in a dict.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import time

import pytest

from sds.cli import bench, errors
from sds.cli import format as fmt
from sds.cli.main import build_parser, main
from sds.common.config import Config
from sds.common.errors import NotFound, SdsError, TimedOut, code_name
from sds.common.keyring import Keyring
from sds.common.osdmap import apply_incremental, pool_by_name
from sds.mon import commands as mon_commands
from sds.mon import genesis

FSID = "11111111-2222-4333-8444-555555555555"


# ---------------------------------------------------------------- fakes

class FakeIoCtx:
    def __init__(self, store: dict, pool: str, delay: float = 0.0):
        self.objects = store.setdefault(pool, {})
        self.delay = delay

    async def _tick(self):
        await asyncio.sleep(self.delay)

    async def write_full(self, oid, data):
        await self._tick()
        self.objects[oid] = (bytes(data), time.time(), len(self.objects) + 1)

    async def read(self, oid, length=None, offset=0):
        await self._tick()
        if oid not in self.objects:
            raise NotFound(f"object '{oid}' does not exist")
        data = self.objects[oid][0][offset:]
        return data[:length] if length else data

    async def read_stream(self, oid, chunk=4):
        data = await self.read(oid)
        for at in range(0, max(len(data), 1), chunk):
            yield memoryview(data[at:at + chunk])

    async def remove(self, oid):
        await self._tick()
        if self.objects.pop(oid, None) is None:
            raise NotFound(f"object '{oid}' does not exist")

    async def stat(self, oid):
        if oid not in self.objects:
            raise NotFound(f"object '{oid}' does not exist")
        data, mtime, version = self.objects[oid]
        from sds.client.rados import ObjectStat
        return ObjectStat(len(data), mtime, version)

    async def list_objects(self):
        for name in sorted(self.objects):
            yield name


class FakeRados:
    """A Rados whose monitor is `sds.mon.commands` over an in-memory MonView."""

    def __init__(self, view, delay: float = 0.0):
        self.view = view
        self.store: dict = {}
        self.delay = delay
        self.commands: list[dict] = []
        self.entered = self.closed = False

    async def __aenter__(self):
        self.entered = True
        return self

    async def __aexit__(self, *exc):
        self.closed = True

    @property
    def osdmap(self):
        return self.view.osdmap

    async def mon_command(self, cmd):
        self.commands.append(cmd)
        result = mon_commands.handle(self.view, json.loads(json.dumps(cmd)))
        if result.update is not None:
            self.view.osdmap = apply_incremental(self.view.osdmap, result.update.osdmap)
        return json.loads(json.dumps(result.output))

    def ioctx(self, pool):
        pool_by_name(self.osdmap, pool)
        return FakeIoCtx(self.store, pool, self.delay)


def make_view(failure_domain="host"):
    keyring = Keyring()
    keyring.add("client.admin", b"a" * 32, {"mon": "allow *"})
    view = mon_commands.MonView(
        osdmap=genesis.initial_osdmap(FSID, failure_domain, 1.0),
        auth=genesis.initial_auth(keyring),
        monmap=genesis.initial_monmap(FSID, ["127.0.0.1:6789", "127.0.0.1:6790",
                                             "127.0.0.1:6791"]),
        mon_status={"leader": 0, "quorum": [0, 1, 2], "election_epoch": 2},
        digest=None, config=Config(None), now=2.0)
    for i in range(3):
        result = mon_commands.handle(view, {"prefix": "osd boot", "id": i, "host": f"h{i}",
                                            "addr": f"127.0.0.1:{6800 + i}", "uuid": f"u{i}"})
        view.osdmap = apply_incremental(view.osdmap, result.update.osdmap)
    return view


class Run:
    def __init__(self, code, out, err, raw):
        self.code, self.out, self.err, self.raw = code, out, err, raw

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def rados():
    return FakeRados(make_view())


@pytest.fixture
def sds(rados):
    """sds("pool", "ls") -> Run(code, stdout, stderr)."""

    def run(*argv, stdin: bytes = b"", factory=None) -> Run:
        raw = io.BytesIO()
        stdout = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
        stderr = io.StringIO()
        seen = []

        def default_factory(conf, name, keyring):
            seen.append((conf, name, keyring))
            return rados

        code = main(list(argv), rados_factory=factory or default_factory,
                    stdin=io.BytesIO(stdin), stdout=stdout, stderr=stderr)
        stdout.flush()
        run.seen = seen
        return Run(code, raw.getvalue().decode("utf-8", "replace"), stderr.getvalue(),
                   raw.getvalue())

    return run


# ---------------------------------------------------------------- parsing

def test_global_flags_before_and_after_the_subcommand(sds, rados):
    before = sds("--format", "json", "--conf", "/x.conf", "-n", "client.bob", "osd", "ls")
    after = sds("osd", "ls", "--format", "json", "--conf", "/x.conf", "--name", "client.bob")
    assert before.code == after.code == 0
    assert before.json() == after.json() == {"osds": [0, 1, 2]}
    assert sds.seen == [("/x.conf", "client.bob", None)]
    assert rados.entered and rados.closed


def test_defaults_of_global_flags():
    args = build_parser().parse_args(["status"])
    assert (args.conf, args.name, args.keyring, args.format) == (None, "client.admin", None,
                                                                 "plain")


def test_usage_errors_are_one_line_einval(sds):
    for argv in (["pool", "create"], ["frobnicate"], ["bench", "p", "10", "write", "-b", "4Q"],
                 ["bench", "p", "-1", "write"], ["--format", "yaml", "status"]):
        r = sds(*argv)
        assert r.code == 22, argv
        assert r.err.count("\n") == 1 and r.err.startswith("Error EINVAL: "), r.err
        assert "Traceback" not in r.err


def test_group_without_subcommand_lists_them(sds):
    r = sds("osd", "pool")
    assert r.code == 22 and "create, delete, get, ls, rm, set" in r.err


def test_help_exits_zero(sds, capsys):
    assert sds("-h").code == 0
    assert "bench" in capsys.readouterr().out


# ---------------------------------------------------------------- formatting helpers

def test_human_bytes():
    assert fmt.human_bytes(0) == "0 B"
    assert fmt.human_bytes(1023) == "1023 B"
    assert fmt.human_bytes(1536) == "1.5 KiB"
    assert fmt.human_bytes(3 * 2**30) == "3.0 GiB"
    assert fmt.human_bytes(300 * 2**20) == "300 MiB"


def test_table_aligns_numbers_right_and_text_left():
    text = fmt.table(["NAME", "N"], [["a", 1], ["bbbb", 100]])
    assert text.splitlines() == ["NAME    N", "a       1", "bbbb  100"]


# ---------------------------------------------------------------- cluster commands

def test_status_plain_and_json(sds):
    sds("pool", "create", "rbd", "8")
    plain = sds("status")
    assert plain.code == 0
    assert f"id:     {FSID}" in plain.out and "HEALTH_WARN" in plain.out
    assert "quorum 0,1,2 (leader 0)" in plain.out
    assert "osd: 3 osds: 3 up, 3 in" in plain.out and "8 unknown" in plain.out
    data = sds("status", "--format", "json").json()
    assert data["fsid"] == FSID and data["pgmap"]["num_pgs"] == 8
    assert "mds:" not in plain.out  # no filesystem, no MDS: no line


def test_status_names_the_active_and_standby_mds():
    data = {"fsid": FSID, "health": {"status": "HEALTH_OK", "checks": {}},
            "monmap": {"num_mons": 1, "quorum_names": ["0"], "leader": "0",
                       "election_epoch": 1},
            "osdmap": {"num_osds": 3, "num_up_osds": 3, "num_in_osds": 3, "epoch": 5},
            "pgmap": {"pgs_by_state": [], "bytes_total": 0, "num_pools": 0, "num_pgs": 0,
                      "num_objects": 0, "data_bytes": 0, "bytes_used": 0, "bytes_avail": 0,
                      "read_bytes_sec": 0, "write_bytes_sec": 0, "read_op_per_sec": 0,
                      "write_op_per_sec": 0},
            "fsmap": {"filesystems": [{"name": "sdsfs", "active": "a"},
                                      {"name": "other", "active": ""}], "standby": ["b"]}}
    text = fmt.status(data)
    assert "    mds: sdsfs:1 {0=a=up:active}, other:0 (no active MDS), 1 up:standby" in text


def test_health_detail_names_the_reason(sds):
    sds("pool", "create", "rbd", "4")
    sds("osd", "down", "1", "osd.2")
    r = sds("health", "detail")
    assert r.code == 0
    assert r.out.startswith("HEALTH_ERR")
    assert "[WRN] OSD_DOWN: 2 osds down" in r.out
    assert ("pool 'rbd' wants 3 replicas but only 1 host (failure domain host) has usable OSDs"
            in r.out)
    assert "what to do:" in r.out
    short = sds("health")
    assert short.out.count("\n") == 1


def test_mon_stat_osd_views(sds):
    assert "leader 0 0, quorum 0,1,2" in sds("mon", "stat").out
    tree = sds("osd", "tree").out.splitlines()
    assert tree[0].split() == ["ID", "WEIGHT", "TYPE", "NAME", "STATUS", "REWEIGHT"]
    assert any("root" in line and "default" in line for line in tree)
    assert any(line.split()[-3:] == ["osd.2", "up", "1.00000"] for line in tree)
    assert sds("osd", "ls").out == "0\n1\n2\n"
    assert "osd.1 up in weight 1" in sds("osd", "dump").out
    df = sds("osd", "df").out
    assert "TOTAL" in df and "no statistics from the mgr yet" in df
    assert "--- POOLS ---" in sds("df").out


def test_pool_lifecycle(sds, rados):
    r = sds("pool", "create", "rbd", "16", "--size", "2")
    assert r.code == 0 and r.out == "pool 'rbd' created (id 1, size 2, min_size 1, pg_num 16)\n"
    assert sds("osd", "pool", "create", "rbd").out == "pool 'rbd' already exists\n"
    assert rados.commands[-1] == {"prefix": "osd pool create", "pool": "rbd"}
    assert sds("pool", "ls").out == "rbd\n"
    assert "pool 1 'rbd' replicated size 2 min_size 1" in sds("pool", "ls", "detail").out
    assert sds("pool", "get", "rbd", "size").out == "size: 2\n"
    assert sds("pool", "set", "rbd", "size", "3").out == "set pool 'rbd' size to 3 (min_size 2)\n"
    assert sds("pool", "set", "rbd", "size", "3").out == "pool 'rbd' size is already 3\n"
    assert sds("osd", "map", "rbd", "obj").out.startswith("osdmap e")

    refused = sds("pool", "rm", "rbd")
    assert refused.code == 1 and refused.err.startswith("Error EPERM: deleting pool 'rbd'")
    assert "--yes-i-really-really-mean-it" in refused.err
    assert sds("pool", "rm", "rbd", "--yes-i-really-really-mean-it").code == 1
    assert sds("pool", "rm", "rbd", "rbd", "--yes-i-really-really-mean-it").out == \
        "pool 'rbd' removed\n"
    assert sds("pool", "ls").out == ""
    missing = sds("pool", "get", "rbd", "size")
    assert missing.code == 2 and missing.err == "Error ENOENT: pool 'rbd' does not exist\n"


def test_pg_num_change_is_refused_with_clear_error(sds):
    sds("pool", "create", "rbd", "8")
    r = sds("pool", "set", "rbd", "pg_num", "16")
    assert r.code == errno.EOPNOTSUPP
    assert r.err.startswith(f"Error {code_name(errno.EOPNOTSUPP)}: changing pg_num")


def test_auth(sds):
    listing = sds("auth", "ls")
    assert "client.admin" in listing.out and "key" not in listing.out
    got = sds("auth", "get", "client.admin").out
    assert got.startswith("[client.admin]\n\tkey = YWFh")


def test_osd_down_out_in(sds):
    assert sds("osd", "down", "1").out == "marked down osd.1\n"
    assert sds("osd", "down", "1").out == "osd.1 already down\n"
    assert sds("osd", "out", "osd.1").out == "marked out osd.1\n"
    bad = sds("osd", "in", "one")
    assert bad.code == 22 and "'one' is not an OSD id" in bad.err


def test_osd_blocklist(sds):
    assert sds("osd", "blocklist", "add", "client.x.7", "--expire", "60").out.startswith(
        "blocklisted client.x.7 until ")
    listed = sds("osd", "blocklist", "ls", "--format", "json").json()["blocklist"]
    assert [e["addr"] for e in listed] == ["client.x.7"]
    assert "client.x.7" in sds("osd", "blocklist", "ls").out
    assert sds("osd", "blocklist", "rm", "client.x.7").out == "un-blocklisted client.x.7\n"
    assert sds("osd", "blocklist", "ls", "--format", "json").json()["blocklist"] == []


# ---------------------------------------------------------------- objects

def test_put_get_stat_ls_rm(sds, tmp_path):
    sds("pool", "create", "data", "8")
    src = tmp_path / "in.bin"
    src.write_bytes(b"\x00\x01hello")
    assert sds("put", "data", "obj", str(src)).code == 0
    assert sds("put", "data", "piped", "-", stdin=b"from stdin").code == 0
    assert sds("get", "data", "piped", "-").raw == b"from stdin"
    dst = tmp_path / "out.bin"
    assert sds("get", "data", "obj", str(dst)).code == 0
    assert dst.read_bytes() == b"\x00\x01hello"
    assert sds("ls", "data").out == "obj\npiped\n"
    assert sds("ls", "data", "--format", "json").json() == {"pool": "data",
                                                           "objects": ["obj", "piped"]}
    assert ", size 7, version" in sds("stat", "data", "obj").out
    assert sds("rm", "data", "obj").code == 0
    gone = sds("stat", "data", "obj")
    assert gone.code == 2 and gone.err == "Error ENOENT: object 'obj' does not exist\n"
    no_pool = sds("put", "nope", "x", str(src))
    assert no_pool.code == 2 and "pool 'nope' does not exist" in no_pool.err
    no_file = sds("put", "data", "x", str(tmp_path / "missing"))
    assert no_file.code == 2 and no_file.err.startswith("Error ENOENT: ")
    assert "missing" in no_file.err and "Traceback" not in no_file.err


# ---------------------------------------------------------------- error mapping

def test_errors_map_to_errno_and_one_line(sds, monkeypatch):
    monkeypatch.delenv("SDS_DEBUG", raising=False)

    class Broken(FakeRados):
        async def mon_command(self, cmd):
            raise self.exc

    broken = Broken(make_view())

    def factory(conf, name, keyring):
        return broken

    broken.exc = TimedOut("no monitor answered in 15s")
    r = sds("status", factory=factory)
    assert r.code == 110
    assert r.err == ("Error ETIMEDOUT: no monitor answered in 15s (is the cluster running and in "
                     "quorum? try `sds cluster status`)\n")
    broken.exc = RuntimeError("boom\nsecond line")
    r = sds("status", factory=factory)
    assert r.code == 1 and r.err.count("\n") == 1
    assert r.err.startswith("Error: unexpected RuntimeError: boom second line")
    assert "SDS_DEBUG=1" in r.err
    monkeypatch.setenv("SDS_DEBUG", "1")
    r = sds("status", factory=factory)
    assert r.code == 1 and "Traceback" in r.err


def test_connection_failure_in_factory(sds):
    def factory(conf, name, keyring):
        raise NotFound("no cluster config: pass --conf, set SDS_CONF, or run `sds cluster up`")

    r = sds("status", factory=factory)
    assert r.code == 2 and r.err.startswith("Error ENOENT: no cluster config")


def test_describe_table():
    assert errors.describe(SdsError("x", code=300)) == ("Error 300: x", 1)
    assert errors.describe(KeyboardInterrupt()) == ("interrupted", 130)
    assert errors.describe(ExceptionGroup("g", [NotFound("gone")])) == ("Error ENOENT: gone", 2)


# ---------------------------------------------------------------- bench maths

def test_parse_size():
    assert bench.parse_size("4096") == 4096
    assert bench.parse_size("4K") == bench.parse_size("4k") == bench.parse_size("4KiB") == 4096
    assert bench.parse_size("4M") == 4 << 20
    assert bench.parse_size("1G") == 1 << 30
    for bad in ("", "4Q", "-1", "0", "2G", "4.5K"):
        with pytest.raises(SdsError):
            bench.parse_size(bad)


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert bench.percentile(values, 0) == 1.0
    assert bench.percentile(values, 100) == 4.0
    assert bench.percentile(values, 50) == 2.5
    assert bench.percentile(values, 95) == pytest.approx(3.85)
    assert bench.percentile([7.0], 99) == 7.0
    assert bench.percentile([], 50) == 0.0
    hundred = [float(i) for i in range(1, 101)]
    assert bench.percentile(hundred, 99) == pytest.approx(99.01)


def test_summarize():
    lat = [0.004, 0.001, 0.002, 0.003]
    s = bench.summarize("write", 1 << 20, 16, 2.0, lat, 4 << 20, [3.0, 1.0])
    assert s["ops"] == 4 and s["bytes"] == 4 << 20
    assert s["bandwidth_mb_s"] == 2.0 and s["iops"] == 2.0
    assert s["latency_ms"] == {"avg": 2.5, "min": 1.0, "max": 4.0,
                               "stddev": pytest.approx(1.291, abs=1e-3),
                               "p50": 2.5, "p95": 3.85, "p99": 3.97}
    assert s["bandwidth_max_mb_s"] == 3.0 and s["bandwidth_min_mb_s"] == 1.0
    assert s["bandwidth_stddev_mb_s"] == pytest.approx(1.414, abs=1e-3)
    short = bench.summarize("seq", 1 << 20, 1, 0.5, [0.1], 1 << 20, [])
    assert short["bandwidth_max_mb_s"] == short["bandwidth_min_mb_s"] == 2.0
    empty = bench.summarize("seq", 10, 1, 0.0, [], 0, [])
    assert empty["iops"] == 0 and empty["latency_ms"]["p99"] == 0.0
    text = bench.summary_text(s)
    assert "Total writes made:" in text and "p99 latency(ms):" in text


def test_progress_line_columns():
    line = bench.progress_line(3, 16, 120, 104, 12.5, 10.25, 0.0123, 0.011)
    assert line.split() == ["3", "16", "120", "104", "12.500", "10.250", "0.012300", "0.011000"]
    assert len(line) == len(bench.HEADER)
    assert bench.progress_line(0, 0, 0, 0, 0, 0, None, 0).split()[6] == "-"


# ---------------------------------------------------------------- bench runs

def test_bench_write_seq_rand_cleanup(sds, rados):
    rados.delay = 0.001
    sds("pool", "create", "bench", "8")
    objects = rados.store.setdefault("bench", {})
    w = sds("bench", "bench", "1.2", "write", "-b", "4K", "-t", "4", "--no-cleanup")
    assert w.code == 0, w.err
    assert bench.HEADER in w.out and "Bandwidth (MB/sec):" in w.out
    progress = [line for line in w.out.splitlines() if line[:5].strip().isdigit()]
    assert len(progress) >= 1
    meta = json.loads(objects[bench.METADATA_OBJECT][0])
    assert meta["object_size"] == 4096 and len(meta["names"]) == len(objects) - 1
    assert meta["names"][0].startswith("benchmark_data_") and meta["names"][0].endswith("object0")
    assert all(len(objects[n][0]) == 4096 for n in meta["names"])

    seq = sds("bench", "bench", "5", "seq", "--format", "json")
    s = seq.json()
    assert s["mode"] == "seq" and s["ops"] == len(meta["names"])  # stops after one pass
    assert s["object_size"] == 4096 and set(s["latency_ms"]) >= {"p50", "p95", "p99"}
    assert bench.HEADER in seq.err  # progress goes to stderr with --format json
    rand = sds("bench", "bench", "0.3", "rand", "-t", "2", "--format", "json").json()
    assert rand["mode"] == "rand" and rand["ops"] > 0

    cleaned = sds("cleanup", "bench")
    assert cleaned.out == f"removed {len(meta['names'])} benchmark objects from pool 'bench'\n"
    assert objects == {}
    nothing = sds("bench", "bench", "1", "seq")
    assert nothing.code == 2 and "run `sds bench bench 10 write --no-cleanup` first" in nothing.err


def test_bench_write_cleans_up_by_default(sds, rados):
    sds("pool", "create", "bench", "8")
    r = sds("bench", "bench", "0.2", "write", "-b", "1K", "--format", "json")
    summary = r.json()
    assert summary["cleanup"] is True and summary["ops"] > 0
    assert rados.store["bench"] == {}


def test_bench_write_error_surfaces_as_one_line(sds, rados):
    sds("pool", "create", "bench", "8")

    class Full(FakeIoCtx):
        async def write_full(self, oid, data):
            from sds.common.errors import NoSpace
            raise NoSpace("pool 'bench' is full")

    rados.ioctx = lambda pool: Full(rados.store, pool)
    r = sds("bench", "bench", "1", "write")
    assert r.code == 28 and r.err.splitlines()[-1] == "Error ENOSPC: pool 'bench' is full"


# ---------------------------------------------------------------- local daemons

def test_cluster_and_daemon_dispatch(sds, monkeypatch):
    from sds.cluster import local
    from sds.common import daemon

    daemons = [{"name": "mon.0", "addr": "127.0.0.1:6789", "pid": 42, "data_dir": "/d/mon.0",
                "running": True},
               {"name": "osd.0", "addr": "", "pid": None, "data_dir": "/d/osd.0",
                "running": False}]
    monkeypatch.setattr(local, "cluster_status", lambda dir=None: daemons)
    r = sds("cluster", "status", "--dir", "/d")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "ADDR", "PID", "RUNNING", "DATA_DIR"]
    assert lines[1].split() == ["mon.0", "127.0.0.1:6789", "42", "yes", "/d/mon.0"]
    assert lines[2].split() == ["osd.0", "-", "-", "no", "/d/osd.0"]
    assert sds("cluster", "status", "--format", "json").json() == {"daemons": daemons}

    calls = []

    def fake_up(dir=None, osds=3, mons=3, progress=print, csi=False):
        progress("started mon.0 (pid 42)")
        calls.append((dir, osds, mons))
        return {"dir": "/d", "conf": "/d/sds.conf", "seconds_to_healthy": 1.0,
                "daemons": daemons}

    monkeypatch.setattr(local, "cluster_up", fake_up)
    up = sds("cluster", "up", "--dir", "/d", "--osds", "1", "--mons", "1")
    assert up.code == 0 and calls == [("/d", 1, 1)]
    assert up.out.startswith("started mon.0 (pid 42)\nNAME")
    assert "export SDS_CONF=/d/sds.conf" in up.out

    monkeypatch.setattr(local, "cluster_down", lambda dir=None: {
        "dir": "/d", "stopped": ["mon.0"], "killed": [], "survivors": []})
    assert sds("cluster", "down").out == "stopped 1 daemons: mon.0\n"

    started = []
    monkeypatch.setattr(daemon, "run_daemon",
                        lambda role, i, conf: started.append((role, i, conf)) or 7)
    r = sds("daemon", "osd", "--id", "3", "--conf", "/d/sds.conf", "-f")
    assert r.code == 7 and started == [("osd", "3", "/d/sds.conf")]
