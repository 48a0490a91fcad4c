"""Testing hook: make one store commit of the PG pipeline fail, as a failing disk would.

`osd_inject_commit_failure = STEP:N` fails the N-th commit of STEP (write: a client
write on the primary, repop: its copy on a replica, push: a recovered object, peering:
peering state alone) once per data directory: a marker file remembers that it fired,
so the OSD restarted after the failure runs clean.
"""

from __future__ import annotations

from pathlib import Path

from sds.common.errors import InvalidArgument, SdsError

STEPS = ("write", "repop", "push", "peering")


class CommitFaults:
    def __init__(self, spec: str, data_dir: Path):
        self.step, self.nth, self.seen = "", 0, 0
        if not spec:
            return
        step, _, nth = spec.partition(":")
        if step not in STEPS or not nth.isdigit() or int(nth) < 1:
            raise InvalidArgument(f"osd_inject_commit_failure {spec!r}: expected STEP:N with "
                                  f"STEP one of {', '.join(STEPS)}")
        self.step, self.nth = step, int(nth)
        self.marker = data_dir / f"injected-commit-failure-{step}"

    def check(self, step: str) -> None:
        """Raise for the chosen commit (before it reaches the store)."""
        if step != self.step:
            return
        self.seen += 1
        if self.seen == self.nth and not self.marker.exists():
            self.marker.write_text(f"{step}:{self.nth}\n")
            raise SdsError(f"injected store failure ({step} commit {self.nth})")
