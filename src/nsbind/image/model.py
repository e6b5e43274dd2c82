"""The one image model both formats load into: tags, platform, config, history, layers.

Image metadata comes from whoever built the image, so it is parsed as hostile:
:func:`parse_json` takes strict UTF-8 JSON of at most :data:`MAX_JSON_BYTES`
(16 MiB), nested at most :data:`MAX_JSON_DEPTH` deep, without duplicate keys or
NaN/Infinity; :class:`Fields` reads a JSON object field by field, checking each
type; digests are ``sha256:`` and 64 lowercase hex digits (:func:`check_digest`),
sizes integers in 0..2**63-1 (:func:`check_size`).  Every failure is an
:class:`ImageError` naming the file or blob and the field.
"""

from __future__ import annotations

import os

from nsbind import jsonvalues
from nsbind.charsets import HEX, Word
from nsbind.errors import MessageError
from nsbind.frozen import field, frozen
from nsbind.jsonvalues import MAX_JSON_BYTES, MAX_JSON_DEPTH, kind_of
from nsbind.lazyre import LazyPattern

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

__all__ = ["MAX_BLOB_BYTES", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_LAYER_BYTES",
           "MAX_LAYER_DEPTH", "MAX_LAYER_ENTRIES", "Fields",
           "Image", "ImageConfig", "ImageError", "Layer", "ParsedConfig", "check_digest",
           "check_size", "host_platform", "kind_of", "parse_config", "parse_json"]

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
#: the default cap on a layer's tar members (inodes and whiteouts)
MAX_LAYER_ENTRIES = 100_000
#: the default cap on the components of a member's path
MAX_LAYER_DEPTH = 256
#: how deep a JSON document may nest (real ones nest 4 or 5 deep)
#: the largest size a descriptor may state (what a file can hold)
MAX_BLOB_BYTES = (1 << 63) - 1

_DIGEST = Word(HEX, HEX, min_len=64, max_len=64, prefix="sha256:")
_ALGORITHM = LazyPattern(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


class ImageError(MessageError, ValueError):
    """An image that cannot be loaded or used: malformed, unsupported, or failing a digest
    (an :class:`~nsbind.errors.NsbindError` and a ValueError; ``errno`` EINVAL)."""

    operation = "image"


def host_platform() -> tuple[str, str]:
    """(os, architecture) of this host in OCI terms, e.g. ("linux", "amd64")."""
    machine = os.uname().machine.lower()  # what platform.machine() reads (a 2 ms import)
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return "linux", arch


def parse_json(data: bytes, what: str) -> Any:
    """``data`` as JSON, or ImageError naming ``what``: strict UTF-8 (no BOM), no
    duplicate keys, no NaN/Infinity, at most MAX_JSON_BYTES long and MAX_JSON_DEPTH deep
    (:func:`nsbind.jsonvalues.parse_json`)."""
    try:
        return jsonvalues.parse_json(data, what)
    except jsonvalues.JsonError as exc:
        raise ImageError(str(exc)) from None


def check_digest(value: object, what: str) -> str:
    """``value`` if it is a sha256 digest (``sha256:`` and 64 lowercase hex), else
    ImageError naming ``what`` (another algorithm is "unsupported", not "malformed")."""
    if not isinstance(value, str):
        raise ImageError(f"{what} must be a digest string, not {kind_of(value)}")
    if _DIGEST.matches(value):
        return value
    if _ALGORITHM.fullmatch(value) and not value.startswith("sha256:"):
        raise ImageError(f"{what} {value[:100]!r}: unsupported digest algorithm (only sha256)")
    raise ImageError(f"{what} {value[:100]!r} is not a sha256 digest (sha256: and 64 "
                     "lowercase hex digits)")


def check_size(value: object, what: str, limit: int = MAX_BLOB_BYTES) -> int:
    """``value`` if it is an integer (not a bool or a float) in 0..``limit``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImageError(f"{what} must be an integer, not {kind_of(value)}")
    if not 0 <= value <= limit:
        raise ImageError(f"{what} {value} is out of range (0..{limit})")
    return value


class Fields:
    """A JSON object read field by field: each accessor checks the field's type, and
    every error is an ImageError naming ``what`` (the file or blob) and the field.
    An absent field and a null one read alike (as Go's encoding/json reads them)."""

    def __init__(self, value: object, what: str) -> None:
        if not isinstance(value, dict):
            raise ImageError(f"{what} must be a JSON object, not {kind_of(value)}")
        self.raw: dict[str, Any] = value
        self.what = what

    def name(self, key: str) -> str:
        """How a field is named in messages."""
        return f"{self.what}: field {key!r}"

    def _wrong(self, key: str, expected: str, value: object) -> ImageError:
        return ImageError(f"{self.name(key)} must be {expected}, not {kind_of(value)}")

    def text(self, key: str, *, required: bool = False, nul: bool = True) -> str | None:
        """A string field (None when absent); ``nul=False`` refuses NUL characters."""
        value = self.raw.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a string", value)
        if not nul and "\0" in value:
            raise ImageError(f"{self.name(key)} contains a NUL character")
        return value

    def texts(self, key: str, *, one: bool = False, nul: bool = True) -> tuple[str, ...]:
        """A list of strings (``one=True``: a lone string is a list of one, as Docker's
        Cmd and Entrypoint take it); () when absent."""
        value = self.raw.get(key)
        if value is None:
            return ()
        if one and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self._wrong(key, "a list of strings", value)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ImageError(f"{self.name(key)} item {index} must be a string, not "
                                 f"{kind_of(item)}")
            if not nul and "\0" in item:
                raise ImageError(f"{self.name(key)} item {index} contains a NUL character")
        return tuple(value)

    def obj(self, key: str) -> Fields | None:
        """A nested object (None when absent)."""
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._wrong(key, "an object", value)
        return Fields(value, self.name(key))

    def keys(self, key: str) -> tuple[str, ...]:
        """The sorted keys of an object field (ports, volumes); () when absent."""
        found = self.obj(key)
        return () if found is None else tuple(sorted(found.raw))

    def items(self, key: str) -> list[Any]:
        """A list field ([] when absent)."""
        value = self.raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "a list", value)
        return value

    def string_map(self, key: str) -> dict[str, str]:
        """An object of string values (labels, annotations); {} when absent."""
        found = self.obj(key)
        if found is None:
            return {}
        for name, value in found.raw.items():
            if not isinstance(value, str):
                raise ImageError(f"{found.what}: {name[:80]!r} must be a string, not "
                                 f"{kind_of(value)}")
        return dict(found.raw)

    def digest(self, key: str) -> str:
        return check_digest(self.raw.get(key), self.name(key))

    def size(self, key: str, limit: int = MAX_BLOB_BYTES) -> int | None:
        value = self.raw.get(key)
        return None if value is None else check_size(value, self.name(key), limit)

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value


@frozen
class ImageConfig:
    """The parts of an image config a runtime uses (docker and OCI name them alike)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""

    @classmethod
    def from_json(cls, cfg: object, what: str = "config") -> ImageConfig:
        """The ``config`` object of an image config (None: all defaults); ImageError
        naming ``what`` and the field when a field has the wrong type, or a string a
        program would get (Env, Cmd, Entrypoint, WorkingDir, User) holds a NUL."""
        if cfg is None:
            return cls()
        f = Fields(cfg, what)
        return cls(env=f.texts("Env", nul=False), cmd=f.texts("Cmd", one=True, nul=False),
                   entrypoint=f.texts("Entrypoint", one=True, nul=False),
                   working_dir=f.text("WorkingDir", nul=False) or "",
                   user=f.text("User", nul=False) or "",
                   exposed_ports=f.keys("ExposedPorts"), volumes=f.keys("Volumes"),
                   labels=f.string_map("Labels"),
                   stop_signal=f.text("StopSignal", nul=False) or "")

    def to_json(self) -> dict[str, Any]:
        """The ``config`` object this was read from (the fields it keeps), in the image
        config's own key names: :meth:`from_json` reads it back."""
        out: dict[str, Any] = {"Env": list(self.env), "Cmd": list(self.cmd),
                               "Entrypoint": list(self.entrypoint),
                               "WorkingDir": self.working_dir, "User": self.user,
                               "ExposedPorts": {k: {} for k in self.exposed_ports},
                               "Volumes": {k: {} for k in self.volumes},
                               "Labels": dict(self.labels)}
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@frozen
class ParsedConfig:
    """An image config (both formats), checked field by field by :func:`parse_config`."""

    raw: dict[str, Any]
    os: str
    architecture: str
    variant: str | None
    config: ImageConfig
    history: tuple[dict[str, Any], ...]
    diff_ids: tuple[str, ...]


def parse_config(data: bytes, what: str) -> ParsedConfig:
    """An image config blob (docker's or OCI's: they name their fields alike)."""
    f = Fields(parse_json(data, what), what)
    history = []
    for index, item in enumerate(f.items("history")):
        h = Fields(item, f"{f.name('history')} item {index}")
        for key in ("created", "created_by", "author", "comment"):
            h.text(key)
        h.flag("empty_layer")
        history.append(h.raw)
    rootfs = f.obj("rootfs")
    diff_ids: tuple[str, ...] = ()
    if rootfs is not None:
        if rootfs.text("type") not in (None, "layers"):
            raise ImageError(f"{rootfs.name('type')} must be 'layers', not "
                             f"{rootfs.raw.get('type')!r}")
        diff_ids = tuple(check_digest(d, f"{rootfs.name('diff_ids')} item {i}")
                         for i, d in enumerate(rootfs.items("diff_ids")))
    return ParsedConfig(raw=f.raw, os=f.text("os") or "", architecture=f.text("architecture") or "",
                        variant=f.text("variant"),
                        config=ImageConfig.from_json(f.raw.get("config"), f.name("config")),
                        history=tuple(history), diff_ids=diff_ids)


@frozen
class Layer:
    """One layer: where its bytes are, and what they must hash to."""

    media_type: str
    size: int | None  # of the stored (possibly compressed) blob; None if unknown
    digest: str | None  # sha256 of the stored blob ("sha256:..."), None if the format has none
    diff_id: str  # sha256 of the uncompressed tar, from the config's rootfs.diff_ids
    open: Callable[[], IO[bytes]] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        """ImageError unless the media type is a layer nsbind unpacks, the size an
        integer in range and the digests sha256 ones."""
        if not isinstance(self.media_type, str) or self.media_type not in LAYER_MEDIA_TYPES:
            raise ImageError(f"layer {self.digest or self.diff_id}: media type "
                             f"{self.media_type!r} is not a filesystem layer nsbind can unpack")
        if self.size is not None:
            check_size(self.size, "layer size")
        if self.digest is not None:
            check_digest(self.digest, "layer digest")
        check_digest(self.diff_id, "layer diff_id")

    @property
    def compression(self) -> str | None:
        return LAYER_MEDIA_TYPES[self.media_type]


@frozen
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
    raw_config: dict[str, Any] = field(repr=False, compare=False)
    closer: Callable[[], None] = field(repr=False, compare=False,
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
