"""Names of fenceable client instances, shared by the mons (who blocklist) and the MDS."""

from __future__ import annotations


def active_instance(base: str, generation: int) -> str:
    """The client instance an MDS uses while active in `generation`, so the mons can name
    (and blocklist) it without hearing from that MDS again."""
    return f"{base}.g{generation}"
