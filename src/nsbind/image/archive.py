"""Read-only access to an image's files, in a tar archive or a directory, without escaping it."""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
from typing import IO

from nsbind._sys.mount import openat2
from nsbind.flags import ResolveFlags
from nsbind.image.model import ImageError

__all__ = ["Archive", "DirArchive", "TarArchive", "open_archive"]


class Archive:
    """Files of an image by their path inside it."""

    source: str

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def open(self, path: str) -> IO[bytes]:
        raise NotImplementedError

    def read(self, path: str, limit: int = 64 << 20) -> bytes:
        """A small file (JSON); refuses more than ``limit`` bytes."""
        with self.open(path) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.source}: {path} is larger than {limit} bytes")
        return data

    def blob(self, digest: str, size: int | None, limit: int = 64 << 20) -> bytes:
        """A small blob under blobs/<alg>/<hex>, checked against its digest and size."""
        path = blob_path(digest, self.source)
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
    alg, _, hexpart = digest.partition(":")
    if alg != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise ImageError(f"{source}: unsupported or malformed digest {digest!r}")
    return f"blobs/{alg}/{hexpart}"


class TarArchive(Archive):
    """An uncompressed tar (docker save output); links resolve inside the archive only."""

    def __init__(self, path: str) -> None:
        self.source = path
        try:
            self._tar = tarfile.open(path, "r:")  # noqa: SIM115 (closed by close())
        except (tarfile.TarError, OSError) as exc:
            raise ImageError(f"{path}: not a readable tar archive: {exc}") from exc
        self._members = {posixpath.normpath(m.name.lstrip("/")).removeprefix("./"): m
                         for m in self._tar.getmembers()}

    def _member(self, path: str, depth: int = 0) -> tarfile.TarInfo:
        name = posixpath.normpath(path.lstrip("/"))
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
            raise ImageError(f"{self.source}: {path} is not a regular file")
        return member

    def exists(self, path: str) -> bool:
        return posixpath.normpath(path.lstrip("/")) in self._members

    def open(self, path: str) -> IO[bytes]:
        stream = self._tar.extractfile(self._member(path))
        assert stream is not None
        return stream

    def close(self) -> None:
        self._tar.close()


class DirArchive(Archive):
    """A directory (an OCI image layout); every open stays beneath it (RESOLVE_BENEATH)."""

    def __init__(self, path: str) -> None:
        self.source = path
        self._fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def exists(self, path: str) -> bool:
        try:
            openat2(self._fd, path, os.O_PATH, resolve=ResolveFlags.BENEATH).close()
            return True
        except OSError:
            return False

    def open(self, path: str) -> IO[bytes]:
        try:
            with openat2(self._fd, path, os.O_RDONLY,
                         resolve=ResolveFlags.BENEATH | ResolveFlags.NO_MAGICLINKS) as fd:
                stream = os.fdopen(fd.fileno(), "rb")  # a directory fails here
                fd.detach()  # the stream owns it now
        except OSError as exc:
            raise ImageError(f"{self.source}: cannot open {path}: {exc}") from exc
        return stream

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_archive(path: str) -> Archive:
    """A directory or a tar file."""
    if os.path.isdir(path):
        return DirArchive(path)
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file or directory")
    return TarArchive(path)
