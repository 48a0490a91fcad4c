"""The maps a monitor serves, derived by applying committed Paxos values in order.

Pure: the genesis maps plus the sequence of MapUpdate values give the same state in
every monitor; the daemon only feeds committed values in.
"""

from __future__ import annotations

from sds.common.osdmap import apply_incremental
from sds.proto import maps_pb2

MAX_INCREMENTALS_KEPT = 500


class MonState:
    def __init__(self, osdmap: maps_pb2.OsdMap, auth: dict[str, maps_pb2.AuthEntity],
                 monmap: maps_pb2.MonMap):
        self.osdmap = osdmap
        self.auth = dict(auth)
        self.auth_epoch = 1
        self.monmap = monmap
        self.mdsmap = maps_pb2.MdsMap()
        self.rotating: dict[str, list[maps_pb2.RotatingSecret]] = {}  # service -> secrets
        self.incrementals: dict[int, maps_pb2.OsdMapIncremental] = {}
        self.applied_version = 0

    def apply(self, version: int, value: bytes) -> maps_pb2.MapUpdate:
        """Apply the committed value of Paxos `version`; returns the update applied."""
        update = maps_pb2.MapUpdate()
        update.ParseFromString(value)
        which = update.WhichOneof("change")
        if which == "osdmap":
            inc = update.osdmap
            if inc.epoch == self.osdmap.epoch + 1:
                self.osdmap = apply_incremental(self.osdmap, inc)
                self.incrementals[inc.epoch] = inc
                self.incrementals.pop(inc.epoch - MAX_INCREMENTALS_KEPT, None)
        elif which == "auth":
            for entity in update.auth.set:
                self.auth[entity.name] = entity
            for name in update.auth.removed:
                self.auth.pop(name, None)
            self.auth_epoch += 1
        elif which == "monmap":
            self.monmap = update.monmap
        elif which == "rotating":
            for service in update.rotating.services:
                self.rotating[service.service] = list(service.secrets)
        elif which == "mdsmap":
            if update.mdsmap.epoch > self.mdsmap.epoch:
                self.mdsmap = update.mdsmap
        self.applied_version = version
        return update

    def incrementals_since(self, epoch: int) -> list[maps_pb2.OsdMapIncremental] | None:
        """Incrementals epoch+1..current, or None when some are no longer kept."""
        wanted = range(epoch + 1, self.osdmap.epoch + 1)
        if any(e not in self.incrementals for e in wanted):
            return None
        return [self.incrementals[e] for e in wanted]

    def key_lookup(self, entity: str) -> tuple[bytes, dict[str, str]] | None:
        found = self.auth.get(entity)
        return (found.key, dict(found.caps)) if found is not None else None

    def caps_of(self, entity: str) -> dict[str, str] | None:
        found = self.auth.get(entity)
        return dict(found.caps) if found is not None else None
