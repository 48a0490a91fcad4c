"""Topology, when the plugin is started with `--topology KEY=VALUE` (repeatable): the
node's segment for NodeGetInfo, and VOLUME_ACCESSIBILITY_CONSTRAINTS in the plugin's
capabilities (give the controller the same keys; it ignores the values).

Every node that reaches the monitors reaches every OSD, so a volume is accessible from
any segment: CreateVolume answers with all the segments the CO asked for (requisite and
preferred), which lets the scheduler keep its choice, and GetCapacity is the same pool
space whatever segment it is asked about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sds.common.errors import InvalidArgument
from sds.proto import csi_pb2

# a Kubernetes label key: optional DNS prefix, then a name of at most 63 characters
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
                  r"[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def parse(options: Iterable[str]) -> dict[str, str]:
    """{key: value} of `--topology` options; InvalidArgument names a bad one."""
    out: dict[str, str] = {}
    for text in options:
        key, sep, value = text.partition("=")
        if not sep or not _KEY.match(key) or not _VALUE.match(value):
            raise InvalidArgument(f"--topology {text!r}: use KEY=VALUE with a label key "
                                  "and value (e.g. topology.sds.io/zone=z1)")
        if key in out:
            raise InvalidArgument(f"--topology key {key} given twice")
        out[key] = value
    return out


def accessible(req: csi_pb2.TopologyRequirement | None) -> list[csi_pb2.Topology]:
    """The segments a new volume is accessible from: every one asked for, once each."""
    if req is None:
        return []
    seen, out = set(), []
    for t in list(req.requisite) + list(req.preferred):
        key = tuple(sorted(t.segments.items()))
        if key not in seen:
            seen.add(key)
            out.append(csi_pb2.Topology(segments=dict(key)))
    return out
