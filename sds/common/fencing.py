"""Names of fenceable client instances, shared by the mons (who blocklist) and the MDS."""

from __future__ import annotations


def active_instance(base: str, generation: int) -> str:
    """The client instance an MDS uses while active in `generation`, so the mons can name
    (and blocklist) it without hearing from that MDS again."""
    return f"{base}.g{generation}"


# the barrier a filesystem carries while the blocklist's OSD map epoch is not yet known
# (an unset uint64): never an epoch to wait for
FENCE_PENDING = (1 << 64) - 1
