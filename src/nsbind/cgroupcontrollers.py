"""Which controllers the cgroups nsbind makes can use.

nsbind enables controllers along the parent path it creates, never in a hierarchy's
root, which belongs to the machine; a v2 controller the v2 root does not enable for its
children cannot be used, and a limit on it is an error that says why."""

from __future__ import annotations

from nsbind.cgroupfs import CgroupFd
from nsbind.cgrouplayout import CgroupLayout, Hierarchy, cgroup_layout
from nsbind.errors import LookupFailed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["V1_OPTIONAL", "check_enabled", "check_root_enables", "controller_of",
           "not_enabled", "root_enabled", "usable_controllers"]


#: controllers whose cgroup v1 side a kernel build may leave out, the option and the
#: release from which it may (before it, every kernel with the controller has both)
V1_OPTIONAL = {"memory": ("CONFIG_MEMCG_V1", "6.11"), "cpuset": ("CONFIG_CPUSETS_V1", "6.12")}


def root_enabled(h: Hierarchy) -> frozenset[str]:
    """The controllers the root of v2 hierarchy ``h`` enables for its children."""
    with h.open_root() as root:
        return frozenset(root.read("cgroup.subtree_control").split())


def usable_controllers(layout: CgroupLayout | None = None) -> frozenset[str]:
    """The controllers a cgroup that :meth:`Cgroup.create` makes can use: every v1
    hierarchy's, and the v2 ones that the v2 root enables for its children (its
    cgroup.subtree_control).

    nsbind enables controllers along the parent path it creates, never in a
    hierarchy's root, which belongs to the machine: a pure-v2 host's init enables
    them there; on a hybrid host systemd enables none, so a controller on no v1
    hierarchy (memory on a kernel built without CONFIG_MEMCG_V1) cannot be used and
    a limit on it is a LookupError naming why."""
    layout = layout or cgroup_layout()
    found = {c for c, h in layout.controllers.items() if h.version == 1}
    v2 = layout.unified
    if v2 is not None:
        found |= {c for c in root_enabled(v2) if layout.controllers.get(c) is v2}
    return frozenset(found)


def not_enabled(layout: CgroupLayout, h: Hierarchy, controller: str, what: str,
                 where: str, enabled: frozenset[str]) -> LookupFailed:
    """The error for a v2 controller that ``where`` (a cgroup, or the root) lacks."""
    have = " ".join(sorted(enabled)) or "none"
    if where == h.mountpoint:
        text = (f"{what}: the {controller} controller is not enabled below the cgroup v2 "
                f"root {h.mountpoint} (its cgroup.subtree_control: {have}); nsbind leaves "
                "the root's controllers to the machine (a pure-v2 host's init enables "
                "them, systemd on a hybrid host none)")
    else:
        text = (f"{what}: the {controller} controller is not enabled for cgroup {where} "
                f"(its cgroup.controllers: {have}): an ancestor's cgroup.subtree_control "
                "lacks it")
    if layout.mode == "hybrid" and controller in V1_OPTIONAL:
        option, release = V1_OPTIONAL[controller]
        text += (f"; no cgroup v1 hierarchy carries {controller} either (from Linux "
                 f"{release} a kernel may be built without it: {option})")
    return LookupFailed(text)


def controller_of(layout: CgroupLayout, controllers: tuple[str, ...]) -> str:
    """The first of a setting's ``controllers`` the host has (the one it uses)."""
    return next((c for c in controllers if c in layout.controllers), controllers[-1])


def check_root_enables(layout: CgroupLayout,
                       settings: Iterable[tuple[str, Hierarchy, tuple[str, ...]]]) -> None:
    """LookupFailed naming the first setting (name, its hierarchy, its controllers) whose
    controller the v2 root does not enable for its children (the root read once)."""
    enabled: frozenset[str] | None = None
    for what, h, controllers in settings:
        if h.version != 2:
            continue
        controller = controller_of(layout, controllers)
        if enabled is None:
            enabled = root_enabled(h)
        if controller not in enabled:
            raise not_enabled(layout, h, controller, what, h.mountpoint, enabled)


def check_enabled(layout: CgroupLayout, h: Hierarchy, fd: CgroupFd,
                  controllers: tuple[str, ...], what: str, path: str) -> None:
    """LookupFailed naming ``what`` if the v2 cgroup ``fd`` (``path``) lacks the
    setting's controller (its cgroup.controllers)."""
    if h.version != 2:
        return
    controller = controller_of(layout, controllers)
    enabled = frozenset(fd.read("cgroup.controllers").split())
    if controller not in enabled:
        raise not_enabled(layout, h, controller, what, path, enabled)
