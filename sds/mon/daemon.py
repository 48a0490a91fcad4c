"""The monitor daemon: a thin asyncio driver around the pure consensus core.

It feeds the core with clock ticks and peer messages, makes `Ready.persist` durable in
LMDB before sending `Ready.messages`, applies committed values to the maps, pushes map
updates to subscribers, and serves admin commands (writes on the leader; peons forward).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque

from sds.common import caps, sessions
from sds.common.auth import Peer
from sds.common.config import Config
from sds.common.daemon import Daemon
from sds.common.errors import (
    InvalidArgument,
    PermissionDenied,
    Retry,
    SdsError,
    TimedOut,
    Unavailable,
)
from sds.common.fullness import device_usage, ratios_from_config
from sds.common.keyring import Keyring
from sds.common.messenger import Connection, Messenger
from sds.mon import authz, commands, genesis, paxos, paxos_wire  # noqa: F401
from sds.mon.beacons import BeaconTracker
from sds.mon.failures import FailureTracker
from sds.mon.state import MonState
from sds.mon.store import MonStore
from sds.proto import maps_pb2, mon_pb2
from sds.proto import messenger_pb2 as mpb

log = logging.getLogger("sds.mon")

GENESIS_KEY = "mon/genesis"
PROPOSAL_WAIT_S = 15.0
PEER_QUEUE_MAX = 1000
DISK_REPORT_S = 5.0   # each monitor tells the others how much of its disk is available
DISK_REPORT_TTL_S = 30.0


def _keyless(entities) -> list[maps_pb2.AuthEntity]:
    """What a daemon's auth subscription carries of entities: names and caps, no keys."""
    return [maps_pb2.AuthEntity(name=e.name, caps=e.caps) for e in entities]


class Subscriber:
    def __init__(self, conn: Connection, osdmap: bool, auth: bool):
        self.conn = conn
        self.osdmap = osdmap
        self.auth = auth


class MonDaemon(Daemon):
    role = "mon"

    def __init__(self, config: Config, daemon_id: str):
        super().__init__(config, daemon_id)
        self.rank = int(daemon_id)
        self.mon_addrs = config.mon_addrs
        if not 0 <= self.rank < len(self.mon_addrs):
            raise InvalidArgument(f"mon.{self.rank} has no address in mon_host")
        self.data_dir = config.resolve_path(config.get("data_dir") or f"mon.{daemon_id}")
        self.keyring = Keyring.load(config.resolve_path(config.get("keyring")))
        self.store: MonStore | None = None
        self.core: paxos.MonitorCore | None = None
        self.state: MonState | None = None
        self.messenger: Messenger | None = None
        self.digest: dict | None = None
        self.beacons = BeaconTracker()  # leader-only soft state: MDS beacon times
        self._mgr_reported = time.monotonic()  # of the last mgr report, or of our start
        self.subscribers: list[Subscriber] = []
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._peer_queues: dict[int, asyncio.Queue] = {}
        self._waiting: deque[tuple[bytes, asyncio.Future]] = deque()
        self._command_lock = asyncio.Lock()
        self._peer_disks: dict[str, tuple[float, float]] = {}  # name -> (avail %, when)
        timing = paxos.Timing(
            election_timeout=float(config.get("mon_election_timeout")),
            lease=float(config.get("mon_lease")),
            lease_renew=float(config.get("mon_lease_renew")),
        )
        self.timing = timing
        self.tick_interval = float(config.get("mon_tick_interval"))
        self.failures = FailureTracker(float(config.get("osd_heartbeat_grace")),
                                       int(config.get("mon_osd_min_down_reporters")))
        self.down_out_interval = float(config.get("mon_osd_down_out_interval"))

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = MonStore(self.data_dir / "store")
        self.state = self._load_state()
        ranks = list(range(len(self.mon_addrs)))
        self.core = paxos.MonitorCore(self.rank, ranks, self.store.load(), self.timing)
        for version in range(1, self.core.last_committed + 1):
            value = self.core.committed_value(version)
            if value is not None:
                self.state.apply(version, value)
        self.messenger = Messenger("mon.", self.keyring.key_of("mon."),
                                   key_lookup=self.state.key_lookup,
                                   epoch=lambda: self.state.osdmap.epoch, config=self.config)
        self.messenger.register(mpb.PAXOS, self._on_paxos)
        self.messenger.register(mpb.MON_COMMAND, self._on_command)
        self.messenger.register(mpb.MON_SUBSCRIBE, self._on_subscribe)
        self.addr = await self.messenger.listen(self.mon_addrs[self.rank])
        for rank in ranks:
            if rank != self.rank:
                self._peer_queues[rank] = asyncio.Queue(PEER_QUEUE_MAX)
                self.spawn(self._peer_sender(rank))
        self._inbox.put_nowait(("start", None))
        for coro in (self._driver(), self._ticker(), self._failure_ticker(),
                     self._disk_reporter()):
            self.spawn(coro, forever=True)  # the monitor cannot live without any of them
        log.info("mon.%d listening on %s, last_committed %d", self.rank, self.addr,
                 self.core.last_committed)

    def _die(self, reason: str) -> None:
        """Stop serving with a reason, so the process logs it and exits rather than
        lingering out of quorum."""
        if self._failure().done():
            return
        log.error("mon.%d stopping: %s", self.rank, reason)
        self.fail(SdsError(reason))

    async def stop(self) -> None:
        await self.stop_tasks()
        if self.messenger is not None:
            await self.messenger.close()
        if self.store is not None:
            self.store.close()

    def _load_state(self) -> MonState:
        """Genesis maps are computed once, at the first boot, and kept in the store."""
        raw = self.store.get(GENESIS_KEY)
        if raw is None:
            fsid = self.config.get("fsid")
            osdmap = genesis.initial_osdmap(fsid, self.config.get("osd_crush_failure_domain"),
                                            time.time(), ratios_from_config(self.config))
            monmap = genesis.initial_monmap(fsid, self.mon_addrs)
            auth = genesis.initial_auth(self.keyring)
            gen = mon_pb2.MonMaps(full_osdmap=osdmap, monmap=monmap, has_auth_full=True)
            gen.auth_full.extend(auth.values())
            raw = gen.SerializeToString()
            self.store.put(GENESIS_KEY, raw)
        gen = mon_pb2.MonMaps()
        gen.ParseFromString(raw)
        return MonState(gen.full_osdmap, {e.name: e for e in gen.auth_full}, gen.monmap)

    # -- consensus driver ------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self._inbox.put_nowait(("tick", None))

    async def _driver(self) -> None:
        """The only task that touches the core: one input at a time, effects in order."""
        loop = asyncio.get_running_loop()
        while True:
            kind, arg = await self._inbox.get()
            now = time.time()
            try:
                if kind == "tick":
                    ready = self.core.tick(now)
                elif kind == "start":
                    ready = self.core.start(now)
                elif kind == "msg":
                    ready = self.core.step(arg, now)
                else:
                    value, fut = arg
                    try:
                        ready = self.core.propose(value, now)
                    except SdsError as e:
                        if not fut.done():
                            fut.set_exception(e)
                        continue
                    self._waiting.append((value, fut))
            except Exception:
                log.exception("consensus core failed on %s", kind)
                continue
            if ready.persist:
                try:
                    await loop.run_in_executor(None, self.store.write, ready.persist)
                except Exception as e:
                    # what the core promised is not durable: it must not vote or send again
                    self._die(f"cannot write the monitor store in {self.data_dir / 'store'}: "
                              f"{type(e).__name__}: {e}; free space on its disk and restart "
                              "the monitor")
                    return
            for msg in ready.messages:
                queue = self._peer_queues.get(msg.dst)
                if queue is not None and not queue.full():
                    queue.put_nowait(msg)
            for version, value in ready.committed:
                self._on_committed(version, value)
            if not self.core.is_leader:
                self._fail_waiting(Retry("monitor lost leadership; retry"))

    async def _peer_sender(self, rank: int) -> None:
        """Ships messages to one peer; a dead peer only loses its own messages."""
        queue = self._peer_queues[rank]
        addr = self.mon_addrs[rank]
        while True:
            msg = await queue.get()
            try:
                conn = await self.messenger.connect(addr, timeout=1.0)
                await conn.send(mpb.PAXOS, paxos_wire.encode(msg))
            except SdsError:
                await asyncio.sleep(0.05)

    async def _on_paxos(self, conn: Connection, env: mpb.Envelope, data: memoryview) -> None:
        conn.peer.require_daemon("mon")
        self._inbox.put_nowait(("msg", paxos_wire.decode(env.payload)))

    def _on_committed(self, version: int, value: bytes) -> None:
        update = self.state.apply(version, value)
        while self._waiting and self._waiting[0][0] == value:
            _, fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(version)
            break
        self._publish(update)

    def _fail_waiting(self, error: SdsError) -> None:
        while self._waiting:
            _, fut = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(error)

    async def propose(self, update: maps_pb2.MapUpdate) -> int:
        """Propose one map change and wait until it is committed; returns its version."""
        fut = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(("propose", (update.SerializeToString(), fut)))
        try:
            return await asyncio.wait_for(fut, PROPOSAL_WAIT_S)
        except TimeoutError:
            raise TimedOut("the monitors did not commit the change in time") from None

    # -- subscriptions -----------------------------------------------------------------
    def _publish(self, update: maps_pb2.MapUpdate) -> None:
        which = update.WhichOneof("change")
        maps = mon_pb2.MonMaps()
        if which == "osdmap":
            maps.osdmap_incs.append(update.osdmap)
        elif which == "auth":  # names and caps: daemons verify tickets, never entity keys
            maps.auth_inc.CopyFrom(maps_pb2.AuthIncremental(
                epoch=update.auth.epoch, set=_keyless(update.auth.set),
                removed=update.auth.removed))
        elif which == "monmap":
            maps.monmap.CopyFrom(update.monmap)
        for sub in list(self.subscribers):
            if sub.conn.closed:
                self.subscribers.remove(sub)
                continue
            if (which == "osdmap" and sub.osdmap) or (which == "auth" and sub.auth):
                self.spawn(self._push(sub, maps))
            elif which == "rotating" and sub.auth:
                mine = [s for s in update.rotating.services
                        if sub.conn.peer.allows_daemon(s.service)]
                if mine:
                    self.spawn(self._push(sub, mon_pb2.MonMaps(rotating=mine)))
        if which == "auth":
            sessions.revalidate(self.messenger, self.state.caps_of)

    async def _push(self, sub: Subscriber, maps: mon_pb2.MonMaps) -> None:
        with contextlib.suppress(SdsError):
            await sub.conn.send(mpb.MON_MAPS, maps)

    def _maps_since(self, since: int, auth: bool, peer: Peer) -> mon_pb2.MonMaps:
        maps = mon_pb2.MonMaps(monmap=self.state.monmap)
        incs = self.state.incrementals_since(since) if since else None
        if incs is None:
            maps.full_osdmap.CopyFrom(self.state.osdmap)
        else:
            maps.osdmap_incs.extend(incs)
        if auth:
            maps.has_auth_full = True
            maps.auth_full.extend(_keyless(self.state.auth.values()))
            for service, secrets in sorted(self.state.rotating.items()):
                if peer.allows_daemon(service):  # a daemon gets its own service's only
                    maps.rotating.add(service=service, secrets=secrets)
        return maps

    async def _on_subscribe(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        sub = mon_pb2.MonSubscribe()
        sub.ParseFromString(env.payload)
        conn.peer.require("mon", "r")
        if sub.auth and not any(conn.peer.allows_daemon(r) for r in caps.DAEMON_ROLES):
            raise PermissionDenied(f"{conn.peer.entity} may not read the auth database: "
                                   "only daemons (by their mon profile) verify peers")
        self.subscribers = [s for s in self.subscribers if s.conn is not conn]
        self.subscribers.append(Subscriber(conn, sub.osdmap, sub.auth))
        return self._maps_since(sub.osdmap_since, sub.auth, conn.peer)

    # -- commands --------------------------------------------------------------------------
    def _view(self, caller: Peer | None = None) -> commands.MonView:
        status = self.core.status()
        status["names"] = {m.rank: m.name for m in self.state.monmap.mons}
        status["disks"] = self._disks()
        return commands.MonView(osdmap=self.state.osdmap, auth=self.state.auth,
                                monmap=self.state.monmap, mon_status=status,
                                digest=self.digest, config=self.config, now=time.time(),
                                mdsmap=self.state.mdsmap, rotating=self.state.rotating,
                                beacons=self.beacons,
                                auth_failures=self.messenger.auth_failures()
                                if self.messenger else {},
                                caller=caller.parsed if caller is not None else None,
                                caller_name=caller.entity if caller is not None else None,
                                mgr_report_age=time.monotonic() - self._mgr_reported)

    def _own_disk(self) -> tuple[str, float] | None:
        """(name, available percent) of this monitor's filesystem."""
        try:
            usage = device_usage(self.data_dir)
        except OSError:
            return None
        names = {m.rank: m.name for m in self.state.monmap.mons}
        pct = 100.0 * usage.avail_bytes / usage.total_bytes if usage.total_bytes else 100.0
        return names.get(self.rank) or str(self.rank), pct

    def _disks(self) -> dict[str, float]:
        """Available percent of each monitor's filesystem that reported lately, by name."""
        now = time.monotonic()
        disks = {name: pct for name, (pct, when) in self._peer_disks.items()
                 if now - when < DISK_REPORT_TTL_S}
        own = self._own_disk()
        if own is not None:
            disks[own[0]] = own[1]
        return disks

    async def _disk_reporter(self) -> None:
        while True:
            await asyncio.sleep(DISK_REPORT_S)
            own = self._own_disk()
            if own is None:
                continue
            cmd = json.dumps({"prefix": "mon disk report", "name": own[0],
                              "avail_percent": own[1]})
            for rank, addr in enumerate(self.mon_addrs):
                if rank == self.rank:
                    continue
                with contextlib.suppress(SdsError, OSError, asyncio.TimeoutError):
                    conn = await self.messenger.connect(addr, timeout=1.0)
                    await conn.call(mpb.MON_COMMAND, mon_pb2.MonCommand(cmd_json=cmd),
                                    timeout=1.0)

    async def _on_command(self, conn: Connection, env: mpb.Envelope, data: memoryview):
        req = mon_pb2.MonCommand()
        req.ParseFromString(env.payload)
        try:
            cmd = json.loads(req.cmd_json)
        except ValueError:
            raise InvalidArgument("command is not valid JSON") from None
        if not isinstance(cmd, dict) or not isinstance(cmd.get("prefix"), str):
            raise InvalidArgument("command needs a string 'prefix'")
        prefix = cmd["prefix"]
        caller = self._caller(conn, req)
        authz.authorize(caller, cmd)
        if prefix == "mgr report":
            self.digest = commands.report_args(cmd)["digest"]
            self._mgr_reported = time.monotonic()
            return mon_pb2.MonCommandReply(out_json="{}")
        if prefix == "mon disk report":
            report = commands.report_args(cmd)
            self._peer_disks[report["name"]] = (report["avail_percent"], time.monotonic())
            return mon_pb2.MonCommandReply(out_json="{}")
        if prefix == "osd failure":
            out = await self._failure_report(caller, cmd)
        elif commands.is_write(prefix):
            out = await self._write_command(caller, cmd)
        else:
            if not self.core.readable(time.time()):
                raise Unavailable(f"mon.{self.rank} is not in quorum")
            out = commands.handle(self._view(caller), cmd).output
        return mon_pb2.MonCommandReply(out_json=json.dumps(out))

    def _caller(self, conn: Connection, req: mon_pb2.MonCommand) -> Peer:
        """Whose caps judge the command: the session's, or, for a command a peon
        forwards, those of the entity it forwards for (as this monitor knows them)."""
        if not req.on_behalf_of:
            return conn.peer
        conn.peer.require_daemon("mon")
        entity = self.state.auth.get(req.on_behalf_of)
        if entity is None:
            raise PermissionDenied(f"{req.on_behalf_of} is not in the auth database")
        return Peer(entity.name, dict(entity.caps))

    async def _write_command(self, caller: Peer, cmd: dict) -> dict:
        if not self.core.is_leader:
            return await self._forward(caller, cmd)
        async with self._command_lock:
            result = commands.handle(self._view(caller), cmd)
            out = dict(result.output)
            for update in result.updates():
                await self.propose(update)
            if result.updates():
                out["osdmap_epoch"] = self.state.osdmap.epoch
            return out

    async def _failure_report(self, caller: Peer, cmd: dict) -> dict:
        """An OSD says a peer is silent; the leader marks it down once enough agree."""
        if not self.core.is_leader:
            return await self._forward(caller, cmd)
        report = commands.report_args(cmd)
        target, reporter = report["target"], report["reporter"]
        self.failures.report(target, reporter, time.monotonic())
        await self._apply_failures()
        return {"target": target, "reporters": sorted(self.failures.reports.get(target, {}))}

    async def _apply_failures(self) -> None:
        """Leader: mark down what enough peers report, mark out what stayed down too long."""
        now = time.monotonic()
        async with self._command_lock:
            down = self.failures.to_mark_down(self.state.osdmap, now)
            out = self.failures.to_mark_out(self.state.osdmap, now, self.down_out_interval)
            for prefix, ids in (("osd down", down), ("osd out", out)):
                if not ids:
                    continue
                log.warning("marking osd %s %s", ids, prefix.split()[1])
                result = commands.handle(self._view(), {"prefix": prefix, "ids": ids})
                for update in result.updates():
                    await self.propose(update)
            for tick in commands.LEADER_TICKS:
                for cmd in tick(self._view()):
                    for update in commands.handle(self._view(), cmd).updates():
                        await self.propose(update)

    async def _failure_ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.failures.observe(self.state.osdmap, time.monotonic())
            if self.core.is_leader and self.core.readable(time.time()):
                with contextlib.suppress(SdsError):
                    await self._apply_failures()

    async def _forward(self, caller: Peer, cmd: dict) -> dict:
        leader = self.core.leader
        if leader is None or leader == self.rank:
            raise Unavailable("no monitor quorum: cannot change maps now")
        conn = await self.messenger.connect(self.mon_addrs[leader], timeout=2.0)
        req = mon_pb2.MonCommand(cmd_json=json.dumps(cmd), on_behalf_of=caller.entity)
        resp = await conn.call(mpb.MON_COMMAND, req, timeout=PROPOSAL_WAIT_S + 2)
        reply = resp.parse(mon_pb2.MonCommandReply)
        return json.loads(reply.out_json) if reply.out_json else {}


def create(config: Config, daemon_id: str) -> MonDaemon:
    return MonDaemon(config, daemon_id)
