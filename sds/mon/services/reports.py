"""Reports only daemons send, run by the mon daemon itself (no handler here): declared
so that their arguments and who may send them live with every other command."""

from __future__ import annotations

from sds.common.command import Access, Descriptor, Param, opt
from sds.mon.services.core import MON

MON.add(Descriptor(
    "osd failure", (Param("target", "int", lo=0), Param("reporter", "int", lo=0)),
    "(internal) An OSD says a peer stopped answering its heartbeats.", write=True,
    access=Access(daemon="osd", self_arg="reporter")))
MON.add(Descriptor(
    "mgr report", (opt("digest", "any"),),
    "(internal) The manager's latest cluster statistics.",
    access=Access(daemon="mgr")))
MON.add(Descriptor(
    "mon disk report", (Param("name"), Param("avail_percent", "float", lo=0)),
    "(internal) A monitor's available disk space, for MON_DISK_LOW/CRIT.",
    access=Access(daemon="mon")))  # monitors share the mon. entity
