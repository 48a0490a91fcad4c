"""The native async client: talks to monitors for maps and to OSDs for objects.

Clients place objects themselves: object -> PG by hash, PG -> OSDs by CRUSH over the
OSDMap they subscribe to; no lookup service sits on the data path. An op goes to the
PG's primary with the client's map epoch; when the OSD says the map moved (EAGAIN), or
the primary is unreachable, the client waits for a newer map and resends the same
request id, which the OSD recognises (resends are idempotent).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sds.client.monclient import MonClient
from sds.common.config import Config, find_conf
from sds.common.errors import (
    ConnectionLost,
    InvalidArgument,
    NotFound,
    Retry,
    TimedOut,
    TooBig,
)
from sds.common.keyring import Keyring
from sds.common.limits import Limits
from sds.common.messenger import Messenger, Response
from sds.common.osdmap import pool_by_id, pool_by_name
from sds.crush.placement import PlacementTable, object_to_pg, parse_pg_name
from sds.proto import maps_pb2, osd_pb2
from sds.proto import messenger_pb2 as mpb

log = logging.getLogger("sds.client")

Op = osd_pb2.OsdOp


@dataclass
class ObjectStat:
    size: int
    mtime: float
    version: int


class Rados:
    """A connection to one cluster as one entity (default client.admin)."""

    def __init__(self, conf_path: str | os.PathLike | None = None, entity: str = "client.admin",
                 keyring: str | os.PathLike | None = None, config: Config | None = None,
                 key: bytes | None = None):
        self.config = config or Config(find_conf(str(conf_path) if conf_path else None), entity)
        self.entity = entity
        if key is None:
            path = keyring or self.config.get("keyring")
            key = Keyring.load(self.config.resolve_path(path)).key_of(entity)
        self.messenger = Messenger(entity, key, config=self.config)
        self.monc = MonClient(self.config, self.messenger)
        self._tids = itertools.count(1)
        self.client_id = f"{entity}.{socket.gethostname()}.{os.getpid()}.{random.getrandbits(32):08x}"
        self.op_timeout = float(self.config.get("client_op_timeout"))
        self.limits = Limits.from_config(self.config)
        self.read_chunk = int(self.config.get("osd_max_read_size"))

    def next_tid(self) -> int:
        """A request id this client instance has not used yet. The OSDs and the MDS both
        recognise a resend by (instance, tid), so every sender on this Rados (its object
        ops, each MDS client) takes its ids from this one counter."""
        return next(self._tids)

    @property
    def client_id(self) -> str:
        """This client's instance: the OSDs take it from the connection (named once at
        set-up, the unit of blocklisting and of request-id deduplication)."""
        return self.messenger.instance

    @client_id.setter
    def client_id(self, instance: str) -> None:
        """A new instance (an MDS activation): OSD connections are made again to carry it."""
        if instance == self.messenger.instance:
            return
        self.messenger.instance = instance
        for addr in set(self.monc.addrs.values()):
            self.messenger.drop(addr)

    async def __aenter__(self) -> Rados:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self, timeout: float | None = None) -> None:
        await self.monc.connect(timeout)

    async def close(self) -> None:
        await self.monc.close()
        await self.messenger.close()

    @property
    def osdmap(self) -> maps_pb2.OsdMap:
        return self.monc.osdmap

    @property
    def placement(self) -> PlacementTable:
        return self.monc.placement

    async def wait_for_map_change(self, timeout: float) -> bool:
        return await self.monc.wait_for_map_change(timeout)

    async def wait_for_epoch(self, epoch: int, timeout: float = 10.0) -> None:
        await self.monc.wait_for_epoch(epoch, timeout)

    async def mon_command(self, cmd: dict, timeout: float | None = None) -> dict:
        """Run an admin command on the monitors (any mon; writes reach the leader)."""
        return await self.monc.command(cmd, timeout)

    # -- pools -------------------------------------------------------------------
    async def pool_create(self, name: str, pg_num: int | None = None, size: int | None = None,
                          min_size: int | None = None) -> dict:
        cmd: dict = {"prefix": "osd pool create", "pool": name}
        for key, value in (("pg_num", pg_num), ("size", size), ("min_size", min_size)):
            if value is not None:
                cmd[key] = value
        return await self.mon_command(cmd)

    async def pool_delete(self, name: str) -> dict:
        return await self.mon_command({"prefix": "osd pool rm", "pool": name, "pool2": name,
                                       "confirm": True})

    async def pool_list(self) -> list[str]:
        return [p.name for p in self.osdmap.pools]

    async def pool_get(self, name: str, var: str = "all") -> dict:
        return await self.mon_command({"prefix": "osd pool get", "pool": name, "var": var})

    async def pool_set(self, name: str, var: str, val) -> dict:
        return await self.mon_command({"prefix": "osd pool set", "pool": name, "var": var,
                                       "val": str(val)})

    def ioctx(self, pool_name: str) -> IoCtx:
        pool_by_name(self.osdmap, pool_name)
        return IoCtx(self, pool_name)

    # -- object ops ----------------------------------------------------------------
    async def _osd_call(self, pool_name: str, op: osd_pb2.OsdOp, data: bytes | memoryview = b"",
                        pg: int | None = None) -> Response:
        """Send one object op to the primary of its PG (same request id on every resend).
        An op over a limit is refused here, before a byte is sent: the OSD would refuse
        it too, and one too large for a frame would only be resent until the timeout."""
        self.limits.check_op(op, len(data))
        envelope_max = self.messenger.options.limits.envelope
        if op.ByteSize() > envelope_max - 4096:
            raise TooBig(f"op of {op.ByteSize()} bytes of xattr and omap values does not fit "
                         f"one message (ms_max_envelope_bytes, {envelope_max} bytes)")
        op.tid = self.next_tid()  # the OSD pairs it with our instance from the connection

        def locate() -> tuple[int, int]:
            monc = self.monc
            pool = monc.pools.get(pool_name) or pool_by_name(monc.osdmap, pool_name)
            op.pool = pool.id
            op.pg = pg if pg is not None else object_to_pg(pool, op.oid)
            return op.pool, op.pg

        return await self._primary_call(locate, mpb.OSD_OP, op, data,
                                        f"op on {pool_name}/{op.oid}")

    async def pg_command(self, pgid: str, cmd: dict) -> dict:
        """An admin command (query, scrub, deep-scrub, repair) run by the PG's primary."""
        try:
            pool_id, ps = parse_pg_name(pgid)
        except ValueError:
            raise InvalidArgument(f"'{pgid}' is not a PG id like 1.1f") from None
        pool = pool_by_id(self.osdmap, pool_id)
        if ps >= pool.pg_num:
            raise NotFound(f"pool '{pool.name}' has no PG {pgid} (pg_num {pool.pg_num})")
        req = osd_pb2.PgCommand(pool=pool_id, pg=ps, cmd_json=json.dumps(cmd))
        resp = await self._primary_call(lambda: (pool_id, ps), mpb.OSD_PG_COMMAND, req, b"",
                                        f"{cmd.get('prefix')} on pg {pgid}")
        return json.loads(resp.parse(osd_pb2.PgCommandReply).out_json)

    async def _primary_call(self, locate, msg_type: int, payload, data, what: str) -> Response:
        """Send to the primary of the PG `locate()` names, following map changes until done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.op_timeout
        reason = "no attempt made"
        monc = self.monc
        while True:
            pool_id, pg = locate()
            primary = self.placement.primary(pool_id, pg)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimedOut(f"{what} did not complete in {self.op_timeout:g}s: {reason}")
            if primary is None:
                reason = f"PG {pool_id}.{pg:x} has no up OSD"
                await self.wait_for_map_change(min(remaining, 1.0))
                continue
            try:
                conn = await self.messenger.connect(monc.addrs[primary],
                                                    timeout=min(remaining, 3.0))
                return await conn.call(msg_type, payload, data, epoch=monc.osdmap.epoch,
                                       timeout=remaining)
            except (Retry, ConnectionLost) as e:
                reason = f"osd.{primary}: {e}"
                log.debug("%s: %s", what, reason)
                await self.wait_for_map_change(min(remaining, 0.5))


def _guards(expect: dict[bytes, bytes] | None, absent: list[bytes] | None) -> dict:
    return {"omap_cmp": [osd_pb2.KeyValue(key=k, value=v) for k, v in (expect or {}).items()],
            "omap_absent": list(absent or [])}


class IoCtx:
    """Object operations within one pool (like librados' IoCtx)."""

    def __init__(self, rados: Rados, pool_name: str):
        self.rados = rados
        self.pool_name = pool_name

    async def _call(self, code: int, oid: str, data: bytes | memoryview = b"", **fields) -> Response:
        return await self.rados._osd_call(self.pool_name, Op(code=code, oid=oid, **fields), data)

    @staticmethod
    def _reply(resp: Response) -> osd_pb2.OsdOpReply:
        return resp.parse(osd_pb2.OsdOpReply)

    async def write_full(self, oid: str, data: bytes | memoryview) -> None:
        await self._call(Op.WRITE_FULL, oid, data)

    async def write(self, oid: str, data: bytes | memoryview, offset: int = 0) -> None:
        await self._call(Op.WRITE, oid, data, offset=offset)

    async def append(self, oid: str, data: bytes | memoryview) -> None:
        await self._call(Op.APPEND, oid, data)

    async def read(self, oid: str, length: int | None = None, offset: int = 0) -> bytes:
        """The bytes read; a read of one chunk is returned as the bytearray it was received
        into (no copy), which compares equal to bytes. Larger reads are fetched in chunks
        (`read_stream`) and joined."""
        if length and length <= self.rados.read_chunk:  # one request, unless the OSD cut it
            data, size = await self._read_chunk(oid, offset, length)
            got = data.nbytes
            if got == 0 or offset + got >= min(size, offset + length):
                return self._as_bytes(data)
            parts = [data] + [chunk async for chunk in self.read_stream(
                oid, length - got, offset + got)]
        else:
            parts = [chunk async for chunk in self.read_stream(oid, length, offset)]
        if len(parts) == 1:
            return self._as_bytes(parts[0])
        return b"".join(parts)

    @staticmethod
    def _as_bytes(data: memoryview) -> bytes:
        """The received buffer itself when the view covers all of it, else a copy."""
        if isinstance(data.obj, bytearray) and data.nbytes == len(data.obj):
            return data.obj  # type: ignore[return-value]
        return bytes(data)

    async def _read_chunk(self, oid: str, offset: int, want: int) -> tuple[memoryview, int]:
        """One READ op: (the bytes it returned, the object's size as the reply states)."""
        resp = await self._call(Op.READ, oid, offset=offset, length=want)
        return resp.data, self._reply(resp).size

    async def read_stream(self, oid: str, length: int | None = None, offset: int = 0,
                          chunk: int | None = None) -> AsyncIterator[memoryview]:
        """Read in chunks of at most `chunk` bytes (default osd_max_read_size), so an
        object of any size is read with bounded memory on both sides. Yields at least
        one (maybe empty) chunk; stops at the object's end (its size, as each reply
        states it) or after `length` bytes."""
        chunk = min(chunk or self.rados.read_chunk, self.rados.read_chunk)
        end = offset + length if length else None  # 0 or None: to the object's end
        while True:
            want = chunk if end is None else min(chunk, end - offset)
            data, size = await self._read_chunk(oid, offset, want)
            got = data.nbytes
            yield data
            offset += got
            stop = min(size, end) if end is not None else size
            if got == 0 or offset >= stop:
                return

    async def truncate(self, oid: str, size: int) -> None:
        await self._call(Op.TRUNCATE, oid, offset=size)

    async def remove(self, oid: str) -> None:
        await self._call(Op.REMOVE, oid)

    async def create(self, oid: str, exclusive: bool = True) -> None:
        await self._call(Op.CREATE, oid, exclusive=exclusive)

    async def stat(self, oid: str) -> ObjectStat:
        reply = self._reply(await self._call(Op.STAT, oid))
        return ObjectStat(reply.size, reply.mtime, reply.version)

    async def getxattr(self, oid: str, name: str) -> bytes:
        return self._reply(await self._call(Op.GETXATTR, oid, name=name)).value

    async def setxattr(self, oid: str, name: str, value: bytes) -> None:
        await self._call(Op.SETXATTR, oid, name=name, value=value)

    async def rmxattr(self, oid: str, name: str) -> None:
        await self._call(Op.RMXATTR, oid, name=name)

    async def getxattrs(self, oid: str) -> dict[str, bytes]:
        reply = self._reply(await self._call(Op.GETXATTRS, oid))
        return {kv.key.decode(): kv.value for kv in reply.kvs}

    async def omap_get(self, oid: str, keys: list[bytes]) -> dict[bytes, bytes]:
        reply = self._reply(await self._call(Op.OMAP_GET, oid, keys=keys))
        return {kv.key: kv.value for kv in reply.kvs}

    async def omap_set(self, oid: str, kvs: dict[bytes, bytes], *,
                       expect: dict[bytes, bytes] | None = None,
                       absent: list[bytes] | None = None) -> None:
        """Set keys; with `expect` / `absent`, only if those keys have exactly those values
        / do not exist (a compare-and-set on the OSD: CompareFailed, nothing changed)."""
        items = [osd_pb2.KeyValue(key=k, value=v) for k, v in kvs.items()]
        await self._call(Op.OMAP_SET, oid, kvs=items, **_guards(expect, absent))

    async def omap_rm(self, oid: str, keys: list[bytes], *,
                      expect: dict[bytes, bytes] | None = None) -> None:
        """Remove keys; with `expect`, only if those keys have exactly those values."""
        await self._call(Op.OMAP_RM, oid, keys=keys, **_guards(expect, None))

    async def omap_clear(self, oid: str) -> None:
        await self._call(Op.OMAP_CLEAR, oid)

    async def omap_list(self, oid: str, start_after: bytes = b"", max_entries: int = 1000,
                        prefix: bytes = b"") -> tuple[list[tuple[bytes, bytes]], bool]:
        reply = self._reply(await self._call(Op.OMAP_LIST, oid, start_after=start_after,
                                             max=max_entries, prefix=prefix))
        return [(kv.key, kv.value) for kv in reply.kvs], reply.more

    async def list_objects(self, page_size: int = 1000) -> AsyncIterator[str]:
        """Every object of the pool, PG by PG, in pages (like `rados ls`)."""
        pool = pool_by_name(self.rados.osdmap, self.pool_name)
        for pg in range(pool.pg_num):
            cursor = ""
            while True:
                op = Op(code=Op.LIST, oid=cursor, max=page_size)
                resp = await self.rados._osd_call(self.pool_name, op, pg=pg)
                reply = self._reply(resp)
                for name in reply.names:
                    yield name
                if not reply.more or not reply.names:
                    break
                cursor = reply.names[-1]

    async def list_prefix(self, prefix: str, page_size: int = 256) -> AsyncIterator[str]:
        """The objects whose names start with `prefix`, PG by PG. Each PG lists its objects
        in name order, so a listing that starts at the prefix and stops at the first other
        name costs about one page per PG plus the matches, whatever else the pool holds."""
        pool = pool_by_name(self.rados.osdmap, self.pool_name)
        for pg in range(pool.pg_num):
            cursor = prefix
            while True:
                op = Op(code=Op.LIST, oid=cursor, max=page_size)
                reply = self._reply(await self.rados._osd_call(self.pool_name, op, pg=pg))
                names = [n for n in reply.names if n.startswith(prefix)]
                for name in names:
                    yield name
                if not reply.more or len(names) < len(reply.names) or not names:
                    break
                cursor = names[-1]

    async def exists(self, oid: str) -> bool:
        try:
            await self.stat(oid)
            return True
        except NotFound:
            return False
