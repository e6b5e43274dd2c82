"""``nsbind commit``: a container's changes as a new image, as ``docker commit`` makes
one.

The container's upper directory (``<store>/containers/<id>/upper``) is stored as one
layer on top of the image the container was made from
(:func:`nsbind.image.commit.commit_layer`), with that image's runtime config changed by
``--change`` instructions (:mod:`nsbind.image.changes`).  The files nsbind mounts over
``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` are the engine's, not the
container's: their mount points are left out, as Docker leaves them out.  A running
container is paused (frozen) while its directory is read, as Docker does by default,
and resumed afterwards even when the commit failed; a rootless one has no cgroup to
freeze and is read as it runs (a file that changes meanwhile fails the commit).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nsbind.engine.errors import EngineError

if TYPE_CHECKING:
    from nsbind.engine.launch import EngineConfig
    from nsbind.image import StoredImage

__all__ = ["ENGINE_FILES", "commit"]

#: the mount points of the files the engine writes for a container, left out of a commit
ENGINE_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


def commit(config: EngineConfig, ref: str, name: str | None = None, *,
           changes: Sequence[str] = (), pause: bool = True) -> StoredImage:
    """Store container ``ref``'s changes as a new image tagged ``name`` (untagged without
    one), its config the container image's with ``changes`` applied; the new image's
    record.  EngineError naming the container when it has no image (``--rootfs``), its
    image left the store, or the layer cannot be written; nothing is stored then."""
    from nsbind.engine.records import status_of
    from nsbind.engine.userns import IdShift, unshifted_upper
    from nsbind.image import ImageError, Store
    from nsbind.image.changes import apply_changes
    from nsbind.image.commit import commit_layer
    from nsbind.oci.ops import pause as oci_pause
    from nsbind.oci.ops import resume as oci_resume

    records = config.records()
    record = records.load(records.find(ref))
    cid, shown = record["id"], record.get("name") or record["id"][:12]
    digest = record.get("imageDigest")
    if not digest:
        raise EngineError(f"commit {shown}: the container runs from {record['image']}, not "
                          "an image: there is nothing to put its changes on")
    store = Store(config.store_root())
    base = next((i for i in store.images() if i.config_digest == digest), None)
    if base is None:
        raise EngineError(f"commit {shown}: its image {record['image']} ({digest[:19]}) is "
                          f"no longer in the store {store.path}")
    upper = os.path.join(config.storage_root(), cid, "upper")
    frozen = pause and not config.rootless and status_of(record) == "running"
    shift = IdShift.from_record(record)
    view: contextlib.AbstractContextManager[str] = contextlib.nullcontext(upper)
    if shift is not None:  # its files read with the container's ids, not the host's
        from nsbind.engine.launch import private_mounts

        private_mounts()
        view = unshifted_upper(upper, shift, os.path.join(config.storage_root(), cid,
                                                          "unshifted"))
    try:
        new_config = apply_changes(base.config, changes)
        if frozen:
            oci_pause(records.oci_root, cid)
        try:
            with view as layer:
                return commit_layer(store, base, layer, name, config=new_config,
                                    skip=ENGINE_FILES, label=f"commit {shown}")
        finally:
            if frozen:
                oci_resume(records.oci_root, cid)
    except (ImageError, OSError) as exc:
        text = str(exc)
        if isinstance(exc, ImageError):
            if text.startswith(f"commit {shown}"):
                raise EngineError(text) from None
        elif exc.strerror:
            text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
        raise EngineError(f"commit {shown}: {text}") from None
