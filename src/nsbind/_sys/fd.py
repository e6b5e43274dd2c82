"""Owned file descriptors and the argument conversions every wrapper shares."""

from __future__ import annotations

import os

from nsbind.errors import InvalidValue

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Protocol, TypeAlias, TypeVar

    class _HasFileno(Protocol):
        def fileno(self) -> int: ...

    _Self = TypeVar("_Self", bound="OwnedFd")

__all__ = ["FdLike", "OwnedFd", "PathLike", "fdnum", "fsbytes"]

# the two aliases are for annotations (as strings at run time: no typing import)
#: an fd number or any object with ``fileno()``
FdLike: TypeAlias = "int | _HasFileno"
#: a path as str, bytes or os.PathLike
PathLike: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"


def fdnum(fd: FdLike) -> int:
    """The fd number of ``fd`` (an int or an object with ``fileno()``)."""
    return fd if isinstance(fd, int) else fd.fileno()


def fsbytes(path: PathLike) -> bytes:
    """``path`` encoded for the kernel; NUL bytes are refused."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise InvalidValue(f"path contains a NUL byte: {raw!r}")
    return raw


class OwnedFd:
    """A file descriptor owned by this object (always opened O_CLOEXEC).

    It is closed by :meth:`close`, by leaving a ``with`` block, or, with a
    ResourceWarning, when the object is garbage-collected while still open.
    """

    __slots__ = ("__weakref__", "_fd")

    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise InvalidValue(f"invalid file descriptor {fd}")
        self._fd = fd

    def fileno(self) -> int:
        """The fd number; ValueError once closed."""
        if self._fd < 0:
            raise InvalidValue(f"{type(self).__name__} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the fd (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership: return the fd number, which the caller must close."""
        fd = self.fileno()
        self._fd = -1
        return fd

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            import warnings  # here: fds are closed, and this is rare

            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<{type(self).__name__} {state}>"
