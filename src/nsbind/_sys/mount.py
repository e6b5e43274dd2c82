"""Mounts: mount(2), umount2, pivot_root, the new mount API, mount_setattr, openat2."""

from __future__ import annotations

import errno
import os
import stat

from nsbind._native import ffi, lib
from nsbind._sys.fd import FdLike, OwnedFd, PathLike, fdnum, fsbytes
from nsbind.errors import InvalidValue, check, raise_errno
from nsbind.flags import (
    AtFlags,
    FsconfigCmd,
    MountFlags,
    MoveMountFlags,
    OpenTreeFlags,
    Propagation,
    flag_names,
)

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = [
    "AT_FDCWD",
    "FsContext",
    "MountFd",
    "file_kind",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fstatfs_type",
    "mount",
    "mount_description",
    "mount_setattr",
    "move_mount",
    "open_regular",
    "open_tree",
    "openat2",
    "pivot_root",
    "read_capped",
    "umount2",
]

#: the "current directory" dirfd of the *at() calls
AT_FDCWD: int = lib.AT_FDCWD

_PROPAGATION = MountFlags.PRIVATE | MountFlags.SLAVE | MountFlags.SHARED | MountFlags.UNBINDABLE


def _show(path: PathLike | None) -> str:
    return "none" if path is None else os.fsdecode(path)


def _cstr(value: PathLike | None) -> bytes | object:
    return ffi.NULL if value is None else fsbytes(value)


def mount_description(source: PathLike | None, target: PathLike, fstype: str | None,
                      flags: int) -> str:
    """What a mount(2) call does, in the words its error messages use.

    ``mount_description("proc", "/proc", "proc", 0)`` is ``"mount proc on /proc"``;
    binds, moves, remounts and propagation changes read ``rbind mount /a on /b``,
    ``move mount /a to /b``, ``remount /b RDONLY``, ``make /b private``.
    """
    tgt = _show(target)
    if flags & MountFlags.REMOUNT:
        kind = "bind remount" if flags & MountFlags.BIND else "remount"
        return f"{kind} {tgt} {flag_names(MountFlags, flags & ~MountFlags.REMOUNT)}"
    if flags & MountFlags.BIND:
        rec = "rbind" if flags & MountFlags.REC else "bind"
        return f"{rec} mount {_show(source)} on {tgt}"
    if flags & MountFlags.MOVE:
        return f"move mount {_show(source)} to {tgt}"
    if flags & _PROPAGATION:
        return f"make {tgt} {flag_names(MountFlags, flags).lower()}"
    return f"mount {fstype or _show(source)} on {tgt}"


def mount(
    source: PathLike | None,
    target: PathLike,
    fstype: str | None = None,
    flags: int = 0,
    data: str | bytes | None = None,
) -> None:
    """mount(2): mount, bind, remount, move, or change propagation (needs CAP_SYS_ADMIN).

    Acts in the calling thread's mount namespace.  Errors read like
    ``mount proc on /proc: EPERM (...)``.
    """
    raw_data: bytes | object = ffi.NULL
    if data is not None:
        raw_data = data.encode() if isinstance(data, str) else data
    rc = lib.nsb_mount(_cstr(source), fsbytes(target),
                       ffi.NULL if fstype is None else fstype.encode(), int(flags), raw_data)
    check(rc, "mount", _show(target), what=mount_description(source, target, fstype, int(flags)))


def umount2(target: PathLike, flags: int = 0) -> None:
    """umount2(2): unmount ``target`` (``UmountFlags.DETACH`` for a lazy unmount)."""
    check(lib.nsb_umount2(fsbytes(target), int(flags)), "umount2", _show(target),
          what=f"umount {_show(target)}")


def pivot_root(new_root: PathLike, put_old: PathLike) -> None:
    """pivot_root(2): make ``new_root`` the root mount of the mount namespace.

    ``new_root`` must be a mount point, not on the current root's mount, in a
    mount namespace where ``/`` is not shared.  ``pivot_root(".", ".")`` stacks
    the old root on the new one; then ``umount2(".", MNT_DETACH)`` drops it.
    """
    check(lib.nsb_pivot_root(fsbytes(new_root), fsbytes(put_old)), "pivot_root",
          _show(new_root), what=f"pivot_root to {_show(new_root)} (old root at {_show(put_old)})")


def fstatfs_type(fd: FdLike) -> int:
    """fstatfs(2)'s ``f_type`` of the filesystem behind ``fd`` (e.g. PROC_SUPER_MAGIC)."""
    return check(lib.nsb_fstatfs_type(fdnum(fd)), "fstatfs", f"fd {fdnum(fd)}")


# ---------------------------------------------------------------- the new mount API


class MountFd(OwnedFd):
    """A mount fd from fsmount(2) or open_tree(2).

    A detached mount (not yet attached with :meth:`attach`) vanishes when the
    fd is closed.  An open_tree fd without OPEN_TREE_CLONE is an O_PATH fd on
    an existing mount.
    """

    __slots__ = ("label",)

    def __init__(self, fd: int, label: str) -> None:
        super().__init__(fd)
        #: what the mount is, for messages (``tmpfs``, ``/data``)
        self.label = label

    def attach(self, target: PathLike, *, dirfd: FdLike = AT_FDCWD, flags: int = 0) -> None:
        """move_mount(2) this mount onto ``target`` (resolved relative to ``dirfd``)."""
        move_mount(self, "", dirfd, target, flags | MoveMountFlags.F_EMPTY_PATH,
                   what=f"attach {self.label} on {_show(target)}")

    def setattr(self, attr_set: int = 0, attr_clr: int = 0, propagation: int = 0,
                *, recursive: bool = False, userns: FdLike | None = None) -> None:
        """mount_setattr(2) on this mount (and its submounts with ``recursive``)."""
        flags = AtFlags.EMPTY_PATH | (AtFlags.RECURSIVE if recursive else 0)
        mount_setattr(self, "", flags, attr_set=attr_set, attr_clr=attr_clr,
                      propagation=propagation, userns=userns, what=f"mount_setattr {self.label}")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<MountFd {self.label} {state}>"


class FsContext(OwnedFd):
    """An fs context from fsopen(2): configure with ``set_*``, then :meth:`create`,
    then :meth:`mount` to get a detached :class:`MountFd`.

    When a step fails, the kernel's own messages (read back from the context
    fd) are appended to the error: ``fsconfig overlay lowerdir: ENOENT (...):
    overlay: failed to resolve '/nope': -2``.
    """

    __slots__ = ("fstype",)

    def __init__(self, fd: int, fstype: str) -> None:
        super().__init__(fd)
        #: the filesystem type given to fsopen
        self.fstype = fstype

    def messages(self) -> list[str]:
        """Drain the kernel's messages from the context (``e ...``, ``w ...``, ``i ...``)."""
        out = []
        while True:
            try:
                chunk = os.read(self.fileno(), 4096)
            except OSError:  # ENODATA: the queue is empty
                break
            if not chunk:
                break
            out.append(chunk.decode(errors="replace").rstrip("\n"))
        return out

    def _config(self, cmd: int, key: str | None, value: bytes | object, aux: int,
                what: str) -> None:
        rc = lib.nsb_fsconfig(self.fileno(), cmd, ffi.NULL if key is None else key.encode(),
                              value, aux)
        if rc < 0:
            err = ffi.errno
            raise_errno(err, "fsconfig", self.fstype, what=what, detail=self._kernel_says())

    def _kernel_says(self) -> str | None:
        msgs = [m[2:] if m[:2] in ("e ", "w ", "i ") else m for m in self.messages()]
        return "; ".join(msgs) or None

    def set_flag(self, key: str) -> None:
        """FSCONFIG_SET_FLAG: a parameter without a value (e.g. ``ro``)."""
        self._config(FsconfigCmd.SET_FLAG, key, ffi.NULL, 0, f"fsconfig {self.fstype} {key}")

    def set_string(self, key: str, value: str | bytes) -> None:
        """FSCONFIG_SET_STRING: ``key=value`` (e.g. ``size=1M``, ``lowerdir+=/l1``)."""
        raw = value.encode() if isinstance(value, str) else value
        self._config(FsconfigCmd.SET_STRING, key, raw, 0,
                     f"fsconfig {self.fstype} {key}={raw.decode(errors='replace')}")

    def set_path(self, key: str, path: PathLike, *, dirfd: FdLike = AT_FDCWD) -> None:
        """FSCONFIG_SET_PATH: a parameter that is a path (resolved relative to ``dirfd``)."""
        self._config(FsconfigCmd.SET_PATH, key, fsbytes(path), fdnum(dirfd),
                     f"fsconfig {self.fstype} {key}={_show(path)}")

    def set_fd(self, key: str, fd: FdLike) -> None:
        """FSCONFIG_SET_FD: a parameter that is an open fd (e.g. ``lowerdir+`` on 6.8+)."""
        self._config(FsconfigCmd.SET_FD, key, ffi.NULL, fdnum(fd),
                     f"fsconfig {self.fstype} {key}=fd {fdnum(fd)}")

    def set_options(self, options: Iterable[str]) -> None:
        """Each ``key=value`` as a string, each bare ``key`` as a flag, in order (what
        mount(8)'s -o would pass)."""
        for opt in options:
            key, eq, value = opt.partition("=")
            if eq:
                self.set_string(key, value)
            else:
                self.set_flag(key)

    def create(self) -> None:
        """FSCONFIG_CMD_CREATE: create the superblock from the parameters given."""
        self._config(FsconfigCmd.CMD_CREATE, None, ffi.NULL, 0, f"create {self.fstype}")

    def reconfigure(self) -> None:
        """FSCONFIG_CMD_RECONFIGURE: apply parameters to an existing superblock."""
        self._config(FsconfigCmd.CMD_RECONFIGURE, None, ffi.NULL, 0,
                     f"reconfigure {self.fstype}")

    def mount(self, attr_flags: int = 0) -> MountFd:
        """fsmount(2): a detached mount of the created superblock (``MountAttr`` flags)."""
        return fsmount(self, attr_flags)


def fsopen(fstype: str) -> FsContext:
    """fsopen(2) (Linux 5.2): a new fs context for ``fstype`` (needs CAP_SYS_ADMIN)."""
    fd = check(lib.nsb_fsopen(fstype.encode(), lib.FSOPEN_CLOEXEC), "fsopen", fstype,
               what=f"fsopen {fstype}")
    return FsContext(fd, fstype)


def fsconfig(fd: FdLike, cmd: int, key: str | None = None, value: bytes | None = None,
             aux: int = 0) -> None:
    """fsconfig(2), raw: one configuration command on an fs context fd.

    :class:`FsContext`'s methods are the typed form and add the kernel's messages.
    """
    check(lib.nsb_fsconfig(fdnum(fd), int(cmd), ffi.NULL if key is None else key.encode(),
                           ffi.NULL if value is None else value, aux),
          "fsconfig", what=f"fsconfig {FsconfigCmd(cmd).name} {key or ''}".rstrip())


def fsmount(ctx: FsContext, attr_flags: int = 0) -> MountFd:
    """fsmount(2) (Linux 5.2): turn a created fs context into a detached mount fd."""
    rc = lib.nsb_fsmount(ctx.fileno(), lib.FSMOUNT_CLOEXEC, int(attr_flags))
    if rc < 0:
        err = ffi.errno
        raise_errno(err, "fsmount", ctx.fstype, what=f"fsmount {ctx.fstype}",
                    detail=ctx._kernel_says())
    return MountFd(rc, ctx.fstype)


def move_mount(from_dirfd: FdLike, from_path: PathLike, to_dirfd: FdLike, to_path: PathLike,
               flags: int = 0, *, what: str | None = None) -> None:
    """move_mount(2) (Linux 5.2): attach or move a mount (``MoveMountFlags``)."""
    rc = lib.nsb_move_mount(fdnum(from_dirfd), fsbytes(from_path), fdnum(to_dirfd),
                            fsbytes(to_path), int(flags))
    check(rc, "move_mount", _show(to_path),
          what=what or f"move_mount {_show(from_path) or 'fd'} to {_show(to_path)}")


def open_tree(path: PathLike, flags: int = 0, *, dirfd: FdLike = AT_FDCWD) -> MountFd:
    """open_tree(2) (Linux 5.2): an fd on the mount at ``path``.

    With ``OpenTreeFlags.CLONE`` (plus ``AtFlags.RECURSIVE`` for submounts) it is
    a detached copy that can be changed with mount_setattr and attached
    elsewhere; cloning needs CAP_SYS_ADMIN.  Always O_CLOEXEC.
    """
    rc = lib.nsb_open_tree(fdnum(dirfd), fsbytes(path), int(flags) | OpenTreeFlags.CLOEXEC)
    check(rc, "open_tree", _show(path), what=f"open_tree {_show(path)}")
    return MountFd(rc, _show(path))


def mount_setattr(dirfd: FdLike, path: PathLike, flags: int = 0, *, attr_set: int = 0,
                  attr_clr: int = 0, propagation: int = 0, userns: FdLike | None = None,
                  what: str | None = None) -> None:
    """mount_setattr(2) (Linux 5.12): change mount attributes (``MountAttr``), also recursively.

    ``propagation`` is a :class:`Propagation` value or 0; ``userns`` (with
    ``MountAttr.IDMAP`` in ``attr_set``) makes an idmapped mount.
    """
    attr: Any = ffi.new("struct mount_attr *")
    attr.attr_set = int(attr_set)
    attr.attr_clr = int(attr_clr)
    attr.propagation = int(propagation)
    if userns is not None:
        attr.userns_fd = fdnum(userns)
    rc = lib.nsb_mount_setattr(fdnum(dirfd), fsbytes(path), int(flags), attr,
                               ffi.sizeof("struct mount_attr"))
    if what is None:
        what = f"mount_setattr {_show(path) or 'fd ' + str(fdnum(dirfd))}"
        if propagation:
            what += f" {Propagation(propagation).name.lower()}"
    check(rc, "mount_setattr", _show(path), what=what)


def openat2(dirfd: FdLike, path: PathLike, flags: int = os.O_RDONLY, mode: int = 0,
            resolve: int = 0) -> OwnedFd:
    """openat2(2) (Linux 5.6): open with ``ResolveFlags`` controlling path resolution.

    ``RESOLVE_IN_ROOT`` treats ``dirfd`` as the root: ``..`` and absolute
    symlinks cannot leave it; ``RESOLVE_BENEATH`` fails with EXDEV instead.
    O_CLOEXEC is always added.  Returns the new fd as an :class:`OwnedFd` (close it,
    or use it in a ``with`` block; ``detach()`` hands the number over, e.g. to
    ``os.fdopen``).  Retried on EAGAIN for RESOLVE_CACHED-free lookups racing
    with renames.
    """
    how: Any = ffi.new("struct open_how *")
    how.flags = int(flags) | os.O_CLOEXEC
    how.mode = int(mode)
    how.resolve = int(resolve)
    raw = fsbytes(path)
    size = ffi.sizeof("struct open_how")
    for _ in range(16):
        rc = lib.nsb_openat2(fdnum(dirfd), raw, how, size)
        if rc >= 0:
            return OwnedFd(rc)
        err = ffi.errno
        if err not in (errno.EAGAIN, errno.EINTR) or resolve & lib.RESOLVE_CACHED:
            break
    raise_errno(err, "openat2", _show(path), what=f"openat2 {_show(path)}")


# ---------------------------------------------------------------- files of a hostile tree

#: how a checked regular file is opened for reading: never blocking, never a tty
_READ_FILE = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket",
          stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symlink"}


def file_kind(mode: int) -> str:
    """What a file of ``mode`` is, in words ("a FIFO", "a directory", ...)."""
    return "a regular file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode),
                                                                     "not a file")


def open_regular(dirfd: FdLike, path: PathLike, resolve: int = 0, *,
                 what: str | None = None) -> OwnedFd:
    """Open ``path`` (openat2 with ``resolve``, relative to ``dirfd``) for reading if it
    is a regular file; InvalidValue naming it otherwise.

    For trees someone else controls: the path is opened O_PATH and checked with fstat
    first, so a FIFO, a device node, a socket or a directory is refused without ever
    being opened for reading (a FIFO would block, a device could act); the file is
    then reopened read-only, non-blocking and without a controlling tty through
    /proc/self/fd (the same inode; without /proc, the path again, checked to be the
    same inode).
    """
    shown = what or _show(path)
    with openat2(dirfd, path, os.O_PATH, resolve=resolve) as path_fd:
        st = os.fstat(path_fd.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidValue(f"{shown} is {file_kind(st.st_mode)}, not a regular file: "
                               "refused")
        try:
            fd = OwnedFd(os.open(f"/proc/self/fd/{path_fd.fileno()}", _READ_FILE))
        except FileNotFoundError:  # no /proc here: open the path again, checked below
            fd = openat2(dirfd, path, _READ_FILE, resolve=resolve)
    got = os.fstat(fd.fileno())
    if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
        fd.close()
        raise InvalidValue(f"{shown} changed while it was opened: refused")
    return fd


def read_capped(fd: OwnedFd, limit: int, *, what: str) -> bytes:
    """Everything ``fd`` holds, at most ``limit`` bytes (InvalidValue past it)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit and (data := os.read(fd.fileno(), limit + 1 - size)):
        chunks.append(data)
        size += len(data)
    if size > limit:
        raise InvalidValue(f"{what} is larger than {limit} bytes")
    return b"".join(chunks)
