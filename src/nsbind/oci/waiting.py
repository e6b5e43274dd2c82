"""Waiting for a container process in the foreground, as ``runc run`` and ``runc exec``
do: the signals the runtime gets are passed on to it, a terminal's master is copied
to and from the runtime's own stdio, and the exit status is the process's (128 + N
for signal N)."""

from __future__ import annotations

import os
import sys

from nsbind import signals
from nsbind.ctxlite import contextmanager, suppress
from nsbind.gcpause import resume

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

__all__ = ["FORWARDED", "copy_window_size", "forward_signals", "wait_foreground"]

#: the signals passed on to the process (runc forwards every catchable one)
FORWARDED = (signals.SIGTERM, signals.SIGINT, signals.SIGHUP, signals.SIGQUIT, signals.SIGUSR1,
             signals.SIGUSR2, signals.SIGWINCH, signals.SIGCONT, signals.SIGALRM)


@contextmanager
def forward_signals(pid: int, *, escalate: int | None = None) -> Iterator[None]:
    """While inside, the signals of :data:`FORWARDED` go to ``pid`` instead.  The second
    ``escalate`` (e.g. SIGINT: Ctrl-C twice) sends SIGKILL: a PID 1 without a handler
    ignores the first."""
    seen = {"count": 0}

    def handler(sig: int, frame: FrameType | None) -> None:
        if sig == escalate:
            seen["count"] += 1
            if seen["count"] > 1:
                sig = signals.SIGKILL
        with suppress(ProcessLookupError):
            os.kill(pid, sig)

    old = {sig: signals.set_handler(sig, handler) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signals.set_handler(sig, previous)


def _status(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _copy(src: int, dst: int) -> bool:
    try:
        data = os.read(src, 65536)
    except OSError:  # EIO: the pty's other side is gone
        return False
    if not data:
        return False
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view):]
    return True


def _proxy(master: int) -> None:
    """Copy stdin to ``master`` and ``master`` to stdout until the terminal closes."""
    import selectors  # here: only a run that holds a terminal copies

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    with suppress(ValueError, OSError):
        sel.register(stdin, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in sel.select():
                if key.fd == master:
                    if not _copy(master, stdout):
                        return
                elif not _copy(stdin, master):
                    sel.unregister(stdin)
    finally:
        sel.close()


@contextmanager
def _raw_stdin() -> Iterator[None]:
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield
        return
    import termios  # here, as tty: a run without a terminal needs neither
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def copy_window_size(master: int) -> None:
    """The window size of this process's terminal onto the container's (as runc does),
    when stdin is one."""
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(sys.stdin.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except (OSError, ValueError):
        pass  # not a terminal: the container's keeps its own size


def wait_foreground(pid: int, master: int | None = None, *,
                    escalate: int | None = None) -> int:
    """Wait for ``pid`` (this process's child), passing signals on and, with a terminal
    ``master``, copying between it and this process's stdio (its window size too, again
    on each SIGWINCH); the exit status.  ``escalate``: see :func:`forward_signals`.
    The garbage collector runs again from here on (:mod:`nsbind.gcpause`)."""
    resume()
    with forward_signals(pid, escalate=escalate):
        if master is not None:
            copy_window_size(master)
            previous = signals.set_handler(signals.SIGWINCH, lambda *_: copy_window_size(master))
            try:
                with _raw_stdin():
                    _proxy(master)
            finally:
                signals.set_handler(signals.SIGWINCH, previous)
        return _status(pid)
