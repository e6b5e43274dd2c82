"""Control groups: where each controller lives on this host (cgroup v2, v1, or both).

This is the discovery half of the cgroup API: :func:`cgroup_layout` reads
/proc/self/mountinfo, /proc/cgroups and /proc/self/cgroup and says whether the
host is *unified* (cgroup v2 only), *hybrid* (v2 mounted, some controllers still
on v1 hierarchies) or *legacy* (v1 only), which hierarchy carries each logical
controller, which controllers the kernel has but nobody mounted (e.g.
net_cls/net_prio), and the caller's own cgroup in each hierarchy.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["CgroupLayout", "Hierarchy", "cgroup_layout"]

Mode = Literal["unified", "hybrid", "legacy", "none"]


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    version: int  # 1 or 2
    mountpoint: str
    controllers: frozenset[str]  # v1: as mounted; v2: cgroup.controllers of the root
    name: str | None  # v1 named hierarchies (name=systemd)
    own: str | None  # the caller's cgroup in this hierarchy (e.g. "/" or "/user.slice")

    def path_of(self, cgroup: str) -> str:
        """The directory of ``cgroup`` (a path inside the hierarchy) in this mount."""
        return os.path.join(self.mountpoint, cgroup.lstrip("/")).rstrip("/") or "/"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "mountpoint": self.mountpoint,
                "controllers": sorted(self.controllers), "name": self.name, "own": self.own}


@dataclasses.dataclass(frozen=True)
class CgroupLayout:
    """The host's cgroup layout, as data."""

    mode: Mode
    hierarchies: tuple[Hierarchy, ...]
    #: controllers the kernel knows (enabled in /proc/cgroups)
    available: frozenset[str]
    #: logical controller -> the hierarchy that carries it
    controllers: dict[str, Hierarchy]

    @property
    def unified(self) -> Hierarchy | None:
        """The cgroup v2 hierarchy, if mounted."""
        return next((h for h in self.hierarchies if h.version == 2), None)

    @property
    def unmounted(self) -> frozenset[str]:
        """Controllers the kernel has that no mounted hierarchy carries."""
        return self.available - set(self.controllers)

    def hierarchy_for(self, controller: str) -> Hierarchy:
        """Where ``controller`` lives; a clear error naming what the host has otherwise."""
        try:
            return self.controllers[controller]
        except KeyError:
            where = ", ".join(sorted(self.controllers)) or "none"
            extra = (f"; {controller} is compiled in but not mounted"
                     if controller in self.available else "")
            raise LookupError(f"no cgroup hierarchy carries the {controller} controller on "
                              f"this host (mounted: {where}){extra}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode,
                "hierarchies": [h.to_dict() for h in self.hierarchies],
                "controllers": {c: h.mountpoint for c, h in sorted(self.controllers.items())},
                "unmounted": sorted(self.unmounted)}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def cgroup_layout(
    mountinfo: str | None = None,
    proc_cgroups: str | None = None,
    self_cgroup: str | None = None,
    read_controllers: Callable[[str], str] | None = None,
) -> CgroupLayout:
    """Discover the cgroup layout of the calling process's mount and cgroup namespaces.

    The arguments (file contents, and a function reading a v2 mount's
    ``cgroup.controllers``) default to this process's /proc files; passing them
    lets tools describe another process or a recorded host.
    """
    mountinfo = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
    proc_cgroups = _read("/proc/cgroups") if proc_cgroups is None else proc_cgroups
    self_cgroup = _read("/proc/self/cgroup") if self_cgroup is None else self_cgroup
    if read_controllers is None:
        def read_controllers(mountpoint: str) -> str:
            return _read(os.path.join(mountpoint, "cgroup.controllers"))
    assert read_controllers is not None

    available = frozenset(
        fields[0] for line in proc_cgroups.splitlines()
        if line and not line.startswith("#") and (fields := line.split()) and fields[3] == "1")
    own_v1: dict[frozenset[str], str] = {}
    own_v2: str | None = None
    for line in self_cgroup.splitlines():
        if not line:
            continue
        hid, names, path = line.split(":", 2)
        if hid == "0" and names == "":
            own_v2 = path
        else:
            own_v1[frozenset(names.split(","))] = path

    hierarchies: list[Hierarchy] = []
    seen: set[str] = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, superopts = fields[sep + 1], fields[sep + 3]
        root, mountpoint = fields[3], _unescape(fields[4])
        if fstype not in ("cgroup", "cgroup2") or root != "/" or fields[2] in seen:
            continue  # not a cgroup fs, a bind of a sub-cgroup, or a second mount of one
        seen.add(fields[2])  # the superblock (major:minor)
        if fstype == "cgroup2":
            try:
                v2_controllers = frozenset(read_controllers(mountpoint).split())
            except OSError:
                v2_controllers = frozenset()
            hierarchies.append(Hierarchy(2, mountpoint, v2_controllers, None, own_v2))
            continue
        opts = superopts.split(",")
        name = next((o[5:] for o in opts if o.startswith("name=")), None)
        v1_controllers = frozenset(o for o in opts if o in available)
        key = frozenset(v1_controllers | ({f"name={name}"} if name else set()))
        hierarchies.append(Hierarchy(1, mountpoint, v1_controllers, name, own_v1.get(key)))

    controllers: dict[str, Hierarchy] = {}
    for h in hierarchies:  # v1 first: a controller bound to v1 is unusable on v2
        if h.version == 1:
            for c in h.controllers:
                controllers[c] = h
    for h in hierarchies:
        if h.version == 2:
            for c in h.controllers:
                controllers.setdefault(c, h)
    has_v1 = any(h.version == 1 and h.controllers for h in hierarchies)
    has_v2 = any(h.version == 2 for h in hierarchies)
    mode: Mode = ("hybrid" if has_v1 and has_v2 else "unified" if has_v2
                  else "legacy" if has_v1 else "none")
    return CgroupLayout(mode, tuple(hierarchies), available, controllers)
