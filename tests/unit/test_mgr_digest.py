"""The mgr digest: a PG whose primary went silent or down is reported stale."""

from sds.mgr.daemon import STALE_AFTER_S, build_digest
from sds.proto import mon_pb2


def _report(osd: int, *pgs: tuple[int, str]) -> mon_pb2.OsdStats:
    st = mon_pb2.OsdStats(osd=osd)
    for ps, state in pgs:
        st.pgs.add(pool=1, pg=ps, state=state, acting=[osd])
    return st


def _states(digest: dict) -> dict[str, str]:
    return {pg["pgid"]: pg["state"] for pg in digest["pgs"]}


def test_pgs_of_a_silent_primary_turn_stale():
    now = 1000.0
    reports = {0: (now - STALE_AFTER_S - 1, _report(0, (0, "active+clean"))),
               1: (now, _report(1, (1, "active+clean")))}
    assert _states(build_digest(reports, None, now)) == {
        "1.0": "stale+active+clean", "1.1": "active+clean"}


def test_pgs_of_a_down_primary_turn_stale_until_a_new_primary_reports():
    now = 1000.0
    reports = {0: (now, _report(0, (0, "active+clean"), (1, "active+clean")))}
    assert _states(build_digest(reports, None, now, frozenset({0}))) == {
        "1.0": "stale+active+clean", "1.1": "stale+active+clean"}
    reports[1] = (now, _report(1, (1, "active+undersized+degraded")))
    digest = build_digest(reports, None, now, frozenset({0}))
    assert _states(digest) == {"1.0": "stale+active+clean", "1.1": "active+undersized+degraded"}
    assert "0" not in digest["osds"]
