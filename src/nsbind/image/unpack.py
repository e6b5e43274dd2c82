"""Stream a layer tar into a directory: faithfully, and without escaping it.

Two forms of whiteouts: ``"overlay"`` (each layer in its own directory, the way
overlayfs reads it: ``.wh.NAME`` becomes a 0:0 character device (which
unprivileged users may make too), ``.wh..wh..opq`` the ``trusted.overlay.opaque=y``
xattr, or ``user.overlay.opaque=y`` without CAP_SYS_ADMIN, for an overlay mounted
with ``userxattr`` in a user namespace) and ``"apply"`` (layers
stacked into one directory: whiteouts delete what lower layers made).

Refused with :class:`ImageError` (and nothing written outside the directory):
absolute member names, ``..`` components, members reached through a symlink
that points outside, hardlinks to targets outside or missing, entries under a
regular file, duplicate or conflicting entries, whiteouts of ``.`` or ``..``,
and a layer whose uncompressed size passes ``max_bytes`` (a decompression bomb).
The blob digest, its size and the diff_id are checked while the bytes stream by;
the caller discards the directory when they do not match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import Literal

from nsbind.image.model import MAX_LAYER_BYTES, ImageError, Layer
from nsbind.image.stream import LayerStream, Readable
from nsbind.image.tree import Tree

__all__ = ["LayerStats", "extract_layer", "unpack_tar"]

Whiteouts = Literal["overlay", "apply"]
WH = ".wh."
OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20


@dataclasses.dataclass
class LayerStats:
    """What an extraction did."""

    entries: int = 0
    bytes: int = 0           # uncompressed tar bytes read
    skipped: list[str] = dataclasses.field(default_factory=list)  # e.g. devices, not root


def extract_layer(layer: Layer, dest: str, *, whiteouts: Whiteouts, label: str,
                  max_bytes: int = MAX_LAYER_BYTES,
                  on_bytes: Callable[[int], None] | None = None) -> LayerStats:
    """Extract ``layer`` into the directory ``dest``, checking digest, size and diff_id.

    On any error the caller must discard ``dest`` (the store does: temp dir + rename).
    ``on_bytes`` is called with the number of stored (compressed) bytes read.
    """
    with layer.open() as raw, LayerStream(raw, layer.compression, max_bytes, on_bytes, label,
                                          threaded=True) as stream:
        stats = unpack_tar(stream, dest, whiteouts=whiteouts, label=label)
        stream.drain()
    stats.bytes = stream.size
    stream.check(layer)
    return stats


def unpack_tar(stream: Readable, dest: str, *, whiteouts: Whiteouts,
               label: str) -> LayerStats:
    """Extract an uncompressed tar stream into ``dest`` (see the module doc)."""
    tree = Tree(dest, label)
    try:
        ex = _Extractor(tree, whiteouts)
        try:
            with tarfile.open(fileobj=stream, mode="r|",  # type: ignore[call-overload]
                              errors="surrogateescape") as tar:
                for member in tar:
                    ex.entry(tar, member)
        except tarfile.TarError as exc:
            raise ImageError(f"{label}: not a valid layer tar: {exc}") from exc
        ex.finish()
        return ex.stats
    finally:
        tree.close()


def _clean(tree: Tree, name: str, what: str = "member") -> str:
    """The member's path relative to the tree, or ImageError."""
    if name.startswith("/"):
        raise tree.refuse(name, f"absolute {what} name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise tree.refuse(name, f"'..' in the {what} name")
    return "/".join(parts)


def _remove(parent: int, name: str) -> None:
    """Remove ``name`` in ``parent`` (a whole tree for a directory), never following links."""
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        for entry in os.scandir(fd):
            _remove(fd, entry.name)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


class _Extractor:
    def __init__(self, tree: Tree, whiteouts: Whiteouts) -> None:
        self.tree = tree
        self.mode = whiteouts
        self.stats = LayerStats()
        self.seen: dict[str, str] = {}   # path -> "dir", "file", "whiteout", ...
        self.dir_times: list[tuple[str, int]] = []
        self.root = os.geteuid() == 0

    # ------------------------------------------------------------ entries

    def entry(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        tree = self.tree
        rel = _clean(tree, m.name)
        self.stats.entries += 1
        if not rel:
            return  # the "./" entry: the layer's root keeps the store's metadata
        head, _, base = rel.rpartition("/")
        if base.startswith(WH):
            self._whiteout(rel, head, base)
            return
        kind = "dir" if m.isdir() else "file"
        prev = self.seen.get(rel)
        if prev is not None and not (prev == "dir" == kind) and prev != "whiteout":
            raise tree.refuse(m.name, "a duplicate entry in the layer")
        self.seen[rel] = kind
        parent, name = tree.parent(rel)
        self._make_room(parent, name, rel, m.isdir(), prev)
        if m.isdir():
            self._dir(parent, name, rel, m)
        elif m.isreg():
            self._file(tar, parent, name, m)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=parent)
            self._meta_nofollow(parent, name, m)
        elif m.islnk():
            self._hardlink(parent, name, m)
        elif m.ischr() or m.isblk() or m.isfifo():
            self._node(parent, name, rel, m)
        else:
            raise tree.refuse(m.name, f"unsupported tar entry type {m.type!r}")

    def _make_room(self, parent: int, name: str, rel: str, is_dir: bool,
                   prev: str | None) -> None:
        """Remove what is in the way: a lower layer's entry (apply form) or this layer's
        own whiteout; a directory over a directory stays."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if is_dir and stat.S_ISDIR(st.st_mode):
            return
        if self.mode == "overlay" and prev != "whiteout":
            raise self.tree.refuse(rel, "conflicts with an entry already in the layer")
        _remove(parent, name)
        if stat.S_ISDIR(st.st_mode):
            self.tree.forget()

    def _dir(self, parent: int, name: str, rel: str, m: tarfile.TarInfo) -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent)
        try:
            self._meta_fd(fd, m)
        finally:
            os.close(fd)
        self.dir_times.append((rel, int(m.mtime * 1e9)))

    def _file(self, tar: tarfile.TarFile, parent: int, name: str, m: tarfile.TarInfo) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            src = tar.extractfile(m)
            if src is not None and m.size:
                left = m.size
                while left > 0:
                    data = src.read(min(left, _CHUNK))
                    if not data:
                        raise self.tree.refuse(m.name, "the archive ends inside the file")
                    left -= len(data)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
            self._meta_fd(fd, m)
            os.utime(fd, ns=(int(m.mtime * 1e9),) * 2)
        finally:
            os.close(fd)

    def _hardlink(self, parent: int, name: str, m: tarfile.TarInfo) -> None:
        target = _clean(self.tree, m.linkname, "hardlink target")
        if not target:
            raise self.tree.refuse(m.name, "a hardlink to the layer's root")
        try:
            tparent, tname = self.tree.parent(target, create=False)
            os.link(tname, name, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise self.tree.refuse(m.name, f"a hardlink to {m.linkname!r}, which is not in "
                                   "the layer") from None

    def _node(self, parent: int, name: str, rel: str, m: tarfile.TarInfo) -> None:
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        try:
            os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor),
                     dir_fd=parent)
        except PermissionError:
            self.stats.skipped.append(f"{rel}: device nodes need CAP_MKNOD")
            return
        self._meta_nofollow(parent, name, m)

    # ------------------------------------------------------------ whiteouts

    def _whiteout(self, rel: str, head: str, base: str) -> None:
        tree = self.tree
        if base == OPAQUE:
            self._opaque(head)
            return
        if base.startswith(WH + WH):
            return  # aufs bookkeeping (.wh..wh.plnk, ...): not part of the filesystem
        target = base[len(WH):]
        if target in ("", ".", ".."):
            raise tree.refuse(rel, "a whiteout of '.' or '..'")
        trel = f"{head}/{target}" if head else target
        if trel in self.seen:
            return  # this layer's own entry stays (whiteouts hide lower layers only)
        parent, name = tree.parent(trel)
        if self.mode == "overlay":
            self.seen[trel] = "whiteout"
            try:
                os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
            except PermissionError:  # (Linux < 5.8 wanted CAP_MKNOD for them)
                raise tree.refuse(rel, "this kernel refuses the 0:0 whiteout device "
                                  "without CAP_MKNOD") from None
            return
        try:
            _remove(parent, name)
            tree.forget()
        except FileNotFoundError:
            pass  # a whiteout for something no lower layer has

    def _opaque(self, head: str) -> None:
        tree = self.tree
        dfd = tree.dir(head, create=True, member=f"{head}/{OPAQUE}")
        if self.mode == "overlay":
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
            try:
                os.setxattr(fd, "trusted.overlay.opaque", b"y")
            except PermissionError:
                # trusted.* needs CAP_SYS_ADMIN: an unprivileged unpack writes the form
                # overlayfs reads when mounted with "userxattr" (in a user namespace)
                os.setxattr(fd, "user.overlay.opaque", b"y")
            finally:
                os.close(fd)
            return
        prefix = f"{head}/" if head else ""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
        try:
            for entry in os.scandir(fd):
                if prefix + entry.name not in self.seen:
                    _remove(fd, entry.name)
        finally:
            os.close(fd)
        tree.forget()

    # ------------------------------------------------------------ metadata

    def _xattrs(self, m: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
        for key, value in m.pax_headers.items():
            for prefix in ("SCHILY.xattr.", "LIBARCHIVE.xattr."):
                if key.startswith(prefix):
                    name = key[len(prefix):]
                    if name.startswith("trusted.overlay."):
                        continue  # overlayfs' own markers come from whiteouts only
                    yield name, value.encode("utf-8", "surrogateescape")

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.root:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears set-id bits
        for name, value in self._xattrs(m):
            try:
                os.setxattr(fd, name, value)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP):
                    raise
                self.stats.skipped.append(f"{m.name}: xattr {name}: {exc.strerror}")

    def _meta_nofollow(self, parent: int, name: str, m: tarfile.TarInfo) -> None:
        if self.root:
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        if not m.issym():
            # a device node or fifo: opening it could block or act; chmod by name is
            # safe here because it is not a symlink (just made by us, O_EXCL-like)
            os.chmod(name, m.mode & 0o7777, dir_fd=parent)
        os.utime(name, ns=(int(m.mtime * 1e9),) * 2, dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        """Directory times last: adding entries changed them."""
        for rel, mtime in reversed(self.dir_times):
            try:
                parent, name = self.tree.parent(rel, create=False)
                os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                pass  # removed by a later whiteout or opaque marker
