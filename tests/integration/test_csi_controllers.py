"""Two controller plugins serving one cluster (two replicas of the controller Deployment,
or a new leader while the old one still runs): the idempotency journal's compare-and-set
reservations make one volume per request name whatever the interleaving, a controller
killed between reserving a name and making its subvolume is taken over by the other,
and a CreateVolume that fails after its reservation leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from csiplugin import MiB, Plugin, create, create_retrying, leftovers, workdir_fixture
from fsmounts import FS_CLUSTER, requires_mds

from sds.client import Rados
from sds.client.fsadmin import FsAdmin
from sds.cluster.local import daemon_names, daemon_pid
from sds.csi.journal import Journal
from sds.proto import csi_pb2, mds_pb2

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]
LEASE = "4"  # seconds; short so that the takeover tests wait little


workdir = workdir_fixture("csic")


@pytest.fixture(scope="module")
def controllers(cluster_module, workdir):
    ps = [Plugin(cluster_module, workdir, f"ctrl-{i}", "--controller", "--lease-seconds", LEASE)
          for i in range(2)]
    try:
        for p in ps:
            p.start()
        yield ps
    finally:
        for p in ps:
            p.stop()


def delete(p, volume_id):
    p.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=60)


async def journal_entry(conf, name):
    async with Rados(conf) as r:
        fsinfo = (await r.mon_command({"prefix": "fs ls"}))["filesystems"][0]
        return await Journal(r.ioctx(fsinfo["metadata_pool"])).volume_entry(name)


def test_same_name_on_two_controllers_makes_one_volume(cluster_module, controllers):
    before = asyncio.run(leftovers(cluster_module.conf))
    start = threading.Barrier(10)

    def one(i):
        start.wait()
        return create_retrying(controllers[i % 2], "pvc-two", size=64 * MiB).volume_id

    with ThreadPoolExecutor(10) as pool:
        got = list(pool.map(one, range(10)))
    assert len(set(got)) == 1
    subvols, journal = asyncio.run(leftovers(cluster_module.conf))
    assert set(subvols) - set(before[0]) == {got[0].rsplit(":", 1)[1]}
    assert set(journal) - set(before[1]) == {got[0]}
    assert asyncio.run(journal_entry(cluster_module.conf, "pvc-two")).value["state"] == "ready"
    for p in controllers:  # either answers the same volume now, at once
        assert create(p, "pvc-two", size=64 * MiB).volume_id == got[0]
    delete(controllers[1], got[0])
    assert asyncio.run(leftovers(cluster_module.conf)) == before


def _signal_mds(cluster, sig):
    for name in daemon_names(cluster.dir, "mds"):
        pid = daemon_pid(cluster.dir, name)
        if pid:
            os.kill(pid, sig)


def test_controller_killed_after_reserving_is_taken_over(cluster_module, controllers,
                                                         workdir):
    """The MDS is frozen so that a third controller reserves the name and then waits for
    the subvolume; it is killed there (kill -9). The retry on another controller is
    ABORTED while the dead one's reservation could still be alive, then takes it over
    and makes the volume: one volume, one subvolume, one journal entry."""
    before = asyncio.run(leftovers(cluster_module.conf))
    doomed = Plugin(cluster_module, workdir, "ctrl-doomed", "--controller",
                    "--lease-seconds", LEASE).start()
    _signal_mds(cluster_module, signal.SIGSTOP)
    try:
        t = threading.Thread(target=lambda: pytest.raises(grpc.RpcError, create, doomed,
                                                          "pvc-orphan", 64 * MiB))
        t.start()
        deadline = time.monotonic() + 30
        while (entry := asyncio.run(journal_entry(cluster_module.conf, "pvc-orphan"))) is None:
            assert time.monotonic() < deadline, "the name was never reserved"
            time.sleep(0.05)
        assert entry.value["state"] == "reserved"
        doomed.kill()
        t.join(30)
    finally:
        _signal_mds(cluster_module, signal.SIGCONT)
        doomed.stop()
    with pytest.raises(grpc.RpcError) as e:  # its heartbeat might still come: wait a lease
        create(controllers[0], "pvc-orphan", size=64 * MiB)
    assert e.value.code() == grpc.StatusCode.ABORTED
    vol = create_retrying(controllers[0], "pvc-orphan", size=64 * MiB)
    assert vol.volume_id == entry.id  # the reservation's id, taken over
    assert create(controllers[1], "pvc-orphan", size=64 * MiB) == vol
    subvols, journal = asyncio.run(leftovers(cluster_module.conf))
    assert set(subvols) - set(before[0]) == {vol.volume_id.rsplit(":", 1)[1]}
    assert set(journal) - set(before[1]) == {vol.volume_id}
    delete(controllers[0], vol.volume_id)
    assert asyncio.run(leftovers(cluster_module.conf)) == before


async def _make_file_in_volumes(conf, name):
    """A regular file /volumes/NAME: a subvolume group the MDS cannot make volumes in."""
    Req = mds_pb2.MdsRequest
    async with Rados(conf) as r, FsAdmin(r) as fs:
        await fs.group_create("csi")
        volumes = await fs.lookup("/volumes")
        made = await fs.mds.request(Req(op=Req.CREATE, ino=volumes.ino, name=name, mode=0o644,
                                        flags=os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        await fs.mds.request(Req(op=Req.RELEASE, ino=made.attr.ino))


def test_failed_create_rolls_back_its_reservation(cluster_module, controllers):
    """A CreateVolume refused by the filesystem after its name was reserved (its group is
    a file) rolls the reservation back: nothing is left, and the retry with a corrected
    subvolumeGroup works instead of meeting ALREADY_EXISTS."""
    before = asyncio.run(leftovers(cluster_module.conf))
    asyncio.run(_make_file_in_volumes(cluster_module.conf, "notagroup"))
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as e:
            create(controllers[0], "pvc-fixed", size=64 * MiB, subvolumeGroup="notagroup")
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert asyncio.run(journal_entry(cluster_module.conf, "pvc-fixed")) is None
        assert asyncio.run(leftovers(cluster_module.conf)) == before
    vol = create(controllers[1], "pvc-fixed", size=64 * MiB)  # corrected: the default group
    assert vol.volume_context["subvolumeGroup"] == "csi"
    delete(controllers[0], vol.volume_id)
    assert asyncio.run(leftovers(cluster_module.conf)) == before


async def _leave_reservation(conf, name, group):
    """What a controller killed before it could roll back a refused CreateVolume leaves:
    a reservation of NAME, made with other parameters, that nobody heartbeats."""
    async with Rados(conf) as r:
        fsinfo = (await r.mon_command({"prefix": "fs ls"}))["filesystems"][0]
        journal = Journal(r.ioctx(fsinfo["metadata_pool"]))
        return await journal.claim_volume(name, {
            "id": f"sds1:{fsinfo['name']}:{group}:csi-vol-left-behind",
            "request": {"parameters": {"subvolumeGroup": group}, "source": ""},
            "state": "reserved", "owner": "a-dead-controller", "beat": 7})


def test_retry_with_other_parameters_after_a_dead_controller(cluster_module, controllers):
    """The corrected retry of a CreateVolume whose controller died mid-way is not refused
    as ALREADY_EXISTS for ever: once the dead one's lease has passed, its reservation is
    dropped and the volume is made with the new parameters; nothing is left behind."""
    before = asyncio.run(leftovers(cluster_module.conf))
    left = asyncio.run(_leave_reservation(cluster_module.conf, "pvc-corrected", "notagroup"))
    with pytest.raises(grpc.RpcError) as e:  # its controller might still be alive
        create(controllers[1], "pvc-corrected", size=64 * MiB)
    assert e.value.code() == grpc.StatusCode.ABORTED
    vol = create_retrying(controllers[1], "pvc-corrected", size=64 * MiB)
    assert vol.volume_id != left.id and vol.volume_context["subvolumeGroup"] == "csi"
    entry = asyncio.run(journal_entry(cluster_module.conf, "pvc-corrected"))
    assert entry.id == vol.volume_id and entry.value["state"] == "ready"
    delete(controllers[0], vol.volume_id)
    assert asyncio.run(leftovers(cluster_module.conf)) == before
