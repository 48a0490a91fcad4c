"""Small asyncio helpers shared by the daemons, and the supervised task set.

Why a task set rather than bare `create_task`: asyncio keeps only a weak reference to a
task, so a dropped one can be collected mid-flight, its exception is reported (if ever)
as "Task exception was never retrieved" long after, and nothing awaits it at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from sds.common.errors import SdsError
from sds.common.log import log_event

log = logging.getLogger("sds.tasks")


async def cancel_and_wait(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel background tasks and wait until each has really finished (a task that is
    merely cancelled may still be running its cleanup when the caller closes resources)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


class TaskSet:
    """Tasks kept referenced until they end; a failure is logged once and handed to
    `on_crash`; `stop()` cancels the survivors newest first and awaits each.

    `forever=True` marks a loop that must never return: its return is a failure too.
    A task spawned while stopping is cancelled at once (and still awaited).
    """

    def __init__(self, owner: str, on_crash: Callable[[BaseException], None] | None = None):
        self.owner = owner
        self.on_crash = on_crash
        self._tasks: dict[asyncio.Task, bool] = {}  # in spawn order -> forever
        self._stopping = False

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    def spawn(self, coro: Coroutine[Any, Any, Any], *, forever: bool = False,
              name: str | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[task] = forever
        task.add_done_callback(self._ended)
        if self._stopping:
            task.cancel()
        return task

    def _ended(self, task: asyncio.Task) -> None:
        forever = self._tasks.pop(task, False)
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        if error is None and not forever:
            return
        what = getattr(task.get_coro(), "__qualname__", task.get_name())
        if error is None:
            error = SdsError(f"task {what} ended")
        log_event(log, "task_crashed", level="ERROR", owner=self.owner, task=what,
                  error=f"{type(error).__name__}: {error}", exc_info=error)
        if self.on_crash is not None:
            self.on_crash(error)

    async def stop(self) -> None:
        """Cancel every task, newest first (the reverse of how they were started), and
        wait for each to finish before the next, so none outlives what it uses."""
        self._stopping = True
        while self._tasks:
            task = next(reversed(self._tasks))
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            self._tasks.pop(task, None)
