"""Supervised tasks: spawn keeps a reference, a failure stops the daemon, stop awaits all,
newest first, and the daemon's run() ends with the failure so the process exits 1."""

import asyncio
import gc

import pytest

from sds.common import daemon as dmod
from sds.common.config import Config
from sds.common.daemon import Daemon
from sds.common.errors import SdsError
from sds.common.tasks import TaskSet


class Toy(Daemon):
    role = "toy"

    def __init__(self):
        super().__init__(Config(None), "0")
        self.log: list[str] = []

    async def start(self) -> None:
        self.spawn(self._loop("first"), forever=True)
        self.spawn(self._loop("second"), forever=True)

    async def _loop(self, name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that takes a turn of the loop
            self.log.append(name)

    async def stop(self) -> None:
        await self.stop_tasks()
        self.log.append("resources")


async def test_spawn_keeps_a_reference_until_done():
    tasks = TaskSet("test")
    done = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0.01)
        done.set()

    tasks.spawn(work())
    gc.collect()
    assert len(tasks) == 1
    await asyncio.wait_for(done.wait(), 1)
    await asyncio.sleep(0)
    assert len(tasks) == 0


async def test_stop_cancels_newest_first_and_awaits_each():
    toy = Toy()
    await toy.start()
    await asyncio.sleep(0)
    await toy.stop()
    assert toy.log == ["second", "first", "resources"]
    assert len(toy.background) == 0


async def test_a_task_spawned_while_stopping_is_cancelled_and_awaited():
    tasks = TaskSet("test")
    ran: list[str] = []

    async def late() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ran.append("late")

    async def spawner() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            tasks.spawn(late())

    tasks.spawn(spawner())
    await asyncio.sleep(0)
    await tasks.stop()
    assert len(tasks) == 0
    assert ran in ([], ["late"])  # cancelled before or after it began, never left running


async def test_a_crash_is_logged_and_ends_run(caplog):
    toy = Toy()

    async def broken() -> None:
        raise ValueError("boom")

    toy.spawn(broken())
    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(toy.run(), 1)
    assert any(r.getMessage() == "task_crashed" and "boom" in str(vars(r))
               for r in caplog.records)
    await toy.stop()


async def test_a_forever_loop_that_returns_is_a_failure():
    toy = Toy()

    async def quits() -> None:
        return None

    toy.spawn(quits(), forever=True)
    with pytest.raises(SdsError, match="ended"):
        await asyncio.wait_for(toy.run(), 1)


async def test_short_tasks_may_end_and_cancellation_is_no_crash():
    toy = Toy()

    async def short() -> None:
        return None

    toy.spawn(short())
    task = toy.spawn(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0.01)
    run = asyncio.ensure_future(toy.run())
    await asyncio.sleep(0.01)
    assert not run.done()
    run.cancel()
    await toy.stop()


async def test_the_process_exits_1_when_a_task_crashes(monkeypatch, tmp_path):
    toy = Toy()

    async def broken() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("dead loop")

    async def start() -> None:
        toy.spawn(broken())

    toy.start = start
    module = type("M", (), {"create": staticmethod(lambda config, daemon_id: toy)})
    monkeypatch.setattr(dmod.importlib, "import_module", lambda name: module)
    code = await asyncio.wait_for(dmod._serve("toy", "0", Config(None),
                                              {"addr": tmp_path / "toy.0.addr"}), 5)
    assert code == 1
    assert toy.log[-1] == "resources"
