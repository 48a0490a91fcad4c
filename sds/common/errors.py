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


class TicketExpired(AuthError):
    """A service ticket past its expiry: not a wrong key, renew it from the monitors."""

    code = _errno.ETIMEDOUT


class ChecksumError(SdsError):
    """Stored bytes do not match their CRC32C: never return them."""

    code = _errno.EIO


class CorruptMetadata(ChecksumError):
    """A stored record (onode, xattr, omap entry, PG log, peering or monitor state) fails
    its CRC32C: it is never served; the OSD repairs it from a replica like a bad block."""


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


class NotADirectory(SdsError):
    code = _errno.ENOTDIR


class IsADirectory(SdsError):
    code = _errno.EISDIR


class NameTooLong(SdsError):
    code = _errno.ENAMETOOLONG


class TooBig(SdsError):
    """A value or request larger than a configured limit (the message names the option)."""

    code = _errno.E2BIG


class CrossDevice(SdsError):
    """A rename across filesystems, snapshots or quota roots: the caller copies instead."""

    code = _errno.EXDEV


class QuotaExceeded(SdsError):
    code = _errno.EDQUOT


class ReadOnly(SdsError):
    code = _errno.EROFS


class NotPermitted(SdsError):
    """POSIX EPERM (not the owner, sticky bit); on the wire it reads back as AuthError's code."""

    code = _errno.EPERM


class TooManyLinks(SdsError):
    code = _errno.EMLINK


class FileTooBig(SdsError):
    """A file or object would grow past its limit: max_file_size, osd_max_object_size."""

    code = _errno.EFBIG


class Blocklisted(SdsError):
    """This client instance was fenced off (evicted): it must reconnect as a new one."""

    code = _errno.ESHUTDOWN


class Aborted(SdsError):
    """Another operation on the same object is still in flight: retry later (gRPC ABORTED)."""

    code = _errno.EALREADY


class FailedPrecondition(SdsError):
    """The request is valid but the object is not in the state it needs (a volume not
    staged, snapshots still depending on it). Local only: never sent over the messenger."""

    code = _errno.EINVAL


_BY_CODE: dict[int, type[SdsError]] = {}
for _cls in (
    NotFound, AlreadyExists, InvalidArgument, PermissionDenied, AuthError, TimedOut,
    ChecksumError, Busy, NotEmpty, NoSpace, Range, NoData, Retry, Unavailable,
    ConnectionLost, NotSupported, NotADirectory, IsADirectory, NameTooLong, CrossDevice,
    QuotaExceeded, ReadOnly, TooManyLinks, Blocklisted, FileTooBig, TooBig, Aborted,
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


def to_errno(exc: BaseException) -> int:
    """The errno a POSIX caller (the FUSE client) sees for an exception: typed errors carry
    their own, OSErrors keep theirs, anything unexpected is EIO."""
    if isinstance(exc, SdsError) and 0 < exc.code:
        return exc.code
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return _errno.EIO
