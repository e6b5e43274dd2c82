"""A forked child's answer over a pipe, with a deadline: what nsbind runs in a child it
may have to give up on (a libseccomp compilation that never returns, doctor's probes)."""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn
__all__ = ["answer_and_exit", "read_until", "write_all"]


def answer_and_exit(read_end: int, write_end: int, answer: Callable[[], bytes]) -> NoReturn:
    """In the forked child: close the parent's end, write ``answer()`` and _exit (status
    0; 1 if it raised): the child never returns into the caller's code, nor runs atexit."""
    status = 1
    try:
        os.close(read_end)
        write_all(write_end, answer())
        status = 0
    finally:
        os._exit(status)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_until(fd: int, deadline: float) -> bytes | None:
    """All of the pipe ``fd`` until its writer closes it; None at ``deadline``
    (``time.monotonic()``), when the caller ends the writer."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
