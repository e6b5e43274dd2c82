"""Pull an image from a registry straight into the store.

The manifest (or the index, and the manifest chosen from it for the platform, as
:func:`nsbind.image.load` chooses: the first entry whose os/architecture match) and
the config are read capped and parsed strictly (:mod:`nsbind.image.model`), checked
against their digests; each layer the store lacks streams from the registry into
:meth:`Store.unpack_layer`, which verifies its digest, size and diff_id while it
unpacks, in one pass, and renames it into place only when they match.  A few layers
download at a time (threads, all joined before :func:`pull` returns); a layer the
store has is not fetched.  The image is recorded only once every layer is in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO, Any, cast

from nsbind.ctxlite import suppress
from nsbind.fnlite import partial
from nsbind.frozen import frozen, replace_fields
from nsbind.image.model import MAX_JSON_BYTES, Fields, Image, ImageError, host_platform, parse_json
from nsbind.image.ocilayout import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    choose_platform,
    image_from_manifest,
)
from nsbind.image.reference import Reference, parse_reference
from nsbind.image.registry import Registry
from nsbind.image.store import Store, StoredImage

__all__ = ["Pulled", "pull", "registry_for"]

_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws")


@frozen
class Pulled:
    """What :func:`pull` did: the stored image, the digest of the manifest (or index)
    the reference named, and how many layers were downloaded (the others were in the
    store already)."""

    image: StoredImage
    reference: str
    digest: str
    fetched: int


def registry_for(ref: Reference, *, tls_verify: bool = True,
                 creds: tuple[str, str] | None = None, cert_dir: str | None = None,
                 retries: int = 5, backoff: float = 0.5) -> Registry:
    """A :class:`Registry` for ``ref``'s host, with ``creds`` or else those saved by
    ``nsbind login`` (see :mod:`nsbind.image.auth`)."""
    if creds is None:
        from nsbind.image.auth import credentials

        creds = credentials(ref.registry)
    return Registry(ref.api_host, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir,
                    retries=retries, backoff=backoff)


def _media(doc: Fields, header: str | None) -> str:
    media = doc.text("mediaType") or (header or "").split(";")[0].strip()
    if media in _SCHEMA1 or doc.raw.get("schemaVersion") == 1:
        raise ImageError(f"{doc.what}: a Docker schema 1 manifest (deprecated): not supported")
    return media


def _choose(reg: Registry, repo: str, want: tuple[str, str], what: str,
            data: bytes, header: str | None) -> tuple[Fields, str]:
    """The image manifest ``data`` is, or the one an index (of indexes) lists for ``want``."""
    for _ in range(5):
        doc = Fields(parse_json(data, what), what)
        media = _media(doc, header)
        if media in MANIFEST_TYPES or (not media and "config" in doc.raw):
            return doc, what
        if media not in INDEX_TYPES and not (not media and "manifests" in doc.raw):
            raise ImageError(f"{what}: media type {media[:100]!r} is neither an image "
                             "manifest nor an index")
        chosen = choose_platform(doc, want, what)
        if _sized(chosen) > MAX_JSON_BYTES:
            raise ImageError(f"{what}: a manifest of {chosen.size} bytes: refused")
        data, header, _ = reg.manifest(repo, chosen.digest)
        what = f"manifest {reg.host}/{repo}@{chosen.digest}"
    raise ImageError(f"{what}: indexes nested too deep (a loop?)")


def _image(reg: Registry, ref: Reference, manifest: Fields, abort: threading.Event,
           tags: tuple[str, ...]) -> Image:
    repo = ref.repository

    def opener(desc: Descriptor) -> Callable[[], IO[bytes]]:
        return cast(Callable[[], IO[bytes]],
                    partial(reg.open_blob, repo, desc.digest, _sized(desc), abort))

    return image_from_manifest(
        manifest, src=str(ref), tags=tags, opener=opener,
        read_blob=lambda d: reg.blob(repo, d.digest, _sized(d), MAX_JSON_BYTES))


def _sized(desc: Descriptor) -> int:
    """A registry's descriptor must state its size (downloads are capped by it)."""
    if desc.size is None:
        raise ImageError(f"{desc.what}: the size is missing")
    return desc.size


class _Bars:
    """One progress bar per layer being downloaded (tqdm), on a terminal only."""

    def __init__(self, out: Any, img: Image, missing: list[int]) -> None:
        self._bars: dict[int, Any] = {}
        self._lock = threading.Lock()
        if out is None or not getattr(out, "isatty", lambda: False)():
            return
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: clone3 needs a single thread
        for position, index in enumerate(missing):
            layer = img.layers[index]
            self._bars[index] = tqdm(total=layer.size, unit="B", unit_scale=True,
                                     unit_divisor=1024, position=position, leave=False,
                                     file=out, desc=(layer.digest or layer.diff_id)[7:19])

    def on_bytes(self, index: int, n: int) -> None:
        bar = self._bars.get(index)
        if bar is not None:
            with self._lock:
                bar.update(n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def pull(ref: str | Reference, *, store: Store | str | None = None,
         platform: tuple[str, str] | None = None, tls_verify: bool = True,
         creds: tuple[str, str] | None = None, cert_dir: str | None = None, jobs: int = 3,
         retries: int = 5, backoff: float = 0.5, progress: Any = None,
         on_bytes: Callable[[int, int], None] | None = None) -> Pulled:
    """Pull ``ref`` (``busybox``, ``host:port/repo:tag``, ``repo@sha256:...``) into
    ``store`` (a :class:`Store`, its path, or the default one), for ``platform``
    (os, architecture; default: this host) when the reference names an index.

    ``creds`` (user, password) default to what ``nsbind login`` saved; ``tls_verify``,
    ``cert_dir``, ``retries`` and ``backoff`` are the :class:`Registry`'s.  ``jobs``
    layers download at a time.  ``progress``: a stream (stderr) to draw a bar per layer
    on when it is a terminal; ``on_bytes(layer index, n)`` counts bytes downloaded.
    ImageError (a :class:`RegistryError` for the network's part) on any failure, and
    then nothing is recorded and no partial layer is left."""
    parsed = ref if isinstance(ref, Reference) else parse_reference(ref)
    st = store if isinstance(store, Store) else Store(store)
    want = platform or host_platform()
    abort = threading.Event()
    with registry_for(parsed, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir,
                      retries=retries, backoff=backoff) as reg:
        data, header, digest = reg.manifest(parsed.repository, parsed.target)
        manifest, _ = _choose(reg, parsed.repository, want, f"manifest {parsed}", data, header)
        img = _image(reg, parsed, manifest, abort, (str(parsed),))
        known = [r for r in st.images() if r.config_digest == img.config_digest]
        if known:
            merged = tuple(dict.fromkeys((*known[0].tags, *img.tags)))
            img = replace_fields(img, tags=merged)
        seen: set[str] = set()
        missing = []
        for index, layer in enumerate(img.layers):
            if layer.diff_id not in seen and not st.has_layer(layer.diff_id):
                missing.append(index)
            seen.add(layer.diff_id)
        bars = _Bars(progress, img, missing)
        try:
            _fetch(st, img, missing, abort, jobs, bars, on_bytes)
            st.unpack(img)  # every layer is in: this records the image
        finally:
            bars.close()
    record = next(r for r in st.images() if r.config_digest == img.config_digest)
    return Pulled(record, str(parsed), digest, len(missing))


def _fetch(st: Store, img: Image, missing: list[int], abort: threading.Event, jobs: int,
           bars: _Bars, on_bytes: Callable[[int, int], None] | None) -> None:
    """Unpack the layers ``missing`` names, ``jobs`` at a time; every thread is joined
    before this returns (also on an error or a Ctrl-C: the others stop at their next
    read)."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    if not missing:
        return

    def counter(index: int) -> Callable[[int], None]:
        def count(n: int) -> None:
            bars.on_bytes(index, n)
            if on_bytes is not None:
                on_bytes(index, n)
        return count

    def one(index: int) -> None:
        st.unpack_layer(img.layers[index], label=f"{img.source} layer {index}",
                        on_bytes=counter(index))

    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(missing))),
                              thread_name_prefix="nsbind-pull")
    futures = []
    try:
        futures = [pool.submit(one, index) for index in missing]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            if future.done() and (exc := future.exception()) is not None:
                raise exc
    except BaseException:
        abort.set()
        for future in futures:
            future.cancel()
        raise
    finally:
        with suppress(BaseException):
            pool.shutdown(wait=True)
