"""A directory tree that layer extraction writes into, without ever leaving it.

Every write goes through a directory fd that was resolved beneath the tree's root:
openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) for the common case, and a
component-by-component walk when a symlink is on the way: absolute symlinks
restart at the tree's root (the image's ``/``), relative ones that climb above
it are refused.  Files are created with O_EXCL|O_NOFOLLOW and metadata is set on
fds or with AT_SYMLINK_NOFOLLOW, so nothing is ever written through a symlink.

:func:`remove_tree` removes a tree without recursion and with a fixed number of open
fds, however deep it is (a layer may nest thousands of directories); without root it
gives itself u+rwx on each directory it owns before it enters it (a 0555 or 0644
directory of an image), through the directory's fd (:func:`open_owned_dir`).
"""

from __future__ import annotations

import errno
import os
import stat

from nsbind._sys.mount import openat2
from nsbind.flags import ResolveFlags
from nsbind.image.model import ImageError

__all__ = ["Tree", "open_owned_dir", "remove_path", "remove_tree"]

_BENEATH = ResolveFlags.BENEATH | ResolveFlags.NO_MAGICLINKS
_MAX_LINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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


def open_owned_dir(parent: int, name: str) -> int:
    """An O_RDONLY fd of the directory ``name`` in ``parent`` (never through a symlink),
    which its owner may read, write and search: when the caller (not root, which needs
    none of it) owns the directory and its mode lacks any of them (an image's 0555, 0644
    or 0000 directory), u+rwx is added through the directory's own fd, never by name."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:  # no read permission: reached through an O_PATH fd instead
        return _open_unreadable(parent, name)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o700 != 0o700 and st.st_uid == os.geteuid() != 0:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_unreadable(parent: int, name: str) -> int:
    pfd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                  dir_fd=parent)
    try:
        st = os.fstat(pfd)
        denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        if st.st_uid != os.geteuid() or os.geteuid() == 0:
            raise denied
        try:
            # an O_PATH fd takes no fchmod; its /proc/self/fd link is this very inode
            os.chmod(f"/proc/self/fd/{pfd}", stat.S_IMODE(st.st_mode) | 0o700)
        except OSError:
            raise denied from None  # no /proc: the directory stays unreadable
        return os.open(".", _DIR_FLAGS, dir_fd=pfd)
    finally:
        os.close(pfd)


def _clear(fd: int, dev: int) -> list[str]:
    """Unlink everything in the directory ``fd`` but its subdirectories; return those."""
    with os.scandir(fd) as it:
        entries = list(it)
    subdirs = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.stat(follow_symlinks=False).st_dev != dev:
                raise OSError(errno.EBUSY, "a mount point in the tree: not removed",
                              entry.name)
            subdirs.append(entry.name)
        else:
            os.unlink(entry.name, dir_fd=fd)
    return subdirs


def remove_tree(parent: int, name: str) -> None:
    """Remove ``name`` in the directory ``parent`` (an fd), a whole tree for a directory,
    never following a symlink nor crossing into another mount.  Iterative: it holds one
    directory fd at a time (it climbs back with ``..``, checking that it arrives where it
    came from), so any depth works."""
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    cur = open_owned_dir(parent, name)
    try:
        top = os.fstat(cur)
        # per level: its name in the level above, its subdirectories left, its inode
        levels: list[tuple[str, list[str], int]] = [(name, _clear(cur, top.st_dev),
                                                     top.st_ino)]
        while levels:
            here, subdirs, _ = levels[-1]
            if subdirs:
                sub = subdirs.pop()
                nfd = open_owned_dir(cur, sub)
                os.close(cur)
                cur = nfd
                levels.append((sub, _clear(cur, top.st_dev), os.fstat(cur).st_ino))
                continue
            levels.pop()
            if not levels:
                break
            up = os.open("..", _DIR_FLAGS, dir_fd=cur)
            os.close(cur)
            cur = up
            st = os.fstat(cur)
            if (st.st_dev, st.st_ino) != (top.st_dev, levels[-1][2]):
                raise OSError(errno.ESTALE, "the tree moved while it was removed", here)
            os.rmdir(here, dir_fd=cur)
    finally:
        os.close(cur)
    os.rmdir(name, dir_fd=parent)


def remove_path(path: str, *, missing_ok: bool = False) -> None:
    """:func:`remove_tree` of a path (its parent is opened without following the last
    component)."""
    head, name = os.path.split(os.path.abspath(path))
    parent = os.open(head, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree(parent, name)
    except FileNotFoundError:
        if not missing_ok:
            raise
    finally:
        os.close(parent)
