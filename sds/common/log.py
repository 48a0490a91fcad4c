"""Structured logs: one line per event, with the daemon's name.

    2026-11-26T15:00:00.123Z osd.1 INFO pg_peered pg=1.2a acting=[1,0,2] ms=12

Use `log_event(logger, "pg_peered", pg=..., acting=...)`; plain `logger.info("text")`
works too and is rendered on the same single line. Values of fields that name secrets
(key, secret, proof, token, and names ending in `_key`, `_secret`, ...) are never
written: they appear as `key=<redacted>`. Exceptions are folded onto the event's line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

SECRET_NAMES = frozenset({"key", "secret", "proof", "token", "password"})
REDACTED = "<redacted>"
FIELDS_ATTR = "sds_fields"


def is_secret(name: str) -> bool:
    lowered = name.lower()
    if lowered in SECRET_NAMES:
        return True
    return any(lowered.endswith("_" + s) for s in SECRET_NAMES)


def format_value(value: Any) -> str:
    """Bare when unambiguous, else JSON-quoted, so a line always splits back into fields."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple | set):
        text = "[" + ",".join(format_value(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    else:
        text = str(value)
    if text == "" or any(c.isspace() or c in '"=' for c in text) or not text.isprintable():
        return json.dumps(text)
    return text


def format_fields(fields: Mapping[str, Any]) -> str:
    parts = []
    for name, value in fields.items():
        shown = REDACTED if is_secret(name) else format_value(value)
        parts.append(f"{name}={shown}")
    return " ".join(parts)


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class EventFormatter(logging.Formatter):
    """`<UTC time> <entity> <LEVEL> <event> k=v ...`, always exactly one line."""

    def __init__(self, entity: str):
        super().__init__()
        self.entity = entity

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields = getattr(record, FIELDS_ATTR, None)
        if fields:
            message = f"{message} {format_fields(fields)}"
        if record.exc_info and record.exc_info[0] is not None:
            exc = record.exc_info[1]
            trace = self.formatException(record.exc_info)
            extra = {"exc": f"{type(exc).__name__}: {exc}", "traceback": trace}
            message = f"{message} {format_fields(extra)}"
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        return f"{_timestamp(record.created)} {self.entity} {record.levelname} {message}"


class FileOrStderrHandler(logging.FileHandler):
    """A log file that sends a record it cannot write (disk full, I/O error) to stderr
    instead: the reason a daemon stops must not be lost with its log."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        try:
            error = sys.exc_info()[1]
            line = self.format(record)
            sys.stderr.write(f"{line} log_write_failed={format_value(str(error))}\n")
            sys.stderr.flush()
        except Exception:  # stderr is gone too: nothing is left to tell
            pass

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:  # already told on stderr, record by record
            pass

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            pass


def setup_logging(
    entity: str, log_file: str | None = None, level: str | int = "INFO"
) -> logging.Logger:
    """Send every logger's records to `log_file` (appending) or stderr, one line each.

    Replaces handlers installed by an earlier call, so it can be called again after
    the configuration is known. Returns the logger named after the entity.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if log_file:
        handler: logging.Handler = FileOrStderrHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter(entity))
    root.addHandler(handler)
    root.setLevel(_level(level))
    return logging.getLogger(entity)


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


def log_event(
    logger: logging.Logger,
    event: str,
    /,
    *,
    level: str | int = logging.INFO,
    exc_info: Any = None,
    **fields: Any,
) -> None:
    """Log one event with key=value fields. `level` and `exc_info` are not fields."""
    lvl = _level(level)
    if logger.isEnabledFor(lvl):
        logger.log(lvl, event, exc_info=exc_info, extra={FIELDS_ATTR: fields}, stacklevel=2)
