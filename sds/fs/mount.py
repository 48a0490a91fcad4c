"""The mount process: `sds mount` runs the FUSE client as its own daemon, `sds umount` ends it.

The CLI forks before any event loop or thread exists, the child calls setsid and forks
again (so the client survives the shell and never gets its terminal back), and the
grandchild reports over a pipe once the kernel mount is live, or why it failed; only
then does `sds mount` return. A state file per mount point records the client's pid
and log so `sds umount` can wait for it to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sds.common.errors import Busy, InvalidArgument, NotFound, SdsError, TimedOut
from sds.fs.errnos import to_errno

log = logging.getLogger("sds.mount")

READY_TIMEOUT_S = 90.0
UMOUNT_TIMEOUT_S = 30.0
FUSERMOUNT_TIMEOUT_S = 5.0  # an unmount that takes longer is stuck: detach and abort it
TERM_AFTER_S = 5.0          # a client still running this long after the unmount gets SIGTERM
KILL_AFTER_S = 10.0         # ... and SIGKILL this long after that
SHUTDOWN_S = 5.0            # the client's own clean-up at exit (reports, releases) at most
EXIT_GRACE_S = 5.0          # after SIGTERM, the client exits by this time whatever is pending
READ_AHEAD_KB = 4096  # sequential reads reach the client as 1 MiB requests, several in flight
FUSE_TYPE = "fuse.sds"


@dataclass
class MountOptions:
    mountpoint: str
    conf: str
    entity: str = "client.admin"
    keyring: str | None = None
    fs: str | None = None
    root: str = "/"
    read_only: bool = False
    log_file: str | None = None    # None: stderr (foreground)
    read_ahead_kb: int = READ_AHEAD_KB
    recover_session: str = "clean"  # after an eviction: "clean" (new session) or "no"


# -- where a mount's state and log live --------------------------------------------------
def _slug(mountpoint: str) -> str:
    digest = hashlib.sha1(mountpoint.encode()).hexdigest()[:8]
    return f"{mountpoint.strip('/').replace('/', '_')[-60:] or 'root'}.{digest}"


def state_dir() -> Path:
    return Path("/run/sds/mounts") if os.geteuid() == 0 else Path.home() / ".sds" / "mounts"


def state_file(mountpoint: str) -> Path:
    return state_dir() / f"{_slug(mountpoint)}.json"


def default_log_file(conf: str, mountpoint: str) -> str:
    """Next to the cluster's daemon logs (<cluster dir>/out) when that exists."""
    out = Path(conf).resolve().parent / "out"
    base = out if out.is_dir() else Path("/var/log/sds")
    return str(base / f"mount.{_slug(mountpoint)}.log")


def _mounted_paths() -> set[str]:
    with open("/proc/mounts") as f:
        return {fields[1].replace("\\040", " ") for fields in map(str.split, f)
                if len(fields) > 2 and fields[2] == FUSE_TYPE}


def mount_path(mountpoint: str) -> str:
    """The absolute path of a mount point, without stat()ing it: on a mount whose MDS is
    gone that would wait on the dead mount (realpath() stats every component)."""
    path = os.path.abspath(mountpoint)
    parent, name = os.path.split(path)
    candidates = [path, os.path.join(os.path.realpath(parent), name)]
    mounted = _mounted_paths()
    return next((c for c in candidates if c in mounted), None) or os.path.realpath(path)


def is_mounted(mountpoint: str) -> bool:
    return mount_path(mountpoint) in _mounted_paths()


def sds_mounts() -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2:3] == [FUSE_TYPE]]


# -- serving ----------------------------------------------------------------------------
async def _resolve_root(mds, root: str) -> int:
    from sds.fsrules.layout import ROOT_INO
    from sds.proto import mds_pb2

    ino = ROOT_INO
    for part in [p for p in root.split("/") if p]:
        reply = await mds.request(mds_pb2.MdsRequest(op=mds_pb2.MdsRequest.LOOKUP, ino=ino,
                                                     name=part))
        ino = reply.attr.ino
    return ino


async def default_fs(rados) -> str:
    """The filesystem to mount when none is named: the only one there is."""
    names = [fs["name"] for fs in (await rados.mon_command({"prefix": "fs ls"}))
             .get("filesystems", [])]
    if len(names) != 1:
        raise (NotFound("no filesystem exists (see `sds fs new`)") if not names else
               InvalidArgument(f"{len(names)} filesystems exist ({', '.join(names)}): "
                               "choose one with --fs"))
    return names[0]


def _bdi_of(mountpoint: str) -> str | None:
    """The mount's "major:minor" from mountinfo: stat() on it would wait for this very
    process to answer a GETATTR."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].replace("\\040", " ") == mountpoint:
                found = fields[2]  # the last mount on a path is the visible one
    return found


def _tune_read_ahead(mountpoint: str, kb: int) -> None:
    """The kernel's default 128 KiB read-ahead makes every sequential read a round trip
    per 128 KiB; measured (benchmarks/bench_fs.py) larger windows keep OSDs busy.
    Only after FUSE INIT: the kernel resets read-ahead when it gets the INIT reply."""
    path = Path(f"/sys/class/bdi/{_bdi_of(mountpoint)}/read_ahead_kb")
    try:
        path.write_text(str(kb))
    except OSError as e:
        log.warning("cannot set %s: %s", path, e)


async def serve(opts: MountOptions, ready=lambda error, info=None: None) -> int:
    """Mount, serve until unmounted or signalled, then clean up. `ready(None, info)` once
    the mount is live (info: its client instance, as `osd blocklist` names it, and fs),
    `ready(exception)` if it never gets there."""
    import pyfuse3
    import pyfuse3.asyncio

    from sds.fs import fallocate, fusewait
    from sds.fs.fuse_ops import SdsOperations

    pyfuse3.asyncio.enable()
    fusewait.install()
    clients: dict = {}  # the client instance and MDS session in use (new after an eviction)
    mounted = False
    try:
        rados, mds, striper = await _clients(opts, opts.fs)
        clients.update(rados=rados, mds=mds)
        root = await _resolve_root(mds, opts.root)
        ops = SdsOperations(mds, striper, root, read_only=opts.read_only)
        ops.unlink_delay = float(rados.config.get("client_inject_unlink_delay"))
        ops.create_delay = float(rados.config.get("client_inject_create_delay"))
        ops.spawn(_remember_statfs(ops, mds, root))
        mds.on_message = ops.on_mds_message

        async def reconnect():
            new_rados, new_mds, new_striper = await _clients(opts, mds.fs_name)
            new_mds.on_message = ops.on_mds_message
            old = dict(clients)
            clients.update(rados=new_rados, mds=new_mds)
            await _close(old["mds"], old["rados"])
            log.warning("mount %s continues as client %s", opts.mountpoint, new_rados.client_id)
            return new_mds, new_striper

        if opts.recover_session == "clean":
            ops.reconnect = reconnect
        options = set(pyfuse3.default_options) | {
            f"fsname=sds:{mds.fs_name}:{opts.root}", "subtype=sds", "allow_other"}
        if opts.read_only:
            options.add("ro")
        pyfuse3.init(ops, opts.mountpoint, options)
        mounted = True
        fallocate.install(ops.fallocate)
    except BaseException as e:
        ready(e)
        if mounted:
            pyfuse3.close(unmount=True)
        await _close(clients.get("mds"), clients.get("rados"))
        raise
    loop = asyncio.get_running_loop()

    def stop() -> None:
        """Fail what is pending (EIO) so the workers finish, end the loop; if anything
        still holds it (an OSD op), exit anyway: the kernel then fails the rest."""
        log.warning("signalled: failing pending requests and unmounting %s", opts.mountpoint)
        clients["mds"].abort()
        pyfuse3.terminate()
        loop.call_later(EXIT_GRACE_S, _exit_now, opts.mountpoint)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop)

    def live() -> None:  # the kernel has our INIT reply: its settings are in place
        _tune_read_ahead(opts.mountpoint, opts.read_ahead_kb)
        log.info("mounted fs %s%s on %s (pid %d, client %s)", mds.fs_name, opts.root,
                 opts.mountpoint, os.getpid(), rados.client_id)
        ready(None, {"client": rados.client_id, "fs": mds.fs_name})

    ops.on_init = lambda: loop.call_soon(live)
    try:
        await pyfuse3.main()
    finally:
        log.info("unmounting %s", opts.mountpoint)
        try:
            await asyncio.wait_for(ops.shutdown(), SHUTDOWN_S)
        except (TimeoutError, SdsError) as e:
            log.warning("clean-up at unmount cut short: %s", e or "timed out")
        clients["mds"].abort()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # no terminate() on a
            loop.remove_signal_handler(sig)                         # closed session
        fusewait.stop_all()
        pyfuse3.close(unmount=True)
        await _close(clients["mds"], clients["rados"])
    return 0


async def _remember_statfs(ops, mds, root: int) -> None:
    """statfs once at the start, so df can answer even if the MDS goes away next."""
    from sds.proto import mds_pb2

    with contextlib.suppress(SdsError):
        reply = await mds.request(mds_pb2.MdsRequest(op=mds_pb2.MdsRequest.STATFS, ino=root))
        if ops.last_statfs is None:
            ops.last_statfs = reply.statfs


def _exit_now(mountpoint: str) -> None:
    log.error("the client did not finish within %.0fs of the signal: exiting; the kernel "
              "fails what is left (`sds umount %s` detaches the mount)", EXIT_GRACE_S,
              mountpoint)
    logging.shutdown()
    os._exit(1)


async def _clients(opts: MountOptions, fs_name: str | None):
    """A client instance, an MDS session on the filesystem and a striper over its data."""
    from sds.client import Rados
    from sds.client.mdsclient import MdsClient
    from sds.client.striper import Striper

    rados = Rados(opts.conf, entity=opts.entity, keyring=opts.keyring)
    mds = None
    try:
        await rados.connect()
        mds = await MdsClient(rados, fs_name or await default_fs(rados),
                              timeout=float(rados.config.get("client_mount_timeout")),
                              early_replies=True).open()
        return rados, mds, Striper(await mds.data_ioctx(), mds.stripe_size)
    except BaseException:
        await _close(mds, rados)
        raise


async def _close(mds, rados) -> None:
    if mds is not None:
        with contextlib.suppress(Exception):
            await mds.close()
    if rados is not None:
        with contextlib.suppress(Exception):
            await rados.close()


def _run(opts: MountOptions, ready) -> int:
    import uvloop

    return uvloop.run(serve(opts, ready))


# -- the daemon ---------------------------------------------------------------------------
def _log_level(opts: MountOptions) -> str:
    """log_level of sds.conf ([client] or [global]; SDS_LOG_LEVEL overrides)."""
    from sds.common.config import Config

    try:
        return Config(opts.conf, opts.entity).get("log_level")
    except SdsError:
        return "INFO"


def check_mountpoint(mountpoint: str) -> str:
    path = os.path.realpath(mountpoint)
    if not os.path.isdir(path):
        raise NotFound(f"mount point {mountpoint} is not a directory")
    if is_mounted(path):
        raise Busy(f"{path} is already an SDS mount (see `sds umount {path}`)")
    return path


def mount(opts: MountOptions, foreground: bool = False) -> dict:
    """Mount and return {"pid", "log", ...} once the mount is live (raises if it is not)."""
    from sds.common.log import setup_logging

    opts.mountpoint = check_mountpoint(opts.mountpoint)
    if foreground:
        setup_logging("client.mount", opts.log_file, _log_level(opts))
        _run(opts, lambda error: None)
        return {"mountpoint": opts.mountpoint, "pid": os.getpid()}
    opts.log_file = opts.log_file or default_log_file(opts.conf, opts.mountpoint)
    Path(opts.log_file).parent.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked children
        os.close(read_fd)
        _daemon_child(opts, write_fd)
    os.close(write_fd)
    os.waitpid(child, 0)
    lines, finished = _read_report(read_fd, READY_TIMEOUT_S)
    reports = [json.loads(line) for line in lines if line.strip()]
    if not finished:
        for pid in {r["pid"] for r in reports if "pid" in r}:  # it would mount later: stop it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise TimedOut(f"the mount did not come up in {READY_TIMEOUT_S:g}s; "
                       f"see {opts.log_file}")
    status = reports[-1] if reports and "mountpoint" in reports[-1] else \
        {"error": "the mount process died"}
    if status.get("error"):
        raise SdsError(f"mount of {opts.mountpoint} failed: {status['error']} "
                       f"(log: {opts.log_file})", status.get("code"))
    return status


def _read_report(fd: int, timeout: float) -> tuple[list[str], bool]:
    """The grandchild's report lines ({"pid"} first, then its status), and whether it
    finished (closed the pipe) within `timeout`."""
    import select

    chunks = []
    deadline = time.monotonic() + timeout
    with os.fdopen(fd, "rb") as f:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([f], [], [], left)[0]:
                return b"".join(chunks).decode().splitlines(), False
            data = os.read(f.fileno(), 65536)
            if not data:
                return b"".join(chunks).decode().splitlines(), True
            chunks.append(data)


def _daemon_child(opts: MountOptions, report_fd: int) -> None:  # pragma: no cover
    """First child: new session, fork the real client, exit at once."""
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _daemon_main(opts, report_fd)
    finally:
        os._exit(1)


def _daemon_main(opts: MountOptions, report_fd: int) -> None:  # pragma: no cover
    from sds.common.log import setup_logging

    os.chdir("/")
    os.umask(0o022)
    devnull = os.open(os.devnull, os.O_RDWR)
    log_fd = os.open(opts.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)  # libfuse prints its errors on stderr: keep them in the log
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    setup_logging("client.mount", opts.log_file, _log_level(opts))
    state = state_file(opts.mountpoint)
    report = os.fdopen(report_fd, "w")
    report.write(json.dumps({"pid": os.getpid()}) + "\n")
    report.flush()

    def ready(error: BaseException | None, info: dict | None = None) -> None:
        if report.closed:
            return
        status = {"mountpoint": opts.mountpoint, "pid": os.getpid(), "log": opts.log_file,
                  **(info or {})}
        if error is not None:
            status["error"] = str(error) if isinstance(error, SdsError) else \
                f"{type(error).__name__}: {error}"
            status["code"] = to_errno(error)
        else:
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({**status, "options": asdict(opts)}))
        report.write(json.dumps(status) + "\n")
        report.close()

    code = 1
    try:
        code = _run(opts, ready)
    except BaseException as e:
        ready(e)
        log.exception("mount client failed")
    finally:
        with contextlib.suppress(FileNotFoundError):
            if json.loads(state.read_text()).get("pid") == os.getpid():
                state.unlink()
        logging.shutdown()
        os._exit(code)


# -- unmounting ---------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def umount(mountpoint: str, timeout: float = UMOUNT_TIMEOUT_S, lazy: bool = False) -> dict:
    """Unmount, then wait for the client process to exit. EBUSY if files are in use
    (unless lazy). Never stats the mount; returns within seconds even when its MDS or
    OSDs are gone: a stuck unmount is detached and its FUSE connection aborted, a client
    that does not exit afterwards gets SIGTERM, then SIGKILL."""
    path = mount_path(mountpoint)
    state = state_file(path)
    pid = None
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = json.loads(state.read_text()).get("pid")
    if not is_mounted(path):
        if pid is None or not _pid_alive(pid):
            raise InvalidArgument(f"{path} is not an SDS mount")
    else:
        _unmount(path, lazy)
    _wait_exit(path, pid, timeout)
    if is_mounted(path):  # the client died before it unmounted: detach what is left
        _fusermount(path, lazy=True)
    with contextlib.suppress(FileNotFoundError):
        state.unlink()
    return {"mountpoint": path, "pid": pid}


def _fusermount(path: str, lazy: bool) -> subprocess.CompletedProcess | None:
    """fusermount3 -u [-z]; None if it did not return in time."""
    argv = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [path]
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=FUSERMOUNT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None


def _unmount(path: str, lazy: bool) -> None:
    done = _fusermount(path, lazy)
    if done is not None and done.returncode == 0:
        return
    message = (done.stderr or done.stdout).strip() if done is not None else "timed out"
    if done is not None and "busy" in message.lower():
        raise Busy(f"{path} is busy (files open or a process inside it): {message} "
                   "(`sds umount -l` detaches it anyway)")
    log.warning("unmounting %s: %s; aborting its FUSE connection and detaching it", path,
                message)
    abort_connection(path)
    done = _fusermount(path, lazy=True)
    if is_mounted(path):
        raise SdsError(f"fusermount3 -u {path} failed: {message}")


def abort_connection(path: str) -> bool:
    """Abort the mount's FUSE connection (fusectl): every request waiting on it fails
    with ENOTCONN at once, as `echo 1 > /sys/fs/fuse/connections/N/abort` does."""
    dev = _bdi_of(path)
    if dev is None:
        return False
    try:
        Path(f"/sys/fs/fuse/connections/{dev.split(':')[1]}/abort").write_text("1")
        return True
    except OSError as e:
        log.warning("cannot abort the FUSE connection of %s: %s", path, e)
        return False


def _wait_exit(path: str, pid: int | None, timeout: float) -> None:
    """Wait for the client to exit; SIGTERM it after TERM_AFTER_S, SIGKILL after more."""
    start = time.monotonic()
    sent: set[int] = set()
    while pid is not None and _pid_alive(pid):
        waited = time.monotonic() - start
        for after, sig in ((TERM_AFTER_S, signal.SIGTERM),
                           (TERM_AFTER_S + KILL_AFTER_S, signal.SIGKILL)):
            if waited > after and sig not in sent:
                log.warning("the client of %s (pid %d) is still running: %s", path, pid,
                            signal.Signals(sig).name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                sent.add(sig)
        if waited > timeout:
            raise TimedOut(f"unmounted {path}, but the client (pid {pid}) did not exit "
                           f"in {timeout:g}s")
        time.sleep(0.05)
