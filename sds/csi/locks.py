"""Per-volume operation locks: a second call for a volume (or request name) while one is
in flight gets ABORTED at once, as the spec asks, instead of racing the first."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sds.common.errors import Aborted


class OperationLocks:
    def __init__(self) -> None:
        self._held: set[str] = set()

    @contextlib.contextmanager
    def hold(self, *keys: str) -> Iterator[None]:
        busy = [k for k in keys if k in self._held]
        if busy:
            raise Aborted(f"an operation on {busy[0]} is already in progress")
        self._held.update(keys)
        try:
            yield
        finally:
            self._held.difference_update(keys)
