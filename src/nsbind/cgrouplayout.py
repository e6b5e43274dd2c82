"""Control groups: where each controller lives on this host (cgroup v2, v1, or both).

This is the discovery half of the cgroup API: :func:`cgroup_layout` reads
/proc/self/mountinfo, /proc/cgroups and /proc/self/cgroup and says whether the
host is *unified* (cgroup v2 only), *hybrid* (v2 mounted, some controllers still
on v1 hierarchies) or *legacy* (v1 only), which hierarchy carries each logical
controller, which controllers the kernel has but nobody mounted (e.g.
net_cls/net_prio), and the caller's own cgroup in each hierarchy.

It also holds the rules for naming a cgroup inside a hierarchy
(:func:`cgroup_path_parts`) and for reaching one without leaving the hierarchy
(:func:`open_cgroup`, :func:`mkdir_cgroup`).
"""

from __future__ import annotations

import _thread
import errno
import os
import time

from nsbind._sys.fd import OwnedFd
from nsbind._sys.mount import openat2, umount2
from nsbind._sys.mountinfo import parse_mountinfo
from nsbind.cgroupfs import CgroupFd
from nsbind.ctxlite import contextmanager, suppress
from nsbind.errors import (
    Forbidden,
    InUse,
    InvalidValue,
    LookupFailed,
    NsbindError,
    error_for,
    raise_errno,
)
from nsbind.flags import ResolveFlags
from nsbind.frozen import frozen

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, Literal, TypeAlias

__all__ = ["CgroupLayout", "Hierarchy", "Mode", "cgroup_layout", "cgroup_path_parts",
           "check_cgroup_name", "delegated_subtree", "delegation_root", "enable_controllers",
           "held_layout",
           "mkdir_cgroup", "mount_v1", "open_cgroup", "open_in_hierarchy", "privileged_over",
           "unmount_v1"]

Mode: TypeAlias = "Literal['unified', 'hybrid', 'legacy', 'none']"

NAME_MAX = 255  # bytes in one path component (ENAMETOOLONG beyond)


@frozen
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

    @property
    def holds_cgroups(self) -> bool:
        """Whether nsbind makes cgroups here: the v2 hierarchy, and v1 ones with
        controllers (not a named one like name=systemd, which belongs to its owner)."""
        return self.version == 2 or bool(self.controllers)

    def open_root(self) -> CgroupFd:
        """An fd on the hierarchy's root (ValueError if the mount point is not this
        version's cgroup filesystem)."""
        return CgroupFd.open(self.mountpoint, v1=self.version == 1)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "mountpoint": self.mountpoint,
                "controllers": sorted(self.controllers), "name": self.name, "own": self.own}


@frozen
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
            raise LookupFailed(f"no cgroup hierarchy carries the {controller} controller on "
                               f"this host (mounted: {where}){extra}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode,
                "hierarchies": [h.to_dict() for h in self.hierarchies],
                "controllers": {c: h.mountpoint for c, h in sorted(self.controllers.items())},
                "unmounted": sorted(self.unmounted)}


def _read(path: str) -> str:
    """A /proc or cgroupfs file, whole (read with os calls: text io's buffering and
    checks cost more than these small files)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def _cgroup_mounts(mountinfo: str) -> str:
    """The lines of ``mountinfo`` that mount a cgroup or cgroup2 filesystem: all that a
    layout is built from (a path in mountinfo escapes its spaces: `` - `` is only the
    separator before the filesystem type)."""
    return "\n".join(line for line in mountinfo.splitlines()
                     if " - cgroup " in line or " - cgroup2 " in line)


def _without_counts(proc_cgroups: str) -> str:
    """/proc/cgroups without its num_cgroups column (``-`` in its place): each cgroup
    made or removed changes it, and a layout does not depend on it."""
    out = []
    for line in proc_cgroups.splitlines():
        fields = line.split()
        if len(fields) == 4 and not line.startswith("#"):
            fields[2] = "-"
            line = "\t".join(fields)
        out.append(line)
    return "\n".join(out)


def _read_controllers(mountpoint: str) -> str:
    return _read(os.path.join(mountpoint, "cgroup.controllers"))


def _own_cgroups(self_cgroup: str) -> tuple[dict[frozenset[str], str], str | None]:
    """/proc/self/cgroup as (v1 controller set -> path, the v2 path)."""
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
    return own_v1, own_v2


#: the inputs and the result of the last cgroup_layout() that read cgroup.controllers
#: itself: a command asks several times, and the files rarely change in between
_last: tuple[tuple[str, str, str], CgroupLayout] | None = None


def _v2_controllers(mountpoint: str, read_controllers: Callable[[str], str]) -> frozenset[str]:
    try:
        return frozenset(read_controllers(mountpoint).split())
    except OSError:
        return frozenset()


def cgroup_layout(
    mountinfo: str | None = None,
    proc_cgroups: str | None = None,
    self_cgroup: str | None = None,
    read_controllers: Callable[[str], str] | None = None,
) -> CgroupLayout:
    """Discover the cgroup layout of the calling process's mount and cgroup namespaces.

    The arguments (file contents, and a function reading a v2 mount's
    ``cgroup.controllers``) default to this process's /proc files; passing them
    lets tools describe another process or a recorded host.  The files are read at each
    call; what was built from them is reused while they (mountinfo's cgroup mounts, and
    each v2 hierarchy's ``cgroup.controllers``) read as they did at the last call.
    """
    global _last
    held = _held.get(_thread.get_ident()) if _held else None
    if held is not None and mountinfo is None and proc_cgroups is None \
            and self_cgroup is None and read_controllers is None:
        return CgroupLayout(held.mode, held.hierarchies, held.available,
                            dict(held.controllers))
    mountinfo = _cgroup_mounts(_read("/proc/self/mountinfo") if mountinfo is None
                               else mountinfo)
    proc_cgroups = _without_counts(_read("/proc/cgroups") if proc_cgroups is None
                                   else proc_cgroups)
    self_cgroup = _read("/proc/self/cgroup") if self_cgroup is None else self_cgroup
    key = (mountinfo, proc_cgroups, self_cgroup)
    if read_controllers is None:
        last = _last
        if last is not None and last[0] == key and all(
                _v2_controllers(h.mountpoint, _read_controllers) == h.controllers
                for h in last[1].hierarchies if h.version == 2):
            layout = last[1]  # a copy: its controllers dict is the caller's
            return CgroupLayout(layout.mode, layout.hierarchies, layout.available,
                                dict(layout.controllers))
    layout = _build_layout(mountinfo, proc_cgroups, self_cgroup,
                           read_controllers or _read_controllers)
    if read_controllers is None:
        _last = (key, layout)
        layout = CgroupLayout(layout.mode, layout.hierarchies, layout.available,
                              dict(layout.controllers))
    return layout


#: the layouts held_layout() holds, by thread id
_held: dict[int, CgroupLayout] = {}


@contextmanager
def held_layout() -> Iterator[CgroupLayout]:
    """Within the block, :func:`cgroup_layout` (without arguments) in this thread
    returns the layout read on entry without reading its files again: for an operation
    that asks for the layout several times and mounts no cgroup hierarchy itself
    (``nsbind.oci``'s create asks seven times).  Nested blocks hold the outer one's."""
    layout = cgroup_layout()
    thread = _thread.get_ident()
    previous = _held.get(thread)
    _held[thread] = layout
    try:
        yield layout
    finally:
        if previous is None:
            del _held[thread]
        else:
            _held[thread] = previous


def _build_layout(mountinfo: str, proc_cgroups: str, self_cgroup: str,
                  read_controllers: Callable[[str], str]) -> CgroupLayout:

    available = frozenset(
        fields[0] for line in proc_cgroups.splitlines()
        if line and not line.startswith("#") and (fields := line.split()) and fields[3] == "1")
    own_v1, own_v2 = _own_cgroups(self_cgroup)

    hierarchies: list[Hierarchy] = []
    seen: set[str] = set()
    for entry in parse_mountinfo(mountinfo):
        if entry.fstype not in ("cgroup", "cgroup2") or entry.root != "/" or entry.dev in seen:
            continue  # not a cgroup fs, a bind of a sub-cgroup, or a second mount of one
        seen.add(entry.dev)
        if entry.fstype == "cgroup2":
            v2_controllers = _v2_controllers(entry.mountpoint, read_controllers)
            hierarchies.append(Hierarchy(2, entry.mountpoint, v2_controllers, None, own_v2))
            continue
        opts = entry.superopts.split(",")
        name = next((o[5:] for o in opts if o.startswith("name=")), None)
        v1_controllers = frozenset(o for o in opts if o in available)
        key = frozenset(v1_controllers | ({f"name={name}"} if name else set()))
        hierarchies.append(Hierarchy(1, entry.mountpoint, v1_controllers, name,
                                     own_v1.get(key)))

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


def mount_v1(controllers: list[str], target: str) -> CgroupLayout:
    """Mount a cgroup v1 hierarchy of ``controllers`` (e.g. ``["net_cls", "net_prio"]``,
    which hybrid hosts often leave unmounted) on ``target`` in the calling thread's
    mount namespace; return the new layout.  Needs CAP_SYS_ADMIN.

    The hierarchy is kernel-wide: remove the cgroups made in it, then
    :func:`unmount_v1`; the kernel keeps a hierarchy alive (unmounted, listed in
    every process's /proc/self/cgroup) if it still had cgroups when unmounted."""
    from nsbind import mounts  # the mount helpers sit above this module

    unknown = set(controllers) - cgroup_layout().available
    if unknown:
        raise LookupFailed(f"this kernel has no cgroup controller {sorted(unknown)}")
    with open("/proc/cmdline") as f:
        no_v1 = next((w for w in f.read().split() if w.startswith("cgroup_no_v1=")), None)
    if no_v1 is not None:
        raise LookupFailed(f"this kernel was booted with {no_v1}: it mounts no cgroup v1 "
                           "hierarchy")
    mounts.apply([mounts.cgroup(controllers, target, readonly=False)])
    with open("/proc/thread-self/mountinfo") as f:
        return cgroup_layout(mountinfo=f.read())


def unmount_v1(target: str, controllers: list[str], timeout: float = 10.0) -> None:
    """Unmount a v1 hierarchy made by :func:`mount_v1` once the kernel has released
    every cgroup removed from it (``/proc/cgroups``), so the hierarchy goes away."""
    def proc_cgroups() -> dict[str, tuple[int, int]]:  # controller -> (hierarchy, count)
        with open("/proc/cgroups") as f:
            return {fields[0]: (int(fields[1]), int(fields[2])) for line in f
                    if not line.startswith("#") and (fields := line.split())}

    deadline = time.monotonic() + timeout
    while (left := max(proc_cgroups()[c][1] for c in controllers) - 1) > 0:
        if time.monotonic() > deadline:
            raise InUse(f"cgroup v1 hierarchy at {target} still has {left} cgroups; "
                        "remove them before unmounting (or it stays, unmounted)")
        time.sleep(0.005)
    umount2(target)
    # the kernel destroys the hierarchy asynchronously after the last unmount
    while any(proc_cgroups()[c][0] for c in controllers):
        if time.monotonic() > deadline:
            raise InUse(f"cgroup v1 hierarchy of {','.join(controllers)} is still alive "
                        f"after unmounting {target}: is it mounted elsewhere?")
        time.sleep(0.005)


def delegated_subtree(layout: CgroupLayout, parent: str | None) -> tuple[Hierarchy, str]:
    """(the v2 hierarchy, the parent path) a non-root caller may create cgroups in:
    ``parent`` (default: the caller's own v2 cgroup) if the caller owns it and may
    write it, as systemd's Delegate=yes leaves it - or, for a parent not made yet, its
    deepest existing ancestor; PermissionError naming it otherwise.  v1 hierarchies
    are never delegated."""
    v2 = layout.unified
    uid = os.geteuid()
    if v2 is None:
        raise Forbidden(f"uid {uid} cannot create cgroups: this host has no cgroup v2 "
                        "hierarchy, and v1 hierarchies are not delegated")
    path = parent if parent is not None else (v2.own or "/")
    parts = cgroup_path_parts(path, "parent")
    while parts and not os.path.isdir(v2.path_of("/" + "/".join(parts))):
        parts.pop()  # made by the caller below the ancestor checked here
    where = v2.path_of("/" + "/".join(parts))
    try:
        owner = os.stat(where).st_uid
    except OSError as exc:
        raise Forbidden(f"uid {uid} has no delegated cgroup at {where}: "
                        f"{exc.strerror}") from None
    if owner != uid or not os.access(where, os.W_OK):
        raise Forbidden(
            f"uid {uid} has no delegated cgroup subtree: {where} belongs to uid {owner} "
            "(ask the system for one, e.g. systemd's Delegate=yes, or pass parent= a "
            "cgroup you own)")
    return v2, path


def delegation_root(layout: CgroupLayout) -> str | None:
    """The top of the v2 subtree delegated to the caller: the highest cgroup on the path
    from the v2 root down to the caller's own that the caller owns and may write (as
    systemd's Delegate=yes leaves a unit's cgroup); None when its own one is not."""
    v2 = layout.unified
    if v2 is None or v2.own is None:
        return None
    uid = os.geteuid()
    parts = [p for p in v2.own.split("/") if p]
    found = None
    for depth in range(len(parts), 0, -1):
        path = "/" + "/".join(parts[:depth])
        where = v2.path_of(path)
        try:
            owned = os.stat(where).st_uid == uid and os.access(where, os.W_OK)
        except OSError:
            owned = False
        if not owned:
            break
        found = path
    return found


def privileged_over(h: Hierarchy) -> bool:
    """Whether the caller may make cgroups anywhere in ``h``: root that may write its
    root directory (not root of a user namespace, whose euid 0 owns nothing there)."""
    return os.geteuid() == 0 and os.access(h.mountpoint, os.W_OK)


# ---------------------------------------------------------------- paths inside a hierarchy


def cgroup_path_parts(path: object, argument: str = "path", *,
                      allow_root: bool = True) -> list[str]:
    """The components of a cgroup path inside a hierarchy (``/a/b`` or ``a/b``).

    One leading ``/`` is allowed.  Refused with a ValueError naming ``argument``
    and the path: a non-str, NUL, an empty component (``a//b``, ``a/``), ``.``
    and ``..`` (``/p/mine/../victim`` names a sibling: the kernel resolves ``..``
    in cgroupfs like anywhere), a component over NAME_MAX (255) bytes, and, unless
    ``allow_root``, the hierarchy's root itself (``""``, ``/``).
    """
    if not isinstance(path, str):
        raise InvalidValue(f"{argument}={path!r}: a cgroup path must be a str")
    if "\0" in path:
        raise InvalidValue(f"{argument}={path!r}: a cgroup path cannot contain NUL")
    body = path[1:] if path.startswith("/") else path
    if not body:
        if allow_root:
            return []
        raise InvalidValue(f"{argument}={path!r}: names the hierarchy's root, not a cgroup")
    parts = body.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            what = "an empty component" if not part else f"a {part!r} component"
            raise InvalidValue(f"{argument}={path!r}: {what} is not allowed in a cgroup path "
                               "(each component names one cgroup below the one before)")
        if len(os.fsencode(part)) > NAME_MAX:
            raise InvalidValue(f"{argument}={path!r}: component {part[:20]!r}... is longer "
                               f"than {NAME_MAX} bytes")
    return parts


def check_cgroup_name(name: object, argument: str = "name") -> str:
    """A cgroup name is one path component: a non-empty str without ``/`` or NUL, not
    ``.`` or ``..``, at most NAME_MAX (255) bytes; ValueError naming ``argument``."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name
            or len(os.fsencode(name)) > NAME_MAX):
        raise InvalidValue(f"{argument}={name!r}: invalid cgroup name: must be one non-empty "
                           f"path component (no '/' or NUL, not '.' or '..', at most "
                           f"{NAME_MAX} bytes)")
    return name


_BENEATH = int(ResolveFlags.BENEATH | ResolveFlags.NO_SYMLINKS | ResolveFlags.NO_XDEV
               | ResolveFlags.NO_MAGICLINKS)


def open_cgroup(base: CgroupFd, relpath: str) -> CgroupFd:
    """Open the cgroup ``relpath`` (components checked by :func:`cgroup_path_parts`)
    below ``base`` without leaving it: openat2 (Linux 5.6) with RESOLVE_BENEATH,
    RESOLVE_NO_SYMLINKS and RESOLVE_NO_XDEV, so a symlink (ELOOP) or a mount (EXDEV)
    on the way is refused and the fd is on ``base``'s cgroup filesystem."""
    shown = f"{base.path.rstrip('/')}/{relpath}"
    try:
        opened = openat2(base, relpath, os.O_RDONLY | os.O_DIRECTORY, resolve=_BENEATH)
    except NsbindError as exc:
        raise error_for(exc.errno or 0, "openat2", shown, what=f"open cgroup {shown}",
                        detail=_why(exc.errno)) from None
    return CgroupFd(opened.detach() if isinstance(opened, OwnedFd) else opened, shown)


def _why(err: int | None) -> str | None:
    if err == errno.EXDEV:
        return "a mount point is on the path (bind mounts are not followed)"
    if err == errno.ELOOP:
        return "a symlink is on the path (symlinks are not followed)"
    return None


def mkdir_cgroup(h: Hierarchy, parent: CgroupFd, name: str, *,
                 exist_ok: bool = False) -> CgroupFd:
    """Create cgroup ``name`` below ``parent`` (an fd in hierarchy ``h``) with mkdirat
    and open it (:func:`open_cgroup`).  FileExistsError if it exists, unless
    ``exist_ok``; a cgroup this call made is removed again if the rest fails.

    In a v1 cpuset hierarchy the cgroup gets its parent's cpus and mems when it has
    none: a v1 cpuset starts empty, and joining an empty one fails with ENOSPC."""
    check_cgroup_name(name)
    created = False
    try:
        os.mkdir(name, 0o755, dir_fd=parent.fileno())
        created = True
    except OSError as exc:
        if not (exist_ok and exc.errno == errno.EEXIST):
            path = f"{parent.path.rstrip('/')}/{name}"
            raise_errno(exc.errno or 0, "mkdir", path, what=f"create cgroup {path}")
    child: CgroupFd | None = None
    try:
        child = open_cgroup(parent, name)
        if h.version == 1 and "cpuset" in h.controllers:
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if not child.read(knob).strip():
                    child.write(knob, parent.read(knob).strip())
    except BaseException:
        if child is not None:
            child.close()
        if created:  # nothing is left of a failed call
            with suppress(OSError):
                os.rmdir(name, dir_fd=parent.fileno())
        raise
    return child


def enable_controllers(cg: CgroupFd, *, privileged: bool = False) -> None:
    """Give the children of a v2 cgroup every controller it has (cgroup.subtree_control),
    as runc does along a container's path; never called on a hierarchy's root.  Only a
    caller that is not ``privileged`` over the hierarchy passes over EACCES/EPERM."""
    have = cg.read("cgroup.controllers").split()
    enabled = set(cg.read("cgroup.subtree_control").split())
    missing = [c for c in have if c not in enabled]
    if missing:
        try:
            cg.write("cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        except OSError as exc:
            # EBUSY: the cgroup has member processes (a non-root caller's own
            # delegated cgroup); EACCES/EPERM: an ancestor of a delegated subtree,
            # which belongs to the machine.  The new cgroup then lacks those
            # controllers, and a limit set on it names the missing one.
            if exc.errno != errno.EBUSY and (
                    privileged or exc.errno not in (errno.EACCES, errno.EPERM)):
                raise


def open_in_hierarchy(h: Hierarchy, parts: list[str]) -> tuple[CgroupFd, CgroupFd] | None:
    """(parent fd, cgroup fd) of the cgroup ``parts`` (components checked by
    :func:`cgroup_path_parts`, not the root) in ``h``, each opened beneath the
    hierarchy's mount (:func:`open_cgroup`); None if ``h`` has no such cgroup."""
    root = h.open_root()
    parent, leaf = root, None
    try:
        with suppress(FileNotFoundError):
            if len(parts) > 1:
                parent = open_cgroup(root, "/".join(parts[:-1]))
            leaf = open_cgroup(parent, parts[-1])
    finally:
        if leaf is None or parent is not root:
            root.close()
        if leaf is None:
            parent.close()
    return None if leaf is None else (parent, leaf)
