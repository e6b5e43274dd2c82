"""A directory tree that layer extraction writes into, without ever leaving it.

Every write goes through a directory fd that was resolved beneath the tree's root:
openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) for the common case, and a
component-by-component walk when a symlink is on the way: absolute symlinks
restart at the tree's root (the image's ``/``), relative ones that climb above
it are refused.  Files are created with O_EXCL|O_NOFOLLOW and metadata is set on
fds or with AT_SYMLINK_NOFOLLOW, so nothing is ever written through a symlink.
"""

from __future__ import annotations

import errno
import os
import stat

from nsbind._sys.mount import openat2
from nsbind.flags import ResolveFlags
from nsbind.image.model import ImageError

__all__ = ["Tree"]

_BENEATH = ResolveFlags.BENEATH | ResolveFlags.NO_MAGICLINKS
_MAX_LINKS = 40


class Tree:
    """A root directory and a cache of resolved directory fds inside it."""

    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self.label = label
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[str, int] = {}

    def close(self) -> None:
        self.forget()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def forget(self) -> None:
        """Drop cached directory fds (after a symlink or a removal changed the tree)."""
        dirs, self._dirs = self._dirs, {}
        for fd in dirs.values():
            os.close(fd)

    def refuse(self, member: str, why: str) -> ImageError:
        return ImageError(f"{self.label}: refused {member!r}: {why}; nothing was written "
                          "outside the layer")

    def parent(self, relpath: str, *, create: bool = True) -> tuple[int, str]:
        """(fd of the directory holding ``relpath``, its last component)."""
        head, _, name = relpath.rpartition("/")
        return self.dir(head, create=create, member=relpath), name

    def dir(self, relpath: str, *, create: bool, member: str) -> int:
        """An O_PATH fd of the directory ``relpath`` (created, 0755, when missing)."""
        if not relpath:
            return self.fd
        fd = self._dirs.get(relpath)
        if fd is not None:
            return fd
        try:
            # the cache holds plain fd numbers (closed by forget())
            fd = openat2(self.fd, relpath, os.O_PATH | os.O_DIRECTORY, resolve=_BENEATH).detach()
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOENT, errno.ELOOP):
                if exc.errno == errno.ENOTDIR:
                    raise self.refuse(member, "a parent is not a directory") from None
                raise
            fd = self._walk(relpath, create, member)
        if len(self._dirs) > 512:
            self.forget()
        self._dirs[relpath] = fd
        return fd

    def _walk(self, relpath: str, create: bool, member: str) -> int:
        """Resolve ``relpath`` one component at a time, following symlinks inside."""
        stack = [os.dup(self.fd)]
        todo = [p for p in reversed(relpath.split("/"))]
        links = 0
        try:
            while todo:
                part = todo.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) == 1:
                        raise self.refuse(member, "it is reached through a symlink that "
                                          "points outside the layer")
                    os.close(stack.pop())
                    continue
                cur = stack[-1]
                try:
                    st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=cur)
                    st = os.stat(part, dir_fd=cur, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise self.refuse(member, "too many levels of symlinks")
                    target = os.readlink(part, dir_fd=cur)
                    if target.startswith("/"):  # the image's root is the tree's root
                        for fd in stack[1:]:
                            os.close(fd)
                        del stack[1:]
                    todo.extend(reversed(target.split("/")))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise self.refuse(member, f"{part!r} on its path is not a directory")
                stack.append(os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW |
                                     os.O_CLOEXEC, dir_fd=cur))
            return os.dup(stack[-1])
        finally:
            for fd in stack:
                os.close(fd)
