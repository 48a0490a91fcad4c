"""The errno a FUSE caller sees for each SDS error class: the mount's one table.

Why a table rather than each error's own `code`: what an application sees is the
mount's decision, made in one place for every class (the other front doors, CLI exit
codes, gRPC status and S3 error codes, keep tables of their own), and a class added
later without a row still maps by its nearest listed base.
"""

from __future__ import annotations

import errno

from sds.common import errors as e

ERRNO: dict[type[e.SdsError], int] = {
    e.NotFound: errno.ENOENT,
    e.AlreadyExists: errno.EEXIST,
    e.InvalidArgument: errno.EINVAL,
    e.PermissionDenied: errno.EACCES,
    e.AuthError: errno.EPERM,
    e.TicketExpired: errno.ETIMEDOUT,
    e.NotPermitted: errno.EPERM,
    e.TimedOut: errno.ETIMEDOUT,
    e.ChecksumError: errno.EIO,
    e.CorruptMetadata: errno.EIO,
    e.Busy: errno.EBUSY,
    e.NotEmpty: errno.ENOTEMPTY,
    e.NoSpace: errno.ENOSPC,
    e.Range: errno.ERANGE,
    e.NoData: errno.ENODATA,
    e.Retry: errno.EAGAIN,
    e.Unavailable: errno.EHOSTDOWN,
    e.ConnectionLost: errno.ECONNRESET,
    e.NotSupported: errno.EOPNOTSUPP,
    e.NotADirectory: errno.ENOTDIR,
    e.IsADirectory: errno.EISDIR,
    e.NameTooLong: errno.ENAMETOOLONG,
    e.CrossDevice: errno.EXDEV,
    e.QuotaExceeded: errno.EDQUOT,
    e.ReadOnly: errno.EROFS,
    e.TooManyLinks: errno.EMLINK,
    e.FileTooBig: errno.EFBIG,
    e.Blocklisted: errno.ESHUTDOWN,
    e.StaleSession: errno.ESTALE,
    e.TooBig: errno.E2BIG,
    e.ShuttingDown: errno.EIO,
    e.InternalError: errno.EIO,
    e.Aborted: errno.EALREADY,
    e.FailedPrecondition: errno.EINVAL,
    e.CompareFailed: errno.ECANCELED,
}


def to_errno(exc: BaseException) -> int:
    """The errno for an exception: an SdsError by its class, an OSError keeps its errno,
    anything else is EIO."""
    if isinstance(exc, e.SdsError):
        code = e.by_class(ERRNO, exc)
        return code if code > 0 else errno.EIO
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO
