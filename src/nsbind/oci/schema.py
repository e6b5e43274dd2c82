"""Reading ``config.json`` field by field: typed converters that name the JSON path.

Every section of the spec is a frozen dataclass whose fields carry their JSON name and a
:class:`Conv` (how to read and write the value) in their metadata; :func:`build` reads a
JSON object into one, :func:`dump` writes it back.  A key the dataclass does not have is
an error naming its path: ``"linux.intelRdt: not supported"`` for the spec's fields nsbind
does not implement (:data:`UNSUPPORTED`), ``"linux.foo: unknown field"`` for anything else.
An absent field and a null one read alike (None), as Go's encoding/json reads them.
"""

from __future__ import annotations

# collections.abc's class, without importing the collections package
from _collections_abc import Mapping

from nsbind.errors import MessageError
from nsbind.frozen import field as record_field
from nsbind.frozen import fields_of, frozen, record
from nsbind.jsonvalues import kind_of
from nsbind.lazyre import LazyPattern

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["BOOL", "I64", "INT", "STR", "U16", "U32", "U64", "UNSUPPORTED", "Conv", "SpecError",
           "build", "check_depth", "dump", "field", "int_range", "list_of", "map_of", "obj",
           "pattern_of", "record"]


#: how deep a spec may nest (a real one nests 6 deep: linux.seccomp.syscalls[].args[])
MAX_DEPTH = 64


class SpecError(MessageError, ValueError):
    """A ``config.json`` nsbind refuses: malformed, invalid, or asking for something nsbind
    does not support; the message names the JSON path (``linux.intelRdt: not supported``).
    An :class:`~nsbind.errors.NsbindError` and a ValueError (errno EINVAL)."""

    operation = "oci spec"


#: spec fields nsbind does not implement, by JSON path ("[]" for any list index), and why
UNSUPPORTED: dict[str, str] = {
    "solaris": "Solaris containers",
    "windows": "Windows containers",
    "vm": "virtual-machine containers",
    "zos": "z/OS containers",
    "process.user.username": "Windows only",
    "process.commandLine": "Windows only",
    "process.scheduler": "sched_setattr policies",
    "process.ioPriority": "I/O priorities",
    "process.execCPUAffinity": "CPU affinity of exec'd processes",
    "linux.intelRdt": "Intel RDT (resctrl)",
    "linux.netDevices": "moving network devices into the container",
    "linux.memoryPolicy": "NUMA memory policies",
    "linux.resources.memory.kernel": "kernel memory limits (removed from Linux 6.x)",
    "linux.resources.memory.kernelTCP": "kernel TCP memory limits (cgroup v1 only)",
    "linux.resources.memory.useHierarchy": "memory.use_hierarchy (cgroup v1 only)",
    "linux.resources.cpu.burst": "cpu.max.burst",
    "linux.resources.rdma": "the rdma controller",
    "linux.seccomp.listenerMetadata": "seccomp listener metadata",
}

_INDEX = LazyPattern(r"\[\d+\]")


def _joined(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _clip(path: str) -> str:
    return path if len(path) <= 200 else path[:197] + "..."


@frozen
class Conv:
    """How one JSON value is read (``load(value, path)``) and written back (``dump``)."""

    load: Callable[[Any, str], Any]
    dump: Callable[[Any], Any] = lambda value: value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{path} must be a string, not {kind_of(value)}")
    return value


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path} must be a boolean, not {kind_of(value)}")
    return value


def int_range(low: int, high: int) -> Conv:
    """An integer (not a bool nor a float) in low..high; never truncated."""
    def load(value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{path} must be an integer, not {kind_of(value)} "
                            f"({_short(value)})")
        if not low <= value <= high:
            raise SpecError(f"{path} {value} is out of range ({low}..{high})")
        return value
    return Conv(load)


def pattern_of(regex: str, what: str) -> Conv:
    """A string that matches ``regex`` whole (``what`` describes it in messages)."""
    compiled = LazyPattern(regex)

    def load(value: object, path: str) -> str:
        text = _string(value, path)
        if not compiled.fullmatch(text):
            raise SpecError(f"{path} {_short(text)} is not {what}")
        return text
    return Conv(load)


STR = Conv(_string)
BOOL = Conv(_boolean)
INT = int_range(-(2**63), 2**64 - 1)
I64 = int_range(-(2**63), 2**63 - 1)
U64 = int_range(0, 2**64 - 1)
U32 = int_range(0, 2**32 - 1)
U16 = int_range(0, 2**16 - 1)


def list_of(item: Conv) -> Conv:
    """A JSON list read as a tuple, each item with ``item``; paths ``name[i]``."""
    def load(value: object, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise SpecError(f"{path} must be a list, not {kind_of(value)}")
        return tuple(item.load(entry, f"{path}[{i}]") for i, entry in enumerate(value))
    return Conv(load, lambda values: [item.dump(entry) for entry in values])


def map_of(item: Conv) -> Conv:
    """A JSON object of string keys read as a dict, each value with ``item``."""
    def load(value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SpecError(f"{path} must be an object, not {kind_of(value)}")
        return {key: item.load(entry, f"{path}[{key!r}]") for key, entry in value.items()}
    return Conv(load, lambda values: {key: item.dump(v) for key, v in values.items()})


def obj(cls: type[Any]) -> Conv:
    """A nested JSON object read into the dataclass ``cls``."""
    return Conv(lambda value, path: build(cls, value, path), dump)


def field(name: str, conv: Conv, *, required: bool = False) -> Any:
    """A dataclass field read from JSON key ``name`` with ``conv`` (None when absent)."""
    return record_field(default=None,
                        metadata={"json": name, "conv": conv, "required": required})


def build(cls: type[T], value: object, path: str) -> T:
    """``value`` (a JSON object) as the dataclass ``cls``, or SpecError naming the path of
    the first wrong, missing, unknown or unsupported field."""
    where = path or "the spec"
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be an object, not {kind_of(value)}")
    fields = [f for f in fields_of(cls) if "json" in f.metadata]
    known = {f.metadata["json"] for f in fields}
    for key in value:
        if key not in known:
            _refuse(path, key, value[key])
    values: dict[str, Any] = {}
    for spec_field in fields:
        meta = spec_field.metadata
        raw = value.get(meta["json"])
        fpath = _joined(path, meta["json"])
        if raw is None:
            if meta["required"]:
                raise SpecError(f"{fpath}: required field missing")
            continue
        values[spec_field.name] = meta["conv"].load(raw, fpath)
    return cls(**values)


def _refuse(path: str, key: object, value: object) -> None:
    fpath = _joined(path, str(key))
    if not isinstance(key, str):
        raise SpecError(f"{_clip(fpath)}: keys must be strings")
    reason = UNSUPPORTED.get(_INDEX.sub("[]", fpath))
    if reason is not None:
        if value is None:
            return  # null reads as absent, as for every other field
        raise SpecError(f"{fpath}: not supported ({reason})")
    raise SpecError(f"{_clip(fpath)}: unknown field (the spec allows extensions only under "
                    "annotations)")


def dump(value: Any) -> dict[str, Any]:
    """The JSON object of a spec dataclass: its non-None fields under their JSON names."""
    out: dict[str, Any] = {}
    for spec_field in fields_of(value):
        meta = spec_field.metadata
        item = getattr(value, spec_field.name)
        if "json" in meta and item is not None:
            out[meta["json"]] = meta["conv"].dump(item)
    return out


def check_depth(value: object) -> None:
    """SpecError if ``value`` nests deeper than MAX_DEPTH (checked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(f"the spec nests more than {MAX_DEPTH} deep")
        children: Any = (item.values() if isinstance(item, Mapping)
                         else item if isinstance(item, list) else ())
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (Mapping, list)))
