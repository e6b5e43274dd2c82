"""The runtime's log, as runc writes it for its clients.

``--log FILE`` appends to FILE (else stderr); ``--log-format json`` writes one JSON object
a line, ``{"level": ..., "msg": ..., "time": ...}`` (RFC 3339 time), which containerd's
shim and podman (``runtime_supports_json``) read back to show a failed command's error.
An error is also printed to stderr, one line, whatever the log says: the exit status is
1 then.
"""

from __future__ import annotations

import os
import sys

from nsbind.jsonlite import dumps
from nsbind.timestamps import rfc3339

TYPE_CHECKING = False  # not typing's: every runtime call makes a RuntimeLog

if TYPE_CHECKING:
    import logging

__all__ = ["RuntimeLog", "logger"]

#: runtime logs that capture() asked for, attached when something first logs
_pending: list[RuntimeLog] = []


def logger(name: str) -> logging.Logger:
    """The standard library's logger ``name``; the runtime logs :meth:`RuntimeLog.capture`
    asked for are attached to nsbind's logger first.  nsbind's modules log through this:
    a command that logs nothing does not import logging (a few ms of every call)."""
    import logging

    while _pending:
        log = _pending.pop(0)
        root = logging.getLogger("nsbind")
        root.addHandler(_forward(log))
        root.setLevel(logging.DEBUG if log.debug_on else logging.INFO)
    return logging.getLogger(name)


def _forward(log: RuntimeLog) -> logging.Handler:
    import logging

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log.write(record.levelname.lower(), record.getMessage())

    return Forward(logging.DEBUG if log.debug_on else logging.INFO)


class RuntimeLog:
    """Where and how messages go: ``path`` (None: stderr), ``fmt`` ``text`` or ``json``,
    ``debug`` whether debug messages are written at all."""

    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False):
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _line(self, level: str, msg: str) -> str:
        now = rfc3339()
        if self.fmt == "json":
            return dumps({"level": level, "msg": msg, "time": now}) + "\n"
        return f'time="{now}" level={level} msg={dumps(msg)}\n'

    def write(self, level: str, msg: str) -> None:
        """Append one message at ``level`` (debug, info, warning, error)."""
        if level == "debug" and not self.debug_on:
            return
        if self.path is None:
            plain = level == "error" and self.fmt == "text"
            sys.stderr.write(f"nsbind-oci: {msg}\n" if plain else self._line(level, msg))
            return
        line = self._line(level, msg)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
        except OSError as exc:
            sys.stderr.write(f"nsbind-oci: open log {self.path}: {exc.strerror}\n")
            sys.stderr.write(line)
            return
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line)

    def debug(self, msg: str) -> None:
        """A debug message (written with ``--debug`` only)."""
        self.write("debug", msg)

    def error(self, msg: str) -> None:
        """An error: to the log, and one line to stderr when the log is a file."""
        self.write("error", msg)
        if self.path is not None or self.fmt == "json":
            sys.stderr.write(f"nsbind-oci: {msg}\n")

    def capture(self) -> None:
        """Send what nsbind logs (logger ``nsbind``: a poststart hook that failed, a
        field ignored) here too, from the first message on (see :func:`logger`)."""
        _pending.append(self)
