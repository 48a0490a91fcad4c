"""The first version of every cluster map, written once when a cluster is created.

Pure functions: the caller (``sds cluster up`` or a monitor's mkfs) decides the
fsid, the monitor addresses and the keyring; everything else follows from them.
"""

from __future__ import annotations

from sds.common import caps as caps_mod
from sds.common.errors import InvalidArgument
from sds.common.fullness import Ratios
from sds.common.keyring import Keyring
from sds.crush import builder
from sds.proto import maps_pb2

DEFAULT_RULE = 0


def initial_osdmap(fsid: str, failure_domain: str, now: float,
                   ratios: Ratios | None = None) -> maps_pb2.OsdMap:
    """Epoch 1: no pools, no OSDs, the default CRUSH map with its rule's failure domain set,
    and the fullness ratios (validated) when given.

    `failure_domain` is "host" for real clusters and "osd" for a single host, where
    replicas can only be spread over disks (see users.md A1).
    """
    crush = builder.new_map()
    if failure_domain not in crush.types:
        raise InvalidArgument(
            f"failure domain '{failure_domain}' is not a CRUSH type "
            f"(known: {', '.join(crush.types)})"
        )
    if builder.failure_domain(crush, DEFAULT_RULE) != failure_domain:
        builder.set_rule_failure_domain(crush, DEFAULT_RULE, failure_domain)
    osdmap = maps_pb2.OsdMap(epoch=1, fsid=fsid, pool_max=0, modified=now)
    osdmap.crush.CopyFrom(crush)
    if ratios is not None:
        ratios.validate()
        osdmap.nearfull_ratio = ratios.nearfull
        osdmap.backfillfull_ratio = ratios.backfillfull
        osdmap.full_ratio = ratios.full
    return osdmap


def mon_name(rank: int) -> str:
    """Monitor names are their ranks, matching `sds daemon mon --id N`."""
    return str(rank)


def initial_monmap(fsid: str, mon_addrs: list[str], names: list[str] | None = None) -> maps_pb2.MonMap:
    if not mon_addrs:
        raise InvalidArgument("a cluster needs at least one monitor address")
    if names is not None and len(names) != len(mon_addrs):
        raise InvalidArgument("one monitor name per monitor address is needed")
    if len(set(mon_addrs)) != len(mon_addrs):
        raise InvalidArgument(f"monitor addresses must be distinct: {', '.join(mon_addrs)}")
    monmap = maps_pb2.MonMap(epoch=1, fsid=fsid)
    for rank, addr in enumerate(mon_addrs):
        name = names[rank] if names is not None else mon_name(rank)
        monmap.mons.add(rank=rank, name=name, addr=addr)
    return monmap


def initial_auth(keyring: Keyring) -> dict[str, maps_pb2.AuthEntity]:
    """The auth database starts as the keyring `sds cluster up` generated; its caps are
    checked like any caps being set (an invalid string stops the first boot)."""
    return {
        name: maps_pb2.AuthEntity(name=name, key=key, caps=caps_mod.check(caps))
        for name, (key, caps) in sorted(keyring.entries.items())
    }
