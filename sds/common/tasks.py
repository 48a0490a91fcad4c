"""Small asyncio helpers shared by the daemons."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel background tasks and wait until each has really finished (a task that is
    merely cancelled may still be running its cleanup when the caller closes resources)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task
