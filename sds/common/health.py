"""The health-check type: what every health producer (mgr, mon, MDS beacons) reports.

A check has a stable code (like Ceph's: OSD_DOWN, PG_DEGRADED, ...), a severity, a
one-line summary with a count, one detail line per affected daemon, PG or pool, and a
hint that says what to do. Why one type shared by the processes: the mgr computes
most checks and the mons answer `sds health`, so the check crosses the wire
(`to_wire`/`from_wire`) and must read back exactly as it was computed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

OK, WARN, ERR = "HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"
SEVERITIES = (WARN, ERR)


@dataclass
class HealthCheck:
    code: str
    severity: str
    summary: str
    count: int
    detail: list[str] = field(default_factory=list)
    hint: str = ""

    def to_dict(self, detail: bool) -> dict:
        """The check as `sds health [detail]` shows it (Ceph's JSON layout)."""
        out = {"severity": self.severity,
               "summary": {"message": self.summary, "count": self.count},
               "hint": self.hint}
        if detail:
            out["detail"] = [{"message": line} for line in self.detail]
        return out

    def to_wire(self) -> dict:
        return {"code": self.code, "severity": self.severity, "summary": self.summary,
                "count": self.count, "detail": list(self.detail), "hint": self.hint}

    @classmethod
    def from_wire(cls, raw: dict) -> HealthCheck:
        """Read back a reported check; a malformed one is a check of its own, never lost."""
        try:
            severity = str(raw["severity"])
            return cls(str(raw["code"]), severity if severity in SEVERITIES else WARN,
                       str(raw["summary"]), int(raw.get("count", 0)),
                       [str(line) for line in raw.get("detail") or []], str(raw.get("hint", "")))
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls("HEALTH_REPORT_INVALID", WARN, "a health check could not be read", 1,
                       [repr(raw)[:200]], "the mgr and the mons run different versions?")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def status_of(checks: Iterable[HealthCheck]) -> str:
    """HEALTH_ERR if any check is an error, HEALTH_WARN if any fails, else HEALTH_OK."""
    status = OK
    for check in checks:
        if check.severity == ERR:
            return ERR
        status = WARN
    return status


def report(checks: list[HealthCheck], detail: bool) -> dict:
    """The answer of `health`: overall status and the failing checks by code."""
    return {"status": status_of(checks), "checks": {c.code: c.to_dict(detail) for c in checks}}
