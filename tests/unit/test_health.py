"""Health: the check type on the wire, the manager's checks, and what the mons add."""

from mon_helpers import boot, clean_digest, make_view, run

from sds.common.health import ERR, OK, WARN, HealthCheck, report, status_of
from sds.health import checks as mgr_health
from sds.mon.services.core import MGR_DOWN_AFTER_S
from sds.mon.services.health import health_checks


def test_a_check_reads_back_as_it_was_sent():
    check = HealthCheck("OSD_DOWN", WARN, "1 osd down", 1, ["osd.2 is down"], "restart it")
    assert HealthCheck.from_wire(check.to_wire()) == check
    bad = HealthCheck.from_wire({"code": "X"})
    assert bad.code == "HEALTH_REPORT_INVALID" and bad.severity == WARN


def test_status_is_the_worst_severity():
    warn = HealthCheck("A", WARN, "a", 1)
    err = HealthCheck("B", ERR, "b", 1)
    assert status_of([]) == OK and status_of([warn]) == WARN and status_of([warn, err]) == ERR
    assert report([warn], detail=False) == {"status": WARN, "checks": {
        "A": {"severity": WARN, "summary": {"message": "a", "count": 1}, "hint": ""}}}


def cluster():
    view = make_view()
    for i in range(3):
        boot(view, i, f"host{i}")
    run(view, {"prefix": "osd pool create", "pool": "rbd", "pg_num": 8})
    return view


def test_the_mons_answer_with_the_managers_checks_of_their_map():
    view = cluster()
    digest = clean_digest(view)
    mine = HealthCheck("PG_DEGRADED", WARN, "as the mgr saw it", 3, ["pg 1.0 ..."], "wait")
    view.digest = {**digest, "health": [mine.to_wire()], "health_epoch": view.osdmap.epoch}
    assert health_checks(view) == [mine]


def test_checks_of_an_older_map_are_judged_again_by_the_mons():
    view = cluster()
    stale = HealthCheck("PG_DEGRADED", WARN, "old", 1)
    view.digest = {**clean_digest(view), "health": [stale.to_wire()],
                   "health_epoch": view.osdmap.epoch}
    run(view, {"prefix": "osd down", "ids": [2]})
    codes = [c.code for c in health_checks(view)]
    assert "OSD_DOWN" in codes and "PG_DEGRADED" not in codes


def test_the_manager_and_the_fallback_compute_the_same_checks():
    view = cluster()
    view.digest = clean_digest(view)
    view.digest["pgs"][0]["state"] = "active+undersized+degraded"
    mgr = mgr_health.cluster_checks(mgr_health.MgrView(view.osdmap, view.digest, view.config))
    assert [c.code for c in mgr] == ["PG_DEGRADED"]
    assert health_checks(view) == mgr


def test_mgr_down_is_said_and_health_still_answers():
    view = cluster()
    view.digest = clean_digest(view)
    assert health_checks(view) == []
    view.mgr_report_age = MGR_DOWN_AFTER_S / 2
    assert health_checks(view) == []
    view.mgr_report_age = MGR_DOWN_AFTER_S + 5
    (check,) = health_checks(view)
    assert check.code == "MGR_DOWN" and check.severity == WARN
    assert "no report from the mgr" in check.summary
    out = run(view, {"prefix": "health", "detail": True})
    assert out["status"] == WARN and "last report" in out["checks"]["MGR_DOWN"]["detail"][0][
        "message"]
    view.digest = None  # no mgr ever reported to this monitor
    (check,) = [c for c in health_checks(view) if c.code == "MGR_DOWN"]
    assert check.summary.startswith("no mgr has reported")
