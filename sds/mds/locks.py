"""Whole-file advisory locks (shared/exclusive by owner) with a fair wait queue.

Owners are lock owners chosen by clients (one per mount for O_APPEND). A request that
conflicts either answers EAGAIN at once or, when the client asks to wait, queues: locks
are granted in arrival order, so a mount that keeps re-locking cannot starve another
one polling from further away. A wait is bounded (`max_wait`); the caller then gets
EAGAIN and may ask again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections import deque
from dataclasses import dataclass, field

from sds.common.errors import Retry


@dataclass
class _Waiter:
    owner: int
    kind: int
    granted: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop()
                                    .create_future())


def _compatible(held: dict[int, int], owner: int, kind: int) -> bool:
    others = [t for o, t in held.items() if o != owner]
    return not others or (kind == fcntl.F_RDLCK and fcntl.F_WRLCK not in others)


class FileLocks:
    def __init__(self, max_wait: float = 2.0):
        self.max_wait = max_wait
        self.held: dict[int, dict[int, int]] = {}        # ino -> owner -> F_RDLCK/F_WRLCK
        self.waiting: dict[int, deque[_Waiter]] = {}

    async def lock(self, ino: int, owner: int, kind: int, wait: bool) -> None:
        """Take (or change) `owner`'s lock; raises Retry when it cannot be had."""
        held = self.held.setdefault(ino, {})
        queue = self.waiting.get(ino)
        if not queue and _compatible(held, owner, kind):
            held[owner] = kind
            return
        if not wait:
            raise Retry("the file is locked by another owner")
        waiter = _Waiter(owner, kind)
        self.waiting.setdefault(ino, deque()).append(waiter)
        try:
            await asyncio.wait({waiter.granted}, timeout=self.max_wait)
        except asyncio.CancelledError:  # the request went away: so does its place or lock
            self._drop(ino, waiter)
            if waiter.granted.done():
                self.unlock(ino, owner)
            raise
        if not waiter.granted.done():
            self._drop(ino, waiter)
            raise Retry("the file is still locked by another owner")

    def unlock(self, ino: int, owner: int) -> None:
        self.held.get(ino, {}).pop(owner, None)
        self._grant(ino)

    def unlock_all(self, ino: int) -> None:
        """The file's last open handle is gone: its locks go with it."""
        self.held.pop(ino, None)
        self._grant(ino)

    def _grant(self, ino: int) -> None:
        """Grant queued requests in order while they are compatible with what is held."""
        queue = self.waiting.get(ino)
        held = self.held.setdefault(ino, {})
        while queue and _compatible(held, queue[0].owner, queue[0].kind):
            waiter = queue.popleft()
            held[waiter.owner] = waiter.kind
            waiter.granted.set_result(True)
        if not queue:
            self.waiting.pop(ino, None)
        if not held:
            self.held.pop(ino, None)

    def _drop(self, ino: int, waiter: _Waiter) -> None:
        queue = self.waiting.get(ino)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
        self._grant(ino)  # whoever queued behind it may go now
