"""Commands a PG's primary OSD runs: `query`, `scrub`, `deep-scrub`, `repair`.

Declared as descriptors like the monitors' commands so the CLI, the help listing and
the needs come from one place; the needs are OSD caps on the PG's pool (`r` to query,
`rwx` to scrub or repair, as before). A handler gets the PG and the checked arguments.
"""

from __future__ import annotations

from sds.common.command import Access, Registry

COMMANDS = Registry("PG command", hint=None)
CHANGE = Access(service="osd", caps="rwx")


@COMMANDS.command("query", access=Access(service="osd", caps="r"))
async def query(pg, args: dict) -> dict:
    """A PG's state and why (also spelled `sds pg PGID query`, like ceph)."""
    return pg.query()


async def _scrub(pg, deep: bool) -> dict:
    found = await pg.scrub(deep=deep)
    return {"pgid": pg.coll, "deep": deep, "inconsistent": [f.as_dict() for f in found]}


@COMMANDS.command("scrub", access=CHANGE)
async def scrub(pg, args: dict) -> dict:
    """Light scrub: compare object lists, sizes and versions across the PG's replicas."""
    return await _scrub(pg, False)


@COMMANDS.command("deep-scrub", access=CHANGE)
async def deep_scrub(pg, args: dict) -> dict:
    """Deep scrub: also compare the CRC32C of every replica's data, xattrs and omap."""
    return await _scrub(pg, True)


@COMMANDS.command("repair", access=CHANGE)
async def repair(pg, args: dict) -> dict:
    """Deep-scrub, then overwrite damaged copies with the authoritative one."""
    return {"pgid": pg.coll, "repaired": await pg.repair(),
            "inconsistent": [f.as_dict() for f in pg.inconsistent.values()]}
