"""Dentry leases: which sessions may have entries of which directories cached.

A session that looks up, lists or creates names in a directory may cache those entries
for the lease time (the kernel's entry timeout). When a name there changes (unlink,
rename, replace), the MDS tells every other session still holding a lease on the
directory to drop that entry (INVALIDATE_DENTRY), so the change shows on other mounts at
once instead of when their cache times out. The push is best effort: the lease time
still bounds staleness if a message is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class DentryLeases:
    def __init__(self, lease_s: float, clock: Callable[[], float] = time.monotonic):
        self.lease_s = lease_s
        self.clock = clock
        self.holders: dict[int, dict[int, float]] = {}  # dir ino -> session -> expiry

    def grant(self, dir_ino: int, session: int) -> None:
        if session:
            self.holders.setdefault(dir_ino, {})[session] = self.clock() + self.lease_s

    def others(self, dir_ino: int, session: int) -> list[int]:
        """Sessions other than `session` with a live lease on the directory (expired
        ones are dropped on the way)."""
        held = self.holders.get(dir_ino)
        if not held:
            return []
        now = self.clock()
        for s in [s for s, expiry in held.items() if expiry < now]:
            del held[s]
        if not held:
            del self.holders[dir_ino]
            return []
        return sorted(s for s in held if s != session)
