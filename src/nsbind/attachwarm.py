"""Warming the kernel's cgroup attach lock before a process joins cgroup v1 hierarchies.

Moving a process between cgroups (a write to ``cgroup.procs``) takes the kernel's
``cgroup_threadgroup_rwsem`` for writing.  It is a per-cpu rwsem: its first writer waits
for an RCU grace period, 10 to 30 ms on this 2-core host, unless the hierarchy was
mounted with ``favordynmods``; writers that come within a grace period of the last one
do not wait.  cgroup v2 is joined at clone (``CLONE_INTO_CGROUP``) without that lock, but
on a hybrid or v1 host a container's process still joins each v1 hierarchy with a write,
as runc's does, and that first write was the largest single wait of ``nsbind-oci
create``.  :func:`warm_attach` starts the wait early, in a thread of its own, so that it
overlaps what the caller does before the real attach (parsing the spec, making the
cgroup): it writes this process into the cgroup it is already in, a move the kernel
leaves undone (no controller sees it).
"""

from __future__ import annotations

import _thread
import os

from nsbind.cgrouplayout import CgroupLayout

__all__ = ["warm_attach"]


def _rewrite(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"0")  # this process, into the cgroup it is in
    except OSError:
        pass
    finally:
        os.close(fd)


def warm_attach(layout: CgroupLayout) -> bool:
    """Start the warm-up (see the module's text) on a cgroup v1 hierarchy where this
    process may write its own cgroup's ``cgroup.procs``; whether it started (not on a
    pure v2 host, nor where the caller may not write its own cgroup).  The thread ends
    when the kernel has taken the lock once: at most a grace period later."""
    for h in layout.hierarchies:
        if h.version != 1 or h.own is None:
            continue
        path = os.path.join(h.path_of(h.own), "cgroup.procs")
        if os.access(path, os.W_OK):
            _thread.start_new_thread(_rewrite, (path,))
            return True
    return False
