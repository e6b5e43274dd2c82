"""cgroup v2 through directory fds: the primitives the ``Cgroup`` API stands on.

A :class:`CgroupFd` is an O_DIRECTORY fd on a cgroup v2 directory.  Every file
operation goes through it with ``openat``, so a cgroup renamed or a path
swapped after opening cannot redirect a write.  Needs write access to the
cgroup files (root, or a delegated subtree).
"""

from __future__ import annotations

import errno
import os

from nsbind._native import lib
from nsbind._sys.fd import OwnedFd, PathLike, fsbytes
from nsbind._sys.mountinfo import read_mountinfo
from nsbind.errors import InvalidValue, Missing, raise_errno

__all__ = ["CgroupFd", "cgroup2_mountpoint", "parse_flat", "validate_name"]


def cgroup2_mountpoint() -> str:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` or, on hybrid
    hosts, usually ``/sys/fs/cgroup/unified``); FileNotFoundError if nowhere."""
    for entry in read_mountinfo():
        if entry.fstype == "cgroup2" and entry.root == "/":
            return entry.mountpoint
    raise Missing("no cgroup2 hierarchy is mounted (see /proc/self/mountinfo)")


def validate_name(name: str) -> str:
    """A cgroup name is one path component: not empty, no ``/``, not ``.``/``..``, no NUL."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise InvalidValue(f"invalid cgroup name {name!r}: must be one non-empty path component")
    return name


def parse_flat(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, cgroup.events) as a dict."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("-").isdigit():
            out[fields[0]] = int(fields[1])
    return out



class CgroupFd(OwnedFd):
    """An fd on a cgroup v2 directory; ``path`` is kept for messages only."""

    __slots__ = ("path",)

    def __init__(self, fd: int, path: str) -> None:
        super().__init__(fd)
        #: the directory's path when opened (for messages; operations use the fd)
        self.path = path

    @classmethod
    def open(cls, path: PathLike, *, v1: bool = False) -> CgroupFd:
        """Open an existing cgroup v2 directory (or, with ``v1``, a cgroup v1 one);
        ValueError if it is on another filesystem."""
        shown = os.fsdecode(fsbytes(path))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise_errno(exc.errno or 0, "open", shown, what=f"open cgroup {shown}")
        magic = lib.nsb_fstatfs_type(fd)
        if magic != lib.CGROUP2_SUPER_MAGIC and not (v1 and magic == lib.CGROUP_SUPER_MAGIC):
            os.close(fd)
            raise InvalidValue(f"{shown} is not a cgroup {'v1 or v2' if v1 else 'v2'} directory")
        return cls(fd, shown)

    def _child(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def mkdir(self, name: str, mode: int = 0o755, *, exist_ok: bool = False) -> CgroupFd:
        """Create child cgroup ``name`` (mkdirat) and open it."""
        validate_name(name)
        path = self._child(name)
        try:
            os.mkdir(name, mode, dir_fd=self.fileno())
        except OSError as exc:
            if not (exist_ok and exc.errno == errno.EEXIST):
                raise_errno(exc.errno or 0, "mkdir", path, what=f"create cgroup {path}")
        return self.openat(name)

    def openat(self, name: str) -> CgroupFd:
        """Open child cgroup ``name`` relative to this one."""
        validate_name(name)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW,
                         dir_fd=self.fileno())
        except OSError as exc:
            raise_errno(exc.errno or 0, "open", self._child(name),
                        what=f"open cgroup {self._child(name)}")
        return CgroupFd(fd, self._child(name))

    def rmdir(self, name: str) -> None:
        """Remove child cgroup ``name`` (it must have no members and no children: EBUSY)."""
        validate_name(name)
        try:
            os.rmdir(name, dir_fd=self.fileno())
        except OSError as exc:
            raise_errno(exc.errno or 0, "rmdir", self._child(name),
                        what=f"remove cgroup {self._child(name)}")

    def read(self, filename: str) -> str:
        """Read a control file of this cgroup (e.g. ``cgroup.procs``)."""
        try:
            fd = os.open(filename, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                         dir_fd=self.fileno())
        except OSError as exc:
            raise_errno(exc.errno or 0, "open", f"{self.path}/{filename}",
                        what=f"read {filename} of {self.path}")
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks).decode()
        finally:
            os.close(fd)

    def write(self, filename: str, value: str | int) -> None:
        """Write one value to a control file; errors name the file and the value."""
        data = str(value).encode()
        what = f"set {filename}={value} on {self.path}"
        try:
            fd = os.open(filename, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                         dir_fd=self.fileno())
        except OSError as exc:
            raise_errno(exc.errno or 0, "open", f"{self.path}/{filename}", what=what)
        try:
            os.write(fd, data)
        except OSError as exc:
            raise_errno(exc.errno or 0, "write", f"{self.path}/{filename}", what=what)
        finally:
            os.close(fd)

    def attach(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into this cgroup via ``cgroup.procs``."""
        self.write("cgroup.procs", pid)

    def procs(self) -> list[int]:
        """The pids in this cgroup (``cgroup.procs``)."""
        return [int(x) for x in self.read("cgroup.procs").split()]

    def events(self) -> dict[str, int]:
        """``cgroup.events`` as a dict (``populated``, ``frozen``)."""
        return parse_flat(self.read("cgroup.events"))

    def kill(self) -> None:
        """Write ``cgroup.kill`` (Linux 5.14): SIGKILL every process in the subtree."""
        self.write("cgroup.kill", 1)

    def freeze(self) -> None:
        """Write ``cgroup.freeze=1``; the subtree is frozen once ``events()['frozen']`` is 1."""
        self.write("cgroup.freeze", 1)

    def thaw(self) -> None:
        """Write ``cgroup.freeze=0``."""
        self.write("cgroup.freeze", 0)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<CgroupFd {self.path} {state}>"
