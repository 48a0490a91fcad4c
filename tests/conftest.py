"""Shared fixtures: local clusters of real daemon processes, always torn down.

    @pytest.mark.integration
    def test_x(cluster):               # a fresh cluster for this test
        cluster.kill("osd.1"); ...

    @pytest.mark.cluster_opts(osds=4, extra_conf={"osd_pool_default_size": 2})
    def test_y(cluster): ...           # cluster_up() keyword arguments for this test

`cluster_module` is one cluster shared by the tests of a module. Teardown runs
`cluster_down` and then kill -9s any daemon left whose conf lies in the cluster's
directory, even when start-up failed halfway. At session end a safety net kills any
`-m sds daemon` process whose conf lies under pytest's temporary directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sds.cluster.local import LocalCluster, find_daemon_processes

log = logging.getLogger("tests.cluster")

CLUSTER_TIMEOUT_S = float(os.environ.get("SDS_TEST_CLUSTER_TIMEOUT", "90"))
LOG_LINES_ON_FAILURE = 25


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster_opts(**kw): keyword arguments of cluster_up() for the cluster fixture")


def trouble_in_logs(cluster: LocalCluster, lines: int = LOG_LINES_ON_FAILURE) -> str:
    """The last warnings and errors of each daemon and mount log of a cluster."""
    parts = []
    for path in sorted((Path(cluster.dir) / "out").glob("*.*")):
        with contextlib.suppress(OSError):
            bad = [line for line in path.read_text(errors="replace").splitlines()
                   if " WARNING " in line or " ERROR " in line or "Traceback" in line]
            if bad:
                parts.append(f"--- {path.name}\n" + "\n".join(bad[-lines:]))
    return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test's report shows what its cluster's daemons complained about: CI
    keeps only this output."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, LocalCluster):
                text = trouble_in_logs(value)
                if text:
                    report.sections.append((f"daemon logs of {value.dir}", text))


def kill_leftovers(under: Path) -> list[int]:
    """kill -9 every SDS daemon whose conf lies under `under`; returns their pids."""
    pids = [pid for pid, _name, _conf in find_daemon_processes(under)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


HOST_DISK_THRESHOLDS = {"mon_data_avail_warn": 2, "mon_data_avail_crit": 1}


@contextlib.contextmanager
def running_cluster(dir: Path, **opts) -> Iterator[LocalCluster]:
    cluster = LocalCluster(dir)
    opts.setdefault("timeout", CLUSTER_TIMEOUT_S)
    opts.setdefault("progress", log.info)
    opts.setdefault("remember", False)
    opts.setdefault("mds", 0)  # no filesystem unless a test asks: keeps the others fast
    # the monitors share the host's disk with everything else on the machine (CI's disk
    # may be under Ceph's 30% warning): a test of MON_DISK_* gives its monitors their own
    # small filesystem and sets its own thresholds
    opts["extra_conf"] = {**HOST_DISK_THRESHOLDS, **(opts.get("extra_conf") or {})}
    try:
        cluster.up(**opts)
        yield cluster
    finally:
        try:
            cluster.down()
        finally:
            leftovers = kill_leftovers(dir)
            if leftovers:
                log.warning("killed leftover daemons %s in %s", leftovers, dir)


def _opts(request: pytest.FixtureRequest) -> dict:
    marker = request.node.get_closest_marker("cluster_opts")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A running cluster (3 mons, 3 OSDs, mgr) for one test."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), **_opts(request)) as c:
        yield c


@pytest.fixture(scope="module")
def cluster_module(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A running cluster shared by every test of one module."""
    opts = {}
    marker = request.module.__dict__.get("pytestmark")
    for m in marker if isinstance(marker, list) else [marker] if marker else []:
        if m.name == "cluster_opts":
            opts.update(m.kwargs)
    with running_cluster(tmp_path_factory.mktemp("cluster"), **opts) as c:
        yield c


@pytest.fixture(scope="session", autouse=True)
def _no_daemon_outlives_the_session(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    base = tmp_path_factory.getbasetemp()
    yield
    leftovers = kill_leftovers(base)
    if leftovers:
        log.warning("session end: killed leftover daemons %s under %s", leftovers, base)
