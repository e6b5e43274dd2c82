"""`docker save` tarballs: manifest.json (+ LayerSources in Docker >= 25), config, layers.

manifest.json and the config are parsed as hostile (see :mod:`nsbind.image.model`):
every field is type-checked and a malformed one is an ImageError naming the file
and the field; every layer must be a regular file in the archive.
"""

from __future__ import annotations

import hashlib

from nsbind.fnlite import partial
from nsbind.image.archive import Archive
from nsbind.image.model import (
    Fields,
    Image,
    ImageError,
    Layer,
    check_digest,
    kind_of,
    parse_config,
    parse_json,
)
from nsbind.lazyre import LazyPattern

__all__ = ["load_docker_save"]

_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"
_BLOB = LazyPattern(r"blobs/sha256/([0-9a-f]{64})")


def _sniff(archive: Archive, path: str) -> str:
    with archive.open(path) as f:
        head = f.read(4)
    if head.startswith(_GZIP):
        return "application/vnd.docker.image.rootfs.diff.tar.gzip"
    if head.startswith(_ZSTD):
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return "application/vnd.docker.image.rootfs.diff.tar"


def _entries(archive: Archive) -> list[Fields]:
    """manifest.json's entries, each an object with sound RepoTags."""
    src = archive.source
    what = f"{src}: manifest.json"
    manifest = parse_json(archive.read("manifest.json"), what)
    if not isinstance(manifest, list) or not manifest:
        shown = "an empty list" if manifest == [] else kind_of(manifest)
        raise ImageError(f"{what} must be a non-empty list of images, not {shown}")
    entries = [Fields(e, f"{what} entry {i}") for i, e in enumerate(manifest)]
    for entry in entries:
        entry.texts("RepoTags")
    return entries


def load_docker_save(archive: Archive, tag: str | None = None) -> Image:
    """Load one image of a docker save archive (by ``tag`` when it holds several)."""
    src = archive.source
    if not archive.exists("manifest.json"):
        raise ImageError(f"{src}: no manifest.json: this is a legacy docker save (before "
                         "Docker 1.10) or not a docker save at all; it is not supported")
    entry = _select(_entries(archive), tag, src)
    config_path = entry.text("Config", required=True)
    assert config_path is not None
    config_bytes = archive.read(config_path)
    config = parse_config(config_bytes, f"{src}: config {config_path}")
    paths = entry.texts("Layers")
    if any(not p for p in paths):
        raise ImageError(f"{entry.name('Layers')} has an empty path")
    if len(paths) != len(config.diff_ids):
        raise ImageError(f"{src}: {len(paths)} layers but {len(config.diff_ids)} diff_ids in "
                         "the config")
    sources = _layer_sources(entry)
    layers = []
    for index, (path, diff_id) in enumerate(zip(paths, config.diff_ids, strict=True)):
        match = _BLOB.fullmatch(path)
        digest = "sha256:" + match.group(1) if match else None
        described = sources.get(digest or "")
        if described is not None and described.raw["digest"] != digest:
            raise ImageError(f"{described.name('digest')} is not {digest}, the blob {path}")
        archive.check_file(path)
        media_type = (described.text("mediaType") if described else None) or _sniff(archive,
                                                                                   path)
        try:
            layers.append(Layer(media_type, described.size("size") if described else None,
                                digest, diff_id, open=partial(archive.open, path)))
        except ImageError as exc:
            raise ImageError(f"{src}: layer {index} ({path}): {exc}") from None
    return Image(source=src, tags=entry.texts("RepoTags"), os=config.os,
                 architecture=config.architecture, variant=config.variant,
                 config=config.config, history=config.history, layers=tuple(layers),
                 config_digest="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                 raw_config=config.raw)


def _layer_sources(entry: Fields) -> dict[str, Fields]:
    """LayerSources: descriptors by diff_id, each checked.  Classic saves use it for
    foreign layers (the descriptor is of the remote blob, not of the layer.tar in the
    archive); Docker >= 25 names its blobs by digest, equal to the diff_id there."""
    found = entry.obj("LayerSources")
    if found is None:
        return {}
    sources = {}
    for key, value in found.raw.items():
        check_digest(key, f"{found.what} key")
        desc = Fields(value, f"{found.what}[{key}]")
        desc.digest("digest")
        desc.text("mediaType", required=True)
        desc.size("size")
        sources[key] = desc
    return sources


def _select(manifest: list[Fields], tag: str | None, src: str) -> Fields:
    tags = [t for e in manifest for t in e.texts("RepoTags")]
    if tag is None:
        if len(manifest) == 1:
            return manifest[0]
        raise ImageError(f"{src} holds {len(manifest)} images; choose one by tag: "
                         f"{', '.join(tags) or '(untagged)'}")
    for entry in manifest:
        if tag in entry.texts("RepoTags"):
            return entry
    raise ImageError(f"{src}: no image tagged {tag!r} (tags: {', '.join(tags) or 'none'})")
