"""The journal's writer: a lazy event (a deferred close's report) waits a moment to share
the next request's append; an event somebody waits for goes out at once."""

import asyncio

from sds.mds import journal as journal_mod
from sds.mds.journal import Journal
from sds.proto import mds_pb2


class RecordingMeta:
    """The journal object's omap, in memory, with every omap_set recorded."""

    def __init__(self):
        self.omap: dict[bytes, bytes] = {}
        self.appends: list[list[bytes]] = []

    async def omap_set(self, oid, kvs):
        await asyncio.sleep(0.002)
        self.appends.append(sorted(k for k in kvs if k.startswith(journal_mod.EVENT_PREFIX)))
        self.omap.update(kvs)

    async def omap_rm(self, oid, keys):
        for k in keys:
            self.omap.pop(k, None)


async def _started() -> tuple[Journal, RecordingMeta]:
    meta = RecordingMeta()
    journal = Journal(meta)

    async def apply(ops):
        return None

    journal.start(apply)
    return journal, meta


def _event() -> mds_pb2.JournalEvent:
    return mds_pb2.JournalEvent(ops=[mds_pb2.MetaOp(ino=1)])


async def test_a_lazy_event_shares_the_next_eager_append(monkeypatch):
    monkeypatch.setattr(journal_mod, "LAZY_HOLD_S", 30.0)  # held unless hurried
    journal, meta = await _started()
    try:
        lazy = journal.submit(_event())
        lazy_wait = asyncio.ensure_future(journal.wait_durable(lazy, hurry=False))
        await asyncio.sleep(0.05)
        assert meta.appends == []                 # held back
        eager = journal.submit(_event())
        await asyncio.wait_for(journal.wait_durable(eager), 10)
        await asyncio.wait_for(lazy_wait, 10)
        assert meta.appends == [[journal_mod.event_key(lazy), journal_mod.event_key(eager)]]
    finally:
        await journal.stop()


async def test_a_lazy_event_alone_goes_out_after_the_hold():
    journal, meta = await _started()
    try:
        seq = journal.submit(_event())
        await asyncio.wait_for(journal.wait_durable(seq, hurry=False), 10)
        assert meta.appends == [[journal_mod.event_key(seq)]]
    finally:
        await journal.stop()


async def test_an_eager_event_is_not_held(monkeypatch):
    monkeypatch.setattr(journal_mod, "LAZY_HOLD_S", 30.0)  # a held event would time out
    journal, meta = await _started()
    try:
        seq = journal.submit(_event())
        await asyncio.wait_for(journal.wait_durable(seq), 10)
        assert meta.appends == [[journal_mod.event_key(seq)]]
    finally:
        await journal.stop()
