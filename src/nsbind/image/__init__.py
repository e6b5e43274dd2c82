"""Container images: docker save tarballs and OCI image layouts, in one model.

>>> img = nsbind.image.load("ubuntu.tar")            # or an OCI layout directory
>>> img.tags, img.config.env, [l.diff_id for l in img.layers]
>>> img.verify()                                     # every digest, streaming
>>> store = nsbind.image.Store()                      # content-addressed layers
>>> store.unpack(img)                                 # layer dirs, lowest first
>>> store.flatten(img, "rootfs")                      # one directory, whiteouts applied

Selecting: ``tag=`` when an archive holds several images, ``platform=`` (default:
this host) in a multi-platform index.  Artifacts and non-layer media types are
refused with a clear :class:`ImageError`.  The archive stays open while the
image's layers are read: close the Image (or use it in a ``with`` block).
"""

from __future__ import annotations

from nsbind.frozen import replace_fields
from nsbind.image.model import Image, ImageConfig, ImageError, Layer, host_platform
from nsbind.lazyimport import module_getattr

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from nsbind.image.pulling import pull
    from nsbind.image.pushing import push
    from nsbind.image.store import Store, StoredImage, default_store_path, flatten
    from nsbind.image.unpack import LayerStats, extract_layer, unpack_tar

# the store and the unpacker (and their decompressors) load on first use: a program
# that only reads JSON metadata (nsbind.oci's spec parser) does not pay for them
_LAZY: dict[str, str | None] = {
    "Store": ".store", "StoredImage": ".store", "default_store_path": ".store",
    "flatten": ".store", "LayerStats": ".unpack", "extract_layer": ".unpack",
    "unpack_tar": ".unpack", "pull": ".pulling", "push": ".pushing"}


__getattr__ = module_getattr("nsbind.image", _LAZY, globals())

__all__ = ["Image", "ImageConfig", "ImageError", "Layer", "LayerStats", "Store", "StoredImage",
           "default_store_path", "extract_layer", "flatten", "host_platform", "load", "pull",
           "push", "unpack_tar"]


def load(path: str, *, tag: str | None = None,
         platform: tuple[str, str] | None = None) -> Image:
    """Load a docker save tarball (also Docker >= 25's hybrid output) or an OCI layout
    (a directory or a tar of one).

    The image is treated as hostile: ``path`` must be a directory or a regular file
    (a FIFO or a device node is refused without being opened for reading), and so
    must every file read from it (see :mod:`nsbind.image.archive`); JSON metadata is
    read up to 16 MiB and 64 levels deep, and checked field by field (see
    :mod:`nsbind.image.model`).  Anything malformed or unsupported raises an
    :class:`ImageError` naming the file and the field."""
    from nsbind.image.archive import open_archive
    from nsbind.image.dockersave import load_docker_save
    from nsbind.image.ocilayout import load_oci_layout

    archive = open_archive(path)
    try:
        if archive.exists("oci-layout") and archive.exists("index.json") and not archive.exists(
                "manifest.json"):
            img = load_oci_layout(archive, tag, platform)
        else:
            img = load_docker_save(archive, tag)  # its error explains what is missing
    except BaseException:
        archive.close()
        raise
    return replace_fields(img, closer=archive.close)
