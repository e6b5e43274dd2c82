"""OCI image layouts: oci-layout, index.json, and blobs/sha256/* (also inside a tar)."""

from __future__ import annotations

import functools
import json
from typing import Any

from nsbind.image.archive import Archive, blob_path
from nsbind.image.model import (
    LAYER_MEDIA_TYPES,
    Image,
    ImageConfig,
    ImageError,
    Layer,
    host_platform,
)

__all__ = ["load_oci_layout"]

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json"}


def load_oci_layout(archive: Archive, tag: str | None = None,
                    platform: tuple[str, str] | None = None) -> Image:
    """Load the image ``tag`` names (or the only one), for ``platform`` (default: this host)."""
    src = archive.source
    try:
        layout = json.loads(archive.read("oci-layout"))
        index = json.loads(archive.read("index.json"))
    except ValueError as exc:
        raise ImageError(f"{src}: malformed oci-layout or index.json: {exc}") from exc
    if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
        raise ImageError(f"{src}: unsupported OCI layout version {layout!r}")
    descriptors = [d for d in index.get("manifests") or () if isinstance(d, dict)]
    desc = _select(descriptors, tag, src)
    tags = tuple(d["annotations"][REF_NAME] for d in descriptors
                 if d.get("digest") == desc.get("digest") and REF_NAME in (d.get("annotations")
                                                                           or {}))
    manifest = _resolve(archive, desc, platform or host_platform(), src, depth=0)
    return _image(archive, manifest, tags, src)


def _select(descriptors: list[dict[str, Any]], tag: str | None, src: str) -> dict[str, Any]:
    named = {(d.get("annotations") or {}).get(REF_NAME): d for d in descriptors}
    if tag is not None:
        if tag not in named:
            listed = ", ".join(sorted(t for t in named if t)) or "none"
            raise ImageError(f"{src}: no image tagged {tag!r} (tags: {listed})")
        return named[tag]
    if len(descriptors) == 1:
        return descriptors[0]
    listed = ", ".join(sorted(t for t in named if t)) or "(untagged)"
    raise ImageError(f"{src} holds {len(descriptors)} entries; choose one by tag: {listed}")


def _json_blob(archive: Archive, desc: dict[str, Any], src: str) -> dict[str, Any]:
    data = archive.blob(str(desc.get("digest")), desc.get("size"))
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ImageError(f"{src}: blob {desc.get('digest')} is not a JSON object")
    return value


def _resolve(archive: Archive, desc: dict[str, Any], want: tuple[str, str], src: str,
             depth: int) -> dict[str, Any]:
    if depth > 4:
        raise ImageError(f"{src}: indexes nested too deep (a loop?)")
    media = desc.get("mediaType")
    doc = _json_blob(archive, desc, src)
    media = doc.get("mediaType") or media
    if media in MANIFEST_TYPES:
        return doc
    if media not in INDEX_TYPES:
        raise ImageError(f"{src}: {desc.get('digest')} has media type {media}, neither an image "
                         "manifest nor an index")
    os_name, arch = want
    found = []
    for child in doc.get("manifests") or ():
        plat = child.get("platform") or {}
        found.append("/".join(p for p in (plat.get("os"), plat.get("architecture"),
                                          plat.get("variant")) if p) or "(no platform)")
        if (plat.get("os"), plat.get("architecture")) == (os_name, arch):
            return _resolve(archive, child, want, src, depth + 1)
    raise ImageError(f"{src}: no image for {os_name}/{arch} in the index "
                     f"(it has: {', '.join(found) or 'nothing'})")


def _image(archive: Archive, manifest: dict[str, Any], tags: tuple[str, ...],
           src: str) -> Image:
    config_desc = manifest.get("config") or {}
    if config_desc.get("mediaType") not in CONFIG_TYPES:
        raise ImageError(f"{src}: this is an artifact, not an image (config media type "
                         f"{config_desc.get('mediaType')})")
    descs = manifest.get("layers") or []
    for desc in descs:
        if desc.get("mediaType") not in LAYER_MEDIA_TYPES:
            raise ImageError(f"{src}: layer {desc.get('digest')} has media type "
                             f"{desc.get('mediaType')}, which is not a filesystem layer")
    config = _json_blob(archive, config_desc, src)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(descs) != len(diff_ids):
        raise ImageError(f"{src}: {len(descs)} layers but {len(diff_ids)} diff_ids in the config")
    layers = []
    for desc, diff_id in zip(descs, diff_ids, strict=True):
        media = desc.get("mediaType")
        path = blob_path(str(desc.get("digest")), src)
        layers.append(Layer(media, desc.get("size"), desc.get("digest"), diff_id,
                            open=functools.partial(archive.open, path)))
    return Image(source=src, tags=tags, os=config.get("os", ""),
                 architecture=config.get("architecture", ""), variant=config.get("variant"),
                 config=ImageConfig.from_json(config.get("config")),
                 history=tuple(config.get("history") or ()), layers=tuple(layers),
                 config_digest=str(config_desc.get("digest")), raw_config=config)
