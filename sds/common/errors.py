"""Typed errors shared by every SDS component.

Each error carries an errno-style code so it can cross the messenger as an integer
and be mapped to exit codes, FUSE errno, gRPC status or S3 codes in one table each.
"""

from __future__ import annotations

import errno as _errno


class SdsError(Exception):
    """Base of all SDS errors; `code` is a positive errno value."""

    code: int = _errno.EIO

    def __init__(self, message: str = "", code: int | None = None):
        super().__init__(message or _errno.errorcode.get(code or self.code, "error"))
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class NotFound(SdsError):
    code = _errno.ENOENT


class AlreadyExists(SdsError):
    code = _errno.EEXIST


class InvalidArgument(SdsError):
    code = _errno.EINVAL


class PermissionDenied(SdsError):
    code = _errno.EACCES


class AuthError(SdsError):
    """Authentication failed: unknown entity or wrong key."""

    code = _errno.EPERM


class TimedOut(SdsError):
    code = _errno.ETIMEDOUT


class ChecksumError(SdsError):
    """Stored bytes do not match their CRC32C: never return them."""

    code = _errno.EIO


class Busy(SdsError):
    code = _errno.EBUSY


class NotEmpty(SdsError):
    code = _errno.ENOTEMPTY


class NoSpace(SdsError):
    code = _errno.ENOSPC


class Range(SdsError):
    code = _errno.ERANGE


class NoData(SdsError):
    """Attribute or key does not exist."""

    code = _errno.ENODATA


class Retry(SdsError):
    """The receiver's view differs (wrong primary, stale map): refresh the map and resend."""

    code = _errno.EAGAIN


class Unavailable(SdsError):
    """Not enough replicas or no quorum: the operation cannot proceed now."""

    code = _errno.EHOSTDOWN


class ConnectionLost(SdsError):
    code = _errno.ECONNRESET


class NotSupported(SdsError):
    code = _errno.EOPNOTSUPP


_BY_CODE: dict[int, type[SdsError]] = {}
for _cls in (
    NotFound, AlreadyExists, InvalidArgument, PermissionDenied, AuthError, TimedOut,
    ChecksumError, Busy, NotEmpty, NoSpace, Range, NoData, Retry, Unavailable,
    ConnectionLost, NotSupported,
):
    _BY_CODE.setdefault(_cls.code, _cls)


def from_code(code: int, message: str = "") -> SdsError:
    """Rebuild a typed error from an errno code received over the wire."""
    cls = _BY_CODE.get(code, SdsError)
    if cls is SdsError:
        return SdsError(message, code)
    return cls(message)


def code_name(code: int) -> str:
    return _errno.errorcode.get(code, str(code))
