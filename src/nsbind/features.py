"""What this kernel offers, probed once per process (never guessed from a version number).

Each probe asks the kernel in the cheapest way that cannot change anything: a call
with an argument that is invalid only if the feature exists (EBADF instead of EINVAL),
a file that exists only where the feature does, or an fs-context option that a
context is thrown away after.  Results are cached; :func:`probe_all` lists them (for
``nsbind doctor`` style reports and for tests that assert which path the code takes).

The code uses these instead of version checks: overlay assembly takes ``lowerdir+``
when :func:`lowerdir_plus` says so and the single ``lowerdir=`` string otherwise.
"""

from __future__ import annotations

import errno
import os

from nsbind._native import ffi, lib
from nsbind._sys.mount import fsopen, mount_setattr, open_tree
from nsbind.errors import NsbindError
from nsbind.flags import MountAttr, OpenTreeFlags
from nsbind.fnlite import cache

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["cgroup2_delegated", "cgroup_kill", "clone_detached_mounts", "clone_into_cgroup",
           "idmapped_mounts", "lowerdir_plus", "mount_api", "pidfd_setns", "probe_all",
           "time_namespaces"]


@cache
def lowerdir_plus() -> bool:
    """overlayfs takes one ``lowerdir+`` option per layer (Linux 6.8); without it a
    mount has one ``lowerdir=`` string (255 bytes through fsconfig).

    Before 6.5 overlayfs parsed its options only at mount time (the legacy context takes
    any key), so a key that exists nowhere must be refused for the answer to count."""
    try:
        with fsopen("overlay") as ctx:
            ctx.set_string("lowerdir+", "/")
            try:
                ctx.set_string("nsbind-no-such-option", "x")
            except NsbindError as exc:
                return exc.errno == errno.EINVAL
            return False  # a legacy context: it took a key overlayfs does not have
    except NsbindError as exc:
        if exc.errno in (errno.EINVAL, errno.ENODEV, errno.ENOSYS, errno.EPERM):
            return False
        raise


@cache
def mount_api() -> bool:
    """The new mount API (fsopen, fsconfig, fsmount, move_mount, open_tree: Linux 5.2)."""
    fd = lib.nsb_fsopen(b"tmpfs", 0)
    if fd < 0:
        return ffi.errno not in (errno.ENOSYS, errno.EPERM)
    os.close(fd)
    return True


@cache
def idmapped_mounts() -> bool:
    """mount_setattr with MOUNT_ATTR_IDMAP (Linux 5.12; per filesystem after that).

    Probed on a detached clone of ``/`` with a user namespace fd that is not open: EBADF means
    the kernel knows the attribute.  Needs CAP_SYS_ADMIN (False without it)."""
    try:
        with open_tree("/", OpenTreeFlags.CLONE) as tree:
            mount_setattr(tree, "", int(lib.AT_EMPTY_PATH), attr_set=int(MountAttr.IDMAP),
                          userns=2**31 - 1)
    except NsbindError as exc:
        return exc.errno == errno.EBADF
    return True


@cache
def clone_detached_mounts() -> bool:
    """open_tree(OPEN_TREE_CLONE) copies a detached mount (one from fsmount or a clone
    not yet attached): recent kernels do (6.18 here), older ones (6.1) refuse with
    EINVAL, and a detached tree is then copied by attaching it in a throwaway mount
    namespace first (:func:`nsbind.mountclone.clone_tree`).  Probed on a detached clone
    of ``/``; needs CAP_SYS_ADMIN (False without it)."""
    try:
        with open_tree("/", OpenTreeFlags.CLONE) as tree, \
                open_tree("", OpenTreeFlags.CLONE | int(lib.AT_EMPTY_PATH), dirfd=tree):
            return True
    except NsbindError as exc:
        if exc.errno in (errno.EINVAL, errno.EPERM, errno.ENOSYS):
            return False
        raise


@cache
def clone_into_cgroup() -> bool:
    """clone3 with CLONE_INTO_CGROUP (Linux 5.7).  Probed with a cgroup fd number that
    is not open (INT_MAX): EBADF means the flag is known, EINVAL or ENOSYS that it is
    not.  The call fails either way: no process is made."""
    args: Any = ffi.new("struct clone_args *")
    args.flags = lib.CLONE_INTO_CGROUP
    args.cgroup = 2**31 - 1
    rc = lib.nsb_clone3(args, ffi.sizeof("struct clone_args"))
    if rc == 0:  # cannot happen; if it ever did, this is the child: leave at once
        os._exit(0)
    return rc < 0 and ffi.errno == errno.EBADF


@cache
def time_namespaces() -> bool:
    """Time namespaces (Linux 5.6): ``/proc/self/ns/time`` exists."""
    return os.path.exists("/proc/self/ns/time")


@cache
def pidfd_setns() -> bool:
    """setns on a pidfd, several namespace types at once (Linux 5.8).  Probed by joining
    the calling thread's own uts namespace through its process's pidfd (a no-op);
    older kernels refuse a pidfd with EINVAL."""
    fd = lib.nsb_pidfd_open(os.getpid(), 0)
    if fd < 0:
        return False
    try:  # EPERM: known, but this caller lacks CAP_SYS_ADMIN; EINVAL: not an nsfs fd
        return lib.nsb_setns(fd, lib.CLONE_NEWUTS) == 0 or ffi.errno == errno.EPERM
    finally:
        os.close(fd)


@cache
def cgroup_kill() -> bool:
    """``cgroup.kill`` in cgroup v2 (Linux 5.14): kill a whole cgroup in one write;
    without it nsbind freezes, signals every member and thaws.

    The root cgroup has no cgroup.kill, so this looks in the caller's cgroup, or in a
    child of the root when the caller is in the root; with no child there either it
    answers False (the slower path, still correct) and keeps that answer."""
    found = _cgroup2()
    if found is None:
        return False
    mount, own = found[0], os.path.join(found[0], found[1].lstrip("/"))
    if os.path.normpath(own) == os.path.normpath(mount):  # the root cgroup has no cgroup.kill
        with os.scandir(mount) as entries:
            own = next((e.path for e in entries if e.is_dir(follow_symlinks=False)), own)
    return os.path.exists(os.path.join(own, "cgroup.kill"))


@cache
def cgroup2_delegated() -> bool:
    """The caller may make cgroups in the v2 hierarchy: root, or a user whose own cgroup
    directory was delegated to it (owned by it, as systemd's ``Delegate=yes`` does)."""
    found = _cgroup2()
    if found is None:
        return False
    mount = found[0]
    if os.geteuid() == 0:
        return os.access(mount, os.W_OK)
    own = os.path.join(mount, found[1].lstrip("/"))
    try:
        return os.stat(own).st_uid == os.geteuid() and os.access(own, os.W_OK)
    except OSError:
        return False


def probe_all() -> dict[str, bool]:
    """Every probe, by name."""
    return {name: globals()[name]() for name in __all__ if name != "probe_all"}


def _cgroup2() -> tuple[str, str] | None:
    """(mount point, this process's cgroup in it) of the v2 hierarchy, or None."""
    from nsbind.cgrouplayout import cgroup_layout  # (cgroups import mounts, which import us)

    v2 = cgroup_layout().unified
    return None if v2 is None else (v2.mountpoint, v2.own or "/")
