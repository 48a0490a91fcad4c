"""Wrong-key handshakes per second against one daemon: the figure issue 8 asks for.

    python benchmarks/handshake_abuse.py HOST:PORT [seconds] [parallel]

Each attempt is a fresh TCP connection and a full handshake with a wrong key; the
script counts attempts that were answered (refused) and the ones the peer dropped
or delayed past the timeout.
"""

from __future__ import annotations

import asyncio
import sys
import time

from sds.common.errors import SdsError
from sds.common.messenger import Messenger


async def attempt(addr: str) -> str:
    m = Messenger("client.admin", b"wrong key" * 4)
    try:
        await m.connect(addr, timeout=5)
        return "accepted"
    except SdsError as e:
        return type(e).__name__
    finally:
        await m.close()


async def main(addr: str, seconds: float, parallel: int) -> None:
    counts: dict[str, int] = {}
    end = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            kind = await attempt(addr)
            counts[kind] = counts.get(kind, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    took = time.monotonic() - t0
    total = sum(counts.values())
    print(f"{total} attempts in {took:.1f} s = {total / took:.0f}/s ({parallel} parallel): {counts}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 5.0,
                     int(sys.argv[3]) if len(sys.argv) > 3 else 4))
