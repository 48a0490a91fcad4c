"""The one place where the CLI turns an exception into a stderr line and an exit code.

User errors (every `SdsError`, missing files, bad arguments) print one line,
``Error ENOENT: pool 'x' does not exist``, and exit with the errno; never a
traceback. Anything unexpected prints one line and exits 1; the traceback is
shown only with SDS_DEBUG=1.
"""

from __future__ import annotations

import errno
import os
import traceback
from typing import TextIO

from sds.common import errors as e
from sds.common.errors import (
    ConnectionLost,
    SdsError,
    TimedOut,
    Unavailable,
    code_name,
)

EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130

# The CLI's one table from error class to exit code (and the errno named on stderr):
# Ceph's convention, the errno; a class not listed maps by its nearest listed base.
EXIT_CODES: dict[type[SdsError], int] = {
    e.NotFound: errno.ENOENT, e.AlreadyExists: errno.EEXIST,
    e.InvalidArgument: errno.EINVAL, e.PermissionDenied: errno.EACCES,
    e.AuthError: errno.EPERM, e.TicketExpired: errno.ETIMEDOUT, e.NotPermitted: errno.EPERM,
    e.TimedOut: errno.ETIMEDOUT,
    e.ChecksumError: errno.EIO, e.CorruptMetadata: errno.EIO, e.Busy: errno.EBUSY,
    e.NotEmpty: errno.ENOTEMPTY,
    e.NoSpace: errno.ENOSPC, e.Range: errno.ERANGE, e.NoData: errno.ENODATA,
    e.Retry: errno.EAGAIN, e.Unavailable: errno.EHOSTDOWN,
    e.ConnectionLost: errno.ECONNRESET, e.NotSupported: errno.EOPNOTSUPP,
    e.NotADirectory: errno.ENOTDIR, e.IsADirectory: errno.EISDIR,
    e.NameTooLong: errno.ENAMETOOLONG, e.CrossDevice: errno.EXDEV,
    e.QuotaExceeded: errno.EDQUOT, e.ReadOnly: errno.EROFS,
    e.TooManyLinks: errno.EMLINK, e.FileTooBig: errno.EFBIG,
    e.Blocklisted: errno.ESHUTDOWN, e.StaleSession: errno.ESTALE, e.TooBig: errno.E2BIG,
    e.ShuttingDown: errno.EIO, e.InternalError: errno.EIO,
    e.Aborted: errno.EALREADY, e.FailedPrecondition: errno.EINVAL,
    e.CompareFailed: errno.ECANCELED,
}


# What to try next, for errors whose message alone does not say it.
HINTS: dict[type[SdsError], str] = {
    ConnectionLost: "is the cluster running? try `sds cluster status`",
    TimedOut: "is the cluster running and in quorum? try `sds cluster status`",
    Unavailable: "check `sds cluster status` and `sds health detail`",
}


def exit_code(exc: SdsError) -> int:
    return e.by_class(EXIT_CODES, exc)


def debug_enabled() -> bool:
    return os.environ.get("SDS_DEBUG", "") not in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(exc: BaseException) -> tuple[str, int]:
    """(the stderr line, the exit code) for an exception."""
    if isinstance(exc, SdsError):
        errno_ = exit_code(exc)
        code = errno_ if 0 < errno_ < 256 else EXIT_UNEXPECTED
        message = _one_line(exc.message)
        for cls, hint in HINTS.items():
            if isinstance(exc, cls) and hint not in message:
                message = f"{message} ({hint})"
                break
        return f"Error {code_name(errno_)}: {message}", code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, OSError) and exc.errno and 0 < exc.errno < 256:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"Error {code_name(exc.errno)}: {where}{exc.strerror or exc}", exc.errno
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return describe(exc.exceptions[0])
    text = _one_line(str(exc))
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    suffix = "" if debug_enabled() else " (set SDS_DEBUG=1 to see the traceback)"
    return f"Error: unexpected {detail}{suffix}", EXIT_UNEXPECTED


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return is_user_error(exc.exceptions[0])
    return isinstance(exc, SdsError | KeyboardInterrupt) or (
        isinstance(exc, OSError) and bool(exc.errno))


def report(exc: BaseException, stderr: TextIO) -> int:
    """Print the exception as one line (plus a traceback when debugging); return the exit code."""
    line, code = describe(exc)
    if debug_enabled() and not isinstance(exc, KeyboardInterrupt):
        traceback.print_exception(exc, file=stderr)
    print(line, file=stderr)
    stderr.flush()
    return code

