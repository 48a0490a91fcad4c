"""The PG -> OSDs table of an OSDMap, computed once per epoch (DESIGN.md section 4).

Keyed by (fsid, epoch): an epoch names one map for good, so no hashing of the map is
needed. The entry keeps the map it was computed from and is used only for that very
object, so two unrelated maps that share an epoch number (two test clusters, a map
built ahead of its commit) never share a table.
"""

from __future__ import annotations

from collections import OrderedDict

from sds.crush.placement import PlacementTable
from sds.proto.maps_pb2 import OsdMap


class PlacementCache:
    """A few recent epochs' tables (an LRU: readers of an older epoch are rare)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._tables: OrderedDict[tuple[str, int], tuple[OsdMap, PlacementTable]] = \
            OrderedDict()

    def get(self, osdmap: OsdMap) -> PlacementTable:
        key = (osdmap.fsid, osdmap.epoch)
        entry = self._tables.get(key)
        if entry is not None and entry[0] is osdmap:
            self._tables.move_to_end(key)
            return entry[1]
        table = PlacementTable(osdmap)
        self._tables[key] = (osdmap, table)
        self._tables.move_to_end(key)
        while len(self._tables) > self.size:
            self._tables.popitem(last=False)
        return table


_shared = PlacementCache()


def placement_for(osdmap: OsdMap) -> PlacementTable:
    """The table of this map from the process-wide cache."""
    return _shared.get(osdmap)
