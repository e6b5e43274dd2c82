"""Push a stored image to a registry.

The store keeps each layer unpacked (in overlay form), not the blob it came in, so a
layer is tarred again from its directory, reproducibly
(:func:`nsbind.image.layertar.layer_tar`).  The same directory always gives the same
bytes, so pushing twice uploads nothing new.

These tars are pushed uncompressed (``application/vnd.oci.image.layer.v1.tar``),
their digests are new, and so is the config, written from the store's record with
those digests as its ``rootfs.diff_ids``: the registry's image has a different
config digest (image ID) than the local one, with the same files.  The history is
not kept by the store and is not pushed.

Each blob is asked for first (HEAD) and uploaded only when the registry lacks it;
where another repository of the same registry holds it (one the image was pulled
from or pushed to), a cross-repository mount is tried before an upload.  Then the
config, then the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

from nsbind.ctxlite import suppress
from nsbind.image.layertar import layer_tar
from nsbind.image.model import ImageError
from nsbind.image.reference import Reference, parse_reference
from nsbind.image.store import Store, StoredImage

__all__ = ["CONFIG_TYPE", "LAYER_TYPE", "MANIFEST_TYPE", "image_config", "push"]

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def image_config(img: StoredImage, diff_ids: list[str]) -> bytes:
    """The image config a stored image is written with (push, save): its platform and
    runtime config, and ``diff_ids`` (the layers as written), as compact sorted JSON."""
    os_name, _, rest = img.platform.partition("/")
    arch, _, variant = rest.partition("/")
    config: dict[str, Any] = {"architecture": arch, "os": os_name,
                              "config": img.config.to_json(),
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if variant:
        config["variant"] = variant
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def push(image: str, ref: str | Reference | None = None, *, store: Store | str | None = None,
         tls_verify: bool = True, creds: tuple[str, str] | None = None,
         cert_dir: str | None = None, retries: int = 5, backoff: float = 0.5,
         on_blob: Callable[[str, str], None] | None = None) -> str:
    """Push the stored ``image`` (a tag or a config digest) to ``ref`` (default: the
    image's name); return the manifest's digest.  ``on_blob(digest, what)`` is told
    what happened to each blob: ``"exists"``, ``"mounted"`` or ``"uploaded"``."""
    from nsbind.image.pulling import registry_for

    st = store if isinstance(store, Store) else Store(store)
    img = st.find(image)
    target = ref if isinstance(ref, Reference) else parse_reference(ref or image)
    if target.digest is not None:
        raise ImageError(f"push to {target}: a digest reference cannot be pushed to")
    repo = target.repository
    sources = []
    for tag in img.tags:
        with suppress(ImageError):
            other = parse_reference(tag)
            if other.registry == target.registry and other.repository != repo:
                sources.append(other.repository)
    tmp = os.path.join(st.path, "tmp")
    with registry_for(target, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir,
                      retries=retries, backoff=backoff) as reg:
        layers = []
        for diff_id in img.layers:
            if not st.has_layer(diff_id):
                raise ImageError(f"{image}: layer {diff_id} is missing from the store")
            with tempfile.TemporaryFile(dir=tmp) as f:
                digest, size = layer_tar(st.layer_path(diff_id), f)
                f.flush()
                layers.append((digest, size))
                what = "exists"
                if not reg.has_blob(repo, digest):
                    what = "uploaded"
                    for source in sources:
                        if reg.mount_blob(repo, digest, source):
                            what = "mounted"
                            break
                    else:
                        reg.upload_blob(repo, digest, size, f)
                if on_blob is not None:
                    on_blob(digest, what)
        config = image_config(img, [d for d, _ in layers])
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        if not reg.has_blob(repo, config_digest):
            import io

            reg.upload_blob(repo, config_digest, len(config), io.BytesIO(config))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for d, s in layers],
        }, separators=(",", ":")).encode()
        reg.put_manifest(repo, target.target, manifest, MANIFEST_TYPE)
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
