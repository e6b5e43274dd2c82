"""A directory in overlay form (a stored layer, a container's upper directory) written
back as an image layer tar, reproducibly and without trusting the tree.

The bytes depend on the tree alone: entries sorted, depth first, a directory before
what it holds; numeric owners only (no user or group names); whole-second times; hard
links within the tree as tar links; xattrs as PAX ``SCHILY.xattr.*`` records
(overlayfs' own ones left out); and the overlay markers turned back into the image
format's whiteouts (a 0:0 character device into ``.wh.NAME``, an opaque directory into
``.wh..wh..opq``).

The tree may belong to a running container, which can swap any entry for a symlink at
any moment: every directory is opened by one name relative to its parent's fd, with
O_NOFOLLOW, and every file the same way, then checked with fstat against the entry
that was listed (same inode, still a regular file) before a byte is read; a FIFO is
never opened.  Nothing outside the tree is read.  An entry overlayfs only makes with
``redirect_dir`` or ``metacopy`` (its upper copy is not the whole file or directory)
is refused: written out it would be a different tree.  Caps on entries, depth and
bytes stop a tree too big for a layer before it fills the disk.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Collection
from typing import IO

from nsbind.ctxlite import suppress
from nsbind.image.model import MAX_LAYER_BYTES, ImageError
from nsbind.image.unpack import MAX_LAYER_DEPTH, MAX_LAYER_ENTRIES

__all__ = ["layer_tar"]

_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
_PARTIAL = ("trusted.overlay.redirect", "user.overlay.redirect",
            "trusted.overlay.metacopy", "user.overlay.metacopy")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_CHUNK = 1 << 20


class _Hashing:
    """A write-only file that hashes and counts what passes to ``out``."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Bounded:
    """Reads exactly ``size`` bytes of an fd for tarfile, refusing a file that shrank."""

    def __init__(self, fd: int, size: int, name: str, label: str) -> None:
        self.fd, self.left, self.name, self.label = fd, size, name, label

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        data = os.read(self.fd, min(want, _CHUNK)) if want else b""
        if want and not data:
            raise ImageError(f"{self.label}: {self.name} shrank while it was read")
        self.left -= len(data)
        return data


class _Writer:
    def __init__(self, tar: tarfile.TarFile, label: str, max_entries: int, max_depth: int,
                 max_bytes: int, skip: frozenset[str]) -> None:
        self.tar, self.label, self.skip = tar, label, skip
        self.max_entries, self.max_depth, self.max_bytes = max_entries, max_depth, max_bytes
        self.entries = self.bytes = 0
        self.links: dict[tuple[int, int], str] = {}

    def _count(self, size: int, arc: str) -> None:
        self.entries += 1
        self.bytes += size
        if self.entries > self.max_entries:
            raise ImageError(f"{self.label}: more than {self.max_entries} entries")
        if self.bytes > self.max_bytes:
            raise ImageError(f"{self.label}: more than {self.max_bytes} bytes (at {arc})")

    def _xattrs(self, fd: int | None, parent: int, name: str, arc: str) -> dict[str, str]:
        path: int | str = fd if fd is not None else f"/proc/self/fd/{parent}/{name}"
        follow = fd is not None
        try:
            names = sorted(os.listxattr(path, follow_symlinks=follow))
        except OSError:
            return {}
        out = {}
        for key in names:
            if key in _PARTIAL:
                raise ImageError(f"{self.label}: {arc} is an overlayfs {key.rsplit('.', 1)[1]}"
                                 " entry (redirect_dir or metacopy was on): it cannot be "
                                 "written as a layer")
            if key.startswith(_OVERLAY_XATTRS):
                continue
            with suppress(OSError):
                value = os.getxattr(path, key, follow_symlinks=follow)
                out["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        return out

    def _info(self, arc: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(arc)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
        return info

    def _whiteout(self, arc: str, st: os.stat_result) -> None:
        self._count(0, arc)
        info = tarfile.TarInfo(arc)
        info.type, info.mode, info.mtime = tarfile.REGTYPE, 0, int(st.st_mtime)
        self.tar.addfile(info)

    def directory(self, parent: int, depth: int, rel: str) -> None:
        """Write the entries of the directory ``parent`` (an fd), ``rel`` its path."""
        if depth > self.max_depth:
            raise ImageError(f"{self.label}: {rel} is deeper than {self.max_depth} levels")
        for name in sorted(os.listdir(parent)):
            arc = f"{rel}{name}"
            if arc in self.skip:
                continue
            try:
                self._entry(parent, name, arc, depth, rel)
            except ImageError:
                raise
            except OSError as exc:
                raise ImageError(f"{self.label}: {arc}: {exc.strerror or exc}") from None

    def _entry(self, parent: int, name: str, arc: str, depth: int, rel: str) -> None:
        """Write the entry ``name`` of ``parent`` (``arc`` its path in the tar)."""
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            self._whiteout(f"{rel}.wh.{name}", st)
        elif stat.S_ISDIR(mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            try:
                self._same(fd, st, arc)
                self._dir(fd, parent, name, arc, st, depth)
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            self._file(parent, name, arc, st)
        elif stat.S_ISSOCK(mode):
            return  # not part of an image
        else:
            info = self._info(arc, st)
            if stat.S_ISLNK(mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=parent)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
            else:
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            info.pax_headers = self._xattrs(None, parent, name, arc)
            self._count(0, arc)
            self.tar.addfile(info)

    def _same(self, fd: int, st: os.stat_result, arc: str) -> os.stat_result:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or \
                stat.S_IFMT(now.st_mode) != stat.S_IFMT(st.st_mode):
            raise ImageError(f"{self.label}: {arc} was replaced while it was read")
        return now

    def _dir(self, fd: int, parent: int, name: str, arc: str, st: os.stat_result,
             depth: int) -> None:
        info = self._info(arc, st)
        info.type = tarfile.DIRTYPE
        info.pax_headers = self._xattrs(fd, parent, name, arc)
        self._count(0, arc)
        self.tar.addfile(info)
        for key in _OPAQUE:
            with suppress(OSError):
                if os.getxattr(fd, key) == b"y":
                    self._whiteout(f"{arc}/.wh..wh..opq", st)
                    break
        self.directory(fd, depth + 1, arc + "/")

    def _file(self, parent: int, name: str, arc: str, st: os.stat_result) -> None:
        info = self._info(arc, st)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            info.type, info.linkname = tarfile.LNKTYPE, self.links[key]
            self._count(0, arc)
            self.tar.addfile(info)
            return
        fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
        try:
            now = self._same(fd, st, arc)
            info.size = now.st_size
            info.pax_headers = self._xattrs(fd, parent, name, arc)
            self._count(now.st_size, arc)
            self.tar.addfile(info, _Bounded(fd, now.st_size, arc, self.label))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            self.links[key] = arc


def layer_tar(layer_dir: str, out: IO[bytes], *, label: str | None = None,
              skip: Collection[str] = (), max_entries: int = MAX_LAYER_ENTRIES,
              max_depth: int = MAX_LAYER_DEPTH,
              max_bytes: int = MAX_LAYER_BYTES) -> tuple[str, int]:
    """Write the tree ``layer_dir`` (overlay form) to ``out`` as a tar (see the module
    doc); return its (sha256 digest, size).  ``skip``: top-level-relative paths
    (``etc/hosts``) left out.  ImageError naming ``label`` (default: the directory) when
    the tree changes under it, holds a partial overlay entry or exceeds a cap."""
    what = label or layer_dir
    sink = _Hashing(out)
    root = os.open(layer_dir, _DIR_FLAGS)
    try:
        with tarfile.open(fileobj=sink, mode="w|",  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT) as tar:
            writer = _Writer(tar, what, max_entries, max_depth, max_bytes, frozenset(skip))
            writer.directory(root, 0, "")
    finally:
        os.close(root)
    return sink.digest(), sink.size
