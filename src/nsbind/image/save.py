"""``nsbind image save`` and ``nsbind image import``: stored images out, root filesystems in.

:func:`save` writes stored images as Docker >= 25 does: one tar that is both a
``docker save`` archive (``manifest.json``, ``repositories``) and an OCI image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/...``), so ``docker load``, ``podman
load``, ``skopeo`` (``docker-archive:`` and ``oci-archive:``) and :func:`nsbind.image.load`
read it.  The store keeps layers unpacked, so each one is tarred again
(:func:`nsbind.image.layertar.layer_tar`: sorted, numeric owners, whiteouts back to
``.wh.`` entries), and the config is written new from the store's record with those
tars' digests as its ``rootfs.diff_ids`` (no history, no creation time: the store keeps
neither).  The outer tar is reproducible too (sorted, mtime 0, owner 0:0, no names):
the same image saved twice gives the same bytes.

The manifests use the OCI media types; ``manifest.json`` names the blobs the OCI
layout holds (as Docker >= 25 does), so nothing is stored twice.  An image named by a
tag is saved with that tag (``RepoTags``, and ``index.json``'s
``io.containerd.image.name`` / ``org.opencontainers.image.ref.name`` annotations);
one named by its ID is saved untagged, as ``docker save`` does.

The archive is written to a temp file beside ``out`` and renamed over it at the end:
an error leaves nothing behind, and an existing regular file is replaced atomically.

:func:`import_image` is ``docker import``: a directory or a tar of a root filesystem
becomes a one-layer image with an empty runtime config (or the one ``config`` gives),
for this host's platform, stored through :meth:`Store.unpack` (so a tarball is read as
hostile, like any layer).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, Any

from nsbind.image.layertar import layer_tar
from nsbind.image.model import (
    LAYER_MEDIA_TYPES,
    Image,
    ImageConfig,
    ImageError,
    Layer,
    host_platform,
)
from nsbind.image.pushing import (
    CONFIG_TYPE,
    LAYER_TYPE,
    MANIFEST_TYPE,
    image_config,
)
from nsbind.image.reference import parse_reference, tag_name
from nsbind.image.store import Store, StoredImage
from nsbind.image.stream import decompressed

__all__ = ["import_image", "save", "tree_layer"]

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(digest: str) -> str:
    return "blobs/sha256/" + digest.partition(":")[2]


def _tag_of(store_tags: Sequence[str], name: str) -> str | None:
    """The tag (familiar form) an image found by ``name`` is saved with: None when
    ``name`` named it by ID."""
    with contextlib.suppress(ImageError):
        ref = parse_reference(name)
        if ref.digest is None and {name, str(ref), ref.familiar()} & set(store_tags):
            return ref.familiar()
    return name if name in store_tags else None


class _Selection:
    """The images to save, by config digest, with the tags each is saved with."""

    def __init__(self, store: Store, names: Sequence[str]) -> None:
        if not names:
            raise ImageError("save: no image named")
        self.images: dict[str, StoredImage] = {}
        self.tags: dict[str, list[str]] = {}
        for name in names:
            img = store.find(name)
            for diff_id in img.layers:
                if not store.has_layer(diff_id):
                    raise ImageError(f"{name}: layer {diff_id} is missing from the store")
            self.images.setdefault(img.config_digest, img)
            tags = self.tags.setdefault(img.config_digest, [])
            tag = _tag_of(img.tags, name)
            if tag is not None and tag not in tags:
                tags.append(tag)


def _check_out(out: str) -> str:
    out = os.path.abspath(out)
    folder = os.path.dirname(out)
    if not os.path.isdir(folder):
        raise ImageError(f"{out}: the directory {folder} does not exist")
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(out).st_mode):
            raise ImageError(f"{out} exists and is not a regular file: not replaced")
    return out


def save(store: Store, names: Sequence[str], out: str) -> None:
    """Write the stored images ``names`` (tags or config digests) to ``out`` (see the
    module doc)."""
    selection = _Selection(store, names)
    out = _check_out(out)
    with contextlib.ExitStack() as stack:
        files: dict[str, tuple[int, Callable[[], IO[bytes]]]] = {}
        tars: dict[str, tuple[str, int]] = {}  # stored diff_id -> written digest, size
        for img in selection.images.values():
            for diff_id in img.layers:
                if diff_id in tars:
                    continue
                f = stack.enter_context(tempfile.TemporaryFile(dir=os.path.join(store.path,
                                                                                "tmp")))
                digest, size = layer_tar(store.layer_path(diff_id), f)
                tars[diff_id] = digest, size
                files[_blob(digest)] = size, _rewound(f)
        docs = _documents(selection, tars)
        for path, data in docs.items():
            files[path] = len(data), _reader(data)
        _write_atomically(out, files)


def _rewound(f: IO[bytes]) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        f.seek(0)
        return f
    return opener


def _reader(data: bytes) -> Callable[[], IO[bytes]]:
    return lambda: io.BytesIO(data)


def _documents(selection: _Selection, tars: dict[str, tuple[str, int]]) -> dict[str, bytes]:
    """The JSON files of the archive (and the config and manifest blobs), by path."""
    docs: dict[str, bytes] = {}
    entries: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for config_digest, img in selection.images.items():
        layers = [tars[d] for d in img.layers]
        config = image_config(img, [d for d, _ in layers])
        config_id = _sha(config)
        manifest = _json({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_id, "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for d, s in layers]})
        docs[_blob(config_id)] = config
        docs[_blob(_sha(manifest))] = manifest
        tags = selection.tags[config_digest]
        entries.append({"Config": _blob(config_id), "RepoTags": tags,
                        "Layers": [_blob(d) for d, _ in layers]})
        desc = {"mediaType": MANIFEST_TYPE, "digest": _sha(manifest), "size": len(manifest)}
        for tag in tags:
            ref = parse_reference(tag)
            index.append({**desc, "annotations": {IMAGE_NAME: str(ref),
                                                  REF_NAME: ref.tag or "latest"}})
            repo, _, version = tag.rpartition(":")
            repositories.setdefault(repo, {})[version] = config_id.partition(":")[2]
        if not tags:
            index.append(desc)
    docs["manifest.json"] = _json(entries)
    docs["index.json"] = _json({"schemaVersion": 2, "mediaType": INDEX_TYPE,
                                "manifests": index})
    docs["oci-layout"] = _json({"imageLayoutVersion": "1.0.0"})
    if repositories:
        docs["repositories"] = _json(repositories)
    return docs


def _entry(name: str, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if name.endswith("/"):
        info.name, info.type, info.mode = name.rstrip("/"), tarfile.DIRTYPE, 0o755
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, size
    return info


def _write_atomically(out: str, files: dict[str, tuple[int, Callable[[], IO[bytes]]]]) -> None:
    """The archive of ``files`` (path: size, opener) at ``out``, sorted, via a temp file
    beside it."""
    mode = 0o644
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.stat(out).st_mode)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(out) + ".", suffix=".tmp",
                               dir=os.path.dirname(out))
    try:
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for folder in ("blobs/", "blobs/sha256/"):
                    tar.addfile(_entry(folder))
                for path in sorted(files):
                    size, opener = files[path]
                    tar.addfile(_entry(path, size), opener())
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------------- import


def _opener(path: str) -> Callable[[], IO[bytes]]:
    def opener() -> IO[bytes]:
        return open(path, "rb")
    return opener


def tree_layer(tree: str, path: str, **options: Any) -> Layer:
    """The directory ``tree`` written as a layer tar at ``path``
    (:func:`nsbind.image.layertar.layer_tar`; ``options`` go there) and the
    :class:`Layer` that reads it back."""
    with open(path, "wb") as f:
        digest, size = layer_tar(tree, f, **options)
    return Layer(LAYER_TYPE, size, digest, digest, open=_opener(path))


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_GZIP):
        return "application/vnd.oci.image.layer.v1.tar+gzip"
    if head.startswith(_ZSTD):
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return LAYER_TYPE


def _tar_layer(path: str, source: str) -> Layer:
    """A Layer of the tarball ``path`` (gzip, zstd or plain), its digests computed."""
    media_type = _sniff(path)
    blob, diff = hashlib.sha256(), hashlib.sha256()

    class _Tee:
        def __init__(self, f: IO[bytes]) -> None:
            self.f = f

        def read(self, n: int = -1) -> bytes:
            data = self.f.read(n)
            blob.update(data)
            return data

    with open(path, "rb") as f:
        for chunk in decompressed(_Tee(f), LAYER_MEDIA_TYPES[media_type], source):
            diff.update(chunk)
        size = f.tell()
    return Layer(media_type, size, "sha256:" + blob.hexdigest(),
                 "sha256:" + diff.hexdigest(), open=_opener(path))


def import_image(store: Store, source: str, name: str, *,
                 config: ImageConfig | None = None) -> StoredImage:
    """Store the root filesystem ``source`` (a directory, or a tar of one) as a one-layer
    image tagged ``name`` with the runtime config ``config`` (default: empty; see the
    module doc); return its record."""
    try:
        tag = tag_name(name)
    except ImageError as exc:
        raise ImageError(f"import: {exc}") from None
    st = os.stat(source)
    with contextlib.ExitStack() as stack:
        if stat.S_ISDIR(st.st_mode):
            tmp = stack.enter_context(tempfile.TemporaryDirectory(
                prefix="import-", dir=os.path.join(store.path, "tmp")))
            layer = tree_layer(source, os.path.join(tmp, "layer.tar"))
        elif stat.S_ISREG(st.st_mode):
            layer = _tar_layer(source, f"import {source}")
        else:
            raise ImageError(f"import: {source} is neither a directory nor a regular file")
        os_name, arch = host_platform()
        config = config or ImageConfig()
        raw: dict[str, Any] = {"architecture": arch, "os": os_name,
                               "config": config.to_json(),
                               "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
        img = Image(source=os.path.abspath(source), tags=(tag,), os=os_name,
                    architecture=arch, variant=None, config=config, history=(),
                    layers=(layer,), config_digest=_sha(_json(raw)), raw_config=raw)
        store.unpack(img)
    return next(i for i in store.images() if i.config_digest == img.config_digest)
