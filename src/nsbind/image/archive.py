"""Read-only access to an image's files, in a tar archive or a directory, without escaping it.

Whoever made the image controls these files, so nothing here blocks or opens
anything but a regular file: in a directory, a path is opened beneath it
(openat2 RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) as O_PATH and must be a
regular file (fstat) before it is reopened for reading, non-blocking, through
/proc/self/fd; a FIFO, a device node, a socket or a directory is refused
without ever being opened for reading.  In a tar, only regular members are read
(links followed inside the archive).  The image path itself is checked the same
way: a directory or a regular file (a tar), nothing else.  Metadata is read up
to :data:`~nsbind.image.model.MAX_JSON_BYTES`; reading errors of a truncated
tar are ImageErrors naming the member.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
from typing import IO

from nsbind._sys.mount import AT_FDCWD, file_kind, open_regular, openat2
from nsbind.errors import InvalidValue
from nsbind.flags import ResolveFlags
from nsbind.image.model import MAX_JSON_BYTES, ImageError, check_digest, check_size

__all__ = ["Archive", "DirArchive", "TarArchive", "blob_path", "open_archive"]

_BENEATH = ResolveFlags.BENEATH | ResolveFlags.NO_MAGICLINKS


def _checked(path: str, source: str) -> str:
    if not isinstance(path, str) or not path or "\0" in path:
        raise ImageError(f"{source}: {path!r} is not a path")
    return path


class Archive:
    """Files of an image by their path inside it."""

    source: str

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def open(self, path: str) -> IO[bytes]:
        """A regular file's bytes; ImageError for anything else."""
        raise NotImplementedError

    def check_file(self, path: str) -> None:
        """ImageError unless ``path`` is a regular file (nothing is read)."""
        raise NotImplementedError

    def read(self, path: str, limit: int = MAX_JSON_BYTES) -> bytes:
        """A small file (JSON); refuses more than ``limit`` bytes."""
        with self.open(path) as f:
            try:
                data = f.read(limit + 1)
            except ImageError:
                raise
            except OSError as exc:
                raise ImageError(f"{self.source}: cannot read {path}: {exc}") from exc
        if len(data) > limit:
            raise ImageError(f"{self.source}: {path} is larger than {limit} bytes")
        return data

    def blob(self, digest: str, size: int | None, limit: int = MAX_JSON_BYTES) -> bytes:
        """A small blob under blobs/<alg>/<hex>, checked against its digest and size."""
        path = blob_path(digest, self.source)
        if size is not None and check_size(size, f"{self.source}: blob {path} size") > limit:
            raise ImageError(f"{self.source}: blob {path} is {size} bytes, more than the "
                             f"{limit} read for metadata")
        data = self.read(path, limit)
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise ImageError(f"{self.source}: blob {path}: digest mismatch: expected {digest}, "
                             f"got {got}")
        if size is not None and len(data) != size:
            raise ImageError(f"{self.source}: blob {path}: size mismatch: expected {size}, "
                             f"got {len(data)}")
        return data

    def close(self) -> None:
        pass


def blob_path(digest: str, source: str) -> str:
    """blobs/sha256/<hex> of a checked digest (never a path of someone else's choosing)."""
    alg, _, hexpart = check_digest(digest, f"{source}: digest").partition(":")
    return f"blobs/{alg}/{hexpart}"


class _Member(io.RawIOBase):
    """A tar member's stream whose read errors (a truncated archive) are ImageErrors."""

    def __init__(self, stream: IO[bytes], what: str) -> None:
        super().__init__()
        self._stream = stream
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._stream.read(len(buffer))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageError(f"{self._what}: cannot read: {exc}") from exc
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


class TarArchive(Archive):
    """An uncompressed tar (docker save output); links resolve inside the archive only.

    ``fileobj``, when given, is the tar's already opened file; it is closed by close().
    """

    def __init__(self, path: str, fileobj: IO[bytes] | None = None) -> None:
        self.source = path
        self._file = fileobj
        try:
            if fileobj is None:
                self._tar = tarfile.open(path, "r:")  # noqa: SIM115 (closed by close())
            else:
                self._tar = tarfile.open(fileobj=fileobj, mode="r:")  # noqa: SIM115
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            self.close()
            raise ImageError(f"{path}: not a readable tar archive: {exc}") from exc
        self._members = {posixpath.normpath(m.name.lstrip("/")).removeprefix("./"): m
                         for m in members}

    def _member(self, path: str, depth: int = 0) -> tarfile.TarInfo:
        name = posixpath.normpath(_checked(path, self.source).lstrip("/"))
        member = self._members.get(name)
        if member is None:
            raise ImageError(f"{self.source}: no {path} in the archive")
        if member.issym() or member.islnk():
            if depth > 16:
                raise ImageError(f"{self.source}: {path}: too many levels of links")
            base = posixpath.dirname(name) if member.issym() else ""
            target = posixpath.normpath(posixpath.join(base, member.linkname))
            if target.startswith("../") or target == ".." or member.linkname.startswith("/"):
                raise ImageError(f"{self.source}: {path} links outside the archive "
                                 f"({member.linkname})")
            return self._member(target, depth + 1)
        if not member.isfile():
            raise ImageError(f"{self.source}: {path} is not a regular file in the archive")
        return member

    def exists(self, path: str) -> bool:
        return posixpath.normpath(_checked(path, self.source).lstrip("/")) in self._members

    def check_file(self, path: str) -> None:
        self._member(path)

    def open(self, path: str) -> IO[bytes]:
        member = self._member(path)
        try:
            stream = self._tar.extractfile(member)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ImageError(f"{self.source}: cannot read {path}: {exc}") from exc
        assert stream is not None
        return io.BufferedReader(_Member(stream, f"{self.source}: {path}"))

    def close(self) -> None:
        if getattr(self, "_tar", None) is not None:
            self._tar.close()
        if self._file is not None:
            self._file.close()
            self._file = None


class DirArchive(Archive):
    """A directory (an OCI image layout, or a docker save unpacked): every open stays
    beneath it (RESOLVE_BENEATH) and reads regular files only.

    ``fd``, when given, is an open (O_PATH) fd of the directory, owned from now on.
    """

    def __init__(self, path: str, fd: int | None = None) -> None:
        self.source = path
        self._fd = fd if fd is not None else os.open(
            path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def exists(self, path: str) -> bool:
        try:
            openat2(self._fd, _checked(path, self.source), os.O_PATH, resolve=_BENEATH).close()
            return True
        except OSError:
            return False

    def _open_fd(self, path: str) -> int:
        name = _checked(path, self.source)
        try:
            return open_regular(self._fd, name, _BENEATH,
                                what=f"{self.source}: {path}").detach()
        except InvalidValue as exc:
            raise ImageError(str(exc)) from None
        except OSError as exc:
            raise ImageError(f"{self.source}: cannot open {path}: {exc}") from exc

    def check_file(self, path: str) -> None:
        os.close(self._open_fd(path))

    def open(self, path: str) -> IO[bytes]:
        return os.fdopen(self._open_fd(path), "rb")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_archive(path: str) -> Archive:
    """A directory or a tar file; anything else (a FIFO, a device) is refused unopened."""
    try:
        path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot open the image: {exc}") from exc
    try:
        st = os.fstat(path_fd)
        if stat.S_ISDIR(st.st_mode):
            return DirArchive(path, path_fd)
    except BaseException:
        os.close(path_fd)
        raise
    os.close(path_fd)
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path} is {file_kind(st.st_mode)}, not an image (a tar file or a "
                         "directory): refused")
    try:
        fd = open_regular(AT_FDCWD, path, what=path)
    except InvalidValue as exc:
        raise ImageError(str(exc)) from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot open the image: {exc}") from exc
    got = os.fstat(fd.fileno())
    if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
        fd.close()
        raise ImageError(f"{path} changed while it was opened: refused")
    return TarArchive(path, os.fdopen(fd.detach(), "rb"))
