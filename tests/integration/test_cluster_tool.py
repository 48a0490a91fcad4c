"""The local-cluster tool, the daemon lifecycle and the log format.

Most tests here need no working daemon role: processes whose command line looks like
an SDS daemon stand in for one, and the lifecycle is driven through a fake role.
`test_cluster_up_down` brings up a real cluster.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sds.cluster import local
from sds.cluster.local import LocalCluster
from sds.common.config import Config
from sds.common.errors import AlreadyExists, InvalidArgument, TimedOut
from sds.common.keyring import Keyring
from sds.common.log import EventFormatter, format_fields, log_event, setup_logging

REPO = Path(__file__).resolve().parents[2]


def _conf(dir: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(dir / "sds.conf")
    return parser


def _fake_daemon(dir: Path, name: str, ignore_term: bool = False) -> subprocess.Popen:
    """A sleeping process with a daemon's command line, recorded in the daemon's pidfile."""
    role, daemon_id = name.split(".", 1)
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "time.sleep(120)\n"
    argv = [sys.executable, "-c", code, "-m", "sds", "daemon", role, "--id", daemon_id,
            "--conf", str(dir / "sds.conf")]
    proc = subprocess.Popen(argv, start_new_session=True)
    (dir / name / f"{name}.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until exec'd: its /proc cmdline is the daemon's
        if Path(f"/proc/{proc.pid}/cmdline").read_bytes().count(b"daemon"):
            break
        time.sleep(0.01)
    time.sleep(0.2 if ignore_term else 0)  # let it install the handler
    return proc


# ---------------------------------------------------------------- generated files


def test_generated_conf_and_keyring(tmp_path):
    names = local.write_cluster_files(tmp_path, osds=3, mons=3, mgr=True,
                                      extra_conf={"osd_pool_default_size": 2,
                                                  "osd.1": {"osd_weight": 2.0}})
    assert names == ["mon.0", "mon.1", "mon.2", "osd.0", "osd.1", "osd.2", "mgr.x"]
    conf = _conf(tmp_path)
    g = conf["global"]
    assert re.fullmatch(r"[0-9a-f-]{36}", g["fsid"])
    mon_addrs = g["mon_host"].split(",")
    assert len(mon_addrs) == 3 and len(set(mon_addrs)) == 3
    assert all(a.startswith("127.0.0.1:") for a in mon_addrs)
    assert g["osd_crush_failure_domain"] == "osd"
    assert g["osd_pool_default_size"] == "2"
    for rank in range(3):
        assert conf[f"mon.{rank}"]["addr"] == mon_addrs[rank]
        assert Path(conf[f"mon.{rank}"]["data_dir"]).is_dir()
    assert conf["mgr.x"]["addr"] == g["mgr_addr"] not in mon_addrs
    assert conf["osd.0"]["osd_host"] == socket.gethostname()
    assert (tmp_path / "out").is_dir()

    cfg = Config(tmp_path / "sds.conf", "osd.1")
    assert cfg.get("osd_weight") == 2.0
    assert cfg.get("osd_pool_default_size") == 2
    assert cfg.get("data_dir") == str(tmp_path / "osd.1")
    assert Config(tmp_path / "sds.conf", "osd.0").get("osd_weight") == 1.0

    keyring_path = Config(tmp_path / "sds.conf", "client.admin").get("keyring")
    assert stat.S_IMODE(os.stat(keyring_path).st_mode) == 0o600
    keyring = Keyring.load(keyring_path)
    assert set(keyring.entries) == {"client.admin"}  # the admin keyring: the CLI's key only
    assert keyring.entries["client.admin"][1] == {s: "allow *"
                                                  for s in ("mon", "osd", "mgr", "mds")}
    expected = {"mon.", "client.admin", "osd.0", "osd.1", "osd.2", "mgr.x"}
    genesis = Keyring.load(Config(tmp_path / "sds.conf", "mon.0").get("keyring"))
    assert set(genesis.entries) == expected  # a mon starts the auth database from its own
    for name in ("osd.0", "osd.1", "mgr.x"):  # every other daemon holds only its own key
        own = Config(tmp_path / "sds.conf", name).get("keyring")
        assert stat.S_IMODE(os.stat(own).st_mode) == 0o600
        assert set(Keyring.load(own).entries) == {name}
    assert genesis.entries["osd.0"][1]["mon"] == "allow profile osd"
    assert len({genesis.key_of(e) for e in expected}) == len(expected)
    assert local.daemon_names(tmp_path) == names
    assert local.daemon_names(tmp_path, "osd") == ["osd.0", "osd.1", "osd.2"]


def test_unknown_extra_option_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="osd_colour"):
        local.write_cluster_files(tmp_path, extra_conf={"osd_colour": "blue"})


def test_without_mgr(tmp_path):
    names = local.write_cluster_files(tmp_path, osds=1, mons=1, mgr=False)
    assert names == ["mon.0", "osd.0"]
    assert "mgr_addr" not in _conf(tmp_path)["global"]


def test_pick_free_ports_are_distinct_and_bindable():
    ports = local.pick_free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


# ---------------------------------------------------------------- processes


def test_down_without_cluster_is_fine(tmp_path):
    result = local.cluster_down(tmp_path / "nothing-here")
    assert result["stopped"] == result["killed"] == []
    assert local.cluster_status(tmp_path / "nothing-here") == []


def test_status_of_stopped_cluster(tmp_path):
    local.write_cluster_files(tmp_path, osds=2, mons=1)
    (tmp_path / "osd.0" / "osd.0.pid").write_text("999999999\n")  # stale pidfile
    status = local.cluster_status(tmp_path)
    assert [s["name"] for s in status] == ["mon.0", "osd.0", "osd.1", "mgr.x"]
    assert all(not s["running"] and s["pid"] is None and s["addr"] == "" for s in status)
    assert status[1]["data_dir"] == str(tmp_path / "osd.0")
    assert local.cluster_down(tmp_path)["stopped"] == []


def test_foreign_pid_is_not_ours(tmp_path):
    local.write_cluster_files(tmp_path, osds=1, mons=1, mgr=False)
    (tmp_path / "mon.0" / "mon.0.pid").write_text(f"{os.getpid()}\n")  # alive, not a daemon
    assert local.daemon_pid(tmp_path, "mon.0") is None


def test_status_stop_kill_and_down_of_running_daemons(tmp_path):
    local.write_cluster_files(tmp_path, osds=2, mons=1, mgr=False)
    procs = {n: _fake_daemon(tmp_path, n) for n in ("mon.0", "osd.0")}
    procs["osd.1"] = _fake_daemon(tmp_path, "osd.1", ignore_term=True)
    (tmp_path / "mon.0" / "mon.0.addr").write_text("127.0.0.1:1234\n")
    try:
        cluster = LocalCluster(tmp_path)
        by_name = {s["name"]: s for s in cluster.status()}
        assert all(s["running"] for s in by_name.values())
        assert by_name["mon.0"]["pid"] == procs["mon.0"].pid
        assert by_name["mon.0"]["addr"] == "127.0.0.1:1234"

        with pytest.raises(AlreadyExists, match="already running"):
            local.cluster_up(tmp_path, progress=None, remember=False)
        with pytest.raises(AlreadyExists):
            cluster.start("mon.0")

        assert cluster.kill("osd.0") is True
        assert procs["osd.0"].wait(5) == -signal.SIGKILL
        assert cluster.pid("osd.0") is None
        assert cluster.kill("osd.0") is False

        result = local.cluster_down(tmp_path, timeout_s=1.0)
        assert result["stopped"] == ["mon.0"] and result["killed"] == ["osd.1"]
        assert procs["mon.0"].wait(5) == -signal.SIGTERM
        assert procs["osd.1"].wait(5) == -signal.SIGKILL
        assert not any(s["running"] for s in cluster.status())
        assert local.cluster_down(tmp_path)["stopped"] == []
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def test_down_finds_strays_without_pidfile(tmp_path):
    local.write_cluster_files(tmp_path, osds=1, mons=1, mgr=False)
    proc = _fake_daemon(tmp_path, "osd.0")
    (tmp_path / "osd.0" / "osd.0.pid").unlink()
    try:
        assert local.cluster_down(tmp_path)["stopped"] == ["osd.0"]
        assert proc.wait(5) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_refuses_non_cluster_dir(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidArgument, match="not empty"):
        local.cluster_up(tmp_path, progress=None, remember=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_startup_failure_times_out_and_cleans_up(tmp_path, monkeypatch):
    """No mon ever answers: TimedOut with the logs' tails, and nothing left running."""
    started = []

    def fake_start(dir, name):
        started.append(_fake_daemon(Path(dir), name))
        Path(local._daemon_files(Path(dir), name)["log"]).write_text(f"{name} booting\n")
        return started[-1].pid

    monkeypatch.setattr(local, "start_daemon", fake_start)
    lines = []
    try:
        with pytest.raises(TimedOut) as err:
            local.cluster_up(tmp_path, osds=1, mons=1, mgr=False, timeout=1.5,
                             progress=lines.append, remember=False)
        assert "mon.0 booting" in str(err.value) and "osd.0 booting" in str(err.value)
        assert any(line.startswith("waiting for cluster") for line in lines)
        assert all(p.wait(5) == -signal.SIGTERM for p in started)
        assert not any(s["running"] for s in local.cluster_status(tmp_path))
    finally:
        for p in started:
            p.kill()
            p.wait()


def test_status_counts_reads_the_mon_status_shape():
    st = {"monmap": {"quorum": [0, 1, 2]}, "osdmap": {"num_osds": 3, "num_up_osds": 2}}
    assert local.status_counts(st) == (3, 2)
    assert local.status_counts({"quorum": [0], "osdmap": {"osdmap": {"num_up_osds": 1}}}) == (1, 1)


# ---------------------------------------------------------------- daemon lifecycle

FAKE_ROLE = textwrap.dedent("""
    import asyncio, os, sys, types
    from sds.common.daemon import Daemon, run_daemon

    class Fake(Daemon):
        role = "fake"
        async def start(self):
            if os.environ.get("FAIL_START"):
                raise RuntimeError("cannot bind")
            if os.environ.get("SLOW_START"):
                open(sys.argv[1] + ".starting", "w").write("1")
                await asyncio.sleep(60)
            self.server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
            self.addr = "127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
        async def run(self):
            if os.environ.get("CRASH_RUN"):
                raise OSError("disk on fire")
            await asyncio.Event().wait()
        async def stop(self):
            if hasattr(self, "server"):
                self.server.close()
            print("stopped", flush=True)

    mod = types.ModuleType("sds.fake.daemon")
    mod.create = lambda config, daemon_id: Fake(config, daemon_id)
    sys.modules["sds.fake"] = types.ModuleType("sds.fake")
    sys.modules["sds.fake.daemon"] = mod
    sys.exit(run_daemon("fake", "7", sys.argv[1]))
""")


def _run_fake(tmp_path: Path, **env) -> subprocess.Popen:
    conf = tmp_path / "sds.conf"
    conf.write_text(f"[fake.7]\ndata_dir = {tmp_path / 'fake.7'}\nkey = s3cr3t\n")
    return subprocess.Popen([sys.executable, "-c", FAKE_ROLE, str(conf)], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_daemon_lifecycle_pidfile_addr_and_sigterm(tmp_path):
    proc = _run_fake(tmp_path)
    try:
        data = tmp_path / "fake.7"
        addr = _wait_for(data / "fake.7.addr")
        assert _wait_for(data / "fake.7.pid") == str(proc.pid)
        host, port = addr.rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=2).close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout.read().strip() == "stopped"
        assert not (data / "fake.7.pid").exists() and not (data / "fake.7.addr").exists()
        lines = (data / "fake.7.log").read_text().splitlines()
        events = [line.split()[3] for line in lines]
        assert events[:2] == ["daemon_start", "daemon_serving"]
        assert "daemon_stopping" in events and events[-1] == "daemon_exit"
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z fake\.7 [A-Z]+ ", line)
                   for line in lines)
    finally:
        proc.kill()
        proc.wait()


def test_daemon_start_failure_exits_1_with_one_line(tmp_path):
    proc = _run_fake(tmp_path, FAIL_START="1")
    try:
        assert proc.wait(10) == 1
        lines = (tmp_path / "fake.7" / "fake.7.log").read_text().splitlines()
        failed = [line for line in lines if " daemon_start_failed " in line]
        assert len(failed) == 1 and "cannot bind" in failed[0] and "traceback=" in failed[0]
        assert not (tmp_path / "fake.7" / "fake.7.pid").exists()
    finally:
        proc.kill()
        proc.wait()


def test_daemon_signal_during_slow_start_stops_it(tmp_path):
    proc = _run_fake(tmp_path, SLOW_START="1")
    try:
        _wait_for(tmp_path / "sds.conf.starting")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout.read().strip() == "stopped"
        log = (tmp_path / "fake.7" / "fake.7.log").read_text()
        assert "daemon_stopping signal=SIGTERM during=start" in log
        assert "daemon_serving" not in log
    finally:
        proc.kill()
        proc.wait()


def test_daemon_crash_in_run_exits_1(tmp_path):
    proc = _run_fake(tmp_path, CRASH_RUN="1")
    try:
        assert proc.wait(10) == 1
        assert proc.stdout.read().strip() == "stopped"
        log = (tmp_path / "fake.7" / "fake.7.log").read_text()
        assert " ERROR daemon_crashed " in log and "disk on fire" in log
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- log format


def test_log_line_format_and_redaction(tmp_path):
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "osd_boot", None, None)
    record.created = 1795705200.123456  # 2026-11-26T15:00:00.123Z
    record.sds_fields = {"id": 1, "addr": "127.0.0.1:6800", "key": b"k", "auth_token": "t",
                         "note": "two words", "up": True, "acting": [1, 0], "none": None}
    line = EventFormatter("osd.1").format(record)
    assert line == ('2026-11-26T15:00:00.123Z osd.1 WARNING osd_boot id=1 addr=127.0.0.1:6800 '
                    'key=<redacted> auth_token=<redacted> note="two words" up=true '
                    'acting=[1,0] none=-')
    assert format_fields({"secret": "x", "proof": "y", "msg": "a\nb"}) == \
        'secret=<redacted> proof=<redacted> msg="a\\nb"'

    logger = setup_logging("mon.0", str(tmp_path / "mon.log"), "DEBUG")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log_event(logger, "oops", level="ERROR", exc_info=True, token="t0p")
    logging.shutdown()
    text = (tmp_path / "mon.log").read_text()
    assert text.count("\n") == 1 and "t0p" not in text
    assert " mon.0 ERROR oops token=<redacted> exc=" in text and "ValueError" in text
    setup_logging("test", None)


# ---------------------------------------------------------------- a real cluster


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("sds.__main__") is None,
                    reason="`python -m sds daemon ...` needs sds/__main__.py")
def test_cluster_up_down(tmp_path):
    info = local.cluster_up(tmp_path, osds=3, mons=3, progress=None, remember=False,
                            timeout=90)
    try:
        assert info["conf"] == str(tmp_path / "sds.conf")
        assert info["seconds_to_healthy"] is not None
        status = local.cluster_status(tmp_path)
        assert [s["name"] for s in status] == ["mon.0", "mon.1", "mon.2",
                                               "osd.0", "osd.1", "osd.2", "mgr.x",
                                               "mds.a", "mds.b"]
        for s in status:
            assert s["running"] and s["pid"] > 0, s
            assert re.fullmatch(r"127\.0\.0\.1:\d+", s["addr"]), s
            assert not s["addr"].endswith(":0")
        pids = [s["pid"] for s in status]
        # what `cluster up` prints next is the real state: the default filesystem's PGs
        # are already reported active+clean, not "unknown"
        out = subprocess.run([sys.executable, "-m", "sds", "--conf", info["conf"], "status",
                              "--format", "json"], capture_output=True, text=True, timeout=60)
        states = json.loads(out.stdout)["pgmap"]["pgs_by_state"]
        assert states and all(s["state_name"] == "active+clean" for s in states), states
    finally:
        result = local.cluster_down(tmp_path)
    assert sorted(result["stopped"] + result["killed"]) == sorted(s["name"] for s in status)
    assert not any(local.pid_alive(p) for p in pids)
    assert local.find_daemon_processes(tmp_path) == []
    assert not any(s["running"] for s in local.cluster_status(tmp_path))
