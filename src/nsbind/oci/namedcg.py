"""The container's place in named v1 hierarchies (``name=systemd``), as runc gives it.

nsbind's :class:`~nsbind.cgroups.Cgroup` makes cgroups only where there are
controllers (a named hierarchy belongs to its owner, usually systemd).  runc also puts
the container in every named v1 hierarchy at its cgroup path, and software inside
containers reads that (``/proc/self/cgroup``'s ``name=systemd`` line): so the runtime
makes that directory (and the parents it lacks), moves the container's process into
it, and removes what it made when the container is deleted.  A parent made by one
container and still used by another when the first is deleted stays (rmdir refuses it),
empty once the last is gone, as runc leaves parents.  There are no controllers
there: nothing is limited, only placed.
"""

from __future__ import annotations

import os

from nsbind.cgroups import cgroup_layout
from nsbind.ctxlite import suppress
from nsbind.errors import InvalidValue

__all__ = ["join", "make", "remove"]

#: a parent made by one container can be removed by its delete while another container
#: makes its own directory inside: the walk starts again this often
_ATTEMPTS = 10


def _named_roots() -> list[str]:
    """The named hierarchies this caller may place cgroups in (root of a user
    namespace, a rootless container's runtime, may not: runc skips them then too)."""
    return [h.mountpoint for h in cgroup_layout().hierarchies
            if h.version == 1 and h.name is not None and not h.controllers
            and os.access(h.mountpoint, os.W_OK)]


def make(path: str) -> list[str]:
    """Make cgroup ``path`` in each named hierarchy (and the parents it lacks); the
    directories made, deepest first (for :func:`remove`)."""
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidValue(f"cgroup path {path!r}: '.' and '..' are not allowed")
    made: list[str] = []
    try:
        for root in _named_roots():
            for attempt in range(_ATTEMPTS):
                here = root
                try:
                    for part in parts:
                        here = os.path.join(here, part)
                        with suppress(FileExistsError):
                            os.mkdir(here, 0o755)
                            made.append(here)
                    break
                except FileNotFoundError:  # a parent another container's delete removed
                    if attempt == _ATTEMPTS - 1:
                        raise
    except BaseException:
        remove(made[::-1])
        raise
    return made[::-1]


def join(path: str, pid: int) -> None:
    """Move ``pid`` into cgroup ``path`` of each named hierarchy where it exists
    (an exec'd process joins its container there)."""
    for root in _named_roots():  # a process gone meanwhile (ESRCH) needs no place
        with suppress(FileNotFoundError, ProcessLookupError):
            fd = os.open(os.path.join(root, path.lstrip("/"), "cgroup.procs"),
                         os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)


def remove(made: list[str]) -> None:
    """rmdir what :func:`place` made (deepest first); one still in use is left."""
    for directory in made:
        with suppress(OSError):
            os.rmdir(directory)
