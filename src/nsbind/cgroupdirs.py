"""A cgroup's directories recorded by one process and removed by another, cheaply.

An OCI runtime's ``delete`` runs in a process of its own, usually after the container's
processes are gone: its cgroup is empty, and removing it is one rmdir a hierarchy.
:func:`identify` records each directory with its device and inode when the cgroup is
made; :func:`remove_empty` removes the ones that are still those directories, through
an fd on their parent, without the cgroup machinery (:class:`nsbind.cgroups.Cgroup`,
whose import is most of a delete's time).  A directory the kernel refuses to remove
(``EBUSY``: members or child cgroups left) makes it return False: the caller removes the
cgroup through :meth:`Cgroup.remove <nsbind.cgroups.Cgroup.remove>` then, which kills
the members first.  One that was replaced (another inode at the path) is not ours and
is left alone.
"""

from __future__ import annotations

import errno
import os

__all__ = ["identify", "remove_empty"]


def identify(paths: list[str]) -> list[list[str | int]]:
    """``[path, st_dev, st_ino]`` of each existing directory of ``paths`` (JSON-ready)."""
    found: list[list[str | int]] = []
    for path in paths:
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            continue
        found.append([path, st.st_dev, st.st_ino])
    return found


def _remove(path: str, dev: int, ino: int) -> bool:
    parent, name = os.path.split(path.rstrip("/"))
    try:
        fd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != (dev, ino):
            return True  # another cgroup at that path now: not ours to remove
        os.rmdir(name, dir_fd=fd)
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
    """rmdir each directory :func:`identify` recorded that is still that directory
    (same device and inode); whether none is left busy (members or child cgroups)."""
    done = True
    for path, dev, ino in recorded:
        done = _remove(str(path), int(dev), int(ino)) and done
    return done
