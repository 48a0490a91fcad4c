"""Typed errors shared by every SDS component.

Each class has a stable `kind` name and an errno-style `code`; both cross the messenger,
and the receiver rebuilds the class from the kind. Why the kind: errnos collide (the
MDS's POSIX EPERM "not the owner" and a failed authentication are both EPERM), so the
errno alone cannot say which error came back. Each front door then maps classes to its
own codes with one table (CLI exit codes in sds/cli/errors.py, FUSE errno in
sds/fs/errnos.py, later gRPC status and S3 error codes).
"""

from __future__ import annotations

import errno as _errno

_BY_KIND: dict[str, type[SdsError]] = {}


class SdsError(Exception):
    """Base of all SDS errors; `code` is a positive errno value, `kind` the class's name
    on the wire (never change one: old peers would read it as a plain SdsError)."""

    code: int = _errno.EIO
    kind: str = "error"

    def __init_subclass__(cls, kind: str = "", **kwargs):
        super().__init_subclass__(**kwargs)
        if not kind:  # a refinement for local use: on the wire it is its base
            if SdsError in cls.__bases__:
                raise TypeError(f"{cls.__name__} needs a stable kind= name")
            return
        if kind in _BY_KIND:
            raise TypeError(f"error kind {kind!r} is taken by {_BY_KIND[kind].__name__}")
        cls.kind = kind
        _BY_KIND[kind] = cls

    def __init__(self, message: str = "", code: int | None = None):
        super().__init__(message or _errno.errorcode.get(code or self.code, "error"))
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


_BY_KIND[SdsError.kind] = SdsError


class NotFound(SdsError, kind="not_found"):
    code = _errno.ENOENT


class AlreadyExists(SdsError, kind="already_exists"):
    code = _errno.EEXIST


class InvalidArgument(SdsError, kind="invalid_argument"):
    code = _errno.EINVAL


class PermissionDenied(SdsError, kind="permission_denied"):
    code = _errno.EACCES


class AuthError(SdsError, kind="auth_error"):
    """Authentication failed: unknown entity or wrong key."""

    code = _errno.EPERM


class TimedOut(SdsError, kind="timed_out"):
    code = _errno.ETIMEDOUT


class TicketExpired(AuthError, kind="ticket_expired"):
    """A service ticket past its expiry: not a wrong key, renew it from the monitors."""

    code = _errno.ETIMEDOUT


class ChecksumError(SdsError, kind="checksum_error"):
    """Stored bytes do not match their CRC32C: never return them."""

    code = _errno.EIO


class CorruptMetadata(ChecksumError, kind="corrupt_metadata"):
    """A stored record (onode, xattr, omap entry, PG log, peering or monitor state) fails
    its CRC32C: it is never served; the OSD repairs it from a replica like a bad block."""


class Busy(SdsError, kind="busy"):
    code = _errno.EBUSY


class NotEmpty(SdsError, kind="not_empty"):
    code = _errno.ENOTEMPTY


class NoSpace(SdsError, kind="no_space"):
    code = _errno.ENOSPC


class Range(SdsError, kind="range"):
    code = _errno.ERANGE


class NoData(SdsError, kind="no_data"):
    """Attribute or key does not exist."""

    code = _errno.ENODATA


class Retry(SdsError, kind="retry"):
    """The receiver's view differs (wrong primary, stale map): refresh the map and resend."""

    code = _errno.EAGAIN


class Unavailable(SdsError, kind="unavailable"):
    """Not enough replicas or no quorum: the operation cannot proceed now."""

    code = _errno.EHOSTDOWN


class ConnectionLost(SdsError, kind="connection_lost"):
    code = _errno.ECONNRESET


class NotSupported(SdsError, kind="not_supported"):
    code = _errno.EOPNOTSUPP


class NotADirectory(SdsError, kind="not_a_directory"):
    code = _errno.ENOTDIR


class IsADirectory(SdsError, kind="is_a_directory"):
    code = _errno.EISDIR


class NameTooLong(SdsError, kind="name_too_long"):
    code = _errno.ENAMETOOLONG


class TooBig(SdsError, kind="too_big"):
    """A value or request larger than a configured limit (the message names the option)."""

    code = _errno.E2BIG


class CrossDevice(SdsError, kind="cross_device"):
    """A rename across filesystems, snapshots or quota roots: the caller copies instead."""

    code = _errno.EXDEV


class QuotaExceeded(SdsError, kind="quota_exceeded"):
    code = _errno.EDQUOT


class ReadOnly(SdsError, kind="read_only"):
    code = _errno.EROFS


class NotPermitted(SdsError, kind="not_permitted"):
    """POSIX EPERM (not the owner, sticky bit); shares its errno with AuthError, not its kind."""

    code = _errno.EPERM


class TooManyLinks(SdsError, kind="too_many_links"):
    code = _errno.EMLINK


class FileTooBig(SdsError, kind="file_too_big"):
    """A file or object would grow past its limit: max_file_size, osd_max_object_size."""

    code = _errno.EFBIG


class Blocklisted(SdsError, kind="blocklisted"):
    """This client instance was fenced off (evicted): it must reconnect as a new one."""

    code = _errno.ESHUTDOWN


class StaleSession(SdsError, kind="stale_session"):
    """The MDS no longer knows this session (evicted or expired): open a new one."""

    code = _errno.ESTALE


class ShuttingDown(SdsError, kind="shutting_down"):
    """The local client is going away: every pending and later request fails (EIO)."""

    code = _errno.EIO


class InternalError(SdsError, kind="internal"):
    """A bug in a request handler on the peer (logged there): not the caller's fault."""

    code = _errno.EIO


class Aborted(SdsError, kind="aborted"):
    """Another operation on the same object is still in flight: retry later (gRPC ABORTED)."""

    code = _errno.EALREADY


class FailedPrecondition(SdsError, kind="failed_precondition"):
    """The request is valid but the object is not in the state it needs (a volume not
    staged, snapshots still depending on it). Local only: never sent over the messenger."""

    code = _errno.EINVAL


class CompareFailed(SdsError, kind="compare_failed"):
    """A guarded write found the object not as the caller expected (Ceph's omap_cmp):
    nothing was changed; someone else changed it first."""

    code = _errno.ECANCELED


_BY_CODE: dict[int, type[SdsError]] = {}
for _cls in (
    NotFound, AlreadyExists, InvalidArgument, PermissionDenied, AuthError, TimedOut,
    ChecksumError, Busy, NotEmpty, NoSpace, Range, NoData, Retry, Unavailable,
    ConnectionLost, NotSupported, NotADirectory, IsADirectory, NameTooLong, CrossDevice,
    QuotaExceeded, ReadOnly, TooManyLinks, Blocklisted, FileTooBig, TooBig, Aborted,
    CompareFailed,
):
    _BY_CODE.setdefault(_cls.code, _cls)


def from_code(code: int, message: str = "") -> SdsError:
    """Rebuild a typed error from an errno alone (a peer that sent no kind)."""
    cls = _BY_CODE.get(code, SdsError)
    if cls is SdsError:
        return SdsError(message, code)
    return cls(message)


def from_wire(code: int, kind: str, message: str = "") -> SdsError:
    """Rebuild the typed error a peer sent: by its kind, keeping its errno."""
    cls = _BY_KIND.get(kind)
    if cls is None:
        return from_code(code, message)
    return cls(message, None if code == cls.code or code <= 0 else code)


def by_class(table: dict[type[SdsError], int], exc: SdsError) -> int:
    """A front door's code for an error: the row of its nearest listed class, unless it
    was raised with an errno of its own (`code=`), which it keeps, as a plain SdsError."""
    if exc.code != type(exc).code:
        return exc.code
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return exc.code


def code_name(code: int) -> str:
    return _errno.errorcode.get(code, str(code))

