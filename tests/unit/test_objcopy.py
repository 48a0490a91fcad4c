"""Object copies in parts: data parts and omap pages of bounded size, installed in the
order the copier sends them, rebuild the object exactly (holes, xattrs, whole omap)."""

from __future__ import annotations

from sds.osd import objcopy
from sds.osd.store.base import Transaction
from sds.osd.store.memory import MemoryStore

C = "1.0"
PART = 4096
PAGE = 4000


async def _source() -> tuple[MemoryStore, dict[bytes, bytes]]:
    store = MemoryStore()
    omap = {f"key{i:03d}".encode(): bytes([i]) * 1000 for i in range(30)}
    txn = Transaction().create_collection(C)
    txn.write(C, "o", 0, b"head").write(C, "o", 3 * PART, b"tail")
    txn.setxattr(C, "o", "user.a", b"x").omap_set(C, "o", omap)
    await store.apply(txn)
    return store, omap


async def _copy(src: MemoryStore, dst: MemoryStore) -> int:
    """What PG._stream_copy and _push_part do, against two local stores; returns parts."""
    parts = []
    state, data = objcopy.read_copy(src, C, "o", 1, 0, 0, PART, page_bytes=PAGE)
    xattrs, more, after = list(state.xattrs), state.omap_more, b""
    while True:
        data_last = state.offset + len(data) >= state.size
        after = state.omap[-1].key if state.omap else after
        parts.append((state, data, data_last and not more))
        if data_last:
            break
        state, data = objcopy.read_copy(src, C, "o", 1, 0, state.offset + len(data), PART,
                                        page_bytes=PAGE)
    while more:
        state, data = objcopy.read_copy(src, C, "o", 1, 0, omap_after=after, page_bytes=PAGE)
        after, more = state.omap[-1].key, state.omap_more
        parts.append((state, data, not more))
    for state, data, last in parts:
        state.partial = not last
        del state.xattrs[:]
        if last:
            state.xattrs.extend(xattrs)
        assert sum(len(kv.key) + len(kv.value) for kv in state.omap) <= PAGE
        await dst.apply(objcopy.stage_copy(Transaction(), C, state, data))
    return len(parts)


async def test_a_copy_in_data_parts_and_omap_pages_rebuilds_the_object():
    src, omap = await _source()
    dst = MemoryStore()
    await dst.apply(Transaction().create_collection(C).write_full(C, "o", b"stale" * 5000)
                    .omap_set(C, "o", {b"stale": b"1"}))
    parts = await _copy(src, dst)
    assert parts > 4 + 1  # four data parts, then omap pages of their own
    assert dst.read(C, "o") == src.read(C, "o")
    assert dst.stat(C, "o").size == 3 * PART + 4
    assert dst.getxattrs(C, "o") == {"user.a": b"x"}
    items, more = dst.omap_list(C, "o", max_entries=1000)
    assert dict(items) == omap and not more


async def test_a_small_object_with_a_small_omap_is_one_part():
    src = MemoryStore()
    await src.apply(Transaction().create_collection(C).write_full(C, "o", b"x")
                    .omap_set(C, "o", {b"k": b"v"}))
    state, data = objcopy.read_copy(src, C, "o", 1, 0, 0, PART, page_bytes=PAGE)
    assert not state.omap_more and data == b"x" and len(state.omap) == 1
