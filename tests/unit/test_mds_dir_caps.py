"""Exclusive directory caps in the MDS's cap table (sds.mds.caps): granted only while no
other session caches the directory or holds the cap, never during a revoke, and gone once
revoked, answered or not."""

from __future__ import annotations

import asyncio

from sds.mds.caps import Caps
from sds.proto import mds_pb2

Msg = mds_pb2.MdsClientMessage
D, A, B = 100, 1, 2


def test_granted_only_to_a_session_while_nobody_else_caches_or_holds_it():
    caps = Caps(send=None)
    assert not caps.may_grant_dir(D, A, others_cache_it=True)
    assert not caps.may_grant_dir(D, 0, others_cache_it=False)  # no session: no cap
    assert caps.may_grant_dir(D, A, others_cache_it=False)
    caps.grant_dir(D, A)
    assert caps.may_grant_dir(D, A, others_cache_it=False)  # again, to its holder
    assert not caps.may_grant_dir(D, B, others_cache_it=False)
    assert caps.dir_holder_other_than(D, B) == A and caps.dir_holder_other_than(D, A) == 0


async def test_a_revoke_waits_for_the_holders_ack_and_blocks_grants_meanwhile():
    sent = []

    async def send(session, msg):
        sent.append((session, msg.kind, msg.ino))

    caps = Caps(send, timeout=5.0)
    caps.grant_dir(D, A)
    revoke = asyncio.ensure_future(caps.revoke_dir(D, B))
    await asyncio.sleep(0)
    assert sent == [(A, Msg.REVOKE_DIR, D)]
    assert not caps.may_grant_dir(D, A, others_cache_it=False)  # the holder lets go
    caps.acked(D, A)
    assert await revoke == []
    assert caps.dir_holder_other_than(D, B) == 0
    assert caps.may_grant_dir(D, B, others_cache_it=False)


async def test_a_silent_holder_is_named_for_eviction_and_loses_the_cap():
    async def send(session, msg):
        pass

    caps = Caps(send, timeout=0.05)
    caps.grant_dir(D, A)
    assert await caps.revoke_dir(D, B) == [A]
    assert caps.dir_holder_other_than(D, B) == 0


def test_caps_follow_a_reconnected_session_and_go_with_an_evicted_one():
    caps = Caps(send=None)
    caps.grant_dir(D, A)
    caps.transfer(A, B)
    assert caps.dir_holder_other_than(D, 0) == B
    caps.evict(B)
    assert caps.dir_holder_other_than(D, 0) == 0
