"""A daemon's log line that cannot be written to its file (disk full) goes to stderr."""

from __future__ import annotations

import errno
import logging

from sds.common.log import FileOrStderrHandler, log_event, setup_logging


class FullDisk:
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        pass


def test_unwritable_log_line_goes_to_stderr(tmp_path, capsys):
    logger = setup_logging("osd.4", str(tmp_path / "osd.4.log"))
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, FileOrStderrHandler)
    log_event(logger, "written")
    handler.stream = FullDisk()
    try:
        log_event(logger, "daemon_exit", code=1)
        err = capsys.readouterr().err
        assert "osd.4 INFO daemon_exit code=1" in err
        assert 'log_write_failed="[Errno 28] No space left on device"' in err
        assert "Traceback" not in err
    finally:
        setup_logging("test")
    assert "written" in (tmp_path / "osd.4.log").read_text()
