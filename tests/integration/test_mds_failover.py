"""MDS failover: kill -9 the active MDS in the middle of a create/rename workload; the
standby takes over within a bounded time, replays the journal, answers the resent
requests once, and the namespace is consistent (`fs check` clean, exactly the
acknowledged names present)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import pytest
from mdsrequests import active_mds, listdir, table_record

from sds.client.mdsclient import MdsClient
from sds.common.errors import SdsError, Unavailable
from sds.mds import layout
from sds.proto import mds_pb2
from sds.proto import messenger_pb2 as mpb

GRACE = 3.0
pytestmark = [pytest.mark.integration, pytest.mark.cluster_opts(
    mds=2, extra_conf={"mds_beacon_grace": GRACE, "mds_beacon_interval": 0.5})]

Req = mds_pb2.MdsRequest
WORKERS = 6


async def test_kill_active_mds_mid_workload(cluster):
    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=90).open()
        mkdir = Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="work", mode=0o755)
        top = (await client.request(mkdir)).attr.ino
        moved = (await client.request(Req(op=Req.MKDIR, ino=top, name="moved",
                                          mode=0o755))).attr.ino
        where: dict[str, int] = {}      # acknowledged name -> directory it must be in
        acked: list[float] = []
        stop = asyncio.Event()

        async def worker(w: int) -> None:
            i = 0
            while not stop.is_set():
                name = f"w{w}-{i}"
                reply = await client.request(Req(op=Req.CREATE, ino=top, name=name,
                                                 mode=0o644))
                await client.request(Req(op=Req.RELEASE, ino=reply.attr.ino))
                where[name] = top
                if i % 2:
                    await client.request(Req(op=Req.RENAME, ino=top, name=name, ino2=moved,
                                             name2=name))
                    where[name] = moved
                acked.append(time.monotonic())
                i += 1

        tasks = [asyncio.create_task(worker(w)) for w in range(WORKERS)]
        try:
            await asyncio.sleep(2.0)
            victim = await active_mds(rados)
            assert victim
            before = len(acked)
            assert before > 20, "the workload did not get going"
            assert cluster.kill(f"mds.{victim}")
            killed_at = time.monotonic()
            deadline = killed_at + GRACE + 30
            while not [t for t in acked if t > killed_at + 0.2]:
                assert time.monotonic() < deadline, "no progress after the MDS was killed"
                for task in tasks:
                    if task.done():
                        task.result()  # a worker failed: show why
                await asyncio.sleep(0.1)
            takeover = min(t for t in acked if t > killed_at + 0.2) - killed_at
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
        survivor = await active_mds(rados)
        assert survivor and survivor != victim
        assert takeover < GRACE + 15, f"takeover took {takeover:.1f}s"
        print(f"MDS takeover after kill -9: {takeover:.2f}s (grace {GRACE}s), "
              f"{len(acked)} create/rename steps")
        # exactly the acknowledged names, each where the last acknowledged op put it
        assert await listdir(client, top) == {n for n, d in where.items() if d == top} | {
            "moved"}
        assert await listdir(client, moved) == {n for n, d in where.items() if d == moved}
        report = json.loads((await client.request(Req(op=Req.CHECK))).report)
        assert report["ok"], report
        assert report["files"] == len(where)
        await client.close()
    # the killed MDS comes back as a standby
    cluster.start(f"mds.{victim}")
    async with cluster.rados() as rados:
        deadline = time.monotonic() + 30
        while True:
            status = await rados.mon_command({"prefix": "fs status"})
            if victim in [s["name"] for s in status["standbys"]]:
                break
            assert time.monotonic() < deadline, status
            await asyncio.sleep(0.25)
        assert status["filesystems"][0]["active"]["name"] == survivor


async def test_frozen_active_is_replaced_and_refuses_after_waking(cluster):
    """SIGSTOP the active MDS: the standby takes over and the client follows it (the
    frozen MDS keeps its connections open); woken up, the old MDS serves nothing."""
    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=90).open()
        await client.request(Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="a", mode=0o755))
        victim = await active_mds(rados)
        pid = cluster.pid(f"mds.{victim}")
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            await client.request(Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="b", mode=0o755))
            took = time.monotonic() - started
            assert await active_mds(rados) not in ("", victim)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert took < GRACE + 15
        conn = await rados.messenger.connect(cluster.addr(f"mds.{victim}"))
        stale = Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="c", mode=0o755, tid=10**9,
                    client_name="stale-client")
        with pytest.raises(Unavailable):
            await conn.call(mpb.MDS_REQUEST, stale, timeout=10)
        # and the OSDs refuse the instance it served with: it cannot write metadata either
        listed = await rados.mon_command({"prefix": "osd blocklist ls"})
        fenced = [e["addr"] for e in listed["blocklist"] if f"mds.{victim}." in e["addr"]]
        assert len(fenced) == 1, listed
        assert await listdir(client, layout.ROOT_INO) == {"a", "b"}
        report = json.loads((await client.request(Req(op=Req.CHECK))).report)
        assert report["ok"], report
        await client.close()


async def test_standby_replays_events_the_dead_mds_journaled_but_never_applied(cluster):
    """A crash between journal append and apply: the event is in the journal only. The
    MDS taking over applies it (and a second replay changes nothing)."""
    from sds.mds import journal as jn
    from sds.mds.tx import new_record

    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=90).open()
        await client.request(Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="before", mode=0o755))
        assert await listdir(client, layout.ROOT_INO) == {"before"}  # (waits for its apply)
        victim = await active_mds(rados)
        assert cluster.kill(f"mds.{victim}")
        meta = rados.ioctx("sdsfs_metadata")
        items, _more = await meta.omap_list(layout.JOURNAL, prefix=jn.EVENT_PREFIX,
                                           max_entries=100000)
        last = max(mds_pb2.JournalEvent.FromString(v).seq for _k, v in items)
        root = await table_record(meta, layout.ROOT_INO)
        root.attr.version += 1
        ino = 0xDEAD0000
        crashed = "client.admin.crashed-client"  # the instance the dead MDS had answered
        rec = new_record(ino, 0o100644, mds_pb2.Caller(uid=7, gid=7), layout.ROOT_INO)
        MetaOp = mds_pb2.MetaOp
        event = mds_pb2.JournalEvent(seq=last + 1, ops=[
            MetaOp(kind=MetaOp.PUT_INODE, ino=ino, record=rec),
            MetaOp(kind=MetaOp.PUT_INODE, ino=layout.ROOT_INO, record=root),
            MetaOp(kind=MetaOp.SET_DENTRY, ino=layout.ROOT_INO, name="journaled-only",
                   dentry_ino=ino, dentry_mode=0o100000)],
            client=crashed, tid=77,
            reply=mds_pb2.MdsReply(attr=rec.attr).SerializeToString())
        await meta.omap_set(layout.JOURNAL, {jn.event_key(event.seq): event.SerializeToString()})
        assert await table_record(meta, ino) is None
        found = await client.request(Req(op=Req.LOOKUP, ino=layout.ROOT_INO,
                                         name="journaled-only"))
        assert (found.attr.ino, found.attr.uid) == (ino, 7)
        assert await table_record(meta, ino) is not None
        # the request recorded in the event is answered from the journal, not re-run, to
        # a connection of that instance (the MDS knows a client by its connection)
        fs = (await rados.mon_command({"prefix": "fs status"}))["filesystems"][0]
        async with cluster.rados() as crashed_client:
            crashed_client.client_id = crashed
            conn = await crashed_client.messenger.connect(fs["active"]["addr"])
            resend = Req(op=Req.MKNOD, ino=layout.ROOT_INO, name="other", mode=0o100644,
                         tid=77)
            resent = (await conn.call(mpb.MDS_REQUEST, resend)).parse(mds_pb2.MdsReply)
        assert resent.attr.ino == ino
        assert await listdir(client, layout.ROOT_INO) == {"before", "journaled-only"}
        report = json.loads((await client.request(Req(op=Req.CHECK))).report)
        assert report["ok"], report
        await client.close()


async def test_removed_files_are_purged_slowly_while_busy_and_by_the_next_mds(cluster):
    """Unlinks return before the data goes: the purge queue deletes it, a few files a
    second while requests keep coming, and the MDS taking over after a kill -9 purges
    what the dead one left queued (the queue is in RADOS, not in its memory)."""
    from sds.mds import purge

    files = 60
    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=90).open()
        data, meta = rados.ioctx("sdsfs_data"), rados.ioctx("sdsfs_metadata")
        top = (await client.request(Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="purged",
                                        mode=0o755))).attr.ino
        inos = []
        for i in range(files):
            ino = (await client.request(Req(op=Req.CREATE, ino=top, name=f"f{i}",
                                            mode=0o644))).attr.ino
            await data.write_full(layout.data_oid(ino, 0), b"x" * 5000)
            await client.request(Req(op=Req.WRITE_DONE, ino=ino,
                                     attr=mds_pb2.InodeAttr(size=5000)))
            await client.request(Req(op=Req.RELEASE, ino=ino))
            inos.append(ino)

        async def with_data() -> set[int]:
            return {ino for ino in inos if await data.exists(layout.data_oid(ino, 0))}

        async def backlog() -> list:
            try:
                return (await meta.omap_list(purge.QUEUE_OID, max_entries=1000))[0]
            except SdsError:
                return []

        stop = asyncio.Event()

        async def busy() -> None:  # requests keep coming: the MDS purges slowly
            while not stop.is_set():
                with contextlib.suppress(SdsError):
                    await client.request(Req(op=Req.GETATTR, ino=top))
                await asyncio.sleep(0.01)

        keep_busy = asyncio.create_task(busy())
        try:
            for i in range(files):
                await client.request(Req(op=Req.UNLINK, ino=top, name=f"f{i}"))
            deadline = time.monotonic() + 10
            while not await backlog():
                assert time.monotonic() < deadline, "the removals never reached the queue"
                await asyncio.sleep(0.05)
            assert len(await with_data()) > files // 2  # 20 files/s while busy
            victim = await active_mds(rados)
            assert cluster.kill(f"mds.{victim}")
        finally:
            stop.set()
            await keep_busy
        assert await listdir(client, top) == set()  # served again: the standby is active
        deadline = time.monotonic() + 60
        while await with_data() or await backlog():
            assert time.monotonic() < deadline, "the new MDS did not finish the purge"
            await asyncio.sleep(0.2)
        report = json.loads((await client.request(Req(op=Req.CHECK))).report)
        assert report["ok"], report
        await client.close()
        cluster.start(f"mds.{victim}")


@pytest.mark.cluster_opts(mds=2, extra_conf={"mds_beacon_grace": GRACE,
                                             "mds_beacon_interval": 0.5,
                                             "client_inject_create_delay": 1.0})
async def test_creates_a_mount_answered_itself_reach_the_mds_that_takes_over(cluster,
                                                                           tmp_path):
    """A mount answers creates in a directory it made before the MDS has them (held back
    a second each here); the active MDS is killed (kill -9) meanwhile. The held creates
    go to the standby once it is active, which accepts the numbers the dead MDS gave the
    mount: every file is there, whole, and `fs check` is clean."""
    from fsmounts import fsync_dir, mounted

    made = {f"f{i}": os.urandom(1000 + i) for i in range(20)}

    def create_all(d) -> None:
        d.mkdir()
        time.sleep(0.5)  # the mount's inode numbers arrive
        for name, data in made.items():
            (d / name).write_bytes(data)

    async with cluster.rados() as rados:
        with mounted(cluster, tmp_path / "m") as m:
            d = m.path / "answered"
            victim = await active_mds(rados)
            await asyncio.to_thread(create_all, d)
            assert cluster.kill(f"mds.{victim}")
            await asyncio.to_thread(fsync_dir, d)
            assert await active_mds(rados) not in ("", victim)
            assert sorted(os.listdir(d)) == sorted(made)
            for name, data in made.items():
                assert (d / name).read_bytes() == data
        client = await MdsClient(rados, timeout=90).open()
        report = json.loads((await client.request(Req(op=Req.CHECK))).report)
        assert report["ok"], report
        await client.close()
    cluster.start(f"mds.{victim}")
