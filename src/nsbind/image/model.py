"""The one image model both formats load into: tags, platform, config, history, layers."""

from __future__ import annotations

import dataclasses
import hashlib
import platform as _platform
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

__all__ = ["Image", "ImageConfig", "ImageError", "Layer", "Readable", "host_platform"]

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


#: the default cap on a layer's uncompressed size (a decompression bomb stops there)
MAX_LAYER_BYTES = 64 << 30


class Readable(Protocol):
    """Anything with ``read(n)`` returning bytes (a file, a hashing wrapper)."""

    def read(self, n: int = -1, /) -> bytes: ...


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


def decompressed(stream: Readable, compression: str | None) -> Iterator[bytes]:
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
        reader = zstandard.ZstdDecompressor().stream_reader(stream)  # type: ignore[arg-type]
        while data := reader.read(1 << 20):
            yield data
    else:
        raise ImageError(f"unknown layer compression {compression!r}")


class LayerStream:
    """A read()-able view of decompressed chunks that hashes both sides and caps the size."""

    def __init__(self, raw: IO[bytes], compression: str | None, max_bytes: int,
                 on_bytes: Callable[[int], None] | None, label: str) -> None:
        self.outer = hashlib.sha256()
        self.inner = hashlib.sha256()
        self.outer_size = 0
        self.size = 0
        self._raw = raw
        self._on_bytes = on_bytes
        self._max = max_bytes
        self._label = label
        self._chunks: Iterator[bytes] = decompressed(_RawSide(self), compression)
        self._buf = b""
        self._pos = 0

    def read_raw(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.outer.update(data)
        self.outer_size += len(data)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data

    def read(self, n: int = -1) -> bytes:
        out = []
        want = n if n >= 0 else 1 << 62
        while want > 0:
            if self._pos >= len(self._buf):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self.inner.update(chunk)
                self.size += len(chunk)
                if self.size > self._max:
                    raise ImageError(f"{self._label}: uncompressed layer passes {self._max} "
                                     "bytes (a decompression bomb?): refused")
                self._buf, self._pos = chunk, 0
                continue
            piece = self._buf[self._pos:self._pos + want]
            self._pos += len(piece)
            want -= len(piece)
            out.append(piece)
        return b"".join(out)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def check(self, layer: Layer) -> None:
        """ImageError unless what streamed by matches the layer's digest, size, diff_id."""
        got = f"sha256:{self.outer.hexdigest()}"
        if layer.digest is not None and got != layer.digest:
            raise ImageError(f"{self._label}: blob digest mismatch: expected {layer.digest}, "
                             f"got {got}")
        if layer.size is not None and self.outer_size != layer.size:
            raise ImageError(f"{self._label}: blob size mismatch: expected {layer.size}, "
                             f"got {self.outer_size}")
        diff = f"sha256:{self.inner.hexdigest()}"
        if diff != layer.diff_id:
            raise ImageError(f"{self._label}: diff_id mismatch: expected {layer.diff_id}, "
                             f"got {diff}")


class _RawSide:
    """What ``decompressed`` reads from: the stored bytes, hashed as they pass."""

    def __init__(self, stream: LayerStream) -> None:
        self._stream = stream

    def read(self, n: int = -1, /) -> bytes:
        return self._stream.read_raw(n)


def verify_layer(layer: Layer, label: str, max_bytes: int = MAX_LAYER_BYTES) -> None:
    """Check a layer's blob digest/size and its uncompressed diff_id (one streaming pass)."""
    with layer.open() as raw:
        stream = LayerStream(raw, layer.compression, max_bytes, None, label)
        stream.drain()
    stream.check(layer)
