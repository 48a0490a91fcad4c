"""A local cluster of real daemon processes on loopback, like Ceph's vstart.sh.

Layout of a cluster directory (default `~/.sds/cluster`, or $SDS_CLUSTER_DIR):

    sds.conf          [global] + one section per daemon ([mon.0], [osd.0], [mgr.x], [mds.a])
    keyring           the admin keyring (client.admin only), where the CLI finds it
    mon.0/ osd.0/ ... data dirs; each holds <name>.pid, while serving <name>.addr, and
                      `keyring`: the daemon's own key only (a mon's holds the genesis
                      entities: the mons keep the auth database anyway)

Everything is private to the user who runs the cluster: directories 0700, files 0600
(daemons also run with umask 077), whatever the caller's umask.
    out/<name>.log    the daemon's structured log
    out/<name>.out    its stdout/stderr (tracebacks before logging is up land here)

The daemons in a cluster are the sections of sds.conf named `<role>.<id>`; the
directory is the whole state, so any process can stop or inspect a cluster that
another one started. Each daemon runs as
`python -m sds daemon ROLE --id ID --conf DIR/sds.conf` in its own session.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sds.common.config import LAST_CLUSTER_FILE, Config
from sds.common.daemon import daemon_paths, pid_alive
from sds.common.errors import AlreadyExists, InvalidArgument, NotFound, TimedOut
from sds.common.keyring import Keyring
from sds.common.options import OPTIONS

ROLES = ("mon", "osd", "mgr", "mds", "gateway", "csi")
DAEMON_SECTION = re.compile(rf"^({'|'.join(ROLES)})\.([A-Za-z0-9_-]+)$")
STOP_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 30
ALL_CAPS = "allow *"
# A daemon is a daemon by these caps (its mon profile), never by its name.
DAEMON_CAPS: dict[str, dict[str, str]] = {
    "mon": {"mon": "allow profile mon"},
    "osd": {"mon": "allow profile osd", "osd": ALL_CAPS, "mgr": "allow profile osd"},
    "mgr": {"mon": "allow profile mgr", "osd": ALL_CAPS, "mds": ALL_CAPS,
            "mgr": "allow profile mgr"},
    "mds": {"mon": "allow profile mds", "osd": ALL_CAPS, "mds": "allow profile mds"},
}


def csi_caps(pools: list[str] | None = None) -> dict[str, str]:
    """The CSI plugin's own key (client.csi): only what it needs. The monitors for maps
    and `df`; the OSDs for its journal (metadata pool) and for copying clones (data
    pool), limited to POOLS when given; the MDS for subvolumes, quotas and snapshots.
    No mgr: it asks nothing of it."""
    osd = ", ".join(f"allow profile csi pool={p}" for p in pools) if pools else \
        "allow profile csi"
    return {"mon": "allow profile csi", "osd": osd, "mds": "allow profile csi"}


CSI_CAPS = csi_caps()
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
MDS_NAMES = "abcdefghijklmnopqrstuvwxyz"
DEFAULT_FS = ("sdsfs", "sdsfs_metadata", "sdsfs_data")
DEFAULT_FS_PG_NUM = (8, 32)  # metadata, data

Progress = Callable[[str], Any] | None

# Popen objects of daemons started by this process: polled to reap them, so an exited
# child is never mistaken for a live one (a zombie still answers kill(pid, 0)).
_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


# ---------------------------------------------------------------- paths and names


def default_dir() -> Path:
    return Path(os.environ.get("SDS_CLUSTER_DIR") or Path.home() / ".sds" / "cluster")


def resolve_dir(dir: str | os.PathLike | None) -> Path:
    """Explicit dir, else $SDS_CLUSTER_DIR, else the cluster started last, else the default."""
    if dir is not None:
        return Path(dir).expanduser().resolve()
    if not os.environ.get("SDS_CLUSTER_DIR") and LAST_CLUSTER_FILE.exists():
        last = Path(LAST_CLUSTER_FILE.read_text().strip())
        if (last / "sds.conf").exists():
            return last
    return default_dir().expanduser().resolve()


def conf_path(dir: str | os.PathLike) -> Path:
    return Path(dir) / "sds.conf"


def _split(name: str) -> tuple[str, str]:
    m = DAEMON_SECTION.match(name)
    if not m:
        raise InvalidArgument(f"not a daemon name: {name!r} (expected e.g. osd.0)")
    return m.group(1), m.group(2)


def daemon_names(dir: str | os.PathLike, role: str | None = None) -> list[str]:
    """Daemons of the cluster in `dir`, mons first, in the order of sds.conf."""
    conf = conf_path(dir)
    if not conf.exists():
        return []
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(conf)
    names = [s for s in parser.sections() if DAEMON_SECTION.match(s)]
    if role is not None:
        names = [n for n in names if n.split(".", 1)[0] == role]
    return sorted(names, key=lambda n: ROLES.index(n.split(".", 1)[0]))


def _daemon_files(dir: Path, name: str) -> dict[str, Path]:
    """The daemon's files as run_daemon lays them out, plus its captured stdout/stderr."""
    role, daemon_id = _split(name)
    files = daemon_paths(Config(conf_path(dir), name), role, daemon_id)
    files["out"] = dir / "out" / f"{name}.out"
    return files


# ---------------------------------------------------------------- processes


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def daemon_cmdline_info(argv: list[str]) -> tuple[str, str, str] | None:
    """(role, id, conf) if argv is `... -m sds daemon ROLE --id ID --conf CONF`."""
    for i in range(len(argv) - 2):
        if argv[i : i + 3] == ["-m", "sds", "daemon"]:
            rest = argv[i + 3 :]
            if not rest:
                return None
            opts = dict(zip(rest[1::2], rest[2::2], strict=False))
            return rest[0], opts.get("--id", ""), opts.get("--conf", "")
    return None


def _is_ours(pid: int, dir: Path, name: str) -> bool:
    info = daemon_cmdline_info(_cmdline(pid))
    if info is None:
        return False
    role, daemon_id, conf = info
    return f"{role}.{daemon_id}" == name and _same_path(conf, conf_path(dir))


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    with _children_lock:
        child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        with _children_lock:
            _children.pop(pid, None)
        return False
    return pid_alive(pid)


def daemon_pid(dir: str | os.PathLike, name: str) -> int | None:
    """Pid of the daemon if it is running (alive and started with this cluster's conf)."""
    pid = _recorded_pid(Path(dir), name)
    if pid and _alive(pid) and _is_ours(pid, Path(dir), name):
        return pid
    return None


def _recorded_pid(dir: Path, name: str) -> int | None:
    try:
        return int(_daemon_files(dir, name)["pid"].read_text().strip() or 0) or None
    except (OSError, ValueError, NotFound):
        return None


def find_daemon_processes(conf_under: str | os.PathLike) -> list[tuple[int, str, str]]:
    """(pid, name, conf) of every live `-m sds daemon` process whose conf is under a path."""
    base = Path(conf_under).resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        info = daemon_cmdline_info(_cmdline(pid))
        if info is None or pid == os.getpid():
            continue
        role, daemon_id, conf = info
        try:
            resolved = Path(conf).resolve()
        except OSError:
            continue
        if (resolved == base or base in resolved.parents) and _alive(pid):
            found.append((pid, f"{role}.{daemon_id}", str(resolved)))
    return found


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sig == signal.SIGKILL and os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # the daemon leads its own session: take helpers too
        else:
            os.kill(pid, sig)


def _wait_gone(pids: Iterable[int], timeout_s: float) -> set[int]:
    """Wait until the pids have exited; returns those still alive at the deadline."""
    left = set(pids)
    deadline = time.monotonic() + timeout_s
    while left:
        left = {p for p in left if _alive(p)}
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return left


def daemon_argv(role: str, daemon_id: str, conf: Path) -> list[str]:
    return [sys.executable, "-m", "sds", "daemon", role, "--id", daemon_id, "--conf", str(conf)]


def start_daemon(dir: str | os.PathLike, name: str, cgroup: str | os.PathLike | None = None) -> int:
    """Start one daemon of the cluster in the background; returns its pid.

    `cgroup` (a cgroup v2 directory) puts the daemon in it from its first instruction, so
    every socket it opens belongs to it: fault tests cut its traffic with iptables."""
    dir = Path(dir).resolve()
    role, daemon_id = _split(name)
    if name not in daemon_names(dir):
        raise NotFound(f"{name} is not in {conf_path(dir)}")
    running = daemon_pid(dir, name)
    if running:
        raise AlreadyExists(f"{name} is already running (pid {running})")
    files = _daemon_files(dir, name)
    private_dir(files["data_dir"])
    private_dir(files["out"].parent)
    argv = daemon_argv(role, daemon_id, conf_path(dir))
    with os.fdopen(os.open(files["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           PRIVATE_FILE), "ab") as out:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 start_new_session=True, close_fds=True,
                                 preexec_fn=_joiner(cgroup) if cgroup else None)
    with _children_lock:
        _children[child.pid] = child
    tmp = files["pid"].with_name(files["pid"].name + ".tmp")
    write_private(tmp, f"{child.pid}\n")
    os.replace(tmp, files["pid"])
    return child.pid


def private_dir(path: Path) -> Path:
    """mkdir -p with mode 0700 for the leaf (chmod too: mkdir's mode obeys the umask)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def daemon_keyring(dir: Path, name: str) -> Path:
    return dir / name / "keyring"


def _joiner(cgroup: str | os.PathLike) -> Callable[[], None]:
    procs = os.path.join(cgroup, "cgroup.procs")

    def join() -> None:  # runs in the child between fork and exec
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    return join


def stop_daemon(dir: str | os.PathLike, name: str, sig: int = signal.SIGTERM,
                timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Send `sig`; for TERM/INT/KILL wait for the exit (SIGKILL after timeout_s).

    Other signals (SIGSTOP, SIGCONT) are sent and not waited for. Returns whether
    the daemon was running.
    """
    pid = daemon_pid(dir, name)
    if pid is None:
        return False
    _signal(pid, sig)
    if sig not in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        return True
    if sig != signal.SIGKILL and _wait_gone([pid], timeout_s):
        _signal(pid, signal.SIGCONT)
        _signal(pid, signal.SIGKILL)
    if _wait_gone([pid], timeout_s):
        raise TimedOut(f"{name} (pid {pid}) survived SIGKILL")
    return True


def kill_daemon(dir: str | os.PathLike, name: str) -> bool:
    """kill -9 one daemon and wait until it is gone."""
    return stop_daemon(dir, name, signal.SIGKILL)


def daemon_addr(dir: str | os.PathLike, name: str) -> str:
    """The address the daemon serves on: its .addr file, else its configured addr."""
    dir = Path(dir)
    with contextlib.suppress(OSError):
        addr = _daemon_files(dir, name)["addr"].read_text().strip()
        if addr:
            return addr
    addr = Config(conf_path(dir), name).get("addr")
    return "" if addr.endswith(":0") else addr


def log_tail(dir: str | os.PathLike, name: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the daemon's log and of its stdout/stderr."""
    files = _daemon_files(Path(dir), name)
    parts = []
    for key in ("log", "out"):
        with contextlib.suppress(OSError):
            text = files[key].read_text(errors="replace").splitlines()[-lines:]
            if text:
                parts.append(f"--- {files[key]} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(parts) or f"--- {name}: no log output"


# ---------------------------------------------------------------- status and down


def cluster_status(dir: str | os.PathLike | None = None) -> list[dict]:
    """One entry per daemon: name, addr, pid, data_dir, running."""
    d = resolve_dir(dir)
    result = []
    for name in daemon_names(d):
        pid = daemon_pid(d, name)
        result.append({
            "name": name,
            "addr": daemon_addr(d, name) if pid else "",
            "pid": pid,
            "data_dir": str(_daemon_files(d, name)["data_dir"]),
            "running": pid is not None,
        })
    return result


def cluster_down(dir: str | os.PathLike | None = None,
                 timeout_s: float = STOP_TIMEOUT_S) -> dict:
    """SIGTERM every daemon, SIGKILL what is left after timeout_s. Idempotent."""
    d = resolve_dir(dir)
    targets: dict[int, str] = {}
    for name in daemon_names(d):
        pid = daemon_pid(d, name)
        if pid:
            targets[pid] = name
    if d.exists():  # strays whose pidfile was lost or overwritten
        for pid, name, conf in find_daemon_processes(d):
            if _same_path(conf, conf_path(d)):
                targets.setdefault(pid, name)
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    left = _wait_gone(targets, timeout_s)
    for pid in left:
        _signal(pid, signal.SIGCONT)
        _signal(pid, signal.SIGKILL)
    still = _wait_gone(left, 5.0)
    return {
        "dir": str(d),
        "stopped": sorted(targets[p] for p in targets if p not in left),
        "killed": sorted(targets[p] for p in left),
        "survivors": sorted(targets[p] for p in still),
    }


# ---------------------------------------------------------------- creating a cluster


def pick_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports the kernel calls free now (all sockets held open until all picked)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_option(name: str) -> None:
    if name not in OPTIONS:
        raise InvalidArgument(f"unknown option {name!r} in extra_conf")


def _merge_extra(sections: dict[str, dict[str, str]], extra: dict | None) -> None:
    """extra_conf: {option: value} goes to [global]; {section: {option: value}} to a section."""
    for key, value in (extra or {}).items():
        if isinstance(value, dict):
            for opt, v in value.items():
                _check_option(opt)
                sections.setdefault(key, {})[opt] = _conf_value(v)
        else:
            _check_option(key)
            sections["global"][key] = _conf_value(value)


def render_conf(sections: dict[str, dict[str, str]]) -> str:
    lines = ["# Written by `sds cluster up`. The daemons are the [role.id] sections.", ""]
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {v}" for k, v in options.items())
        lines.append("")
    return "\n".join(lines)


def genesis_keyring(osds: int, mgrs: list[str], mds_ids: list[str],
                    csi_caps: dict[str, str] | None = None) -> Keyring:
    """The genesis auth database the monitors start from: fresh keys for the mons, every
    daemon (with its daemon caps), client.admin, and client.csi when CSI_CAPS are given.
    Local clusters and the Kubernetes secrets (deploy/kubernetes/make_secrets.py) both
    come from here."""
    keyring = Keyring()
    keyring.add("mon.", caps=DAEMON_CAPS["mon"])
    keyring.add("client.admin", caps={s: ALL_CAPS for s in ("mon", "osd", "mgr", "mds")})
    for i in range(osds):
        keyring.add(f"osd.{i}", caps=DAEMON_CAPS["osd"])
    for mgr_id in mgrs:
        keyring.add(f"mgr.{mgr_id}", caps=DAEMON_CAPS["mgr"])
    for mds_id in mds_ids:
        keyring.add(f"mds.{mds_id}", caps=DAEMON_CAPS["mds"])
    if csi_caps is not None:
        keyring.add("client.csi", caps=csi_caps)
    return keyring


def write_cluster_files(dir: Path, osds: int = 3, mons: int = 3, mgr: bool = True,
                        extra_conf: dict | None = None, mds: int = 0,
                        csi: bool = False) -> list[str]:
    """Create the directory layout, sds.conf and keyring; returns the daemon names."""
    if mons < 1 or osds < 0:
        raise InvalidArgument("a cluster needs at least one mon and no negative OSD count")
    if not 0 <= mds <= len(MDS_NAMES):
        raise InvalidArgument(f"between 0 and {len(MDS_NAMES)} MDS daemons, not {mds}")
    host = "127.0.0.1"
    ports = pick_free_ports(mons + (1 if mgr else 0), host)
    mon_addrs = [f"{host}:{p}" for p in ports[:mons]]
    mgr_addr = f"{host}:{ports[mons]}" if mgr else ""
    out = dir / "out"
    glob = {"fsid": str(uuid.uuid4()), "mon_host": ",".join(mon_addrs),
            "keyring": str(dir / "keyring")}
    if mgr:
        glob["mgr_addr"] = mgr_addr
    glob["osd_crush_failure_domain"] = "osd"  # every OSD of a local cluster shares one host
    sections: dict[str, dict[str, str]] = {"global": glob}
    keyring = genesis_keyring(osds, ["x"] if mgr else [], list(MDS_NAMES[:mds]),
                              CSI_CAPS if csi else None)
    for rank, addr in enumerate(mon_addrs):
        sections[f"mon.{rank}"] = {"addr": addr}
    hostname = socket.gethostname()
    for i in range(osds):
        sections[f"osd.{i}"] = {"osd_host": hostname}
    if mgr:
        sections["mgr.x"] = {"addr": mgr_addr}
    for mds_id in MDS_NAMES[:mds]:
        sections[f"mds.{mds_id}"] = {}
    if csi:  # one CSI plugin with both roles, as client.csi
        sections["csi.0"] = {}
    names = [s for s in sections if s != "global"]
    private_dir(dir)
    for name in names:
        sections[name] = {"data_dir": str(dir / name), **sections[name],
                          "log_file": str(out / f"{name}.log"),
                          "keyring": str(daemon_keyring(dir, name))}
        private_dir(dir / name)
        entity = "client.csi" if name.startswith("csi.") else name
        own = keyring if name.startswith("mon.") else keyring.only(entity)
        own.save(daemon_keyring(dir, name))
    _merge_extra(sections, extra_conf)
    private_dir(out)
    keyring.only("client.admin").save(dir / "keyring")
    tmp = dir / "sds.conf.tmp"
    write_private(tmp, render_conf(sections))
    os.replace(tmp, dir / "sds.conf")
    return names


def _prepare_dir(dir: Path) -> None:
    """Refuse a running cluster; clear a stopped one; refuse a dir that is not ours."""
    running = [s for s in cluster_status(dir) if s["running"]]
    if running:
        first = running[0]
        raise AlreadyExists(
            f"a cluster is already running in {dir} ({first['name']} pid {first['pid']}); "
            f"stop it with `sds cluster down --dir {dir}`")
    if not dir.exists():
        private_dir(dir)
        return
    entries = list(dir.iterdir())
    if entries and not (dir / "sds.conf").exists():
        raise InvalidArgument(f"{dir} is not empty and holds no sds.conf: not clearing it")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _run_coro(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="sds-cluster-probe")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _mon_command(conf: Path, cmd: dict) -> dict:
    from sds.client import Rados

    async with Rados(str(conf)) as r:
        return await r.mon_command(cmd)


async def _probe_status(conf: Path, timeout_s: float = PROBE_TIMEOUT_S) -> dict:
    from sds.client import Rados

    async def ask() -> Any:
        async with Rados(str(conf)) as r:
            return await r.mon_command({"prefix": "status"})

    return _as_dict(await asyncio.wait_for(ask(), timeout_s))


def probe_status(conf: str | os.PathLike) -> dict:
    """`sds status` of a running cluster, or {} when it cannot be had right now."""
    try:
        return _run_coro(_probe_status(Path(conf)))
    except Exception:  # noqa: BLE001 - the status is a courtesy after start-up
        return {}


def _as_dict(reply: Any) -> dict:
    if isinstance(reply, tuple | list):  # (ret, out, outs) librados style
        reply = next((x for x in reply if isinstance(x, dict | str | bytes) and x), {})
    if isinstance(reply, bytes | str):
        reply = json.loads(reply or "{}")
    if not isinstance(reply, dict):
        raise TypeError(f"unexpected status reply {reply!r}")
    return reply


def status_counts(st: dict) -> tuple[int, int]:
    """(mons in quorum, OSDs up) from a `status` reply, tolerant of Ceph's shapes."""
    quorum = st.get("quorum")
    if quorum is None:
        quorum = st.get("quorum_names")
    if quorum is None:
        quorum = (st.get("monmap") or {}).get("quorum", [])
    osdmap = st.get("osdmap") or {}
    if isinstance(osdmap.get("osdmap"), dict):
        osdmap = osdmap["osdmap"]
    up = osdmap.get("num_up_osds", osdmap.get("up", 0))
    return len(quorum) if isinstance(quorum, list | tuple) else int(quorum or 0), int(up or 0)


def wait_healthy(dir: str | os.PathLike, mons: int, osds: int, timeout_s: float = 60,
                 progress: Progress = print) -> float:
    """Poll `status` until all mons are in quorum and all OSDs up; returns the seconds taken."""
    dir = Path(dir)
    conf = conf_path(dir)
    started = time.monotonic()
    deadline = started + timeout_s
    state = "no answer yet"
    while True:
        tick = time.monotonic()
        try:
            budget = min(PROBE_TIMEOUT_S, max(0.2, deadline - time.monotonic()))
            in_quorum, up = status_counts(_run_coro(_probe_status(conf, budget)))
            state = f"quorum {in_quorum}/{mons}, osds up {up}/{osds}"
            if in_quorum >= mons and up >= osds:
                return time.monotonic() - started
        except Exception as e:  # noqa: BLE001 - anything means "not ready yet"
            state = f"not ready: {type(e).__name__}: {e}"[:200]
        dead = [n for n in daemon_names(dir) if daemon_pid(dir, n) is None]
        if dead:
            raise TimedOut(f"daemons exited during start-up: {', '.join(dead)}\n"
                           + _tails(dir, dead))
        elapsed = time.monotonic() - started
        if progress:
            progress(f"waiting for cluster ({elapsed:.0f}s): {state}")
        if time.monotonic() >= deadline:
            raise TimedOut(f"cluster in {dir} not up after {timeout_s:.0f}s ({state})\n"
                           + _tails(dir, daemon_names(dir)))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def _tails(dir: Path, names: Iterable[str]) -> str:
    return "\n".join(log_tail(dir, n) for n in names)


def cluster_up(dir: str | os.PathLike | None = None, osds: int = 3, mons: int = 3,
               mgr: bool = True, progress: Progress = print, timeout: float = 60,
               extra_conf: dict | None = None, wait_healthy: bool = True,
               remember: bool = True, mds: int = 2, csi: bool = False) -> dict:
    """Create and start a local cluster; on any failure, stop what was started and raise.

    With `mds` > 0 it runs that many MDS daemons (one active, the rest standby) and,
    once healthy, creates the default filesystem `sdsfs` (pools sdsfs_metadata and
    sdsfs_data). `csi=True` (with an MDS) also runs one CSI plugin, both roles, on
    <dir>/csi.0/csi.sock. `remember=False` leaves ~/.sds/last-cluster alone (tests). Returns
    {"dir", "conf", "seconds_to_healthy", "daemons": [status entries]}.
    """
    d = Path(dir).expanduser().resolve() if dir is not None else default_dir().resolve()
    _prepare_dir(d)
    t0 = time.monotonic()
    try:
        names = write_cluster_files(d, osds=osds, mons=mons, mgr=mgr, extra_conf=extra_conf,
                                    mds=mds, csi=csi and mds > 0)
        for name in names:
            pid = start_daemon(d, name)
            if progress:
                progress(f"started {name} (pid {pid})")
        if remember:
            LAST_CLUSTER_FILE.parent.mkdir(parents=True, exist_ok=True)
            LAST_CLUSTER_FILE.write_text(f"{d}\n")
        seconds = None
        if wait_healthy:
            _wait_healthy(d, mons, osds, timeout, progress)
            if mds and osds:
                _run_coro(create_default_fs(conf_path(d)))
            seconds = round(time.monotonic() - t0, 3)
            if progress:
                progress(f"cluster up in {seconds:.1f}s: {d / 'sds.conf'}")
    except BaseException:
        cluster_down(d)
        raise
    return {"dir": str(d), "conf": str(conf_path(d)), "seconds_to_healthy": seconds,
            "daemons": cluster_status(d)}


_wait_healthy = wait_healthy


DEFAULT_FS_CLEAN_TIMEOUT_S = 30.0


async def create_default_fs(conf: Path) -> None:
    """Pools and filesystem so that `sds mount MOUNTPOINT` needs no other argument."""
    from sds.client import Rados

    name, meta, data = DEFAULT_FS
    async with Rados(str(conf)) as r:
        size = min(3, len(r.osdmap.osds) or 3)
        for pool, pg_num in zip((meta, data), DEFAULT_FS_PG_NUM, strict=True):
            await r.pool_create(pool, pg_num=pg_num, size=size, min_size=min(2, size))
        await r.mon_command({"prefix": "fs new", "fs_name": name, "metadata": meta,
                             "data": data})
        await _until_pgs_clean(r, DEFAULT_FS_CLEAN_TIMEOUT_S)


async def _until_pgs_clean(r, timeout_s: float) -> None:
    """Wait (bounded) until the new pools' PGs are reported active+clean, so the status
    `cluster up` prints is the cluster's real state, not "40 pgs unknown" of the first
    second; a slow cluster is not an error here: the status shows what it waits for."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = (await r.mon_command({"prefix": "status"}))["pgmap"]["pgs_by_state"]
        if states and all(s["state_name"] == "active+clean" for s in states):
            return
        await asyncio.sleep(0.25)


def add_osd(dir: str | os.PathLike, osd_id: int | None = None, start: bool = True) -> str:
    """Add osd.N (next free id by default) to a running cluster and start it.

    The monitors create its key (`auth get-or-create`, so they accept it at once), the
    key goes into the keyring file, the conf gets its section, and the new daemon boots
    into CRUSH under this host with weight 1: data rebalances onto it.
    """
    d = Path(dir).resolve()
    conf = conf_path(d)
    if not conf.exists():
        raise NotFound(f"no cluster in {d}")
    existing = {int(n.split(".")[1]) for n in daemon_names(d, "osd") if n.split(".")[1].isdigit()}
    if osd_id is None:
        osd_id = max(existing, default=-1) + 1
    name = f"osd.{osd_id}"
    if osd_id in existing:
        raise AlreadyExists(f"{name} already exists in {conf}")
    caps = DAEMON_CAPS["osd"]
    created = _run_coro(_mon_command(conf, {"prefix": "auth get-or-create", "entity": name,
                                            "caps": caps}))
    private_dir(d / name)
    Keyring({name: (base64.b64decode(created["key"]), caps)}).save(daemon_keyring(d, name))
    section = {"data_dir": str(d / name), "osd_host": socket.gethostname(),
               "log_file": str(d / "out" / f"{name}.log"),
               "keyring": str(daemon_keyring(d, name))}
    with open(conf, "a") as f:
        f.write("\n" + render_conf({name: section}).split("\n", 2)[2])
    if start:
        start_daemon(d, name)
    return name


def key_of(dir: str | os.PathLike, entity: str) -> bytes:
    """An entity's key from the keyring it uses (a daemon's own, else the admin's)."""
    cfg = Config(conf_path(dir), entity)
    return Keyring.load(cfg.resolve_path(cfg.get("keyring"))).key_of(entity)


# ---------------------------------------------------------------- object wrapper


class LocalCluster:
    """One cluster directory and the operations on it (used by tests and `sds cluster`)."""

    def __init__(self, dir: str | os.PathLike | None = None):
        self.dir = resolve_dir(dir)
        self.info: dict = {}

    @property
    def conf(self) -> Path:
        return conf_path(self.dir)

    def up(self, **kwargs: Any) -> dict:
        self.info = cluster_up(self.dir, **kwargs)
        return self.info

    def down(self) -> dict:
        return cluster_down(self.dir)

    def status(self) -> list[dict]:
        return cluster_status(self.dir)

    def names(self, role: str | None = None) -> list[str]:
        return daemon_names(self.dir, role)

    def start(self, name: str, cgroup: str | os.PathLike | None = None) -> int:
        return start_daemon(self.dir, name, cgroup)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> bool:
        return stop_daemon(self.dir, name, sig)

    def kill(self, name: str) -> bool:
        return kill_daemon(self.dir, name)

    def restart(self, name: str) -> int:
        self.stop(name)
        return self.start(name)

    def pid(self, name: str) -> int | None:
        return daemon_pid(self.dir, name)

    def addr(self, name: str) -> str:
        return daemon_addr(self.dir, name)

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.dir, name, lines)

    def add_osd(self, osd_id: int | None = None, start: bool = True) -> str:
        return add_osd(self.dir, osd_id, start)

    def key(self, entity: str) -> bytes:
        return key_of(self.dir, entity)

    def wait_healthy(self, timeout_s: float = 60, progress: Progress = None) -> float:
        return wait_healthy(self.dir, len(self.names("mon")), len(self.names("osd")),
                            timeout_s, progress)

    def config(self, entity: str = "client.admin") -> Config:
        return Config(self.conf, entity)

    def rados(self) -> Any:
        """A client for this cluster: `async with cluster.rados() as r: ...`."""
        from sds.client import Rados

        return Rados(str(self.conf))

    def __repr__(self) -> str:
        return f"LocalCluster({str(self.dir)!r})"
