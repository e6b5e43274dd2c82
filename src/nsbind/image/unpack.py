"""Stream a layer tar into a directory: faithfully, and without escaping it.

Two forms of whiteouts: ``"overlay"`` (each layer in its own directory, the way
overlayfs reads it: ``.wh.NAME`` becomes a 0:0 character device (which
unprivileged users may make too), ``.wh..wh..opq`` the ``trusted.overlay.opaque=y``
xattr, or ``user.overlay.opaque=y`` without CAP_SYS_ADMIN, for an overlay mounted
with ``userxattr`` in a user namespace) and ``"apply"`` (layers
stacked into one directory: whiteouts delete what lower layers made).

Refused with :class:`ImageError` naming the member (and nothing written outside the
directory): absolute member names, ``..`` components, members reached through a
symlink that points outside, hardlinks to targets outside, missing, a directory or a
whiteout, entries under a regular file, duplicate or conflicting entries, whiteouts of
``.`` or ``..``, names the kernel refuses (a component over 255 bytes, a path of
PATH_MAX or more, an empty symlink target), and anything :class:`TarReader` finds
malformed (bad headers, times, ids, device numbers, xattr names, sparse maps, a
truncated stream).  A filesystem refusal (EINVAL, EPERM, ...) is an ImageError too;
a full disk, EIO or a read-only filesystem stays an OSError, naming the member.

Directories are made 0700 and get their modes and times last, deepest first, after all
members (GNU tar's delayed set-stat, umoci's unprivileged unpack): without root, a
0555 directory can still be filled, and a directory without search permission (0644)
can still hold one.  An existing directory a layer lists (a lower layer's, stacked) is
opened to its owner until then, through its own fd
(:func:`~nsbind.image.tree.open_owned_dir`).
Xattrs are set before modes: ``user.*`` ones need write access (a 0444 file's).

Caps, per layer (keyword arguments of :func:`extract_layer`, :func:`unpack_tar` and
the :class:`~nsbind.image.Store` methods; raise them for a huge layer):

``max_bytes`` (default ``MAX_LAYER_BYTES``, 64 GiB)
    the uncompressed tar stream (a decompression bomb), and separately the bytes the
    files take once written: a sparse member counts at its full size, holes included.
``max_entries`` (default :data:`MAX_LAYER_ENTRIES`, 100,000)
    tar members (each one an inode, or a whiteout): an inode bomb of tiny headers.
    The largest real layers have some tens of thousands.
``max_depth`` (default :data:`MAX_LAYER_DEPTH`, 256)
    components of a member's path.  Nothing in nsbind recurses over a tree, so a
    deeper layer is refused as absurd, not because it would crash anything.

The blob digest, its size and the diff_id are checked while the bytes stream by;
the caller discards the directory when they do not match.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Callable, Iterator
from typing import Literal

from nsbind.ctxlite import contextmanager, suppress
from nsbind.frozen import frozen
from nsbind.image.model import (
    MAX_LAYER_BYTES,
    MAX_LAYER_DEPTH,
    MAX_LAYER_ENTRIES,
    ImageError,
    Layer,
)
from nsbind.image.stream import LayerStream, Readable
from nsbind.image.tarreader import TarEntry, TarReader
from nsbind.image.tree import Tree, open_owned_dir, remove_tree

__all__ = ["MAX_LAYER_DEPTH", "MAX_LAYER_ENTRIES", "LayerStats", "extract_layer",
           "unpack_tar"]

Whiteouts = Literal["overlay", "apply"]
WH = ".wh."
OPAQUE = ".wh..wh..opq"

_PATH_MAX = 4096
_NAME_MAX = 255
#: errors of the host, not of the layer: they stay OSErrors
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM,
                          errno.EMFILE, errno.ENFILE, errno.ESTALE})
#: overlayfs' own markers come from whiteouts only, never from a layer's xattrs
_OVERLAY_XATTRS = (b"trusted.overlay.", b"user.overlay.")


@dataclasses.dataclass
class LayerStats:
    """What an extraction did."""

    entries: int = 0
    bytes: int = 0           # uncompressed tar bytes read
    written: int = 0         # file bytes written (sparse files at their full size)
    skipped: list[str] = dataclasses.field(default_factory=list)  # e.g. devices, not root


@frozen
class _Caps:
    bytes: int
    entries: int
    depth: int


def _can_chown() -> bool:
    """Whether the layer's owners can be set: root, with more than its own id mapped (a
    rootless user namespace of one id, as without subordinate ranges, maps nothing
    else: its files all stay the caller's, as podman's ignore_chown_errors does)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            mapped = sum(int(line.split()[2]) for line in f if line.strip())
    except (OSError, ValueError, IndexError):
        return True
    return mapped > 1


def extract_layer(layer: Layer, dest: str, *, whiteouts: Whiteouts, label: str,
                  max_bytes: int = MAX_LAYER_BYTES, max_entries: int = MAX_LAYER_ENTRIES,
                  max_depth: int = MAX_LAYER_DEPTH,
                  on_bytes: Callable[[int], None] | None = None) -> LayerStats:
    """Extract ``layer`` into the directory ``dest``, checking digest, size and diff_id.

    On any error the caller must discard ``dest`` (the store does: temp dir + rename).
    ``on_bytes`` is called with the number of stored (compressed) bytes read.  The caps
    are described in the module doc.
    """
    with layer.open() as raw, LayerStream(raw, layer.compression, max_bytes, on_bytes, label,
                                          threaded=True) as stream:
        stats = unpack_tar(stream, dest, whiteouts=whiteouts, label=label,
                           max_bytes=max_bytes, max_entries=max_entries, max_depth=max_depth)
        stream.drain()
    stats.bytes = stream.size
    stream.check(layer)
    return stats


def unpack_tar(stream: Readable, dest: str, *, whiteouts: Whiteouts, label: str,
               max_bytes: int = MAX_LAYER_BYTES, max_entries: int = MAX_LAYER_ENTRIES,
               max_depth: int = MAX_LAYER_DEPTH) -> LayerStats:
    """Extract an uncompressed tar stream into ``dest`` (see the module doc; here
    ``max_bytes`` caps the bytes written, the stream is the caller's)."""
    tree = Tree(dest, label)
    try:
        ex = _Extractor(tree, whiteouts, _Caps(max_bytes, max_entries, max_depth))
        reader = TarReader(stream, label)
        for member in reader:
            ex.entry(reader, member)
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


class _Extractor:
    def __init__(self, tree: Tree, whiteouts: Whiteouts, caps: _Caps) -> None:
        self.tree = tree
        self.mode = whiteouts
        self.caps = caps
        self.stats = LayerStats()
        self.seen: dict[str, str] = {}   # path -> "dir", "file", "whiteout", ...
        # path -> (member, mode, mtime): set by finish(), once the members are in
        self.dirs: dict[str, tuple[str, int, int]] = {}
        self.root = _can_chown()

    # ------------------------------------------------------------ entries

    def entry(self, reader: TarReader, m: TarEntry) -> None:
        """Extract one member; a filesystem refusal becomes an ImageError naming it."""
        with self._naming(m.name):
            self._entry(reader, m)

    @contextmanager
    def _naming(self, member: str) -> Iterator[None]:
        """A filesystem refusal becomes an ImageError naming ``member``; the host's own
        errors stay OSErrors, naming it too."""
        try:
            yield
        except ImageError:
            raise
        except OSError as exc:
            if exc.errno in _HOST_ERRNOS:
                raise OSError(exc.errno, f"{self.tree.label}: extracting {member!r}: "
                              f"{exc.strerror}") from exc
            raise self.tree.refuse(member, "the filesystem refused it: "
                                   f"{exc.strerror or exc}") from None
        except (ValueError, OverflowError) as exc:
            raise self.tree.refuse(member, str(exc)) from None

    def _entry(self, reader: TarReader, m: TarEntry) -> None:
        tree = self.tree
        rel = _clean(tree, m.name)
        self.stats.entries += 1
        if self.stats.entries > self.caps.entries:
            raise tree.refuse(m.name, f"the layer has more than {self.caps.entries} entries "
                              "(an inode bomb? raise max_entries for a layer this big)")
        if not rel:
            return  # the "./" entry: the layer's root keeps the store's metadata
        self._check_path(m.name, rel)
        head, _, base = rel.rpartition("/")
        if base.startswith(WH):
            self._whiteout(rel, head, base)
            return
        kind = "dir" if m.kind == "dir" else "file"
        prev = self.seen.get(rel)
        if prev is not None and not (prev == "dir" == kind) and prev != "whiteout":
            raise tree.refuse(m.name, "a duplicate entry in the layer")
        self.seen[rel] = kind
        parent, name = tree.parent(rel)
        self._make_room(parent, name, rel, m.kind == "dir", prev)
        if m.kind == "dir":
            self._dir(parent, name, rel, m)
        elif m.kind == "file":
            self._file(reader, parent, name, m)
        elif m.kind == "symlink":
            self._symlink(parent, name, m)
        elif m.kind == "hardlink":
            self._hardlink(parent, name, m)
        else:
            self._node(parent, name, rel, m)

    def _check_path(self, member: str, rel: str) -> None:
        raw = os.fsencode(rel)
        if len(raw) >= _PATH_MAX:
            raise self.tree.refuse(member, f"a path of {len(raw)} bytes (the kernel takes "
                                   f"less than {_PATH_MAX})")
        parts = raw.split(b"/")
        if len(parts) > self.caps.depth:
            raise self.tree.refuse(member, f"a path {len(parts)} directories deep (at most "
                                   f"{self.caps.depth}: raise max_depth)")
        if max(map(len, parts)) > _NAME_MAX:
            raise self.tree.refuse(member, f"a name component over {_NAME_MAX} bytes")

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
        remove_tree(parent, name)
        if stat.S_ISDIR(st.st_mode):
            self.tree.forget()

    def _dir(self, parent: int, name: str, rel: str, m: TarEntry) -> None:
        """Made 0700, or an existing one opened to its owner; finish() sets its mode."""
        with suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = open_owned_dir(parent, name)
        try:
            self._meta_fd(fd, m, mode=False)
        finally:
            os.close(fd)
        self.dirs[rel] = (m.name, m.mode & 0o7777, m.mtime_ns)

    def _file(self, reader: TarReader, parent: int, name: str, m: TarEntry) -> None:
        if m.size > self.caps.bytes - self.stats.written:
            raise self.tree.refuse(m.name, "the size of the layer's files once written "
                                   f"passes {self.caps.bytes} bytes (a decompression bomb? "
                                   "sparse files count at their full size; raise max_bytes "
                                   "for a layer this big)")
        self.stats.written += m.size
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            for offset, data in reader.data():
                view = memoryview(data)
                while view:
                    done = os.pwrite(fd, view, offset)
                    view = view[done:]
                    offset += done
            if m.sparse is not None:
                os.ftruncate(fd, m.size)  # a hole at the end
            self._meta_fd(fd, m)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)

    def _symlink(self, parent: int, name: str, m: TarEntry) -> None:
        size = len(os.fsencode(m.linkname))
        if not 0 < size < _PATH_MAX:
            raise self.tree.refuse(m.name, f"a symlink target of {size} bytes (1 to "
                                   f"{_PATH_MAX - 1})")
        os.symlink(m.linkname, name, dir_fd=parent)
        self._meta_nofollow(parent, name, m)

    def _hardlink(self, parent: int, name: str, m: TarEntry) -> None:
        target = _clean(self.tree, m.linkname, "hardlink target")
        if not target:
            raise self.tree.refuse(m.name, "a hardlink to the layer's root")
        if self.seen.get(target) == "whiteout":
            raise self.tree.refuse(m.name, f"a hardlink to {m.linkname!r}, a whiteout")
        try:
            tparent, tname = self.tree.parent(target, create=False)
            st = os.stat(tname, dir_fd=tparent, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise self.tree.refuse(m.name, f"a hardlink to {m.linkname!r}, which is not in "
                                   "the layer") from None
        if stat.S_ISDIR(st.st_mode):
            raise self.tree.refuse(m.name, f"a hardlink to {m.linkname!r}, a directory")
        os.link(tname, name, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)

    def _node(self, parent: int, name: str, rel: str, m: TarEntry) -> None:
        kind = {"chr": stat.S_IFCHR, "blk": stat.S_IFBLK}.get(m.kind, stat.S_IFIFO)
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
            remove_tree(parent, name)
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
            with os.scandir(fd) as it:
                names = [entry.name for entry in it]
            for name in names:
                if prefix + name not in self.seen:
                    remove_tree(fd, name)
        finally:
            os.close(fd)
        tree.forget()

    # ------------------------------------------------------------ metadata

    def _meta_fd(self, fd: int, m: TarEntry, *, mode: bool = True) -> None:
        if self.root:
            os.fchown(fd, m.uid, m.gid)
        for name, value in m.xattrs:
            if name.startswith(_OVERLAY_XATTRS):
                continue
            try:
                os.setxattr(fd, name, value)
            except OSError as exc:
                shown = os.fsdecode(name)
                if exc.errno not in (errno.EPERM, errno.ENOTSUP):
                    raise self.tree.refuse(m.name, f"the filesystem refused its xattr "
                                           f"{shown!r}: {exc.strerror}") from None
                self.stats.skipped.append(f"{m.name}: xattr {shown}: {exc.strerror}")
        if mode:
            # after chown, which clears set-id bits, and after the xattrs: user.* ones
            # need write access (a 0444 file's, without root)
            os.fchmod(fd, m.mode & 0o7777)

    def _meta_nofollow(self, parent: int, name: str, m: TarEntry) -> None:
        if self.root:
            os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        if m.kind != "symlink":
            # a device node or fifo: opening it could block or act; chmod by name is
            # safe here because it is not a symlink (just made by us, O_EXCL-like)
            os.chmod(name, m.mode & 0o7777, dir_fd=parent)
        os.utime(name, ns=(m.mtime_ns, m.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def finish(self) -> None:
        """Directory modes and times last, deepest first: until then each stays open to
        its owner (for its members, and the search of deeper ones), and adding members
        changed its times."""
        for rel in sorted(self.dirs, key=lambda path: path.count("/"), reverse=True):
            member, mode, mtime = self.dirs[rel]
            with self._naming(member):
                try:
                    parent, name = self.tree.parent(rel, create=False)
                    fd = open_owned_dir(parent, name)  # (one reached twice, by a link)
                except FileNotFoundError:
                    continue  # removed by a later whiteout or opaque marker
                try:
                    os.fchmod(fd, mode)
                    os.utime(fd, ns=(mtime, mtime))
                finally:
                    os.close(fd)
