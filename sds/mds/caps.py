"""Client capabilities: which sessions have which files open, and revoking them.

A client may cache attributes and buffer writes of a file it has open. When another
session opens that file, or changes its size or data, the MDS revokes first (when one
only reads its attributes, by getattr, lookup or readdir, just the writers): it sends
REVOKE to the other holders, which flush (CAPS_ACK with what they wrote) and drop
their caches, and only then answers. A holder that does not answer within `timeout`
is evicted: it gets EVICTED, its opens are dropped, and its later requests on that
session fail with ESTALE. (Its direct OSD writes cannot be fenced without an OSD
blocklist; the client stops writing when it learns of the eviction.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from sds.common.errors import SdsError
from sds.proto import mds_pb2

log = logging.getLogger("sds.mds.caps")

Msg = mds_pb2.MdsClientMessage
Send = Callable[[int, Msg], Awaitable[None]]


class Caps:
    def __init__(self, send: Send, timeout: float = 10.0):
        self.send = send
        self.timeout = timeout
        self.opens: dict[int, Counter[int]] = {}     # ino -> session -> open handles
        self.writers: dict[int, set[int]] = {}       # ino -> sessions that opened for writing
        self.evicted: set[int] = set()
        self.successor: dict[int, int] = {}  # old session -> the one its client reconnected as
        self._acks: dict[tuple[int, int], asyncio.Future] = {}
        self._seq = itertools.count(1)

    def opened(self, ino: int, session: int, write: bool) -> None:
        self.opens.setdefault(ino, Counter())[session] += 1
        if write:
            self.writers.setdefault(ino, set()).add(session)

    def released(self, ino: int, session: int) -> None:
        held = self.opens.get(ino)
        if held is None or held[session] <= 0:
            return
        held[session] -= 1
        if held[session] == 0:
            del held[session]
            self.writers.get(ino, set()).discard(session)
        if not held:
            self.opens.pop(ino, None)
            self.writers.pop(ino, None)

    def acked(self, ino: int, session: int) -> None:
        fut = self._acks.get((session, ino))
        if fut is not None and not fut.done():
            fut.set_result(True)

    def conflicting(self, ino: int, session: int, write: bool) -> list[int]:
        """Other sessions that must flush or drop caches before `session` proceeds:
        every other holder when it writes, the other writers when it reads."""
        others = set(self.opens.get(ino, ())) - {session}
        if not write:
            others &= self.writers.get(ino, set())
        return sorted(others)

    async def revoke(self, ino: int, session: int, write: bool) -> list[int]:
        """Revoke the conflicting holders' caps; returns the sessions evicted for silence."""
        targets = self.conflicting(ino, session, write)
        if not targets:
            return []
        futs = {}
        for target in targets:
            fut = self._acks.get((target, ino))
            if fut is None or fut.done():
                fut = asyncio.get_running_loop().create_future()
                self._acks[(target, ino)] = fut
            futs[target] = fut
            with contextlib.suppress(SdsError):
                await self.send(target, Msg(kind=Msg.REVOKE, ino=ino, seq=next(self._seq)))
        await asyncio.wait(list(futs.values()), timeout=self.timeout)
        silent = [self.current(t) for t, f in futs.items() if not f.done()]
        for target in futs:
            self._acks.pop((self.current(target), ino), None)
        return silent

    def transfer(self, old: int, new: int) -> tuple[Counter[int], list[int]]:
        """A client reconnected with a new session (same client instance, same MDS): its
        open handles and the revokes it has not answered move over. Returns the handles
        moved per inode, and the inodes whose REVOKE must be sent again."""
        moved: Counter[int] = Counter()
        for ino, held in self.opens.items():
            count = held.pop(old, 0)
            if count:
                held[new] += count
                moved[ino] = count
                writers = self.writers.get(ino, set())
                if old in writers:
                    writers.discard(old)
                    writers.add(new)
        resend = []
        for _, ino in [k for k in self._acks if k[0] == old]:
            self._acks[(new, ino)] = self._acks.pop((old, ino))
            resend.append(ino)
        self.successor[old] = new
        return moved, resend

    def current(self, session: int) -> int:
        """The session that took over from `session` (itself if none did)."""
        while session in self.successor:
            session = self.successor[session]
        return session

    def evict(self, session: int) -> Counter[int]:
        """Forget a session; returns its open handles per inode (to release them)."""
        self.evicted.add(session)
        dropped: Counter[int] = Counter()
        for ino in list(self.opens):
            count = self.opens[ino].get(session, 0)
            for _ in range(count):
                self.released(ino, session)
            if count:
                dropped[ino] = count
        log.warning("evicted session %d (%d open files)", session, len(dropped))
        return dropped
