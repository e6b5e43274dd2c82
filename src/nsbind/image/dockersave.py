"""`docker save` tarballs: manifest.json (+ LayerSources in Docker >= 25), config, layers."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from nsbind.image.archive import Archive
from nsbind.image.model import Image, ImageConfig, ImageError, Layer

__all__ = ["load_docker_save"]

_GZIP, _ZSTD = b"\x1f\x8b", b"\x28\xb5\x2f\xfd"


def _sniff(archive: Archive, path: str) -> str:
    with archive.open(path) as f:
        head = f.read(4)
    if head.startswith(_GZIP):
        return "application/vnd.docker.image.rootfs.diff.tar.gzip"
    if head.startswith(_ZSTD):
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return "application/vnd.docker.image.rootfs.diff.tar"


def load_docker_save(archive: Archive, tag: str | None = None) -> Image:
    """Load one image of a docker save archive (by ``tag`` when it holds several)."""
    src = archive.source
    if not archive.exists("manifest.json"):
        raise ImageError(f"{src}: no manifest.json: this is a legacy docker save (before "
                         "Docker 1.10) or not a docker save at all; it is not supported")
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except ValueError as exc:
        raise ImageError(f"{src}: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, list) or not manifest or not all(
            isinstance(e, dict) for e in manifest):
        raise ImageError(f"{src}: manifest.json must be a non-empty list of images, "
                         f"not {json.dumps(manifest)[:60]}")
    entry = _select(manifest, tag, src)
    config_path = entry.get("Config")
    if not isinstance(config_path, str):
        raise ImageError(f"{src}: a manifest.json entry has no Config")
    config_bytes = archive.read(config_path)
    config: dict[str, Any] = json.loads(config_bytes)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    paths = entry.get("Layers") or []
    if len(paths) != len(diff_ids):
        raise ImageError(f"{src}: {len(paths)} layers but {len(diff_ids)} diff_ids in the config")
    sources: dict[str, Any] = entry.get("LayerSources") or {}
    layers = []
    for path, diff_id in zip(paths, diff_ids, strict=True):
        digest = None
        if path.startswith("blobs/sha256/"):
            digest = "sha256:" + path.rsplit("/", 1)[1]
        described = sources.get(digest or "", {})
        media_type = described.get("mediaType") or _sniff(archive, path)
        layers.append(Layer(media_type, described.get("size"), digest, diff_id,
                            open=functools.partial(archive.open, path)))
    tags = tuple(entry.get("RepoTags") or ())
    return Image(source=src, tags=tags, os=config.get("os", ""),
                 architecture=config.get("architecture", ""), variant=config.get("variant"),
                 config=ImageConfig.from_json(config.get("config")),
                 history=tuple(config.get("history") or ()), layers=tuple(layers),
                 config_digest="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                 raw_config=config)


def _select(manifest: list[dict[str, Any]], tag: str | None, src: str) -> dict[str, Any]:
    if tag is None:
        if len(manifest) == 1:
            return manifest[0]
        tags = [t for e in manifest for t in (e.get("RepoTags") or ())]
        raise ImageError(f"{src} holds {len(manifest)} images; choose one by tag: "
                         f"{', '.join(tags) or '(untagged)'}")
    for entry in manifest:
        if tag in (entry.get("RepoTags") or ()):
            return entry
    tags = [t for e in manifest for t in (e.get("RepoTags") or ())]
    raise ImageError(f"{src}: no image tagged {tag!r} (tags: {', '.join(tags) or 'none'})")
