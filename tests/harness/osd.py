"""The OSD's side of a peering Ready, shared by the peering simulator and unit scenarios."""

from __future__ import annotations

from typing import Any

from sds.osd.peering import Entry, MapView, Message, PeeringCore

from .host import Effects, Host

Held = tuple[tuple[int, int], str]  # (version, content) of a stored object
Change = tuple[str, Held | None]    # an object write (None: delete) to apply with a Ready


class OsdHost(Host):
    """An OSD around a PeeringCore. Its in-memory object store (oid -> (version, content))
    is durable like its dict: a crash keeps both, as the OSD's object store does."""

    def __init__(self, osd: int, effects: Effects, **core_kw: Any):
        super().__init__(lambda durable: PeeringCore(osd, durable, **core_kw), effects)
        self.osd = osd
        self.store: dict[str, Held] = {}

    def version(self, oid: str) -> tuple[int, int] | None:
        held = self.store.get(oid)
        return held[0] if held else None

    def apply(self, ready: Any, change: Change | None = None) -> None:
        """The object change and the persist of a Ready are one transaction in the OSD."""
        if change is not None:
            oid, held = change
            if held is None:
                self.store.pop(oid, None)
            else:
                self.store[oid] = held
        super().apply(ready)

    def catch_up(self, maps: list[MapView]) -> None:
        """Advance through every map this OSD has not seen (stops if it crashes on the way)."""
        core = self.core
        for view in maps[core.map_epoch:]:
            self.apply(core.advance_map(view))
            if self.core is not core:
                return

    def scan_reply(self, scan: Message) -> Message:
        """The driver, not the core, answers a backfill scan from its store."""
        objects = {oid: held[0] for oid, held in self.store.items()}
        return Message("scan_reply", scan.dst, scan.src, scan.epoch, objects=objects)

    def push(self, oid: str, need: Any, epoch: int, held: Held | None) -> None:
        """A recovery push arrives: the object is written only if the core takes it."""
        ready = self.core.on_push(oid, need, epoch)
        if ready is not None:
            self.apply(ready, (oid, held) if ready.persist else None)

    def write(self, oid: str, reqid: str, content: str | None) -> Entry:
        """A client write (content None: delete) ordered and applied by this primary."""
        entry, ready = self.core.write(oid, reqid, content is None, self.version(oid))
        self.apply(ready, (oid, None if content is None else (entry.version, content)))
        return entry

    def replica_write(self, entry: Entry, epoch: int, content: str | None) -> Any:
        """A primary's write applied here; None when the core refuses it (stale interval)."""
        ready = self.core.replica_write(entry, epoch)
        if ready is not None:
            held = None if content is None else (entry.version, content)
            self.apply(ready, (entry.oid, held) if ready.persist else None)
        return ready
