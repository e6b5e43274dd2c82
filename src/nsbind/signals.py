"""Signal numbers, names, handlers and masks, without the signal module.

The signal module is ``_signal`` (its C part) wrapped in three enums, Signals, Handlers
and Sigmasks, and so imports enum: some 5 ms of every command's start here.  nsbind
calls ``_signal``'s functions through this module and passes plain ints.  A signal's
name is the one ``signal.Signals`` gives it: the alphabetically first of its names
(SIGABRT, not SIGIOT; SIGCHLD, not SIGCLD), and every name is accepted.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C part: no stub

TYPE_CHECKING = False  # not typing's: this module is on every command's start
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import FrameType

    #: a handler as signal.signal takes it: a function, SIG_DFL, SIG_IGN or None
    Handler = Callable[[int, FrameType | None], object] | int | None

__all__ = [
    "NSIG",
    "SIGALRM",
    "SIGCHLD",
    "SIGCONT",
    "SIGHUP",
    "SIGINT",
    "SIGKILL",
    "SIGPIPE",
    "SIGQUIT",
    "SIGRTMAX",
    "SIGRTMIN",
    "SIGTERM",
    "SIGUSR1",
    "SIGUSR2",
    "SIGWINCH",
    "SIG_DFL",
    "SIG_IGN",
    "block_all",
    "describe",
    "parse",
    "pidfd_send_signal",
    "set_handler",
    "set_mask",
    "signal_name",
    "signal_number",
]

NSIG: int = _signal.NSIG
SIGALRM: int = _signal.SIGALRM
SIGCHLD: int = _signal.SIGCHLD
SIGCONT: int = _signal.SIGCONT
SIGHUP: int = _signal.SIGHUP
SIGINT: int = _signal.SIGINT
SIGKILL: int = _signal.SIGKILL
SIGPIPE: int = _signal.SIGPIPE
SIGQUIT: int = _signal.SIGQUIT
SIGRTMAX: int = _signal.SIGRTMAX
SIGRTMIN: int = _signal.SIGRTMIN
SIGTERM: int = _signal.SIGTERM
SIGUSR1: int = _signal.SIGUSR1
SIGUSR2: int = _signal.SIGUSR2
SIGWINCH: int = _signal.SIGWINCH
SIG_DFL: int = _signal.SIG_DFL  #: the default action, as a handler
SIG_IGN: int = _signal.SIG_IGN  #: ignore the signal, as a handler

_names: dict[int, str] = {}
_numbers: dict[str, int] = {}


def _tables() -> tuple[dict[int, str], dict[str, int]]:
    """Names to numbers and numbers to names, made once: ``_signal``'s SIG* ints but
    its SIG_* constants (the names signal.Signals has)."""
    if not _numbers:
        for name in sorted(dir(_signal)):
            value = getattr(_signal, name)
            if name.startswith("SIG") and not name.startswith("SIG_") and name.isupper() \
                    and isinstance(value, int):
                _numbers[name] = value
                _names.setdefault(value, name)
    return _names, _numbers


def signal_name(number: int) -> str | None:
    """``"SIGTERM"`` for 15; None for a number no signal is named by (SIGRTMIN+1...)."""
    return _tables()[0].get(number)


def signal_number(name: str) -> int | None:
    """15 for ``"SIGTERM"`` (the whole name, upper case); None for an unknown name."""
    return _tables()[1].get(name)


def parse(text: str) -> int | None:
    """A signal as Docker and runc take one on a command line: a number (1 to SIGRTMAX),
    a name with or without ``SIG`` in any case (``TERM``, ``sigterm``, ``SIGIOT``), or
    ``RTMIN+N`` / ``RTMAX-N`` inside the real-time range; None for anything else."""
    if text.isascii() and text.isdigit():
        number = _small(text)
        return number if 1 <= number <= SIGRTMAX else None
    name = text.upper().removeprefix("SIG")
    for base, sign in (("RTMIN+", 1), ("RTMAX-", -1)):
        offset = name[len(base):]
        if name.startswith(base) and offset.isascii() and offset.isdigit():
            number = (SIGRTMIN if sign > 0 else SIGRTMAX) + sign * _small(offset)
            return number if SIGRTMIN <= number <= SIGRTMAX else None
    return signal_number("SIG" + name)


def _small(digits: str) -> int:
    """ASCII ``digits`` as a number, or -1 for one of more than four digits (out of any
    signal range; int() refuses a string of thousands of digits with ValueError)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 4 else -1


def describe(number: int) -> str:
    """The signal's name, or ``"signal N"`` when it has none (for messages)."""
    return signal_name(number) or f"signal {number}"


def set_handler(sig: int, handler: Handler) -> Handler:
    """signal(2) through Python's handler table (the main thread only); returns the
    handler it replaces."""
    previous: Handler = _signal.signal(sig, handler)
    return previous


def block_all() -> set[int]:
    """Block every signal in the calling thread; returns the mask it replaced."""
    return set(_signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals()))


def set_mask(mask: Iterable[int]) -> set[int]:
    """Set the calling thread's signal mask; returns the mask it replaced."""
    return set(_signal.pthread_sigmask(_signal.SIG_SETMASK, mask))


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """pidfd_send_signal(2) (Linux 5.1): signal the process a pidfd holds."""
    _signal.pidfd_send_signal(pidfd, sig)
