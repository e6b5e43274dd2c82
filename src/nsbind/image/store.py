"""A content-addressed layer store: each layer unpacked once, shared by every image.

Layout under the store's root (``/var/lib/nsbind`` for root, else
``$XDG_DATA_HOME/nsbind`` or ``~/.local/share/nsbind``)::

    layers/sha256/<diff_id hex>/   a layer in overlay form (an overlayfs lowerdir)
    l/<4+ hex>                     a short symlink to a layer (:meth:`Store.short_path`)
    images/<config hex>.json       an image: its tags, source and layer diff_ids
    locks/<diff_id hex>.lock       flock(2) held while that layer is unpacked
    tmp/                           layers being unpacked (renamed into layers/ when done)
                                   or removed (renamed out of layers/ first)

``layers``, ``layers/sha256``, ``images``, ``locks`` and ``tmp`` are mode 0700 (made
so when the store is opened), as containers/storage keeps its layers: an image's
setuid files and device nodes (a 0666 block device) are out of other local users'
reach.  A layer directory itself keeps 0755: it is the root of the overlay, and a
container's non-root user must be able to enter it.

A layer is unpacked into ``tmp/`` and renamed into place only once its digest,
size and diff_id matched, so a crash, a Ctrl-C or a bad digest leaves no half
layer where it would be used; two processes unpacking the same layer serialise
on its lock and the second one finds it done.  :meth:`Store.gc` removes layers
no image references and temp directories nobody is writing.

Caps (``max_bytes``, ``max_entries``, ``max_depth``: see :mod:`nsbind.image.unpack`)
are the store's defaults, set when it is made and overridable per call.  Every tree
walk (removing a layer, a failed unpack or flatten) is iterative: any depth works, and
a failure leaves no half-made directory behind.
"""

from __future__ import annotations

import fcntl
import os

# collections.abc's class, without importing the collections package
from _collections_abc import Callable

from nsbind import features, jsonlite
from nsbind._sys.fd import PathLike
from nsbind.ctxlite import contextmanager, suppress
from nsbind.frozen import field, frozen
from nsbind.image.model import (
    MAX_LAYER_BYTES,
    MAX_LAYER_DEPTH,
    MAX_LAYER_ENTRIES,
    Image,
    ImageConfig,
    ImageError,
    Layer,
)
from nsbind.image.tree import remove_path
from nsbind.rootfs import RootFS

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from nsbind.image.unpack import LayerStats

__all__ = ["Store", "StoredImage", "default_store_path", "flatten"]

Progress = Callable[[int], None]
_PRIVATE = ("layers", "layers/sha256", "images", "locks", "tmp", "l")
_SHORT = 4  # hex digits of a layer's short name (more where two layers share them)


def default_store_path() -> str:
    """``/var/lib/nsbind`` for root, else ``$XDG_DATA_HOME/nsbind`` (~/.local/share)."""
    if os.geteuid() == 0:
        return "/var/lib/nsbind"
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data, "nsbind")


def _hex(diff_id: str) -> str:
    alg, _, hexpart = diff_id.partition(":")
    if alg != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef"
                                                        for c in hexpart):
        raise ImageError(f"malformed layer digest {diff_id!r}")
    return hexpart


@frozen
class StoredImage:
    """An image record of the store."""

    config_digest: str
    tags: tuple[str, ...]
    source: str
    platform: str
    layers: tuple[str, ...]  # diff_ids, lowest first
    #: what a runtime uses (empty in a record an older nsbind wrote)
    config: ImageConfig = field(default_factory=ImageConfig)


class Store:
    """Layers unpacked once, by diff_id (see the module doc)."""

    def __init__(self, path: str | None = None, *,
                 max_layer_bytes: int = MAX_LAYER_BYTES,
                 max_layer_entries: int = MAX_LAYER_ENTRIES,
                 max_layer_depth: int = MAX_LAYER_DEPTH) -> None:
        self.path = os.path.abspath(path or default_store_path())
        self.max_layer_bytes = max_layer_bytes
        self.max_layer_entries = max_layer_entries
        self.max_layer_depth = max_layer_depth
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        for sub in _PRIVATE:
            folder = os.path.join(self.path, sub)
            with suppress(FileExistsError):
                os.mkdir(folder, 0o700)
            if os.stat(folder).st_mode & 0o077:  # a store made by an older nsbind: 0755
                with suppress(PermissionError):  # not ours: read it as it is
                    os.chmod(folder, 0o700)

    def _caps(self, max_bytes: int | None, max_entries: int | None,
              max_depth: int | None) -> dict[str, int]:
        """extract_layer's cap arguments: the call's, else the store's."""
        return {"max_bytes": self.max_layer_bytes if max_bytes is None else max_bytes,
                "max_entries": self.max_layer_entries if max_entries is None else max_entries,
                "max_depth": self.max_layer_depth if max_depth is None else max_depth}

    # ---------------------------------------------------------------- layers

    def layer_path(self, diff_id: str) -> str:
        """Where the layer with ``diff_id`` is (or would be) unpacked."""
        return os.path.join(self.path, "layers", "sha256", _hex(diff_id))

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_path(diff_id))

    def short_path(self, diff_id: str) -> str:
        """``<store>/l/<first 4 hex digits>``: a symlink to the layer's directory (made
        when missing; more digits where two layers share the first 4).  Before Linux 6.8
        an overlay names all its layers in one ``lowerdir=`` option, 255 bytes through
        fsconfig (about 50 layers so) and a page through mount(2); named from ``l/``, a
        layer takes 5 bytes of it instead of 65.  overlayfs follows the link."""
        hexpart = _hex(diff_id)
        target = os.path.join("..", "layers", "sha256", hexpart)
        for n in range(_SHORT, len(hexpart) + 1):
            link = os.path.join(self.path, "l", hexpart[:n])
            try:
                os.symlink(target, link)
                return link
            except FileExistsError:
                if os.readlink(link) == target:
                    return link
        raise ImageError(f"no short name for layer {diff_id}: l/ holds its full digest "
                         "pointing elsewhere")

    def lower_paths(self, diff_ids: Iterable[str]) -> list[str]:
        """The layers' paths as an overlay names them: their directories, or before
        Linux 6.8 (one ``lowerdir=`` string) their short links (:meth:`short_path`)."""
        path = self.layer_path if features.lowerdir_plus() else self.short_path
        return [path(d) for d in diff_ids]

    @contextmanager
    def _lock(self, diff_id: str, *, wait: bool = True) -> Iterator[bool]:
        path = os.path.join(self.path, "locks", _hex(diff_id) + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def unpack_layer(self, layer: Layer, *, label: str = "layer",
                     on_bytes: Progress | None = None, max_bytes: int | None = None,
                     max_entries: int | None = None,
                     max_depth: int | None = None) -> tuple[str, LayerStats | None]:
        """Unpack one layer unless the store has it: (its directory, stats or None).
        The caps default to the store's."""
        final = self.layer_path(layer.diff_id)
        if os.path.isdir(final):
            return final, None
        with self._lock(layer.diff_id):
            if os.path.isdir(final):  # another process finished it meanwhile
                return final, None
            import tempfile  # here, as unpack: running a stored image needs neither

            from nsbind.image.unpack import extract_layer

            tmp = tempfile.mkdtemp(prefix=_hex(layer.diff_id) + ".",
                                   dir=os.path.join(self.path, "tmp"))
            try:
                stats = extract_layer(layer, tmp, whiteouts="overlay", label=label,
                                      on_bytes=on_bytes,
                                      **self._caps(max_bytes, max_entries, max_depth))
                os.chmod(tmp, 0o755)  # the overlay's root (layers/ is 0700)
                os.rename(tmp, final)
            except BaseException:
                _discard(tmp)
                raise
            _fsync_dir(os.path.dirname(final))
            return final, stats

    # ---------------------------------------------------------------- images

    def unpack(self, img: Image, *, on_bytes: Progress | None = None,
               on_layer: Callable[[int, Layer, bool], None] | None = None,
               max_bytes: int | None = None, max_entries: int | None = None,
               max_depth: int | None = None) -> list[str]:
        """Unpack every layer ``img`` needs that the store lacks; return the layer
        directories, lowest first (:meth:`rootfs` or :meth:`RootFS.from_layers` put them
        in overlayfs's order).

        ``on_layer(index, layer, unpacked)`` is called after each layer; the caps (per
        layer) default to the store's."""
        dirs = []
        for index, layer in enumerate(img.layers):
            path, stats = self.unpack_layer(layer, label=f"{img.source} layer {index}",
                                            on_bytes=on_bytes, max_bytes=max_bytes,
                                            max_entries=max_entries, max_depth=max_depth)
            dirs.append(path)
            if on_layer is not None:
                on_layer(index, layer, stats is not None)
        self._record(img)
        return dirs

    def rootfs(self, img: Image, upper: PathLike | None = None, work: PathLike | None = None,
               *, on_bytes: Progress | None = None, max_bytes: int | None = None,
               max_entries: int | None = None, max_depth: int | None = None,
               **options: Any) -> RootFS:
        """Unpack what ``img`` needs and return a :class:`~nsbind.rootfs.RootFS` of its
        layers in the right order (see :meth:`RootFS.from_layers`; ``options`` go there).
        Without ``upper`` and ``work`` the root is read-only: the store's layers are
        never written through it."""
        self.unpack(img, on_bytes=on_bytes, max_bytes=max_bytes, max_entries=max_entries,
                    max_depth=max_depth)
        return RootFS.from_layers(self.lower_paths(layer.diff_id for layer in img.layers),
                                  upper, work, **options)

    def _record(self, img: Image) -> None:
        """Write the image's record; a tag names one image, so the others that held one
        of its tags lose it (as Docker's do: they stay, untagged, until removed)."""
        self._write_record({"config_digest": img.config_digest, "tags": list(img.tags),
                            "source": img.source, "platform": img.platform,
                            "layers": [layer.diff_id for layer in img.layers],
                            "config": img.config.to_json()})
        taken = set(img.tags)
        for other in self.images() if taken else ():
            if other.config_digest != img.config_digest and taken & set(other.tags):
                self._write_record({
                    "config_digest": other.config_digest,
                    "tags": [t for t in other.tags if t not in taken],
                    "source": other.source, "platform": other.platform,
                    "layers": list(other.layers), "config": other.config.to_json()})

    def _write_record(self, record: dict[str, Any]) -> None:
        path = os.path.join(self.path, "images", _hex(record["config_digest"]) + ".json")
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=os.path.join(self.path, "tmp"), suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(jsonlite.dumps(record, indent=1))
        os.rename(tmp, path)

    def images(self) -> list[StoredImage]:
        """The image records, sorted by first tag."""
        out = []
        folder = os.path.join(self.path, "images")
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    r = jsonlite.loads(f.read())
                out.append(StoredImage(r["config_digest"], tuple(r["tags"]), r["source"],
                                       r["platform"], tuple(r["layers"]),
                                       ImageConfig.from_json(r.get("config"),
                                                             f"store record {name}")))
        return sorted(out, key=lambda i: (i.tags[:1], i.config_digest))

    def find(self, name: str) -> StoredImage:
        """The stored image ``name`` names: a tag, as Docker spells it (``busybox`` is
        ``docker.io/library/busybox:latest``), or a config digest (a prefix of at least
        6 hex digits, ``sha256:`` optional); ImageError when there is none."""
        from nsbind.image.reference import parse_reference

        wanted = {name}
        with suppress(ImageError):
            ref = parse_reference(name)
            wanted |= {str(ref), ref.familiar()}
        want = name.removeprefix("sha256:")
        hex_ref = len(want) >= 6 and all(c in "0123456789abcdef" for c in want)
        for img in self.images():
            if wanted & set(img.tags) or (hex_ref and img.config_digest[7:].startswith(want)):
                return img
        raise ImageError(f"no image {name!r} in the store {self.path}")

    def remove(self, ref: str) -> list[StoredImage]:
        """Forget the images with tag ``ref`` or whose config digest starts with it
        (``sha256:`` optional); their layers stay until :meth:`gc`."""
        want = ref.removeprefix("sha256:")
        gone = [i for i in self.images()
                if ref in i.tags or (len(want) >= 6 and
                                     i.config_digest.removeprefix("sha256:").startswith(want))]
        if not gone:
            raise ImageError(f"no image {ref!r} in the store {self.path}")
        for img in gone:
            os.unlink(os.path.join(self.path, "images", _hex(img.config_digest) + ".json"))
        return gone

    def gc(self) -> list[str]:
        """Remove layers no image references, and temp directories nobody is writing
        (a crashed unpack's or gc's); return the removed layer diff_ids.

        A layer is first renamed into ``tmp/`` (atomically: it is in ``layers/`` whole or
        not at all), then removed."""
        used = {d for img in self.images() for d in img.layers}
        removed = []
        folder = os.path.join(self.path, "layers", "sha256")
        tmp = os.path.join(self.path, "tmp")
        for name in sorted(os.listdir(folder)):
            diff_id = f"sha256:{name}"
            if diff_id in used or len(name) != 64:
                continue
            with self._lock(diff_id, wait=False) as got:
                if got:
                    import tempfile

                    doomed = tempfile.mkdtemp(prefix=f"{name}.gc-", dir=tmp)
                    os.rename(os.path.join(folder, name), os.path.join(doomed, "layer"))
                    remove_path(doomed)
                    removed.append(diff_id)
        links = os.path.join(self.path, "l")
        for name in os.listdir(links):  # short names of layers that are gone
            if not os.path.exists(os.path.join(links, name)):
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(links, name))
        for name in os.listdir(tmp):
            layer_hex = name.partition(".")[0]
            if len(layer_hex) != 64:
                continue  # an image record being written: tiny, renamed at once
            with self._lock(f"sha256:{layer_hex}", wait=False) as got:
                if got:
                    _discard(os.path.join(tmp, name))
        return removed

    # ---------------------------------------------------------------- flatten

    def flatten(self, img: Image, dest: str, *, on_bytes: Progress | None = None,
                max_bytes: int | None = None, max_entries: int | None = None,
                max_depth: int | None = None) -> None:
        """Stack every layer of ``img`` into one new directory ``dest``, whiteouts
        applied (a plain rootfs, e.g. for a runtime without overlayfs).

        ``dest`` must not exist; it appears (renamed from a temp directory beside
        it) only once every layer matched its digests, with mode 0700: the image's
        setuid files and device nodes are out of other local users' reach.  A
        container that runs as a non-root user needs ``/`` searchable: chmod ``dest``
        0755 once it sits in a directory other users cannot enter.  On any failure
        nothing is left behind.  The caps (per layer) default to the store's."""
        flatten(img, dest, on_bytes=on_bytes, **self._caps(max_bytes, max_entries, max_depth))


def flatten(img: Image, dest: str, *, max_bytes: int = MAX_LAYER_BYTES,
            max_entries: int = MAX_LAYER_ENTRIES, max_depth: int = MAX_LAYER_DEPTH,
            on_bytes: Progress | None = None) -> None:
    """See :meth:`Store.flatten` (no store needed: layers stream from the image)."""
    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise ImageError(f"flatten {img.source} into {dest}: it exists already")
    import tempfile

    from nsbind.image.unpack import extract_layer

    tmp = tempfile.mkdtemp(prefix=os.path.basename(dest) + ".nsbind-",
                           dir=os.path.dirname(dest))
    try:
        for index, layer in enumerate(img.layers):
            extract_layer(layer, tmp, whiteouts="apply", label=f"{img.source} layer {index}",
                          max_bytes=max_bytes, max_entries=max_entries, max_depth=max_depth,
                          on_bytes=on_bytes)
        os.chmod(tmp, 0o700)  # mkdtemp's mode already; stated, as it is the point
        os.rename(tmp, dest)
    except BaseException:
        _discard(tmp)
        raise


def _discard(path: str) -> None:
    """Remove a half-made tree after a failure (iteratively); a second failure while
    doing so must not hide the first."""
    with suppress(OSError):
        remove_path(path, missing_ok=True)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
