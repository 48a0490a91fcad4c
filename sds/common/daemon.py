"""The life of a daemon process, shared by every role (mon, osd, mgr, mds, ...).

`run_daemon("osd", "1", "sds.conf")`:
  1. reads the config as entity `osd.1`, makes its data dir, opens its log
     (`log_file`, default `<data_dir>/osd.1.log`);
  2. writes `<data_dir>/osd.1.pid` (refusing if another live process holds it);
  3. on uvloop, imports `sds.osd.daemon` and calls its `create(config, daemon_id)`,
     which returns a `Daemon`;
  4. `await daemon.start()` (binds sockets, returns once serving), then writes
     `<data_dir>/osd.1.addr` with `daemon.addr`;
  5. `await daemon.run()` until SIGTERM/SIGINT, then `await daemon.stop()`;
  6. removes the pid and addr files. Exit code 0 after a signal, 1 when start
     fails or run crashes (logged as one line, with the traceback folded in).
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from sds.common.config import Config
from sds.common.errors import AlreadyExists
from sds.common.log import log_event, setup_logging
from sds.common.tasks import TaskSet

STOP_TIMEOUT_S = 8.0  # `sds cluster down` sends SIGKILL after 10 s

log = logging.getLogger("sds.daemon")


class Daemon(abc.ABC):
    """What a role's `create(config, daemon_id)` returns.

    `start()` binds sockets and returns once serving, with `addr` set to the bound
    "host:port". Background work is started with `spawn()`, never a bare `create_task`:
    the daemon keeps it, and a task that fails (or a `forever` loop that returns) is
    logged and ends `run()` with its error, so the process exits 1 instead of serving
    on half-dead. `run()` serves until cancelled or `fail()`. `stop()` releases
    everything `start()` acquired, in reverse order (`stop_tasks()` first), and must be
    safe to call after a partial start.
    """

    role: str = ""

    def __init__(self, config: Config, daemon_id: str):
        self.config = config
        self.daemon_id = str(daemon_id)
        self.addr = ""
        self.background = TaskSet(self.name, on_crash=self.fail)
        self._failed: asyncio.Future | None = None

    @property
    def name(self) -> str:
        return f"{self.role}.{self.daemon_id}"

    @abc.abstractmethod
    async def start(self) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], *, forever: bool = False) -> asyncio.Task:
        """Run `coro` in the background, supervised (see the class docstring)."""
        return self.background.spawn(coro, forever=forever)

    def _failure(self) -> asyncio.Future:
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        return self._failed

    def fail(self, error: BaseException) -> None:
        """Stop serving: `run()` raises `error` (the first one, if several come)."""
        failed = self._failure()
        if not failed.done():
            failed.set_exception(error)

    async def run(self) -> None:
        await asyncio.shield(self._failure())  # a stop cancels run(), never the failure

    async def stop_tasks(self) -> None:
        """Cancel every spawned task, newest first, and wait until each has finished."""
        await self.background.stop()

    @abc.abstractmethod
    async def stop(self) -> None: ...


def daemon_paths(config: Config, role: str, daemon_id: str) -> dict[str, Path]:
    """data_dir, pid, addr and log paths of one daemon, as run_daemon uses them."""
    name = f"{role}.{daemon_id}"
    data_dir = config.get("data_dir")
    if data_dir:
        data = config.resolve_path(data_dir)
    elif config.path is not None:
        data = config.path.parent / name
    else:
        data = Path.cwd() / name
    log_file = config.get("log_file")
    return {
        "data_dir": data,
        "pid": data / f"{name}.pid",
        "addr": data / f"{name}.addr",
        "log": config.resolve_path(log_file) if log_file else data / f"{name}.log",
    }


def pid_alive(pid: int) -> bool:
    """True if a process (not a zombie) has this pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _claim_pidfile(path: Path) -> None:
    """Write our pid, unless a different live process holds the file."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        other = int(path.read_text().strip() or 0)
        if other != os.getpid() and pid_alive(other):
            raise AlreadyExists(f"{path} names running process {other}")
    write_atomic(path, f"{os.getpid()}\n")


def _release(path: Path, pidfile: Path) -> None:
    """Remove a pid/addr file, but only while the pidfile still names this process."""
    with contextlib.suppress(OSError, ValueError):
        if int(pidfile.read_text().strip() or 0) == os.getpid():
            path.unlink()


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


async def _stop(daemon: Any) -> int:
    try:
        await asyncio.wait_for(daemon.stop(), STOP_TIMEOUT_S)
    except Exception as e:
        log_event(log, "daemon_stop_failed", level="ERROR", error=_error(e), exc_info=e)
        return 1
    return 0


async def _until_stopped(aw: Any, stop_requested: asyncio.Event) -> asyncio.Task | None:
    """Run `aw` until it finishes or a stop is requested; the task if it finished first."""
    task = asyncio.ensure_future(aw)
    waiter = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done() and not stop_requested.is_set():
        return task
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return None


async def _serve(role: str, daemon_id: str, config: Config, paths: dict[str, Path]) -> int:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    received: list[str] = []

    def on_signal(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    module = importlib.import_module(f"sds.{role}.daemon")
    daemon: Any = module.create(config, daemon_id)
    started = await _until_stopped(daemon.start(), stop_requested)
    if started is None:  # a signal came while starting
        log_event(log, "daemon_stopping", signal=received[0], during="start")
        return await _stop(daemon)
    e = asyncio.CancelledError("start cancelled") if started.cancelled() else started.exception()
    if e is not None:
        log_event(log, "daemon_start_failed", level="ERROR", error=_error(e), exc_info=e)
        await _stop(daemon)
        return 1
    write_atomic(paths["addr"], f"{daemon.addr}\n")
    log_event(log, "daemon_serving", addr=daemon.addr)

    run = getattr(daemon, "run", None)
    finished = await _until_stopped(run() if run else stop_requested.wait(), stop_requested)
    code = 0
    if finished is None:
        log_event(log, "daemon_stopping", signal=received[0] if received else None)
    elif finished.cancelled() or finished.exception() is None:
        log_event(log, "daemon_run_returned")
    else:
        e = finished.exception()
        log_event(log, "daemon_crashed", level="ERROR", error=_error(e), exc_info=e)
        code = 1
    return await _stop(daemon) or code


def _run_loop(coro: Any) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_daemon(role: str, daemon_id: str, conf_path: str) -> int:
    """Run one daemon process to completion; returns the process exit code."""
    name = f"{role}.{daemon_id}"
    os.umask(0o077)  # stores, logs and keys are the owner's alone, whoever started us
    try:
        config = Config(conf_path, name)
        paths = daemon_paths(config, role, daemon_id)
        paths["data_dir"].mkdir(parents=True, exist_ok=True)
        os.chmod(paths["data_dir"], 0o700)  # even one made earlier by someone else's umask
        paths["log"].parent.mkdir(parents=True, exist_ok=True)
        setup_logging(name, str(paths["log"]), config.get("log_level"))
    except Exception as e:
        print(f"{name}: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    log_event(log, "daemon_start", role=role, id=daemon_id, pid=os.getpid(),
              conf=str(Path(conf_path).resolve()), data_dir=str(paths["data_dir"]))
    try:
        _claim_pidfile(paths["pid"])
    except AlreadyExists as e:
        log_event(log, "daemon_already_running", level="ERROR", error=str(e))
        print(f"{name}: already running: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. ENOSPC: the disk is full
        log_event(log, "daemon_start_failed", level="ERROR", error=_error(e),
                  reason=f"cannot write {paths['pid']}")
        log_event(log, "daemon_exit", code=1)
        logging.shutdown()
        return 1
    code = 1
    try:
        code = _run_loop(_serve(role, daemon_id, config, paths))
    except Exception as e:
        log_event(log, "daemon_failed", level="ERROR", error=_error(e), exc_info=True)
        code = 1
    finally:
        _release(paths["addr"], paths["pid"])
        _release(paths["pid"], paths["pid"])
        log_event(log, "daemon_exit", code=code)
        logging.shutdown()
    return code


def daemon_main(role: str, argv: list[str] | None = None) -> int:
    """`main()` of a role: `sds-<role> --id N --conf sds.conf`."""
    parser = argparse.ArgumentParser(prog=f"sds-{role}", description=f"run one {role} daemon")
    parser.add_argument("--id", required=True, help="daemon id, e.g. 0")
    parser.add_argument("--conf", required=True, help="path of sds.conf")
    args = parser.parse_args(argv)
    return run_daemon(role, args.id, args.conf)


if __name__ == "__main__":  # python -m sds.common.daemon ROLE --id N --conf PATH
    sys.exit(daemon_main(sys.argv[1], sys.argv[2:]))
