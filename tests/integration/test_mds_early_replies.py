"""Early (unsafe) replies: a client that replays them gets creates, removals and setattrs
answered before the MDS journal has them; nobody else sees them until they are durable;
and when the MDS dies before journaling them, the client replays them to the standby,
each create under the inode number it was given and each removal only of the inode it
removed, so nothing it was told is lost and nothing else is removed.

The journal holds every append back (mds_inject_journal_delay), which keeps the changes
undurable long enough to kill the MDS in between."""

from __future__ import annotations

import json
import os
import time

import pytest
from mdsrequests import active_mds, listdir

from sds.client.mdsclient import MdsClient
from sds.common.errors import Busy
from sds.mds import layout
from sds.proto import mds_pb2

Req = mds_pb2.MdsRequest
pytestmark = [pytest.mark.integration, pytest.mark.cluster_opts(
    mds=2, extra_conf={"mds_beacon_grace": 3.0, "mds_beacon_interval": 0.5,
                       "mds_inject_journal_delay": 1.0})]


async def test_an_early_reply_is_seen_by_others_only_once_durable(cluster):
    async with cluster.rados() as rados_a, cluster.rados() as rados_b:
        early = await MdsClient(rados_a, timeout=60, early_replies=True).open()
        other = await MdsClient(rados_b, timeout=60).open()
        made = await early.request(Req(op=Req.CREATE, ino=layout.ROOT_INO, name="f",
                                       mode=0o644, flags=os.O_CREAT | os.O_EXCL))
        assert made.unsafe and made.durable_seq < made.journal_seq
        seen = await other.request(Req(op=Req.LOOKUP, ino=layout.ROOT_INO, name="f"))
        assert seen.attr.ino == made.attr.ino
        assert seen.durable_seq >= made.journal_seq  # answered only once it was durable
        # a client that does not replay is never answered early
        safe = await other.request(Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="d",
                                       mode=0o755))
        assert not safe.unsafe
        await early.sync()
        assert not early._unsafe
        await early.close()
        await other.close()


async def test_changes_answered_early_survive_the_mds_dying_before_its_journal(cluster):
    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=90, early_replies=True).open()
        top = (await client.request(Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="top",
                                        mode=0o755))).attr.ino
        old_file = (await client.request(Req(op=Req.CREATE, ino=top, name="old", mode=0o644,
                                             flags=os.O_CREAT | os.O_EXCL))).attr.ino
        old_dir = (await client.request(Req(op=Req.MKDIR, ino=top, name="olddir",
                                            mode=0o755))).attr.ino
        await client.sync()
        victim = await active_mds(rados)
        given: dict[str, int] = {}
        replies = [await client.request(Req(op=Req.UNLINK, ino=top, name="old")),
                   await client.request(Req(op=Req.RMDIR, ino=top, name="olddir"))]
        assert [r.attr.ino for r in replies] == [old_file, old_dir]
        for i in range(6):
            reply = await client.request(Req(op=Req.CREATE, ino=top, name=f"f{i}",
                                             mode=0o644, flags=os.O_CREAT | os.O_EXCL))
            given[f"f{i}"] = reply.attr.ino
            replies.append(reply)
        sub = await client.request(Req(op=Req.MKDIR, ino=top, name="sub", mode=0o755))
        given["sub"] = sub.attr.ino
        chmod = await client.request(Req(op=Req.SETATTR, ino=given["f0"],
                                         attr=mds_pb2.InodeAttr(mode=0o600),
                                         set_mask=mds_pb2.SET_MODE))
        replies += [sub, chmod]
        assert all(r.unsafe for r in replies), "answered only once durable"
        assert cluster.kill(f"mds.{victim}")  # within the journal's held-back append
        killed_at = time.monotonic()
        await client.sync()  # follows the standby: replays first, then waits for it
        assert await active_mds(rados) not in ("", victim)
        print(f"replayed {len(replies)} early-answered changes "
              f"{time.monotonic() - killed_at:.1f}s after the kill")
        assert not client.replay_errors
    async with cluster.rados() as rados:  # a client that knows nothing of it
        fresh = await MdsClient(rados, timeout=60).open()
        assert await listdir(fresh, top) == set(given)
        for name, ino in given.items():
            found = await fresh.request(Req(op=Req.LOOKUP, ino=top, name=name))
            assert found.attr.ino == ino, name
        mode = (await fresh.request(Req(op=Req.GETATTR, ino=given["f0"]))).attr.mode
        assert mode & 0o777 == 0o600
        report = json.loads((await fresh.request(Req(op=Req.CHECK))).report)
        assert report["ok"], report
        # a new create is not given a number handed out before the failover
        new = await fresh.request(Req(op=Req.CREATE, ino=top, name="after", mode=0o644))
        assert new.attr.ino not in given.values()
        await fresh.close()


async def test_a_replayed_removal_removes_only_the_inode_it_names(cluster):
    """A removal's replay finds the name gone (the journal had it) or naming another
    inode (another client replaced it after the failover): answered as done, nothing
    removed."""
    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=60).open()
        kept = (await client.request(Req(op=Req.CREATE, ino=layout.ROOT_INO, name="kept",
                                         mode=0o644))).attr.ino
        for op, name in ((Req.UNLINK, "kept"), (Req.RMDIR, "kept"), (Req.UNLINK, "none")):
            await client.request(Req(op=op, ino=layout.ROOT_INO, name=name,
                                     replay_ino=kept + 1))
        assert await listdir(client, layout.ROOT_INO) == {"kept"}
        await client.request(Req(op=Req.UNLINK, ino=layout.ROOT_INO, name="kept",
                                 replay_ino=kept))  # still its inode: removed
        assert await listdir(client, layout.ROOT_INO) == set()
        await client.close()


async def test_a_replay_cannot_claim_a_taken_or_future_inode(cluster):
    async with cluster.rados() as rados:
        client = await MdsClient(rados, timeout=60).open()
        taken = (await client.request(Req(op=Req.MKDIR, ino=layout.ROOT_INO, name="t",
                                          mode=0o755))).attr.ino
        for ino in (taken, layout.ROOT_INO, taken + 10**9):
            with pytest.raises(Busy) as err:
                await client.request(Req(op=Req.CREATE, ino=layout.ROOT_INO, name=f"x{ino}",
                                         mode=0o644, replay_ino=ino))
            assert "not free" in str(err.value)
        await client.close()
