"""Time building a PlacementTable: 1,000 PGs x size 3 on 10 OSDs (10 hosts).

Run: python benchmarks/bench_crush.py
"""

from __future__ import annotations

import time

from sds.crush import builder
from sds.crush.hash import hash32_3
from sds.crush.placement import PlacementTable
from sds.proto.maps_pb2 import OsdInfo, OsdMap


def make_map(osds: int = 10, pg_num: int = 1000, size: int = 3) -> OsdMap:
    crush = builder.new_map()
    for i in range(osds):
        builder.add_osd(crush, i, f"host{i}", 1.0)
    m = OsdMap(epoch=1, crush=crush)
    m.pools.add(id=1, name="bench", size=size, min_size=2, pg_num=pg_num, crush_rule=0)
    for i in range(osds):
        m.osds.append(OsdInfo(id=i, up=True, reweight=0x10000, **{"in": True}))
    return m


def main() -> None:
    m = make_map()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        table = PlacementTable(m)
        for pg in range(1000):
            table.pg_up(1, pg)
        runs.append(time.perf_counter() - start)
    best = min(runs)
    print(
        f"PlacementTable 1000 PGs x 3 on 10 OSDs: best {best * 1e3:.1f} ms "
        f"({best / 1000 * 1e6:.0f} us/PG), median {sorted(runs)[2] * 1e3:.1f} ms"
    )
    n = 200_000
    start = time.perf_counter()
    for i in range(n):
        hash32_3(i, 7, 2)
    print(f"hash32_3: {(time.perf_counter() - start) / n * 1e9:.0f} ns/call")


if __name__ == "__main__":
    main()
