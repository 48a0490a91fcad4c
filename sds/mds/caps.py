"""Client capabilities: which sessions have which files open, and revoking them.

A client may cache attributes and buffer writes of a file it has open. When another
session opens that file, or changes its size or data, the MDS revokes first (when one
only reads its attributes, by getattr, lookup or readdir, just the writers): it sends
REVOKE to the other holders, which flush (CAPS_ACK with what they wrote) and drop
their caches, and only then answers. A holder that does not answer within `timeout`
is evicted: it gets EVICTED, its opens are dropped, and its later requests on that
session fail with ESTALE. (Its direct OSD writes cannot be fenced without an OSD
blocklist; the client stops writing when it learns of the eviction.)

Exclusive directory caps (CephFS's async dirops, for unlinks): a session that unlinks in
a directory no other session caches gets the directory's exclusive cap, and then
answers its next unlinks there itself, sending them to the MDS in the background. Any
request of another session naming the directory (lookup, readdir, create, unlink,
rename, rmdir of it, getattr) first revokes the cap with REVOKE_DIR: the holder sends
its pending unlinks, answers CAPS_ACK(dir), and only then is the request served, so
O_EXCL creates, unlinks and listings are exact across mounts.
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
        self.dir_holders: dict[int, int] = {}  # dir ino -> session with its exclusive cap
        self.dir_revoking: Counter[int] = Counter()  # dir ino -> revokes under way
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
        return await self._revoke(ino, self.conflicting(ino, session, write), Msg.REVOKE)

    # -- exclusive directory caps -------------------------------------------------------
    def may_grant_dir(self, dir_ino: int, session: int, others_cache_it: bool) -> bool:
        """The exclusive cap on a directory goes to a session only while no other
        session caches its entries (dentry leases) or holds the cap."""
        return bool(session) and not others_cache_it and dir_ino not in self.dir_revoking \
            and self.dir_holders.get(dir_ino, session) == session

    def grant_dir(self, dir_ino: int, session: int) -> None:
        self.dir_holders[dir_ino] = session

    def dir_holder_other_than(self, dir_ino: int, session: int) -> int:
        holder = self.dir_holders.get(dir_ino, 0)
        return holder if holder != session else 0

    async def revoke_dir(self, dir_ino: int, session: int) -> list[int]:
        """Take the directory's exclusive cap back from its holder (not `session`), which
        first sends the unlinks it answered already; returns the sessions evicted for
        silence. The cap is gone once this returns, answered or not."""
        holder = self.dir_holder_other_than(dir_ino, session)
        if not holder:
            return []
        self.dir_revoking[dir_ino] += 1  # no grant meanwhile: the holder is letting go
        try:
            return await self._revoke(dir_ino, [holder], Msg.REVOKE_DIR)
        finally:
            self.dir_revoking[dir_ino] -= 1
            if not self.dir_revoking[dir_ino]:
                del self.dir_revoking[dir_ino]
            if self.dir_holders.get(dir_ino) == holder:
                del self.dir_holders[dir_ino]

    def drop_dir(self, dir_ino: int) -> None:
        self.dir_holders.pop(dir_ino, None)

    async def _revoke(self, ino: int, targets: list[int], kind: int) -> list[int]:
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
                await self.send(target, Msg(kind=kind, ino=ino, seq=next(self._seq)))
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
        for dir_ino in [d for d, s in self.dir_holders.items() if s == old]:
            self.dir_holders[dir_ino] = new
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
        for dir_ino in [d for d, s in self.dir_holders.items() if s == session]:
            del self.dir_holders[dir_ino]
        dropped: Counter[int] = Counter()
        for ino in list(self.opens):
            count = self.opens[ino].get(session, 0)
            for _ in range(count):
                self.released(ino, session)
            if count:
                dropped[ino] = count
        log.warning("evicted session %d (%d open files)", session, len(dropped))
        return dropped
