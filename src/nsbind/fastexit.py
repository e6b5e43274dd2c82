"""Ending a command without the interpreter's shutdown.

A command that has done its work still pays for Python's finalization: a full garbage
collection and the teardown of every module it imported, some 15 ms here after the
hundred and fifty modules of a container's start (as much as a light runtime command
takes in all).  :func:`exit_now` flushes stdout and stderr and ends the process with
``_exit(2)`` when nothing waits for that shutdown; otherwise it exits as ``sys.exit``
does.  Something waits when another non-daemon thread is alive (the interpreter would
join it), when an ``atexit`` callback is registered (logging flushes its handlers in
one, ``weakref.finalize`` and so tempfile's cleanups run in one), or when a flush fails
(the interpreter then reports it and exits with status 120).  The launchers of
``nsbind`` and ``nsbind-oci`` end with it; a library caller never does."""

from __future__ import annotations

import atexit
import os
import sys

TYPE_CHECKING = False  # not typing's: see nsbind.lazyimport
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["exit_now", "shutdown_needed"]


def shutdown_needed() -> bool:
    """Whether the interpreter's shutdown has work to do beyond freeing memory: a live
    non-daemon thread, or a registered ``atexit`` callback."""
    threading = sys.modules.get("threading")  # not imported: no thread of its kind
    if threading is not None:
        main = threading.main_thread()
        if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
            return True
    count = getattr(atexit, "_ncallbacks", None)  # CPython's; elsewhere assume some
    return count is None or count() > 0


def exit_now(status: int | None) -> NoReturn:
    """End the process with ``status`` (None: 0), as ``sys.exit(status)`` would, without
    the interpreter's finalization when :func:`shutdown_needed` says none is needed."""
    code = 0 if status is None else status
    if isinstance(code, int) and not shutdown_needed():
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            pass  # (a closed pipe, a closed stream): the interpreter reports it
        else:
            os._exit(code & 0xFF)
    sys.exit(status)
