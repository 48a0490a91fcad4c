"""When each MDS was last heard from: leader-local soft state, owned by the mon daemon.

As in Ceph's MDSMonitor it is not replicated: a new leader starts every MDS's grace
period afresh. The daemon hands its tracker to each command through the MonView.
"""

from __future__ import annotations


class BeaconTracker:
    """Last beacon time per MDS name, by this monitor (meaningful on the leader)."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def seen(self, name: str, now: float) -> None:
        self.last[name] = now

    def forget(self, name: str) -> None:
        self.last.pop(name, None)

    def stale(self, name: str, now: float, grace: float) -> bool:
        return now - self.last.setdefault(name, now) > grace
