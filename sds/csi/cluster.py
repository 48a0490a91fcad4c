"""The plugin's connections to the cluster: one Rados session per identity (the plugin's
own key, or the one a request's secrets carry), made on first use and remade after it
breaks, and the filesystems' facts (pools, metadata journal) looked up through it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging

from sds.client.fsadmin import FsAdmin
from sds.client.rados import Rados
from sds.common.errors import InvalidArgument, NotFound, SdsError, Unavailable
from sds.csi.journal import Journal

log = logging.getLogger("sds.csi.cluster")
CONNECT_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 3.0
# the secret keys a StorageClass's secret may carry (as ceph-csi's userID/userKey)
SECRET_ID, SECRET_KEY = "userID", "userKey"


class Cluster:
    def __init__(self, conf: str, entity: str = "client.admin", keyring: str | None = None):
        self.conf, self.entity, self.keyring = conf, entity, keyring
        self._sessions: dict[tuple[str, bytes | None], Rados] = {}
        self._admins: dict[tuple[int, str | None], FsAdmin] = {}
        self._lock = asyncio.Lock()

    def _identity(self, secrets: dict[str, str] | None) -> tuple[str, bytes | None]:
        if secrets and secrets.get(SECRET_ID) and secrets.get(SECRET_KEY):
            user = secrets[SECRET_ID]
            entity = user if user.startswith("client.") else f"client.{user}"
            try:
                return entity, base64.b64decode(secrets[SECRET_KEY], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument(f"secret {SECRET_KEY} is not base64") from None
        return self.entity, None

    async def rados(self, secrets: dict[str, str] | None = None) -> Rados:
        ident = self._identity(secrets)
        async with self._lock:
            r = self._sessions.get(ident)
            if r is not None:
                return r
            r = Rados(self.conf, entity=ident[0], keyring=None if ident[1] else self.keyring,
                      key=ident[1])
            try:
                await r.connect(timeout=CONNECT_TIMEOUT_S)
            except SdsError as e:
                with contextlib.suppress(Exception):
                    await r.close()
                raise Unavailable(f"cannot reach the cluster as {ident[0]}: {e}") from None
            self._sessions[ident] = r
            return r

    async def probe(self) -> bool:
        """True when the monitors answer within a few seconds."""
        try:
            r = await asyncio.wait_for(self.rados(), PROBE_TIMEOUT_S + CONNECT_TIMEOUT_S)
            await r.mon_command({"prefix": "status"}, PROBE_TIMEOUT_S)
            return True
        except (TimeoutError, SdsError, OSError) as e:
            log.info("probe: cluster unreachable: %s", e)
            return False

    @contextlib.asynccontextmanager
    async def fsadmin(self, fs: str | None, secrets: dict[str, str] | None = None):
        """The MDS session of this identity for FS, kept open: the MDS recognises a
        client's requests by (client instance, tid), so a Rados carries one MdsClient."""
        rados = await self.rados(secrets)
        fs = fs or (await self.filesystem(None, secrets))["name"]
        key = (id(rados), fs)
        async with self._lock:
            admin = self._admins.get(key)
            if admin is None:
                admin = self._admins[key] = await FsAdmin(rados, fs).open()
        yield admin

    async def filesystem(self, fs: str | None, secrets: dict[str, str] | None = None) -> dict:
        """{"name", "metadata_pool", "data_pool"} of FS (the first one when None)."""
        r = await self.rados(secrets)
        out = await r.mon_command({"prefix": "fs ls"})
        for f in out.get("filesystems", []):
            if fs is None or f["name"] == fs:
                return f
        raise NotFound(f"filesystem {fs!r} does not exist" if fs else "no filesystem exists")

    async def journal(self, fs: str | None, secrets: dict[str, str] | None = None) -> Journal:
        meta = (await self.filesystem(fs, secrets))["metadata_pool"]
        return Journal((await self.rados(secrets)).ioctx(meta))

    async def close(self) -> None:
        for admin in self._admins.values():
            with contextlib.suppress(Exception):
                await admin.close()
        self._admins.clear()
        for r in self._sessions.values():
            with contextlib.suppress(Exception):
                await r.close()
        self._sessions.clear()
