"""The engine's error: a message and the exit status Docker gives for it."""

from __future__ import annotations

from nsbind.errors import MessageError

__all__ = ["EXIT_CANNOT_INVOKE", "EXIT_ENGINE", "EXIT_NOT_FOUND", "EngineError", "bad_argument"]

EXIT_ENGINE = 125         #: nsbind's own error (a bad flag, a missing image, a name in use)
EXIT_CANNOT_INVOKE = 126  #: the command is there but cannot be run (not executable)
EXIT_NOT_FOUND = 127      #: the command is not in the container


class EngineError(MessageError, RuntimeError):
    """A request the engine refuses or cannot carry out; ``status`` is the command's exit
    status (125 unless the container's command is the problem: 126, 127)."""

    operation = "nsbind"

    def __init__(self, message: str, status: int = EXIT_ENGINE, err: int | None = None) -> None:
        super().__init__(message, err)
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.what, self.status, self.errno))


def bad_argument(flag: str, value: str, why: str) -> EngineError:
    """Docker's words for a bad flag value: ``invalid argument "V" for "FLAG": why``."""
    shown = value if len(value) <= 200 else value[:197] + "..."
    return EngineError(f'invalid argument "{shown}" for "{flag}": {why}')
