"""``linux.cgroupsPath`` in its three forms, and the cgroupfs path of the systemd one.

A cgroupsPath is absolute (``/machine/ctr``: from the cgroup root), relative
(``machine/ctr``: from a place the runtime picks), or the systemd form
``slice:prefix:name`` that ``--systemd-cgroup`` clients (podman, containerd) send.
:func:`systemd_cgroup_path` maps the systemd form onto the cgroupfs path a runtime uses
when it does not talk to systemd: the slice expanded as systemd nests slices
(``a-b.slice`` is ``a.slice/a-b.slice``), then the unit ``prefix-name.scope``.
"""

from __future__ import annotations

from nsbind.frozen import frozen
from nsbind.oci.schema import SpecError

__all__ = ["CgroupsPath", "expand_slice", "parse_cgroups_path", "systemd_cgroup_path"]


@frozen
class CgroupsPath:
    """A parsed cgroupsPath: ``form`` is "absolute", "relative" or "systemd"; ``path`` the
    path as written (for the systemd form: ``slice``, ``prefix``, ``name`` too)."""

    form: str
    path: str
    slice: str | None = None
    prefix: str | None = None
    name: str | None = None

    def cgroupfs_path(self, *, rootless: bool = False) -> str:
        """The cgroupfs path, relative to the cgroup root for the systemd and absolute
        forms (without its leading ``/``), as written for the relative form."""
        if self.form == "systemd":
            return systemd_cgroup_path(self.slice or "", self.prefix or "", self.name or "",
                                       rootless=rootless)
        return self.path.lstrip("/") if self.form == "absolute" else self.path


def _check_part(text: str, path: str) -> None:
    if "\0" in text or "\n" in text:
        raise SpecError(f"{path} {text[:80]!r} contains a NUL or a newline")
    if any(part in (".", "..") for part in text.split("/")):
        raise SpecError(f"{path} {text[:80]!r} contains a '.' or '..' component")


def expand_slice(slice_name: str, path: str = "slice") -> str:
    """``a-b-c.slice`` as systemd nests it: ``a.slice/a-b.slice/a-b-c.slice``; ``-.slice``
    (the root slice) is ""."""
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise SpecError(f"{path} {slice_name[:80]!r} is not a systemd slice name "
                        "(NAME.slice, no '/')")
    if slice_name == "-.slice":
        return ""
    stem = slice_name[:-len(".slice")]
    if not stem or stem.startswith("-") or stem.endswith("-") or "--" in stem:
        raise SpecError(f"{path} {slice_name[:80]!r} is not a valid systemd slice name "
                        "(no leading, trailing or doubled '-')")
    parts = stem.split("-")
    return "/".join("-".join(parts[:i + 1]) + ".slice" for i in range(len(parts)))


def systemd_cgroup_path(slice_name: str, prefix: str, name: str, *,
                        rootless: bool = False) -> str:
    """The cgroupfs path (relative to the cgroup root) of ``slice:prefix:name``: the slice
    expanded (empty: system.slice, or user.slice when rootless; ``-``: the root), then
    ``prefix-name.scope`` (a name ending in ``.slice`` is a slice of its own)."""
    where = "linux.cgroupsPath"
    if not name:
        raise SpecError(f"{where} {slice_name}:{prefix}:{name}: the name is empty")
    if slice_name == "-":
        slice_name = "-.slice"
    elif not slice_name:
        slice_name = "user.slice" if rootless else "system.slice"
    parent = expand_slice(slice_name, f"{where} slice")
    if name.endswith(".slice"):
        unit = expand_slice(name, f"{where} name")
        return unit if not parent or unit.startswith(parent + "/") else f"{parent}/{unit}"
    if "/" in prefix or "/" in name:
        raise SpecError(f"{where} {prefix}:{name}: the prefix and the name may not contain '/'")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    return f"{parent}/{unit}" if parent else unit


def parse_cgroups_path(value: str, path: str = "linux.cgroupsPath") -> CgroupsPath:
    """``value`` as a :class:`CgroupsPath`, or SpecError naming ``path``."""
    _check_part(value, path)
    if ":" in value:
        parts = value.split(":")
        if len(parts) != 3:
            raise SpecError(f"{path} {value[:80]!r} is neither a path nor the systemd form "
                            "slice:prefix:name")
        slice_name, prefix, name = parts
        systemd_cgroup_path(slice_name, prefix, name)  # refuses a malformed one
        return CgroupsPath("systemd", value, slice_name, prefix, name)
    if not value:
        raise SpecError(f"{path} is empty (omit it for the runtime's default)")
    return CgroupsPath("absolute" if value.startswith("/") else "relative", value)
