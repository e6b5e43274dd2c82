"""nsbind: Linux namespaces, cgroups, mounts and container images from Python.

The layers, lowest first (see DESIGN.md): ``nsbind._native`` (the cffi-compiled
C core), the typed syscall layer re-exported here (its helpers ``fdnum``,
``thread_count`` and ``AT_FDCWD`` stay in ``nsbind._sys``) (``unshare``, ``setns``,
``clone3``, ``mount``, ``fsopen``, ``openat2``, ...), :mod:`nsbind.cgroupfs`
(cgroup v2 directory fds), then the high-level modules.
"""

import sys

if not sys.platform.startswith("linux"):
    raise ImportError(
        f"nsbind works on Linux only (this is {sys.platform}): namespaces, cgroups and "
        "the mount API it wraps are Linux kernel features"
    )

from nsbind.lazyimport import module_getattr

TYPE_CHECKING = False  # not typing's: a runtime call that imports nsbind must not pay for it

if TYPE_CHECKING:
    from nsbind import errors, features, flags, idmap, image, mounts, namespaces, seccomp
    from nsbind._sys import *  # noqa: F403  (the syscall layer is public API)
    from nsbind.callin import CallInError, RemoteError, call_in, start_zygote
    from nsbind.cgroupfs import CgroupFd, cgroup2_mountpoint
    from nsbind.cgroups import Cgroup, CgroupLayout, cgroup_layout
    from nsbind.errors import (
        InvalidValue,
        LookupFailed,
        MessageError,
        NamespaceRuleError,
        NsbindError,
    )
    from nsbind.flags import (
        NAMESPACE_ORDER,
        AtFlags,
        CloneFlags,
        CloseRangeFlags,
        MountAttr,
        MountFlags,
        MoveMountFlags,
        Namespace,
        OpenTreeFlags,
        Propagation,
        ResolveFlags,
        UmountFlags,
        WaitFlags,
    )
    from nsbind.idmap import IdMap
    from nsbind.namespaces import Namespaces, current, persist, unpersist
    from nsbind.pool import NamespacePool
    from nsbind.process import DEVNULL, PIPE, STDOUT, Process, spawn
    from nsbind.rootfs import RootFS, RootPlan
    from nsbind.spawnplan import CapabilitySets, MountStep, SpawnError
    from nsbind.spawnrequest import SpawnRequest
    from nsbind.users import resolve_user

# Every name is imported on first use, not with nsbind: a program that needs one corner
# (the OCI runtime's ``state``, a script that only reads cgroups) does not pay for
# the rest.  A value of None names a submodule.
_LAZY: dict[str, str | None] = {
    "errors": None,
    "features": None,
    "flags": None,
    "idmap": None,
    "image": None,
    "mounts": None,
    "namespaces": None,
    "seccomp": None,
    "CgroupFd": "nsbind.cgroupfs",
    "cgroup2_mountpoint": "nsbind.cgroupfs",
    "Cgroup": "nsbind.cgroups",
    "CgroupLayout": "nsbind.cgroups",
    "cgroup_layout": "nsbind.cgroups",
    "InvalidValue": "nsbind.errors",
    "LookupFailed": "nsbind.errors",
    "MessageError": "nsbind.errors",
    "NamespaceRuleError": "nsbind.errors",
    "NsbindError": "nsbind.errors",
    "AtFlags": "nsbind.flags",
    "CloneFlags": "nsbind.flags",
    "CloseRangeFlags": "nsbind.flags",
    "MountAttr": "nsbind.flags",
    "MountFlags": "nsbind.flags",
    "MoveMountFlags": "nsbind.flags",
    "NAMESPACE_ORDER": "nsbind.flags",
    "Namespace": "nsbind.flags",
    "OpenTreeFlags": "nsbind.flags",
    "Propagation": "nsbind.flags",
    "ResolveFlags": "nsbind.flags",
    "UmountFlags": "nsbind.flags",
    "WaitFlags": "nsbind.flags",
    "IdMap": "nsbind.idmap",
    "Namespaces": "nsbind.namespaces",
    "current": "nsbind.namespaces",
    "persist": "nsbind.namespaces",
    "unpersist": "nsbind.namespaces",
    "NamespacePool": "nsbind.pool",
    "DEVNULL": "nsbind.process",
    "PIPE": "nsbind.process",
    "Process": "nsbind.process",
    "STDOUT": "nsbind.process",
    "spawn": "nsbind.process",
    "RootFS": "nsbind.rootfs",
    "RootPlan": "nsbind.rootfs",
    "CapabilitySets": "nsbind.spawnplan",
    "MountStep": "nsbind.spawnplan",
    "SpawnError": "nsbind.spawnplan",
    "SpawnRequest": "nsbind.spawnrequest",
    "Capabilities": "nsbind._sys",
    "Capability": "nsbind._sys",
    "FdLike": "nsbind._sys",
    "FsContext": "nsbind._sys",
    "MountFd": "nsbind._sys",
    "NamespaceFd": "nsbind._sys",
    "OwnedFd": "nsbind._sys",
    "PathLike": "nsbind._sys",
    "PidFd": "nsbind._sys",
    "WaitResult": "nsbind._sys",
    "capbset_drop": "nsbind._sys",
    "capbset_read": "nsbind._sys",
    "capget": "nsbind._sys",
    "capset": "nsbind._sys",
    "clone3": "nsbind._sys",
    "close_range": "nsbind._sys",
    "fsconfig": "nsbind._sys",
    "fsmount": "nsbind._sys",
    "fsopen": "nsbind._sys",
    "fstatfs_type": "nsbind._sys",
    "get_dumpable": "nsbind._sys",
    "get_no_new_privs": "nsbind._sys",
    "mount": "nsbind._sys",
    "mount_setattr": "nsbind._sys",
    "move_mount": "nsbind._sys",
    "open_namespace": "nsbind._sys",
    "open_tree": "nsbind._sys",
    "openat2": "nsbind._sys",
    "pidfd_getfd": "nsbind._sys",
    "pidfd_open": "nsbind._sys",
    "pidfd_send_signal": "nsbind._sys",
    "pivot_root": "nsbind._sys",
    "prctl": "nsbind._sys",
    "set_dumpable": "nsbind._sys",
    "set_no_new_privs": "nsbind._sys",
    "set_pdeathsig": "nsbind._sys",
    "setdomainname": "nsbind._sys",
    "sethostname": "nsbind._sys",
    "setns": "nsbind._sys",
    "umount2": "nsbind._sys",
    "unshare": "nsbind._sys",
    "waitid": "nsbind._sys",
    "CallInError": "nsbind.callin",
    "RemoteError": "nsbind.callin",
    "call_in": "nsbind.callin",
    "start_zygote": "nsbind.callin",
    "resolve_user": "nsbind.users",
}


__getattr__ = module_getattr("nsbind", _LAZY, globals())


__version__ = "0.1.0"

__all__ = [
    "InvalidValue",
    "LookupFailed",
    "MessageError",
    "RemoteError",
    "DEVNULL",
    "NAMESPACE_ORDER",
    "PIPE",
    "STDOUT",
    "AtFlags",
    "CallInError",
    "CapabilitySets",
    "Cgroup",
    "CgroupFd",
    "CgroupLayout",
    "CloneFlags",
    "CloseRangeFlags",
    "IdMap",
    "MountAttr",
    "MountFlags",
    "MountStep",
    "MoveMountFlags",
    "Namespace",
    "NamespacePool",
    "NamespaceRuleError",
    "Namespaces",
    "NsbindError",
    "OpenTreeFlags",
    "Process",
    "Propagation",
    "ResolveFlags",
    "RootFS",
    "RootPlan",
    "SpawnError",
    "SpawnRequest",
    "UmountFlags",
    "WaitFlags",
    "call_in",
    "cgroup2_mountpoint",
    "cgroup_layout",
    "current",
    "errors",
    "features",
    "flags",
    "idmap",
    "image",
    "mounts",
    "namespaces",
    "persist",
    "resolve_user",
    "seccomp",
    "spawn",
    "start_zygote",
    "unpersist",
    *[n for n, m in _LAZY.items() if m == "nsbind._sys"],
]
