"""`osd blocklist add|rm|ls`: fence client instances off the OSDs.

An evicted filesystem client (or a replaced MDS) may still have writes queued; once its
instance is in the OSD map's blocklist, every OSD refuses its ops (ESHUTDOWN). Whoever
hands the client's files to someone else first waits until the OSDs can know: the reply
carries the map epoch with the entry, and later ops carrying that epoch make OSDs catch up.
"""

from __future__ import annotations

from sds.common import osdmap as om
from sds.common.command import Param, opt
from sds.mon.services.core import CommandResult, MonView, _update, command

DEFAULT_EXPIRE_S = 3600.0


@command("osd blocklist add", Param("addr", help="client instance"),
         opt("expire", "float", DEFAULT_EXPIRE_S, lo=0, help="seconds"), write=True)
def cmd_blocklist_add(view: MonView, args: dict) -> CommandResult:
    """Refuse every OSD op of a client instance for `expire` seconds (default 1 h)."""
    instance, expire = args["addr"], args["expire"]
    inc = om.next_incremental(view.osdmap, view.now)
    inc.new_blocklist[instance] = view.now + expire
    return CommandResult({"blocklisted": instance, "until": view.now + expire,
                          "epoch": inc.epoch}, _update(inc))


@command("osd blocklist rm", Param("addr", help="client instance"), write=True)
def cmd_blocklist_rm(view: MonView, args: dict) -> CommandResult:
    """Let a client instance use the OSDs again."""
    instance = args["addr"]
    if instance not in view.osdmap.blocklist:
        return CommandResult({"removed": instance, "changed": False})
    inc = om.next_incremental(view.osdmap, view.now)
    inc.removed_blocklist.append(instance)
    return CommandResult({"removed": instance, "changed": True, "epoch": inc.epoch},
                         _update(inc))


@command("osd blocklist ls")
def cmd_blocklist_ls(view: MonView, args: dict) -> CommandResult:
    """Client instances the OSDs refuse, and until when (expired entries are inert)."""
    return CommandResult({"blocklist": [
        {"addr": name, "until": until, "expired": until <= view.now}
        for name, until in sorted(view.osdmap.blocklist.items())]})
