"""A container's log in Docker's json-file format: one JSON object per line,
``{"log":"text\\n","stream":"stdout","time":"2026-11-30T19:40:01.123456789Z"}``.

Rules (as Docker's json-file driver):

- ``log`` keeps the line's trailing newline; a line longer than 16 KiB is split into
  16 KiB pieces without one (as Docker's 16 KiB copy buffer does), cut at a UTF-8
  character boundary where one is near; output not yet ended by a newline waits in a
  per-stream buffer until it is, or until :meth:`LogWriter.flush` writes it as is.
- Bytes that are not UTF-8 become U+FFFD; ``<``, ``>``, ``&``, U+2028 and U+2029 are
  escaped as Go's encoder does; ``time`` is UTC with nine fractional digits.
- The file is capped at ``max_bytes``: the first line that would not fit is replaced
  by one final ``stderr`` entry saying the log is full, and everything after it is
  dropped (the space for that notice is kept free, so the file never exceeds the cap).

Files are opened with O_NOFOLLOW and fstat-checked to be regular (a symlink, a FIFO
or a device is refused, and opening a FIFO does not hang).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time
from typing import NamedTuple

from nsbind.engine.errors import EngineError
from nsbind.timestamps import rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["DEFAULT_MAX_BYTES", "MAX_LINE", "LogEntry", "LogWriter", "format_entry",
           "read_log"]

DEFAULT_MAX_BYTES = 64 << 20  #: the default cap on a log file
MAX_LINE = 16 << 10           #: the longest ``log`` piece, in bytes (Docker's buffer)
STREAMS = ("stdout", "stderr")
_BLOCK = 64 << 10             # read size (backwards for tail, forwards otherwise)
_MAX_RECORD = 1 << 20         # a line longer than this on disk is malformed: skipped
_POLL = 0.05                  # follow: seconds between looks at the file
_NOTICE_ROOM = 256            # bytes kept free for the "log full" entry
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029", "\b": "\\u0008", "\f": "\\u000c"}
_GO_TABLE = str.maketrans(_GO_ESCAPES)


class LogEntry(NamedTuple):
    """One line of the log: ``stream`` (stdout/stderr), ``text`` (with its newline,
    if it had one) and ``time`` (the RFC 3339 string as stored)."""

    stream: str
    text: str
    time: str


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_GO_TABLE)


def _encode(stream: str, text: str, stamp: str) -> bytes:
    return (f'{{"log":{_quote(text)},"stream":"{stream}","time":"{stamp}"}}\n'
            .encode("utf-8", "surrogatepass"))


def _cut(data: bytes, limit: int) -> int:
    """Where to split ``data`` (longer than ``limit``): at ``limit``, moved back to the
    start of a UTF-8 character if one starts within the last 3 bytes."""
    for i in range(limit, max(limit - 3, 0), -1):
        if data[i] & 0xC0 != 0x80:
            return i
    return limit


def _open_regular(path: str, flags: int, mode: int = 0o640) -> int:
    """Open without following a symlink and without blocking on a FIFO; the fd must be
    a regular file (EngineError otherwise)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EngineError(f"log file {path} is a symbolic link: refused",
                              err=exc.errno) from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing
            raise EngineError(f"log file {path} is not a regular file",
                              err=exc.errno) from None
        raise EngineError(f"cannot open log file {path}: {exc.strerror}",
                          err=exc.errno) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise EngineError(f"log file {path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


class LogWriter:
    """Appends entries to a json-file log (created 0640 if missing; O_APPEND, so
    several writers interleave whole lines).  Thread-safe: the stdout and stderr
    pumps may share one writer."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= _NOTICE_ROOM:
            raise ValueError(f"max_bytes must be more than {_NOTICE_ROOM}, not {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self._fd = _open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size
        #: True once the cap was reached: what is written now is dropped
        self.full = self._size > max_bytes - _NOTICE_ROOM
        self._pending = {s: b"" for s in STREAMS}
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._fd

    def write(self, stream: str, data: bytes) -> None:
        """Log ``data`` of ``stream`` (``stdout`` or ``stderr``): every complete line,
        and 16 KiB pieces of a longer one; the rest waits for its newline."""
        if stream not in STREAMS:
            raise ValueError(f"stream must be stdout or stderr, not {stream!r}")
        with self._lock:
            self._check_open()
            buf = self._pending[stream] + data
            pieces: list[bytes] = []
            start = 0
            while True:
                nl = buf.find(b"\n", start, start + MAX_LINE)
                if nl >= 0:
                    pieces.append(buf[start:nl + 1])
                    start = nl + 1
                elif len(buf) - start > MAX_LINE:
                    end = start + _cut(buf[start:], MAX_LINE)
                    pieces.append(buf[start:end])
                    start = end
                else:
                    break
            self._pending[stream] = buf[start:]
            self._emit(stream, pieces)

    def flush(self) -> None:
        """Write what waits for a newline, as is (a partial line)."""
        with self._lock:
            self._check_open()
            for stream in STREAMS:
                rest, self._pending[stream] = self._pending[stream], b""
                if rest:
                    self._emit(stream, [rest])

    def close(self) -> None:
        """Flush, then close the file (a second close does nothing)."""
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError(f"log writer for {self.path} is closed")

    def _emit(self, stream: str, pieces: list[bytes]) -> None:
        if self.full or not pieces:
            return
        stamp = rfc3339()
        out = bytearray()
        for piece in pieces:
            line = _encode(stream, piece.decode("utf-8", "replace"), stamp)
            if self._size + len(out) + len(line) > self.max_bytes - _NOTICE_ROOM:
                self.full = True
                out += _encode("stderr", f"nsbind: log file full ({self.max_bytes} bytes): "
                               "further output is dropped\n", stamp)
                break
            out += line
        self._write_all(bytes(out))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]


def _parse(line: bytes) -> LogEntry | None:
    try:
        obj = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both
        return None
    if not isinstance(obj, dict):
        return None
    stream, text, stamp = obj.get("stream"), obj.get("log"), obj.get("time")
    if not (isinstance(stream, str) and isinstance(text, str) and isinstance(stamp, str)):
        return None
    return LogEntry(stream, text, stamp)


def _backwards(fd: int, end: int) -> Iterator[tuple[int, bytes | None]]:
    """The ``\\n``-separated pieces of bytes [0, end), last first, each with its start
    offset (the first one is what follows the last newline); a piece longer than
    _MAX_RECORD comes as None."""
    pos, rest, oversize = end, b"", False
    while pos > 0:
        n = min(_BLOCK, pos)
        pos -= n
        parts = (os.pread(fd, n, pos) + rest).split(b"\n")
        rest = parts[0]
        found: list[tuple[int, bytes | None]] = []
        offset = pos + len(rest) + 1
        for part in parts[1:]:
            found.append((offset, part))
            offset += len(part) + 1
        if oversize and found:  # the end of the piece whose start was dropped
            found[-1] = (found[-1][0], None)
            oversize = False
        yield from reversed(found)
        if len(rest) > _MAX_RECORD:
            rest, oversize = b"", True
    yield 0, None if oversize else rest


def _tail_start(fd: int, size: int, tail: int) -> tuple[list[LogEntry], int]:
    """The last ``tail`` entries among the complete lines, and where complete lines end."""
    pieces = _backwards(fd, size)
    torn_start, _ = next(pieces)  # what follows the last newline: not yet a line
    found: list[LogEntry] = []
    if tail > 0:
        for _, piece in pieces:
            entry = None if piece is None else _parse(piece)
            if entry is not None:
                found.append(entry)
                if len(found) == tail:
                    break
    found.reverse()
    return found, torn_start


class _Forward:
    """Reads complete lines from ``offset`` on; a torn last line waits in ``pending``.
    A line over _MAX_RECORD is dropped as malformed (its bytes are not kept)."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd, self.offset = fd, offset
        self.pending = bytearray()
        self.skipping = False  # inside an oversize line: drop bytes up to its newline

    def restart(self) -> None:
        self.offset, self.skipping = 0, False
        self.pending.clear()

    def read(self) -> list[LogEntry]:
        out: list[LogEntry] = []
        while chunk := os.pread(self.fd, _BLOCK, self.offset):
            self.offset += len(chunk)
            self.pending += chunk
            start = 0
            while (nl := self.pending.find(b"\n", start)) >= 0:
                if not self.skipping and nl - start <= _MAX_RECORD:
                    entry = _parse(bytes(self.pending[start:nl]))
                    if entry is not None:
                        out.append(entry)
                self.skipping = False
                start = nl + 1
            del self.pending[:start]
            if len(self.pending) > _MAX_RECORD:
                self.pending.clear()
                self.skipping = True
        return out


def read_log(path: str, *, tail: int | None = None, follow: bool = False,
             stop: Callable[[], bool] | None = None) -> Iterator[LogEntry]:
    """The entries of a json-file log, oldest first.

    ``tail=N`` gives only the last N (found reading back from the end in blocks);
    ``follow`` then keeps yielding lines as they are appended (a look every 50 ms)
    until ``stop()`` returns True, after one last read.  A torn last line (the
    writer is mid-write) is yielded only once complete; a malformed line is skipped.
    A file truncated under a follower is read again from its start."""
    if tail is not None and tail < 0:
        raise ValueError(f"tail must be >= 0, not {tail}")
    fd = _open_regular(path, os.O_RDONLY)
    try:
        offset = 0
        if tail is not None:
            entries, offset = _tail_start(fd, os.fstat(fd).st_size, tail)
            yield from entries
        reader = _Forward(fd, offset)
        yield from reader.read()
        stopping = False
        while follow:
            if os.fstat(fd).st_size < reader.offset:  # truncated: start over
                reader.restart()
            entries = reader.read()
            if entries:
                yield from entries
                continue
            if stopping:
                return
            stopping = stop is not None and stop()
            if not stopping:
                time.sleep(_POLL)
    finally:
        os.close(fd)


def format_entry(e: LogEntry, timestamps: bool = False) -> bytes:
    """The entry's text as ``docker logs`` prints it (``-t``: its time and a space first)."""
    text = f"{e.time} {e.text}" if timestamps else e.text
    return text.encode("utf-8", "replace")
