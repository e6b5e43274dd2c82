"""The one image model both formats load into: tags, platform, config, history, layers."""

from __future__ import annotations

import dataclasses
import hashlib
import platform as _platform
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = ["Image", "ImageConfig", "ImageError", "Layer", "host_platform"]

#: layer media types nsbind can unpack, and their compression
LAYER_MEDIA_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": None,
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": None,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}


class ImageError(ValueError):
    """An image that cannot be loaded or used: malformed, unsupported, or failing a digest."""


def host_platform() -> tuple[str, str]:
    """(os, architecture) of this host in OCI terms, e.g. ("linux", "amd64")."""
    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return "linux", arch


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a runtime uses (docker and OCI name them alike)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, cfg: dict[str, Any] | None) -> ImageConfig:
        cfg = cfg or {}
        return cls(env=tuple(cfg.get("Env") or ()), cmd=tuple(cfg.get("Cmd") or ()),
                   entrypoint=tuple(cfg.get("Entrypoint") or ()),
                   working_dir=cfg.get("WorkingDir") or "", user=cfg.get("User") or "",
                   exposed_ports=tuple(sorted(cfg.get("ExposedPorts") or {})),
                   volumes=tuple(sorted(cfg.get("Volumes") or {})),
                   labels=dict(cfg.get("Labels") or {}))


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: where its bytes are, and what they must hash to."""

    media_type: str
    size: int | None  # of the stored (possibly compressed) blob; None if unknown
    digest: str | None  # sha256 of the stored blob ("sha256:..."), None if the format has none
    diff_id: str  # sha256 of the uncompressed tar, from the config's rootfs.diff_ids
    open: Callable[[], IO[bytes]] = dataclasses.field(repr=False, compare=False)

    @property
    def compression(self) -> str | None:
        return LAYER_MEDIA_TYPES[self.media_type]


@dataclasses.dataclass(frozen=True)
class Image:
    """An image loaded from a docker save tarball or an OCI image layout."""

    source: str
    tags: tuple[str, ...]
    os: str
    architecture: str
    variant: str | None
    config: ImageConfig
    history: tuple[dict[str, Any], ...]
    layers: tuple[Layer, ...]
    config_digest: str
    raw_config: dict[str, Any] = dataclasses.field(repr=False, compare=False)
    closer: Callable[[], None] = dataclasses.field(repr=False, compare=False,
                                                   default=lambda: None)

    def close(self) -> None:
        """Close the archive the layers are read from."""
        self.closer()

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def platform(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def check_platform(self, want: tuple[str, str] | None = None) -> None:
        """ImageError unless the image runs on ``want`` (default: this host)."""
        os_name, arch = want or host_platform()
        if (self.os, self.architecture) != (os_name, arch):
            raise ImageError(f"{self.source}: the image is for {self.platform}, this host is "
                             f"{os_name}/{arch}: its programs would fail with 'exec format "
                             "error'")

    def verify(self) -> None:
        """Read every layer once and check its digest and diff_id (streaming)."""
        for index, layer in enumerate(self.layers):
            verify_layer(layer, f"{self.source} layer {index}")


def sha256_of(stream: IO[bytes], chunk: int = 1 << 20) -> tuple[str, int]:
    """("sha256:<hex>", size) of everything left in ``stream``."""
    h = hashlib.sha256()
    size = 0
    while data := stream.read(chunk):
        h.update(data)
        size += len(data)
    return f"sha256:{h.hexdigest()}", size


def decompressed(stream: IO[bytes], compression: str | None) -> Iterator[bytes]:
    """The uncompressed bytes of a layer stream, in chunks; no external program."""
    if compression is None:
        while data := stream.read(1 << 20):
            yield data
    elif compression == "gzip":
        import zlib

        d = zlib.decompressobj(wbits=47)  # gzip or zlib header
        while data := stream.read(1 << 20):
            yield d.decompress(data)
            while d.eof and d.unused_data:  # concatenated gzip members
                rest = d.unused_data
                d = zlib.decompressobj(wbits=47)
                yield d.decompress(rest)
        yield d.flush()
    elif compression == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            raise ImageError("a zstd layer needs the 'zstandard' package") from exc
        reader = zstandard.ZstdDecompressor().stream_reader(stream)
        while data := reader.read(1 << 20):
            yield data
    else:
        raise ImageError(f"unknown layer compression {compression!r}")


def verify_layer(layer: Layer, label: str) -> None:
    """Check a layer's blob digest/size and its uncompressed diff_id."""
    outer = hashlib.sha256()
    inner = hashlib.sha256()
    size = 0

    class _Tee:
        def __init__(self, raw: IO[bytes]) -> None:
            self.raw = raw

        def read(self, n: int = -1) -> bytes:
            nonlocal size
            data = self.raw.read(n)
            outer.update(data)
            size += len(data)
            return data

    with layer.open() as raw:
        for chunk in decompressed(_Tee(raw), layer.compression):  # type: ignore[arg-type]
            inner.update(chunk)
    if layer.digest is not None and f"sha256:{outer.hexdigest()}" != layer.digest:
        raise ImageError(f"{label}: blob digest mismatch: expected {layer.digest}, "
                         f"got sha256:{outer.hexdigest()}")
    if layer.size is not None and size != layer.size:
        raise ImageError(f"{label}: blob size mismatch: expected {layer.size}, got {size}")
    if f"sha256:{inner.hexdigest()}" != layer.diff_id:
        raise ImageError(f"{label}: diff_id mismatch: expected {layer.diff_id}, "
                         f"got sha256:{inner.hexdigest()}")
