"""Removing a cgroup's directory only if it is still the one made, and doing it from
another process, cheaply.

:func:`rmdir_if_same` is the one removal of a cgroup directory: it compares the device
and inode found at the path with the ones of the directory made, so a cgroup renamed or
replaced since is never removed in its place.  :class:`nsbind.cgroups.Cgroup` removes
its directories through it, and an OCI runtime's ``delete``, which runs in a process of
its own, usually after the container's processes are gone, removes the directories
``create`` recorded (:meth:`Cgroup.directories <nsbind.cgroups.Cgroup.directories>`)
through :func:`remove_empty`, without the cgroup machinery (whose import is most of a
delete's time).  A directory the kernel refuses to remove (``EBUSY``: members or child
cgroups left) makes it return False: the caller removes the cgroup through
:meth:`Cgroup.remove <nsbind.cgroups.Cgroup.remove>` then, which kills the members
first.  One that was replaced is not ours and is left alone.
"""

from __future__ import annotations

import errno
import os

from nsbind.errors import raise_errno

__all__ = ["remove_empty", "rmdir_if_same"]


def rmdir_if_same(parent: int, name: str, dev: int, ino: int, path: str) -> bool:
    """rmdir the cgroup ``name`` in the directory fd ``parent`` if it is still the
    directory (``dev``, ``ino``); False, nothing removed, when another is there now.
    FileNotFoundError when there is none; when the kernel refuses (EBUSY: members or
    child cgroups left), the error names ``path``."""
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if (st.st_dev, st.st_ino) != (dev, ino):
        return False
    try:
        os.rmdir(name, dir_fd=parent)
    except OSError as exc:
        raise_errno(exc.errno or 0, "rmdir", path, what=f"remove cgroup {path}")
    return True


def _remove(path: str, dev: int, ino: int) -> bool:
    parent, name = os.path.split(path.rstrip("/"))
    try:
        fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        rmdir_if_same(fd, name, dev, ino, path)  # another cgroup there now: not ours
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return False
        raise
    finally:
        os.close(fd)
    return True


def remove_empty(recorded: list[list[str | int]]) -> bool:
    """rmdir each directory recorded as ``[path, st_dev, st_ino]`` that is still that
    directory; whether none is left busy (members or child cgroups)."""
    done = True
    for path, dev, ino in recorded:
        done = _remove(str(path), int(dev), int(ino)) and done
    return done
