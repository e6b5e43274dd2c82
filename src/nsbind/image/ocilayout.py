"""OCI image layouts: oci-layout, index.json, and blobs/sha256/* (also inside a tar).

Every document (oci-layout, index.json, indexes, manifests, the config) is parsed
as hostile (see :mod:`nsbind.image.model`): each descriptor needs a sha256
digest, a size that is an integer in range, string annotations and a platform
object of strings; blobs are read by digest only (blobs/sha256/<hex>), checked
against it, and every layer must be a regular file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from nsbind.fnlite import partial
from nsbind.frozen import frozen
from nsbind.image.archive import Archive, blob_path
from nsbind.image.model import (
    LAYER_MEDIA_TYPES,
    MAX_JSON_BYTES,
    Fields,
    Image,
    ImageError,
    Layer,
    host_platform,
    parse_config,
    parse_json,
)

__all__ = ["CONFIG_TYPES", "INDEX_TYPES", "MANIFEST_TYPES", "Descriptor", "choose_platform",
           "descriptors", "image_from_manifest", "load_oci_layout"]

REF_NAME = "org.opencontainers.image.ref.name"
#: the full image name containerd, buildkit and ``docker save`` (25+) write beside it
IMAGE_NAME = "io.containerd.image.name"
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json"}


@frozen
class Descriptor:
    """A content descriptor, checked: what it names and where it was written (an OCI
    layout's, or a registry's: :mod:`nsbind.image.pulling` reads them alike)."""

    what: str
    media_type: str | None
    digest: str
    size: int | None
    ref_name: str | None
    platform: tuple[str, str, str | None] | None  # os, architecture, variant
    image_name: str | None = None

    @classmethod
    def parse(cls, value: object, what: str) -> Descriptor:
        f = Fields(value, what)
        annotations = f.string_map("annotations")
        ref_name = annotations.get(REF_NAME)
        plat = f.obj("platform")
        platform = None
        if plat is not None:
            plat.texts("os.features")
            plat.text("os.version")
            platform = (plat.text("os", required=True) or "",
                        plat.text("architecture", required=True) or "", plat.text("variant"))
        return cls(what, f.text("mediaType"), f.digest("digest"), f.size("size"), ref_name,
                   platform, annotations.get(IMAGE_NAME))

    @property
    def platform_name(self) -> str:
        return "/".join(p for p in self.platform or () if p) or "(no platform)"


def descriptors(doc: Fields) -> list[Descriptor]:
    """The ``manifests`` of an index, checked."""
    return [Descriptor.parse(d, f"{doc.name('manifests')} item {i}")
            for i, d in enumerate(doc.items("manifests"))]


def load_oci_layout(archive: Archive, tag: str | None = None,
                    platform: tuple[str, str] | None = None) -> Image:
    """Load the image ``tag`` names (or the only one), for ``platform`` (default: this host)."""
    src = archive.source
    layout = Fields(parse_json(archive.read("oci-layout"), f"{src}: oci-layout"),
                    f"{src}: oci-layout")
    if layout.raw.get("imageLayoutVersion") != "1.0.0":
        raise ImageError(f"{src}: unsupported OCI layout version "
                         f"{str(layout.raw.get('imageLayoutVersion'))[:40]!r}")
    index = Fields(parse_json(archive.read("index.json"), f"{src}: index.json"),
                   f"{src}: index.json")
    entries = descriptors(index)
    desc = _select(entries, tag, src)
    tags = tuple(dict.fromkeys(
        name for d in entries if d.digest == desc.digest
        for name in (d.ref_name, d.image_name) if name))
    manifest = _resolve(archive, desc, platform or host_platform(), src, depth=0)
    return _image(archive, manifest, tags, src)


def _select(descriptors: list[Descriptor], tag: str | None, src: str) -> Descriptor:
    if not descriptors:
        raise ImageError(f"{src}: index.json lists no images")
    named: dict[str | None, Descriptor] = {}
    for d in descriptors:
        if d.ref_name in named and named[d.ref_name].digest != d.digest and d.ref_name:
            raise ImageError(f"{src}: index.json tags two different images {d.ref_name!r}")
        named.setdefault(d.ref_name, d)
    if tag is not None:
        if tag not in named:
            listed = ", ".join(sorted(t for t in named if t)) or "none"
            raise ImageError(f"{src}: no image tagged {tag!r} (tags: {listed})")
        return named[tag]
    if len(descriptors) == 1:
        return descriptors[0]
    listed = ", ".join(sorted(t for t in named if t)) or "(untagged)"
    raise ImageError(f"{src} holds {len(descriptors)} entries; choose one by tag: {listed}")


def _json_blob(archive: Archive, desc: Descriptor, src: str) -> Fields:
    what = f"{src}: blob {desc.digest}"
    return Fields(parse_json(archive.blob(desc.digest, desc.size, MAX_JSON_BYTES), what), what)


def _resolve(archive: Archive, desc: Descriptor, want: tuple[str, str], src: str,
             depth: int) -> Fields:
    if depth > 4:
        raise ImageError(f"{src}: indexes nested too deep (a loop?)")
    doc = _json_blob(archive, desc, src)
    media = doc.text("mediaType") or desc.media_type
    if media in MANIFEST_TYPES:
        return doc
    if media not in INDEX_TYPES:
        raise ImageError(f"{src}: {desc.digest} has media type {str(media)[:100]}, neither an "
                         "image manifest nor an index")
    return _resolve(archive, choose_platform(doc, want, src), want, src, depth + 1)


def choose_platform(index: Fields, want: tuple[str, str], what: str) -> Descriptor:
    """The first entry of ``index`` for ``want`` (os, architecture), as ``image.load``
    and ``pull`` choose; ImageError listing what the index has otherwise."""
    children = descriptors(index)
    for child in children:
        if child.platform is not None and child.platform[:2] == want:
            return child
    found = ", ".join(c.platform_name for c in children) or "nothing"
    raise ImageError(f"{what}: no image for {want[0]}/{want[1]} in the index (it has: {found})")


def image_from_manifest(manifest: Fields, *, src: str, tags: tuple[str, ...],
                        read_blob: Callable[[Descriptor], bytes],
                        opener: Callable[[Descriptor], Callable[[], IO[bytes]]]) -> Image:
    """The :class:`Image` an image manifest describes, wherever its blobs are (a layout,
    a registry): its config read with ``read_blob`` and parsed, its layers opened with
    what ``opener`` gives.  Refused: an artifact (not an image config), a layer that is
    not a filesystem tar, a layer count that is not the config's."""
    config_value = manifest.raw.get("config")
    if config_value is None:
        raise ImageError(f"{manifest.name('config')} is missing")
    config_desc = Descriptor.parse(config_value, manifest.name("config"))
    if config_desc.media_type not in CONFIG_TYPES:
        raise ImageError(f"{src}: this is an artifact, not an image (config media type "
                         f"{str(config_desc.media_type)[:100]})")
    descs = [Descriptor.parse(d, f"{manifest.name('layers')} item {i}")
             for i, d in enumerate(manifest.items("layers"))]
    for desc in descs:
        if desc.media_type not in LAYER_MEDIA_TYPES:
            raise ImageError(f"{src}: layer {desc.digest} has media type "
                             f"{str(desc.media_type)[:100]}, which is not a filesystem layer")
    config = parse_config(read_blob(config_desc), f"{src}: config {config_desc.digest}")
    if len(descs) != len(config.diff_ids):
        raise ImageError(f"{src}: {len(descs)} layers but {len(config.diff_ids)} diff_ids in "
                         "the config")
    layers = []
    for index, (desc, diff_id) in enumerate(zip(descs, config.diff_ids, strict=True)):
        assert desc.media_type is not None
        try:
            layers.append(Layer(desc.media_type, desc.size, desc.digest, diff_id,
                                open=opener(desc)))
        except ImageError as exc:
            raise ImageError(f"{src}: layer {index}: {exc}") from None
    return Image(source=src, tags=tags, os=config.os, architecture=config.architecture,
                 variant=config.variant, config=config.config, history=config.history,
                 layers=tuple(layers), config_digest=config_desc.digest, raw_config=config.raw)


def _image(archive: Archive, manifest: Fields, tags: tuple[str, ...], src: str) -> Image:
    def opener(desc: Descriptor) -> Callable[[], IO[bytes]]:
        path = blob_path(desc.digest, src)
        archive.check_file(path)
        return partial(archive.open, path)

    return image_from_manifest(manifest, src=src, tags=tags, opener=opener,
                               read_blob=lambda d: archive.blob(d.digest, d.size))
