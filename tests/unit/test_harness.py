"""The simulation harness itself (tests/harness): what the simulators rely on it for."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from harness.host import FifoNet, Host
from harness.world import Faults, World


@dataclass
class FakeReady:
    persist: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)
    committed: list = field(default_factory=list)


def arrivals(seed: int, faults: Faults, sends: int = 200) -> list[tuple[float, int]]:
    world = World(seed)
    world.faults = faults
    got: list[tuple[float, int]] = []
    for i in range(sends):
        world.send(0, 1, lambda dst, data: got.append((world.now, data)), i)
    world.run_until(10.0)
    return got


def test_a_seed_replays_the_same_network():
    faults = Faults(loss=0.2, dup=0.2, delay_max_s=0.5, long_delay=0.1)
    assert arrivals(7, faults) == arrivals(7, faults)
    assert arrivals(7, faults) != arrivals(8, faults)


def test_network_loses_duplicates_and_reorders():
    got = [i for _, i in arrivals(1, Faults(loss=0.2, dup=0.2, delay_max_s=0.5))]
    assert len(set(got)) < 200                      # some lost
    assert len(got) > len(set(got))                 # some twice
    assert got != sorted(got)                       # out of order
    assert arrivals(1, Faults()) == sorted(arrivals(1, Faults()))


def test_partition_blocks_both_ways_until_joined():
    world = World(0)
    got = []
    world.partition({0}, [0, 1, 2])
    for src, dst in ((0, 1), (1, 0), (1, 2)):
        world.send(src, dst, lambda d, data: got.append(data), (src, dst))
    world.run_until(1.0)
    assert got == [(1, 2)]
    world.join()
    world.send(0, 1, lambda d, data: got.append(data), (0, 1))
    world.run_until(2.0)
    assert got == [(1, 2), (0, 1)]


def test_message_storm_fails_fast():
    world = World(0, max_events=100)

    def again() -> None:
        world.schedule(0.0, again)
    world.schedule(0.0, again)
    with pytest.raises(AssertionError, match="message storm"):
        world.run_until(1.0)


def test_trace_tail_is_bounded_and_attached_to_a_failure():
    world = World(0, trace=True)
    with pytest.raises(AssertionError) as info, world.tail_on_failure():
        for i in range(1000):
            world.log(f"event {i}")
        raise AssertionError("boom")
    note = info.value.__notes__[0].splitlines()
    assert len(note) == 300 and note[-1].endswith("event 999")


def test_host_persists_before_effects_and_restarts_from_durable_state():
    seen: list = []
    host = Host(lambda durable: dict(durable), {"committed": seen.append,
                                                "messages": seen.append}, {"gone": b"0"})
    host.check = lambda ready: seen.append(dict(host.durable))
    host.boot()
    host.apply(FakeReady({"a": b"1", "gone": None}, ["m1", "m2"], ["c1"]))
    assert seen == [{"a": b"1"}, "c1", "m1", "m2"]
    host.crash()
    assert host.core is None and host.boot() == {"a": b"1"}


def test_a_crash_cuts_the_effects_of_a_ready_short():
    world = World(3)
    world.faults = Faults(crash=1.0)
    sent: list = []
    host = Host(dict, {"messages": sent.append})
    host.cut, host.on_crash = world.crash_cut, lambda: sent.append("crash")
    host.apply(FakeReady({}, list(range(50))))     # nothing persisted: no crash point
    assert sent == list(range(50))
    sent.clear()
    host.apply(FakeReady({"k": b"v"}, list(range(50))))
    assert sent[-1] == "crash" and sent[:-1] == list(range(len(sent) - 1))
    assert host.durable == {"k": b"v"}


def test_fifo_net_filters_and_settles():
    got: list = []
    net = FifoNet(got.append)
    net.drop = lambda msg: msg == "x"
    for msg in "axb":
        net.send(msg)
    net.settle()
    assert got == ["a", "b"]
    loop = FifoNet(lambda msg: loop.send(msg))
    loop.send("again")
    with pytest.raises(AssertionError, match="never settled"):
        loop.settle(limit=10)
