"""nsbind: Linux namespaces, cgroups, mounts and container images from Python.

The layers, lowest first (see DESIGN.md): ``nsbind._native`` (the cffi-compiled
C core), the typed syscall layer re-exported here (``unshare``, ``setns``,
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

from nsbind import errors, flags, mounts, namespaces
from nsbind._sys import *  # noqa: F403
from nsbind._sys import __all__ as _sys_all
from nsbind.cgroupfs import CgroupFd, cgroup2_mountpoint
from nsbind.cgroups import Cgroup, CgroupLayout, cgroup_layout
from nsbind.errors import NamespaceRuleError, NsbindError
from nsbind.flags import (
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
from nsbind.namespaces import Namespaces, current, persist, unpersist
from nsbind.pool import NamespacePool
from nsbind.process import DEVNULL, PIPE, STDOUT, Process, spawn
from nsbind.rootfs import RootFS
from nsbind.spawnplan import CapabilitySets, MountStep, SpawnError

if TYPE_CHECKING:
    from nsbind.callin import CallInError, call_in, start_zygote

# call_in pulls in multiprocessing: imported on first use, not with nsbind.
_LAZY = {"CallInError": "nsbind.callin", "call_in": "nsbind.callin",
         "start_zygote": "nsbind.callin"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nsbind' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "AtFlags",
    "CapabilitySets",
    "MountStep",
    "NamespacePool",
    "Process",
    "RootFS",
    "SpawnError",
    "CallInError",
    "Cgroup",
    "CgroupFd",
    "CgroupLayout",
    "CloneFlags",
    "CloseRangeFlags",
    "MountAttr",
    "MountFlags",
    "MoveMountFlags",
    "Namespace",
    "NamespaceRuleError",
    "Namespaces",
    "NsbindError",
    "OpenTreeFlags",
    "Propagation",
    "ResolveFlags",
    "UmountFlags",
    "WaitFlags",
    "call_in",
    "cgroup2_mountpoint",
    "cgroup_layout",
    "errors",
    "flags",
    "current",
    "mounts",
    "namespaces",
    "persist",
    "spawn",
    "start_zygote",
    "unpersist",
    *_sys_all,
]
