"""A thin synchronous wrapper over the async client, for scripts and tools.

One background thread runs an event loop; every call is shipped to it and waited for.

    with SyncRados("sds.conf") as r:
        r.pool_create("p")
        io = r.ioctx("p")
        io.write_full("obj", b"data")
        io.read("obj")
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from sds.client.rados import IoCtx, Rados


class _Loop:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sds-client",
                                       daemon=True)
        self.thread.start()

    def run(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class _SyncProxy:
    """Calls the wrapped object's coroutine methods synchronously; async iterators become lists."""

    def __init__(self, target: Any, loop: _Loop):
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **kw: self._loop.run(attr(*a, **kw))
        if inspect.isasyncgenfunction(attr):
            async def collect(*a, **kw):
                return [item async for item in attr(*a, **kw)]
            return lambda *a, **kw: self._loop.run(collect(*a, **kw))
        return attr


class SyncRados(_SyncProxy):
    def __init__(self, conf_path: str | None = None, entity: str = "client.admin",
                 keyring: str | None = None):
        loop = _Loop()

        async def make() -> Rados:
            return Rados(conf_path, entity=entity, keyring=keyring)
        super().__init__(loop.run(make()), loop)

    def ioctx(self, pool_name: str) -> _SyncProxy:
        io: IoCtx = self._target.ioctx(pool_name)
        return _SyncProxy(io, self._loop)

    def shutdown(self) -> None:
        try:
            self._loop.run(self._target.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncRados:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
