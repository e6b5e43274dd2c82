"""Compiled seccomp profiles kept on disk, by content.

podman, containerd and ``nsbind run`` send the same seccomp profile with every
container, and libseccomp takes tens of milliseconds to compile one the size of
Docker's (about 450 rules).  :class:`ProgramCache` keeps the compiled program of each
OCI ``linux.seccomp`` object in a directory, named by the BLAKE2b hash of the object
(canonical JSON), the libseccomp version, the kernel release and nsbind's layout of the
program, as crun keeps its own: a profile is compiled once and loaded from the cache
afterwards.  Only a profile that compiled is kept, so a hit is as valid as a
compilation.

The directory is the caller's (a runtime's state root: only its owner writes there).
It is used only when it is a directory owned by the caller and not writable by group
or others; an entry is opened through the directory's fd without following symlinks,
and used only if it is a regular file of a sane size with the right header.  Anything
else is a miss: the profile is compiled, never an error.  At most :data:`MAX_ENTRIES`
entries are kept (the directory is emptied when full).
"""

from __future__ import annotations

import os
import stat
import struct

from nsbind import jsonlite
from nsbind.ctxlite import suppress
from nsbind.seccomp import Filter, Program, library_version

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

try:  # hashlib's own BLAKE2 module: importing hashlib loads OpenSSL's libcrypto first
    from _blake2 import blake2b
except ImportError:  # another Python implementation
    from hashlib import blake2b

__all__ = ["MAX_ENTRIES", "ProgramCache"]

#: entries kept at most
MAX_ENTRIES = 64
#: an entry: this magic, the seccomp(2) flags, the instruction count, then the program
_MAGIC = b"NSBSCMP1"
_HEADER = struct.Struct("=8sII")
_MAX_INSNS = 4096  # BPF_MAXINSNS: the kernel loads no longer program
_INSN = 8  # sizeof(struct sock_filter)
_SUFFIX = ".bpf"


class ProgramCache:
    """The compiled programs of OCI seccomp profiles in ``directory`` (made, 0700, by
    the first store when missing)."""

    def __init__(self, directory: str | os.PathLike[str], *, defer: bool = False) -> None:
        self.directory = os.fspath(directory)
        self.defer = defer
        self._pending: dict[str, Program] = {}

    def program(self, section: Mapping[str, Any], path: str = "linux.seccomp") -> Program:
        """The program of ``section`` (an OCI ``linux.seccomp`` object): from the cache,
        or compiled (:meth:`nsbind.seccomp.Filter.from_oci`, whose errors name ``path``)
        and stored (with ``defer``, by :meth:`save`: a runtime keeps the program of a
        container that was created, and writes nothing for one that was not)."""
        name = self.key(section) + _SUFFIX
        found = self._load(name)
        if found is not None:
            return found
        program = Filter.from_oci(section, path).program()
        self._pending[name] = program
        if not self.defer:
            self.save()
        return program

    def save(self) -> None:
        """Store the programs compiled since the last save (a cache that cannot be
        written is no cache: not an error)."""
        pending, self._pending = self._pending, {}
        for name, program in pending.items():
            with suppress(OSError):
                self._store(name, program)

    @staticmethod
    def key(section: Mapping[str, Any]) -> str:
        """The entry name of ``section``: everything its program depends on, hashed."""
        stamp = {"profile": section, "libseccomp": library_version(),
                 "kernel": os.uname().release, "tree": True, "layout": 1}
        text = jsonlite.dumps(stamp, separators=(",", ":"), sort_keys=True)
        return blake2b(text.encode(), digest_size=32).hexdigest()

    def _open_dir(self) -> int | None:
        """An fd of the directory if only the caller may write to it, else None."""
        try:
            fd = os.open(self.directory,
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            os.close(fd)
            return None
        return fd

    def _load(self, name: str) -> Program | None:
        dirfd = self._open_dir()
        if dirfd is None:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dirfd)
        except OSError:
            return None
        finally:
            os.close(dirfd)
        most = _HEADER.size + _MAX_INSNS * _INSN
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not _HEADER.size < st.st_size <= most:
                return None
            data = os.pread(fd, most + 1, 0)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) <= _HEADER.size:
            return None
        magic, flags, count = _HEADER.unpack_from(data)
        bpf = data[_HEADER.size:]
        if magic != _MAGIC or not 0 < count <= _MAX_INSNS or len(bpf) != count * _INSN:
            return None
        return Program(bpf, flags)

    def _store(self, name: str, program: Program) -> None:
        if len(program.bpf) % _INSN or not 0 < len(program.bpf) <= _MAX_INSNS * _INSN:
            return
        with suppress(FileExistsError):
            os.mkdir(self.directory, 0o700)
        dirfd = self._open_dir()
        if dirfd is None:
            return
        try:
            entries = [n for n in os.listdir(dirfd) if n.endswith(_SUFFIX)]
            if len(entries) >= MAX_ENTRIES:
                for old in entries:
                    with suppress(FileNotFoundError):
                        os.unlink(old, dir_fd=dirfd)
            temp = f".{name}.{os.getpid()}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
            try:
                with open(fd, "wb", closefd=True) as f:
                    f.write(_HEADER.pack(_MAGIC, program.flags, len(program.bpf) // _INSN))
                    f.write(program.bpf)
                os.rename(temp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=dirfd)
                raise
        finally:
            os.close(dirfd)
