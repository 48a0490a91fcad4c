"""Striper arithmetic: how a byte range maps onto objects (pure, no cluster)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sds.client.striper import Striper
from sds.fsrules.layout import object_name

STRIPE = 4 << 20


def test_object_names_sort_by_inode_then_index():
    assert object_name(0x1234, 7) == "0000000000001234.00000007"
    assert object_name(1, 0x400) == "0000000000000001.00000400"  # 4 GiB = object 1024


def test_extents_split_at_object_boundaries():
    s = Striper(ioctx=None, stripe_size=STRIPE)  # type: ignore[arg-type]
    assert list(s.extents(STRIPE - 10, 30)) == [(0, STRIPE - 10, 0, 10), (1, 0, 10, 20)]
    assert list(s.extents(5 << 30, 1)) == [(1280, 0, 0, 1)]
    assert list(s.extents(100, 0)) == []


@settings(deadline=None)
@given(st.integers(0, 1 << 44), st.integers(0, 3 * STRIPE), st.integers(4096, 1 << 23))
def test_extents_cover_the_range_exactly(offset, length, stripe):
    s = Striper(ioctx=None, stripe_size=stripe)  # type: ignore[arg-type]
    pos = offset
    for index, in_obj, at, n in s.extents(offset, length):
        assert index * stripe + in_obj == pos and at == pos - offset
        assert 0 < n and in_obj + n <= stripe
        pos += n
    assert pos == offset + length
