"""The one image model both formats load into: tags, platform, config, history, layers."""

from __future__ import annotations

import dataclasses
import platform as _platform
from collections.abc import Callable
from typing import IO, Any

from nsbind.errors import MessageError

__all__ = ["MAX_LAYER_BYTES", "Image", "ImageConfig", "ImageError", "Layer", "host_platform"]

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


class ImageError(MessageError, ValueError):
    """An image that cannot be loaded or used: malformed, unsupported, or failing a digest
    (an :class:`~nsbind.errors.NsbindError` and a ValueError; ``errno`` EINVAL)."""

    operation = "image"


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
        from nsbind.image.stream import verify_layer  # stream imports this module

        for index, layer in enumerate(self.layers):
            verify_layer(layer, f"{self.source} layer {index}")
