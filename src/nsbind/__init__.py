"""nsbind: Linux namespaces, cgroups, mounts and container images from Python.

The layers, lowest first (see DESIGN.md): ``nsbind._native`` (the cffi-compiled
C core), the typed syscall layer re-exported here (its helpers ``fdnum``,
``thread_count`` and ``AT_FDCWD`` stay in ``nsbind._sys``) (``unshare``, ``setns``,
``clone3``, ``mount``, ``fsopen``, ``openat2``, ...), :mod:`nsbind.cgroupfs`
(cgroup v2 directory fds), then the high-level modules.
"""

import sys
from typing import TYPE_CHECKING, Any

if not sys.platform.startswith("linux"):
    raise ImportError(
        f"nsbind works on Linux only (this is {sys.platform}): namespaces, cgroups and "
        "the mount API it wraps are Linux kernel features"
    )

from nsbind import errors, features, flags, idmap, mounts, namespaces
from nsbind._sys import *  # noqa: F403  (the syscall layer is public API)
from nsbind._sys import __all__ as _sys_all
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

if TYPE_CHECKING:
    from nsbind import image, seccomp
    from nsbind.callin import CallInError, RemoteError, call_in, start_zygote
    from nsbind.users import resolve_user

# call_in pulls in multiprocessing, image the decompressors and the store, seccomp its
# tables (and libseccomp when used): imported on
# first use, not with nsbind.  A value of None names a submodule.
_LAZY = {"CallInError": "nsbind.callin", "RemoteError": "nsbind.callin",
         "call_in": "nsbind.callin",
         "start_zygote": "nsbind.callin", "image": None, "seccomp": None,
         "resolve_user": "nsbind.users"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nsbind' has no attribute {name!r}")
    import importlib

    module = _LAZY[name]
    value = (importlib.import_module(f"nsbind.{name}") if module is None
             else getattr(importlib.import_module(module), name))
    globals()[name] = value
    return value


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
    *_sys_all,
]
