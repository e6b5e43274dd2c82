"""The image a container runs: a name in the local store, or an archive (a docker save
tarball or an OCI layout) loaded into the store on the way; refused up front when it
is for another platform."""

from __future__ import annotations

import os
import sys

from nsbind.engine.errors import EngineError
from nsbind.frozen import frozen
from nsbind.image import ImageConfig, ImageError, host_platform

__all__ = ["RunImage", "find_stored", "resolve_image"]

@frozen
class RunImage:
    """What a container needs of its image: its name, config and layer directories."""

    ref: str
    config_digest: str
    config: ImageConfig
    layer_dirs: tuple[str, ...]  # lowest first
    platform: str


def _check_platform(platform: str, what: str) -> None:
    host = "/".join(host_platform())
    if platform.split("/")[:2] != host.split("/")[:2]:
        raise EngineError(f"image {what} is for {platform}, and this host runs {host}: "
                          "refused (its programs could not run here)")


def find_stored(ref: str, store_path: str | None) -> RunImage | None:
    """The stored image ``ref`` names (see :meth:`nsbind.image.Store.find`), or None."""
    from nsbind.image import Store

    store = Store(store_path)
    try:
        img = store.find(ref)
    except ImageError:
        return None
    _check_platform(img.platform, ref)
    missing = [d for d in img.layers if not store.has_layer(d)]
    if missing:
        raise EngineError(f"image {ref}: layer {missing[0]} is missing from the store; "
                          "load the image again")
    return RunImage(ref, img.config_digest, img.config, tuple(store.lower_paths(img.layers)),
                    img.platform)


def resolve_image(ref: str, store_path: str | None, *, quiet: bool = False) -> RunImage:
    """The image ``ref`` names: in the store, else an archive at that path, loaded into
    the store first (a progress bar on a terminal unless ``quiet``).  EngineError (125)
    naming it when there is neither, or when it is broken or for another platform."""
    try:
        found = find_stored(ref, store_path)
        if found is not None:
            return found
        if not os.path.lexists(ref):
            raise EngineError(f"Unable to find image '{ref}' locally (nsbind image load "
                              "FILE stores one; run takes an archive's path too)")
        return _load(ref, store_path, quiet)
    except ImageError as exc:
        raise EngineError(f"image {ref}: {exc}") from None
    except OSError as exc:
        if isinstance(exc, EngineError):
            raise
        raise EngineError(f"image {ref}: {exc.strerror or exc}", err=exc.errno) from None


def _load(path: str, store_path: str | None, quiet: bool) -> RunImage:
    from nsbind.image import Store, load
    from nsbind.image.progress import progress

    with load(path) as img:
        _check_platform(img.platform, path)
        sizes = [layer.size for layer in img.layers]
        total = None if None in sizes else sum(s for s in sizes if s is not None)
        with progress(total, len(img.layers), quiet=quiet or not sys.stderr.isatty()) as bars:
            dirs = Store(store_path).unpack(img, on_bytes=bars.on_bytes,
                                            on_layer=bars.on_layer)
        return RunImage(img.tags[0] if img.tags else path, img.config_digest, img.config,
                        tuple(dirs), img.platform)
