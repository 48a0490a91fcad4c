"""What a PG needs from the OSD it lives on (like Ceph's PeeringListener).

Why: the PG (sds.osd.pg) drives its peering core and its write pipeline; it must not
reach into the daemon, so it talks to this narrow interface only. The OSD daemon
implements it; a unit test drives a PG with a test double of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from sds.common.limits import Limits
from sds.common.messenger import Response
from sds.osd.store.base import ObjectStore, Transaction
from sds.proto import osd_pb2


class StrayCopy(Protocol):
    """A PG whose copy here is no longer needed, as purge_stray sees it."""

    pool_id: int
    ps: int

    async def remove_copy(self) -> None: ...


class PGContext(Protocol):
    """The OSD, as its PGs see it."""

    osd_id: int
    store: ObjectStore
    limits: Limits                  # names and sizes of ops (checked before the log)
    max_read: int                   # osd_max_read_size: the largest part of a read or copy
    op_timeout: float               # osd_op_timeout
    pg_log_max: int                 # osd_pg_log_max_entries
    recovery_max_active: int        # osd_recovery_max_active
    recovery_slots: asyncio.Semaphore  # shared by every PG of the OSD
    recovery_sleep: float           # osd_recovery_sleep between background copies

    # -- the store pipeline
    async def commit(self, txn: Transaction, step: str) -> None:
        """Commit a transaction of the PG pipeline (`step`: sds.osd.inject's name)."""

    def fatal(self, reason: str) -> None:
        """A commit failed after the PG's state moved on: the OSD stops."""

    async def in_reader(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking store read off the event loop."""

    # -- other OSDs
    async def call_osd(self, osd_id: int, msg_type: int, payload: Any, data: Any = None,
                       timeout: float = 10.0) -> Response: ...

    async def send_osd(self, osd_id: int, msg_type: int, payload: Any) -> None:
        """One way; lost if the OSD is unreachable (senders retry)."""

    def spawn(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> Any:
        """Run a background task the OSD owns."""

    # -- admission, space, statistics
    def blocklisted(self, instance: str) -> bool:
        """Is this client instance blocklisted in the current map?"""

    def admit_write(self, op: osd_pb2.OsdOp, full_try: bool = False) -> None:
        """NoSpace for a client write the cluster or the device has no room for."""

    def admit_copy(self) -> None:
        """NoSpace for a recovery copy into this OSD past backfillfull."""

    def perf_add(self, **counts: int) -> None: ...

    def forget_usage(self, coll: str) -> None:
        """The PG's content changed outside its log: count its usage again."""

    # -- the OSD's table of PGs
    async def purge_stray(self, pg: StrayCopy) -> None:
        """Take `pg` out of the OSD's table and remove its copy (pg.remove_copy), unless
        the table meanwhile holds another PG for it or it is being purged already."""
