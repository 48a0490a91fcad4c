"""The one place where SDS errors become CSI gRPC status codes, and the interceptor that
applies it (and logs each call with its secrets stripped).

Handlers raise the typed errors of sds.common.errors for the conditions of the spec's
per-RPC tables (a missing field is InvalidArgument, an operation in flight on the same
volume Aborted, an unstaged volume FailedPrecondition, ...); nothing else in sds/csi/
chooses a status code.
"""

from __future__ import annotations

import logging
import time

import grpc
from google.protobuf import text_format
from google.protobuf.message import Message

from sds.common import errors as e
from sds.proto import csi_pb2

log = logging.getLogger("sds.csi")

S = grpc.StatusCode
# error class -> status, for every RPC; PER_RPC below overrides a row for one RPC
TABLE: dict[type[BaseException], grpc.StatusCode] = {
    NotImplementedError: S.UNIMPLEMENTED,  # an RPC of a capability not offered
    e.InvalidArgument: S.INVALID_ARGUMENT,
    e.NameTooLong: S.INVALID_ARGUMENT,
    e.NotFound: S.NOT_FOUND,
    e.AlreadyExists: S.ALREADY_EXISTS,
    e.Range: S.OUT_OF_RANGE,              # unsatisfiable capacity_range
    e.NoSpace: S.RESOURCE_EXHAUSTED,      # no room in the pool
    e.QuotaExceeded: S.RESOURCE_EXHAUSTED,
    e.Aborted: S.ABORTED,                 # an operation on the same volume is in flight
    e.CompareFailed: S.ABORTED,           # another controller changed the journal first
    e.FailedPrecondition: S.FAILED_PRECONDITION,
    e.NotEmpty: S.FAILED_PRECONDITION,
    e.Busy: S.FAILED_PRECONDITION,
    e.NotSupported: S.INVALID_ARGUMENT,   # e.g. a block access type
    e.TooBig: S.INVALID_ARGUMENT,         # a name or value past a limit
    e.PermissionDenied: S.PERMISSION_DENIED,
    e.AuthError: S.UNAUTHENTICATED,
    e.Unavailable: S.UNAVAILABLE,         # the cluster cannot be reached: retry
    e.TimedOut: S.UNAVAILABLE,
    e.ConnectionLost: S.UNAVAILABLE,
    e.Blocklisted: S.UNAVAILABLE,
    e.ReadOnly: S.FAILED_PRECONDITION,
    e.NotADirectory: S.FAILED_PRECONDITION,  # e.g. a subvolume group that is a file
}
PER_RPC: dict[tuple[str, type[BaseException]], grpc.StatusCode] = {
    # NodeExpandVolume: a capacity past what the volume has is OUT_OF_RANGE, as in Create
    ("ControllerExpandVolume", e.NoSpace): S.OUT_OF_RANGE,
}


def status_of(method: str, exc: BaseException) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = PER_RPC.get((method, cls)) or TABLE.get(cls)  # type: ignore[arg-type]
        if code is not None:
            return code
    return S.INTERNAL


def _is_secret(field) -> bool:
    return field.GetOptions().Extensions[csi_pb2.csi_secret]


def redacted(msg: Message) -> str:
    """The request as one log line, every field the spec marks csi_secret emptied
    (recursively), so keys in `secrets` never reach a log."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    _strip(copy)
    return text_format.MessageToString(copy, as_one_line=True)


def _strip(msg: Message) -> None:
    for field, value in msg.ListFields():
        if _is_secret(field):
            is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
            keys = list(value) if is_map else []
            msg.ClearField(field.name)
            if is_map:  # the key names are no secret, their values are
                getattr(msg, field.name).update(dict.fromkeys(keys, "***"))
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in [value] if isinstance(value, Message) else value:
                _strip(item)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Runs every unary CSI handler: typed errors -> the table's status, anything else
    INTERNAL (logged with its traceback), each call logged without its secrets."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        async def call(request, context):
            t0 = time.monotonic()
            try:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s %s", method, redacted(request))
                reply = await inner(request, context)
            except (grpc.RpcError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                code = status_of(method, exc)
                if code == S.INTERNAL:
                    log.exception("%s failed", method)
                else:
                    log.info("%s -> %s: %s (%.3fs)", method, code.name, exc,
                             time.monotonic() - t0)
                await context.abort(code, str(exc) or type(exc).__name__)
            log.info("%s ok (%.3fs)", method, time.monotonic() - t0)
            return reply

        return grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
