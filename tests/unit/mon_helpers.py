"""Helpers of the monitor-command unit tests (test_mon_commands.py, test_fs_commands.py,
test_osd_admin.py): a MonView as genesis makes it, running a command as the daemon would,
booting OSDs into it, and a digest in which every PG is clean."""

from __future__ import annotations

from sds.common.config import Config
from sds.common.keyring import Keyring
from sds.common.osdmap import apply_incremental
from sds.mon import genesis
from sds.mon.commands import MonView, handle, is_write

FSID = "8d1c6f2e-0000-4000-8000-000000000001"


def make_view(failure_domain: str = "host", mons: int = 3, quorum=None,
              digest=None) -> MonView:
    keyring = Keyring()
    keyring.add("client.admin", b"k" * 32, {"mon": "allow *", "osd": "allow *"})
    keyring.add("osd.0", b"o" * 32, {"mon": "allow profile osd"})
    monmap = genesis.initial_monmap(FSID, [f"127.0.0.1:{6789 + i}" for i in range(mons)])
    return MonView(
        osdmap=genesis.initial_osdmap(FSID, failure_domain, now=1000.0),
        auth=genesis.initial_auth(keyring),
        monmap=monmap,
        mon_status={"leader": 0, "quorum": list(range(mons)) if quorum is None else quorum,
                    "election_epoch": 4, "last_committed": 10},
        digest=digest,
        config=Config(None),
        now=2000.0,
    )


def run(view: MonView, cmd: dict) -> dict:
    """Run a command; apply its update to the view like the daemon would after Paxos."""
    result = handle(view, cmd)
    if result.update is not None:
        assert is_write(cmd["prefix"]), cmd["prefix"]
        inc = result.update.osdmap
        assert inc.epoch == view.osdmap.epoch + 1
        view.osdmap = apply_incremental(view.osdmap, inc)
    return result.output


def boot(view: MonView, osd_id: int, host: str, addr: str | None = None, uuid: str | None = None,
         weight: float = 1.0) -> dict:
    return run(view, {"prefix": "osd boot", "id": osd_id, "host": host, "weight": weight,
                      "addr": addr or f"127.0.0.1:{6800 + osd_id}",
                      "uuid": uuid or f"uuid-{osd_id}"})


def clean_digest(view: MonView) -> dict:
    pgs = []
    for pool in view.osdmap.pools:
        for pg in range(pool.pg_num):
            pgs.append({"pgid": f"{pool.id}.{pg:x}", "state": "active+clean", "objects": 1,
                        "bytes": 100, "up": [0, 1, 2], "acting": [0, 1, 2], "primary": 0})
    return {"stamp": 1.0, "pgs": pgs,
            "osds": {str(o.id): {"total_bytes": 1000, "used_bytes": 100, "objects": 5,
                                 "num_pgs": 4} for o in view.osdmap.osds},
            "pools": {str(p.id): {"objects": 3, "bytes": 300} for p in view.osdmap.pools},
            "io": {"read_bytes_sec": 1.0, "write_bytes_sec": 2.0, "read_ops_sec": 3.0,
                   "write_ops_sec": 4.0}}
