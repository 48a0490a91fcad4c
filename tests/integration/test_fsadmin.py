"""The filesystem-admin API against a real cluster: subvolumes with quotas and metadata,
snapshots, clones from a snapshot and from a live subvolume, removal leaving nothing."""

from __future__ import annotations

import os

import pytest
from fsmounts import FS_CLUSTER, mounted, requires_mds

from sds.client import Rados
from sds.client.fsadmin import FsAdmin
from sds.common.errors import AlreadyExists, InvalidArgument, NotFound

pytestmark = [pytest.mark.integration, FS_CLUSTER, requires_mds]

MiB = 1 << 20


async def test_subvolume_lifecycle(cluster_module, tmp_path):
    async with Rados(cluster_module.conf) as r, FsAdmin(r) as fs:
        info = await fs.subvolume_create("g", "v1", size=8 * MiB, metadata={"pvc/name": "p"})
        assert info["bytes_quota"] == 8 * MiB and info["metadata"] == {"pvc/name": "p"}
        assert info["path"] == "/volumes/g/v1"
        with pytest.raises(AlreadyExists):
            await fs.subvolume_create("g", "v1", size=8 * MiB)
        with pytest.raises(InvalidArgument):
            await fs.subvolume_create("g", "../x")
        assert await fs.subvolume_ls("g") == ["v1"] and "g" in await fs.group_ls()
        with mounted(cluster_module, tmp_path / "m", "--root", "/volumes/g/v1") as m:
            (m.path / "d").mkdir()
            (m.path / "d" / "a").write_bytes(b"x" * 3000)
            os.symlink("d/a", m.path / "link")
        assert (await fs.subvolume_info("g", "v1"))["bytes_used"] == 3000
        await fs.subvolume_resize("g", "v1", 16 * MiB)
        assert (await fs.subvolume_info("g", "v1"))["bytes_quota"] == 16 * MiB
        snap = await fs.snapshot_create("g", "v1", "s1")
        assert snap["bytes"] == 3000
        assert [s["name"] for s in await fs.snapshot_ls("g", "v1")] == ["s1"]
        await fs.clone("g", "v1", "g", "from-snap", snap="s1", size=16 * MiB)
        await fs.clone("g", "v1", "g", "from-vol", size=16 * MiB)
        assert [s["name"] for s in await fs.snapshot_ls("g", "v1")] == ["s1"]
        for name in ("from-snap", "from-vol"):
            with mounted(cluster_module, tmp_path / name, "--root", f"/volumes/g/{name}") as m:
                assert (m.path / "d" / "a").read_bytes() == b"x" * 3000
                assert os.readlink(m.path / "link") == "d/a"
        assert await fs.snapshot_rm("g", "v1", "s1")
        assert not await fs.snapshot_rm("g", "v1", "s1")
        for name in ("v1", "from-snap", "from-vol"):
            assert await fs.subvolume_rm("g", name)
            assert not await fs.subvolume_rm("g", name)
        with pytest.raises(NotFound):
            await fs.subvolume_info("g", "v1")
        assert await fs.subvolume_ls("g") == []
        await fs.group_rm("g")


def test_subvolume_cli(cluster_module):
    import json

    from fsmounts import sds

    conf = ["--conf", str(cluster_module.conf), "--format", "json"]
    info = json.loads(sds(*conf, "fs", "subvolume", "create", "cli1", "--group", "g2",
                          "--size", "4MiB").stdout)
    assert info["bytes_quota"] == 4 * MiB
    assert json.loads(sds(*conf, "fs", "subvolume", "resize", "cli1", "8MiB", "--group",
                          "g2").stdout)["bytes_quota"] == 8 * MiB
    sds(*conf, "fs", "subvolume", "snapshot", "create", "cli1", "s", "--group", "g2")
    assert [s["name"] for s in json.loads(sds(*conf, "fs", "subvolume", "snapshot", "ls",
                                              "cli1", "--group", "g2").stdout)["snapshots"]] == ["s"]
    sds(*conf, "fs", "subvolume", "clone", "cli1", "cli2", "--snapshot", "s", "--group", "g2")
    assert json.loads(sds(*conf, "fs", "subvolume", "ls", "--group", "g2").stdout)[
        "subvolumes"] == ["cli1", "cli2"]
    sds(*conf, "fs", "subvolume", "snapshot", "rm", "cli1", "s", "--group", "g2")
    for name in ("cli1", "cli2"):
        assert json.loads(sds(*conf, "fs", "subvolume", "rm", name, "--group", "g2").stdout)[
            "removed"]
    assert json.loads(sds(*conf, "fs", "subvolume", "ls", "--group", "g2").stdout)[
        "subvolumes"] == []
