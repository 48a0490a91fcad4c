"""Failure detection on the monitors: pure bookkeeping, driven by the leader.

OSDs ping the peers they share PGs with and report a peer that stayed silent longer
than the grace period. The leader marks the peer down once enough distinct reporters
agree (reports expire, so old ones do not add up), and marks a down OSD out after the
down-out interval unless the `noout` flag is set. An OSD marked down while alive boots
itself back in (sds.osd.daemon).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sds.common.osdmap import is_in
from sds.proto import maps_pb2


@dataclass
class FailureTracker:
    grace_s: float
    min_reporters: int
    reports: dict[int, dict[int, float]] = field(default_factory=dict)  # target -> reporter -> t
    down_since: dict[int, float] = field(default_factory=dict)

    def report(self, target: int, reporter: int, now: float) -> None:
        self.reports.setdefault(target, {})[reporter] = now

    def cancel(self, target: int, reporter: int) -> None:
        self.reports.get(target, {}).pop(reporter, None)

    def _live_reporters(self, target: int, now: float, osdmap: maps_pb2.OsdMap) -> set[int]:
        up = {o.id for o in osdmap.osds if o.up}
        fresh = {r for r, t in self.reports.get(target, {}).items()
                 if now - t <= 2 * self.grace_s and r in up and r != target}
        self.reports[target] = {r: t for r, t in self.reports.get(target, {}).items()
                                if r in fresh}
        return fresh

    def to_mark_down(self, osdmap: maps_pb2.OsdMap, now: float) -> list[int]:
        """Up OSDs that enough distinct live peers report as failed.

        With fewer other up OSDs than min_reporters, all of them must agree (a 2-OSD
        cluster can still detect a failure)."""
        result = []
        up = [o.id for o in osdmap.osds if o.up]
        for target in sorted(self.reports):
            if target not in up:
                self.reports.pop(target, None)
                continue
            needed = max(1, min(self.min_reporters, len(up) - 1))
            if len(self._live_reporters(target, now, osdmap)) >= needed:
                result.append(target)
        return result

    def observe(self, osdmap: maps_pb2.OsdMap, now: float) -> None:
        """Note when each OSD went down (for the down-out timer)."""
        for osd in osdmap.osds:
            if osd.up:
                self.down_since.pop(osd.id, None)
            else:
                self.down_since.setdefault(osd.id, now)

    def to_mark_out(self, osdmap: maps_pb2.OsdMap, now: float, interval_s: float) -> list[int]:
        if "noout" in osdmap.flags or interval_s <= 0:
            return []
        return sorted(o.id for o in osdmap.osds
                      if not o.up and is_in(o)
                      and now - self.down_since.get(o.id, now) >= interval_s)
