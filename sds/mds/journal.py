"""The MDS journal: every metadata change is made durable here before it is applied.

One RADOS object, "journal", whose omap holds the events (key "e.<seq:016x>") and the
mark "applied" = the last sequence number fully applied to the metadata objects.
Changes are pipelined: the namespace submits an event (its cache already shows the
change), a writer task appends every event queued meanwhile in one omap write (group
commit), replies wait for that, and an applier task then applies the durable events
to the metadata objects in order, batching them too. Replay re-applies the events
after the mark (their ops are absolute, so applying one twice is harmless) and, from
the recent events kept, rebuilds which (client, tid) requests were already answered.
Trimming removes applied events beyond `keep` recent ones. An event that does not
apply is retried with back-off, then set aside (sds.mds.setaside) so that neither the
applier nor a takeover's replay waits on it for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable

from sds.client.rados import IoCtx
from sds.common.errors import NotFound, Unavailable
from sds.common.tasks import TaskSet, cancel_and_wait
from sds.mds import layout
from sds.mds.setaside import SetAside, describe_failure
from sds.proto import mds_pb2

log = logging.getLogger("sds.mds.journal")

EVENT_PREFIX = b"e."
APPLIED_KEY = b"applied"
_SEQ = struct.Struct(">Q")
PAGE = 1000
MAX_BATCH = 256
MARK_IDLE_S = 0.2
APPLY_DELAY_S = 0.05
APPLY_RETRY_FIRST_S = 0.1
APPLY_RETRY_MAX_S = 5.0
LAZY_HOLD_S = 0.005

Apply = Callable[[list[mds_pb2.MetaOp]], Awaitable[None]]


def event_key(seq: int) -> bytes:
    return EVENT_PREFIX + f"{seq:016x}".encode()


class Journal:
    def __init__(self, meta: IoCtx, keep: int = 4096, attempts: int = 5):
        self.meta = meta
        self.keep = keep
        self.attempts = max(1, attempts)
        self.aside = SetAside(meta)
        self._gate = asyncio.Lock()  # one apply at a time: the applier's or a retry's
        self.last_seq = 0      # submitted
        self.durable_seq = 0   # written to the journal object
        self.applied_seq = 0   # applied to the metadata objects
        self.marked_seq = 0    # the applied mark stored in the journal object
        self._marker: asyncio.Task | None = None
        self._hurry = asyncio.Event()  # someone waits for events to be applied ...
        self._wanted = 0               # ... up to this one
        self.failed: asyncio.Future | None = None
        self._stored: list[int] = []  # sequence numbers still in the journal object
        self._queue: list[mds_pb2.JournalEvent] = []
        self._durable: list[mds_pb2.JournalEvent] = []
        self._changed: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task] = []
        self._wakers = TaskSet("journal")  # notify_all needs the lock: one short task each
        self.inject_delay = 0.0  # testing (mds_inject_journal_delay): before each append

    async def load(self) -> tuple[list[mds_pb2.JournalEvent], int]:
        """Every event still in the journal, in order, and the applied mark."""
        try:
            marks = await self.meta.omap_get(layout.JOURNAL, [APPLIED_KEY])
        except NotFound:
            return [], 0
        applied = _SEQ.unpack(marks[APPLIED_KEY])[0] if APPLIED_KEY in marks else 0
        events, after, more = [], b"", True
        while more:
            items, more = await self.meta.omap_list(layout.JOURNAL, start_after=after,
                                                    max_entries=PAGE, prefix=EVENT_PREFIX)
            for _key, value in items:
                ev = mds_pb2.JournalEvent()
                ev.ParseFromString(value)
                events.append(ev)
            if items:
                after = items[-1][0]
        self._stored = [ev.seq for ev in events]
        self.last_seq = self.durable_seq = max([applied] + self._stored)
        await self.aside.load()
        return events, applied

    async def replay(self, apply: Apply, ev: mds_pb2.JournalEvent) -> None:
        """Apply one loaded event, retried and set aside like the pipeline's."""
        await self._apply_event(apply, ev)

    async def replayed(self) -> None:
        """Everything loaded is applied now: record it and trim."""
        self.applied_seq = self.last_seq
        await self.meta.omap_set(layout.JOURNAL, {APPLIED_KEY: _SEQ.pack(self.applied_seq)})
        await self._trim()

    # -- the pipeline ---------------------------------------------------------------------------
    def start(self, apply: Apply) -> asyncio.Future:
        """Start the writer and applier; the returned future fails if either does."""
        self._changed = asyncio.Condition()
        self._hurry = asyncio.Event()
        self._eager = asyncio.Event()
        self.failed = asyncio.get_running_loop().create_future()
        self._tasks = [asyncio.create_task(self._writer()),
                       asyncio.create_task(self._applier(apply)),
                       asyncio.create_task(self.aside.retry_forever(apply, self._gate))]
        return self.failed

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks + ([self._marker] if self._marker else []))
        await self._wakers.stop()

    def submit(self, event: mds_pb2.JournalEvent) -> int:
        """Queue an event for the journal; returns its sequence number."""
        self.last_seq += 1
        event.seq = self.last_seq
        self._queue.append(event)
        self._notify()
        return event.seq

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        self._wakers.spawn(wake())

    async def _wait(self, pred: Callable[[], bool]) -> None:
        if pred():
            return
        async with self._changed:
            while not pred():
                if self.failed.done():
                    raise Unavailable("the MDS journal failed; the MDS replays it and serves again")
                await self._changed.wait()

    async def wait_durable(self, seq: int, hurry: bool = True) -> None:
        """Wait until event `seq` is in the journal. Without `hurry` (nobody waits for
        this answer), the writer may hold the event back for LAZY_HOLD_S."""
        if hurry and seq > self.durable_seq:
            self._eager.set()
        await self._wait(lambda: self.durable_seq >= seq)

    async def _held_back(self) -> None:
        """Wait up to LAZY_HOLD_S while only lazy events are queued: a deferred close's
        report then shares the append of the next request (tar's next create) instead of
        making it wait behind an append of its own, as appends to the one journal object
        go one after the other."""
        if not self._eager.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._eager.wait(), LAZY_HOLD_S)
        self._eager.clear()

    async def wait_applied(self, seq: int) -> None:
        if self.applied_seq < seq:
            self._wanted = max(self._wanted, seq)
            self._hurry.set()
        await self._wait(lambda: self.applied_seq >= seq)

    async def _writer(self) -> None:
        try:
            while True:
                await self._wait(lambda: bool(self._queue))
                await self._held_back()
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                kvs = {event_key(ev.seq): ev.SerializeToString() for ev in batch}
                marking = self.applied_seq
                kvs[APPLIED_KEY] = _SEQ.pack(marking)
                if self.inject_delay:
                    await asyncio.sleep(self.inject_delay)
                await self.meta.omap_set(layout.JOURNAL, kvs)
                self.marked_seq = max(self.marked_seq, marking)
                self._stored.extend(ev.seq for ev in batch)
                self._durable.extend(batch)
                self.durable_seq = batch[-1].seq
                self._notify()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._fail(e)

    async def _applier(self, apply: Apply) -> None:
        try:
            while True:
                await self._wait(lambda: bool(self._durable))
                await self._gather_more()
                batch, self._durable = self._durable[:MAX_BATCH], self._durable[MAX_BATCH:]
                await self._apply_batch(apply, batch)
                self.applied_seq = batch[-1].seq
                self._notify()
                if not self._queue:  # idle: record the mark soon (else the next append does)
                    self._mark_soon()
                await self._trim()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._fail(e)

    async def _apply_batch(self, apply: Apply, batch: list[mds_pb2.JournalEvent]) -> None:
        """Apply events together; if that fails, one by one, so a bad one is found and
        the others are not held back by it."""
        ops = [op for ev in batch for op in ev.ops]
        try:
            async with self._gate:
                await apply(ops)
                self.aside.supersede(ops)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - retried event by event below
            log.warning("applying journal events %d..%d failed (%s: %s); one by one now",
                        batch[0].seq, batch[-1].seq, type(e).__name__, e)
        for ev in batch:
            await self._apply_event(apply, ev)

    async def _apply_event(self, apply: Apply, ev: mds_pb2.JournalEvent) -> None:
        """Apply one event, retried with back-off; set aside if it keeps failing."""
        delay = APPLY_RETRY_FIRST_S
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._gate:
                    await apply(list(ev.ops))
                    self.aside.supersede(ev.ops)
                self.aside.retrying = ""
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - retried, then set aside; in health
                error = f"{type(e).__name__}: {e}"
                self.aside.retrying = describe_failure(ev, e, attempt, self.attempts)
                log.warning("%s", self.aside.retrying)
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, APPLY_RETRY_MAX_S)
        self.aside.retrying = ""
        await self.aside.add(ev, error)

    def health(self) -> list[dict]:
        """MDS_... problems of the journal, for the beacon."""
        return self.aside.health()

    async def _gather_more(self) -> None:
        """Let durable events gather for up to APPLY_DELAY_S before applying them, unless
        someone waits for them: applies then share object writes (a directory's new
        dentries, an inode changed twice), and they compete less with journal appends,
        whose latency is what requests wait for."""
        self._hurry.clear()
        if len(self._durable) < MAX_BATCH and self._wanted <= self.applied_seq:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), APPLY_DELAY_S)

    def _mark_soon(self) -> None:
        """Record the applied mark after MARK_IDLE_S unless an append carries it first:
        written at once, it would queue on the journal object ahead of the next event and
        add its latency to that request (a mark that lags only makes replay longer)."""
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_when_idle())

    async def _mark_when_idle(self) -> None:
        try:
            await asyncio.sleep(MARK_IDLE_S)
            if self.marked_seq < self.applied_seq and not self._queue:
                seq = self.applied_seq
                await self.meta.omap_set(layout.JOURNAL, {APPLIED_KEY: _SEQ.pack(seq)})
                self.marked_seq = max(self.marked_seq, seq)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        log.error("journal pipeline failed: %s: %s", type(e).__name__, e)
        if not self.failed.done():
            self.failed.set_exception(e)
        self._notify()

    async def _trim(self) -> None:
        """Drop the oldest applied events beyond `keep`, in batches of a quarter of it."""
        if len(self._stored) <= self.keep + self.keep // 4:
            return
        cut = len(self._stored) - self.keep
        doomed = [s for s in self._stored[:cut] if s <= self.applied_seq]
        if doomed:
            await self.meta.omap_rm(layout.JOURNAL, [event_key(s) for s in doomed])
            self._stored = self._stored[len(doomed):]
