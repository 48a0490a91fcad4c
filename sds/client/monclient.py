"""A session with the monitors: map subscription and admin commands.

Used by clients, OSDs and the manager alike. It keeps one subscribed connection to
some monitor, re-made on another monitor when it breaks, applies the pushed OSDMap
incrementals (and, for daemons, the names and caps of the auth database and their
service's ticket secrets), and wakes waiters on every new epoch. It also holds this
entity's service tickets (sds.client.tickets), which the messenger shows OSDs, MDSs and
the mgr, and renews them in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable

from sds.client.tickets import TicketCache
from sds.common import auth, sessions, tickets
from sds.common.config import Config
from sds.common.errors import (
    AuthError,
    ConnectionLost,
    NotPermitted,
    PermissionDenied,
    Retry,
    SdsError,
    TimedOut,
    Unavailable,
)
from sds.common.messenger import Connection, Messenger
from sds.common.osdmap import apply_incremental
from sds.common.tasks import TaskSet
from sds.crush.placement import PlacementTable
from sds.proto import maps_pb2, mon_pb2
from sds.proto import messenger_pb2 as mpb

FATAL = (AuthError, NotPermitted, PermissionDenied)  # a wrong key stays wrong however often tried


class MonClient:
    def __init__(self, config: Config, messenger: Messenger, want_auth: bool = False,
                 on_osdmap: Callable[[maps_pb2.OsdMap], None] | None = None):
        self.config = config
        self.messenger = messenger
        self.want_auth = want_auth
        self.on_osdmap = on_osdmap
        self.osdmap = maps_pb2.OsdMap()
        self.pools: dict[str, maps_pb2.Pool] = {}   # by name, for this epoch
        self.addrs: dict[int, str] = {}             # OSD id -> address, for this epoch
        self.auth: dict[str, maps_pb2.AuthEntity] = {}  # daemons: names and caps, no keys
        self.rotating: dict[str, list[maps_pb2.RotatingSecret]] = {}  # daemons: ticket secrets
        self.timeout = float(config.get("client_mon_timeout"))
        self._placement: PlacementTable | None = None
        self._changed = asyncio.Event()
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self.tickets = TicketCache(self.command, messenger.key)
        self._renewer: asyncio.Task | None = None
        messenger.ticket_source = self.tickets.get
        messenger.on_ticket_refused = self.tickets.forget
        self._refills = TaskSet("mon client")
        messenger.register(mpb.MON_MAPS, self._on_maps)

    def serve_tickets(self, service: str) -> None:
        """Let peers connect with tickets for `service` (this daemon's), verified with the
        secrets and re-checked against the caps the auth subscription brings."""
        self.want_auth = True
        self.messenger.ticket_check = auth.TicketCheck(
            service, lambda: self.secrets(service), self.caps_of)

    async def connect(self, timeout: float | None = None) -> None:
        await self.session(timeout or self.timeout)
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self.tickets.run())

    async def close(self) -> None:
        """Stop renewing tickets and wait out any re-subscription under way (the
        messenger's owner closes the messenger)."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        await self._refills.stop()

    async def session(self, timeout: float) -> Connection:
        """A subscribed monitor connection, made again if the old one broke."""
        async with self._lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            addrs = list(self.config.mon_addrs)
            random.shuffle(addrs)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            last_error: Exception | None = None
            while True:
                for addr in addrs:
                    try:
                        return await self._subscribe(addr)
                    except SdsError as e:
                        if isinstance(e, FATAL):
                            raise
                        last_error = e
                if loop.time() > deadline:
                    raise Unavailable(f"no monitor reachable at {','.join(addrs)}: {last_error}")
                await asyncio.sleep(0.2)

    async def _subscribe(self, addr: str) -> Connection:
        conn = await self.messenger.connect(addr, timeout=2.0)
        sub = mon_pb2.MonSubscribe(osdmap=True, osdmap_since=self.osdmap.epoch,
                                   auth=self.want_auth)
        resp = await conn.call(mpb.MON_SUBSCRIBE, sub, timeout=3.0)
        self.apply(resp.parse(mon_pb2.MonMaps))
        self._conn = conn
        return conn

    async def _refill(self, addr: str) -> None:
        with contextlib.suppress(SdsError):
            await self._subscribe(addr)

    async def _on_maps(self, conn: Connection, env: mpb.Envelope, data: memoryview) -> None:
        maps = mon_pb2.MonMaps()
        maps.ParseFromString(env.payload)
        self.apply(maps)

    def apply(self, maps: mon_pb2.MonMaps) -> None:
        auth_changed = maps.has_auth_full or bool(maps.auth_inc.set or maps.auth_inc.removed)
        if maps.has_auth_full:
            self.auth = {e.name: e for e in maps.auth_full}
        for entity in maps.auth_inc.set:
            self.auth[entity.name] = entity
        for name in maps.auth_inc.removed:
            self.auth.pop(name, None)
        for service in maps.rotating:
            self.rotating[service.service] = list(service.secrets)
        if auth_changed and self.want_auth and self.messenger.ticket_check is not None:
            sessions.revalidate(self.messenger, self.caps_of)
        if maps.HasField("full_osdmap") and maps.full_osdmap.epoch > self.osdmap.epoch:
            self._install(maps.full_osdmap)
        gap = False
        for inc in maps.osdmap_incs:
            if inc.epoch == self.osdmap.epoch + 1:
                # one epoch at a time: OSDs date PG intervals by the epoch they begin in
                self._install(apply_incremental(self.osdmap, inc))
            elif inc.epoch > self.osdmap.epoch + 1:
                gap = True
        if gap and self._conn is not None and not self._conn.closed:
            # an incremental went missing: ask again from the epoch we have
            self._refills.spawn(self._refill(self._conn.addr))

    def resume_from(self, osdmap: maps_pb2.OsdMap) -> None:
        """Start from a map saved earlier: the subscription then asks only for newer epochs
        (without telling on_osdmap about this one)."""
        callback, self.on_osdmap = self.on_osdmap, None
        try:
            self._install(osdmap)
        finally:
            self.on_osdmap = callback

    def _install(self, osdmap: maps_pb2.OsdMap) -> None:
        self._drop_dead_osds(self.osdmap, osdmap)
        self.osdmap = osdmap
        self._placement = None
        self.pools = {p.name: p for p in osdmap.pools}
        self.addrs = {o.id: o.addr for o in osdmap.osds}
        self._changed.set()
        self._changed = asyncio.Event()
        if self.on_osdmap is not None:
            self.on_osdmap(osdmap)

    def _drop_dead_osds(self, old: maps_pb2.OsdMap, new: maps_pb2.OsdMap) -> None:
        """Close connections to OSDs the new map says are down or moved, so requests
        waiting on them fail now and are resent to the new primary (a silent, partitioned
        OSD would otherwise hold them until their timeout)."""
        now = {o.id: o for o in new.osds}
        for osd in old.osds:
            cur = now.get(osd.id)
            if osd.up and osd.addr and (cur is None or not cur.up or cur.addr != osd.addr):
                self.messenger.drop(osd.addr)

    def caps_of(self, entity: str) -> dict[str, str] | None:
        found = self.auth.get(entity)
        return dict(found.caps) if found is not None else None

    def secrets(self, service: str) -> list[tickets.RotatingSecret]:
        return [tickets.RotatingSecret(s.id, s.secret, s.expires)
                for s in self.rotating.get(service, [])]

    @property
    def placement(self) -> PlacementTable:
        if self._placement is None or self._placement.epoch != self.osdmap.epoch:
            self._placement = PlacementTable(self.osdmap)
        return self._placement

    async def wait_for_map_change(self, timeout: float) -> bool:
        """Wait for a newer OSDMap, or for `timeout`; re-subscribes if the mon went away."""
        event = self._changed
        try:
            await self.session(timeout)
        except SdsError:
            await asyncio.sleep(min(timeout, 0.5))
            return False
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def wait_for_epoch(self, epoch: int, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.osdmap.epoch < epoch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimedOut(f"OSDMap epoch {epoch} did not arrive (have {self.osdmap.epoch})")
            await self.wait_for_map_change(remaining)

    async def command(self, cmd: dict, timeout: float | None = None) -> dict:
        """Run a command on some monitor, moving to another one if it fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        while True:
            try:
                conn = await self.session(max(0.1, deadline - loop.time()))
                resp = await conn.call(mpb.MON_COMMAND,
                                       mon_pb2.MonCommand(cmd_json=json.dumps(cmd)),
                                       timeout=max(0.1, deadline - loop.time()))
                reply = resp.parse(mon_pb2.MonCommandReply)
                out = json.loads(reply.out_json) if reply.out_json else {}
                epoch = out.get("osdmap_epoch") if isinstance(out, dict) else None
                if epoch:
                    await self.wait_for_epoch(int(epoch), max(0.1, deadline - loop.time()))
                return out
            except (ConnectionLost, Unavailable, Retry, TimedOut):
                if loop.time() >= deadline:
                    raise
                self.drop()
                await asyncio.sleep(0.2)

    def drop(self) -> None:
        if self._conn is not None:
            self.messenger.drop(self._conn.addr)
            self._conn = None
