"""A directory of changes in overlay form (a container's upper directory) stored as a
new layer on top of a stored image: the image side of ``nsbind commit``.

The directory is written as a layer tar by :func:`nsbind.image.save.tree_layer`
(it may belong to a running container: nothing outside it is read, the store's caps
bound it), then unpacked by :meth:`Store.unpack` like any layer from outside, so the
new layer is checked as hostile too.  The image's config is the base's runtime config
(changed by ``config``), its ``rootfs.diff_ids`` the base's and the new one; like every
config the store writes it has no history and no creation time, so the same change on
the same image gives the same image ID.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Collection
from typing import IO

from nsbind.ctxlite import closing
from nsbind.frozen import replace_fields
from nsbind.image.model import Image, ImageConfig, ImageError, Layer
from nsbind.image.pushing import LAYER_TYPE, image_config
from nsbind.image.reference import tag_name
from nsbind.image.save import tree_layer
from nsbind.image.store import Store, StoredImage

__all__ = ["commit_layer"]


def _stored(diff_id: str, store: Store) -> Layer:
    """A base layer: in the store already, never read (gc took it if it is opened)."""
    def gone() -> IO[bytes]:
        raise ImageError(f"layer {diff_id} left the store {store.path} during the commit")
    return Layer(LAYER_TYPE, None, None, diff_id, open=gone)


def commit_layer(store: Store, base: StoredImage, changes: str, name: str | None = None, *,
                 config: ImageConfig | None = None, skip: Collection[str] = (),
                 label: str | None = None) -> StoredImage:
    """Store the tree ``changes`` as a layer on top of ``base``, as a new image tagged
    ``name`` (untagged without one; the tag moves from any image that had it) with the
    runtime config ``config`` (default: the base's); return its record.  ``skip``:
    paths in the tree left out (``etc/hosts``).  ImageError, and nothing stored, when
    the tree cannot be written or a base layer is gone."""
    tags = (tag_name(name),) if name is not None else ()
    what = label or f"commit {changes}"
    missing = [d for d in base.layers if not store.has_layer(d)]
    if missing:
        raise ImageError(f"{what}: layer {missing[0]} of the image is not in the store")
    with tempfile.TemporaryDirectory(prefix="commit-", dir=os.path.join(store.path,
                                                                        "tmp")) as tmp:
        layer = tree_layer(changes, os.path.join(tmp, "layer.tar"), label=what, skip=skip,
                           max_entries=store.max_layer_entries,
                           max_depth=store.max_layer_depth, max_bytes=store.max_layer_bytes)
        diff_ids = [*base.layers, layer.diff_id]
        record = replace_fields(base, config=config or base.config)
        raw_bytes = image_config(record, diff_ids)
        os_name, _, rest = base.platform.partition("/")
        arch, _, variant = rest.partition("/")
        img = Image(source=what, tags=tags, os=os_name, architecture=arch,
                    variant=variant or None, config=record.config, history=(),
                    layers=(*(_stored(d, store) for d in base.layers), layer),
                    config_digest="sha256:" + hashlib.sha256(raw_bytes).hexdigest(),
                    raw_config=json.loads(raw_bytes))
        with closing(img):
            store.unpack(img)
    return next(i for i in store.images() if i.config_digest == img.config_digest)
