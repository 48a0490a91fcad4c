"""Journal events that would not apply: set aside, retried in the background, in health.

An event that still fails after `mds_apply_attempts` tries must not stop the applier
(every later change would wait behind it) nor the MDS (a takeover would replay it and
fail the same way): it is stored under "aside.<seq>" in the journal object, the applied
mark moves past it, and it is retried with back-off until it applies. Later events
supersede its ops on the same inode record or dentry (their ops are absolute), so a
retry only writes what nothing newer has written since; data purges never go stale
(inode numbers are never reused). Health names each event (MDS_JOURNAL_APPLY).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from sds.client.rados import IoCtx
from sds.common.errors import NotFound
from sds.mds import layout
from sds.proto import mds_pb2

log = logging.getLogger("sds.mds.setaside")

MetaOp = mds_pb2.MetaOp
ASIDE_PREFIX = b"aside."
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
HEALTH_CODE = "MDS_JOURNAL_APPLY"

Apply = Callable[[list[mds_pb2.MetaOp]], Awaitable[None]]


def aside_key(seq: int) -> bytes:
    return ASIDE_PREFIX + f"{seq:016x}".encode()


def op_key(op: MetaOp) -> tuple | None:
    """What an op overwrites as a whole; None for data ops, which nothing supersedes."""
    if op.kind in (MetaOp.PUT_INODE, MetaOp.DEL_INODE):
        return ("inode", op.ino)
    if op.kind in (MetaOp.SET_DENTRY, MetaOp.RM_DENTRY):
        return ("dentry", op.ino, op.name)
    if op.kind == MetaOp.DEL_DIR:
        return ("dir", op.ino)
    return None


def kinds(ops) -> str:
    return ",".join(sorted({MetaOp.Kind.Name(op.kind) for op in ops}))


class SetAside:
    def __init__(self, meta: IoCtx):
        self.meta = meta
        self.events: dict[int, mds_pb2.JournalEvent] = {}
        self.errors: dict[int, str] = {}
        self.retrying: str = ""  # the event the applier is retrying now, for health
        self._wake = asyncio.Event()

    async def load(self) -> None:
        after, more = b"", True
        while more:
            try:
                items, more = await self.meta.omap_list(layout.JOURNAL, start_after=after,
                                                        prefix=ASIDE_PREFIX)
            except NotFound:
                return
            for _key, value in items:
                ev = mds_pb2.JournalEvent()
                ev.ParseFromString(value)
                self.events[ev.seq] = ev
                self.errors.setdefault(ev.seq, "set aside by an earlier MDS")
            if items:
                after = items[-1][0]

    async def add(self, ev: mds_pb2.JournalEvent, error: str) -> None:
        """Persist the event aside (before the applied mark can pass it)."""
        kept = mds_pb2.JournalEvent()
        kept.CopyFrom(ev)
        await self.meta.omap_set(layout.JOURNAL, {aside_key(ev.seq): kept.SerializeToString()})
        self.events[ev.seq] = kept
        self.errors[ev.seq] = error
        log.error("journal event %d (%s) set aside after repeated failures: %s; retried in "
                  "the background", ev.seq, kinds(ev.ops), error)
        self._wake.set()

    def supersede(self, ops) -> None:
        """Later ops applied: drop the set-aside ops they overwrote."""
        if not self.events:
            return
        keys = {k for k in map(op_key, ops) if k is not None}
        for ev in self.events.values():
            stale = [op for op in ev.ops if (k := op_key(op)) is not None and
                     (k in keys or (k[0] == "dentry" and ("dir", k[1]) in keys))]
            for op in stale:
                ev.ops.remove(op)

    async def retry_forever(self, apply: Apply, gate: asyncio.Lock) -> None:
        """Retry every set-aside event with back-off; `gate` keeps the applier out meanwhile."""
        delay = RETRY_FIRST_S
        while True:
            if not self.events:
                self._wake.clear()
                await self._wake.wait()
                delay = RETRY_FIRST_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            for seq in sorted(self.events):
                async with gate:
                    ev = self.events.get(seq)
                    if ev is None:
                        continue
                    try:
                        await apply(list(ev.ops))
                        await self.meta.omap_rm(layout.JOURNAL, [aside_key(seq)])
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # noqa: BLE001 - kept aside, in health
                        self.errors[seq] = f"{type(e).__name__}: {e}"
                        continue
                    del self.events[seq]
                    self.errors.pop(seq, None)
                    log.warning("journal event %d applied at last", seq)

    def health(self) -> list[dict]:
        out = []
        if self.retrying:
            out.append({"code": HEALTH_CODE, "message": self.retrying})
        for seq in sorted(self.events)[:4]:
            out.append({"code": HEALTH_CODE, "message": (
                f"journal event {seq} ({kinds(self.events[seq].ops) or 'superseded'}) does "
                f"not apply, set aside and retried: {self.errors.get(seq, '')}")})
        if len(self.events) > 4:
            out.append({"code": HEALTH_CODE,
                        "message": f"{len(self.events) - 4} more journal events set aside"})
        return out


def describe_failure(ev: mds_pb2.JournalEvent, error: BaseException, attempt: int,
                     attempts: int) -> str:
    return (f"journal event {ev.seq} ({kinds(ev.ops)}) fails to apply (try {attempt} of "
            f"{attempts}, {time.strftime('%H:%M:%S')}): {type(error).__name__}: {error}")
