"""Request errors as the log shows them: a malformed request is the sender's fault (EINVAL,
a short reason, no traceback); an internal error gets its traceback once per distinct
error, then a count, so one bad client cannot flood the log with a traceback per request.
"""

from __future__ import annotations

import errno
import logging
import traceback

from google.protobuf.message import DecodeError

MAX_REASON = 200
MAX_DISTINCT = 256       # remembered error sites; beyond that, counted as one
REPEAT_EVERY = 1000      # a repeated error is logged again (one line) every this many times


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(EINVAL, reason) when the request itself was malformed, else None."""
    if isinstance(exc, DecodeError):
        return errno.EINVAL, f"malformed request: {_short(exc) or 'undecodable protobuf'}"
    if isinstance(exc, RecursionError):
        return errno.EINVAL, "malformed request: nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return errno.EINVAL, "malformed request: invalid UTF-8"
    return None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."


class ErrorLog:
    """Logs the traceback of each distinct internal error (type and raising line) once."""

    def __init__(self, logger: logging.Logger):
        self.log = logger
        self.counts: dict[tuple, int] = {}

    def internal(self, what: str, exc: BaseException) -> str:
        """Log an unexpected exception; returns the short reason to send back."""
        tb = traceback.extract_tb(exc.__traceback__)
        site = (type(exc).__name__,) + ((tb[-1].filename, tb[-1].lineno) if tb else ())
        if site not in self.counts and len(self.counts) >= MAX_DISTINCT:
            site = ("other",)
        n = self.counts[site] = self.counts.get(site, 0) + 1
        if n == 1:
            self.log.error("%s failed: %s", what, _short(exc), exc_info=exc)
        elif n % REPEAT_EVERY == 0:
            self.log.error("%s failed: %s (%d times so far; traceback logged the first time)",
                           what, _short(exc), n)
        return f"internal error: {type(exc).__name__}: {_short(exc)}"
