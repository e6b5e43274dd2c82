"""Spawn children parked at a start gate while sharing this process's memory.

A gated spawn (``spawn(start_gate=...)``, runc's exec.fifo) returns while its child
waits at the gate for a ``start``.  Where clone3 can run the child on a stack of its
own (``nsb_spawn_has_vm_clone``) and this process is root in the initial user
namespace (:func:`may_share`), the child shares this process's memory (CLONE_VM,
without CLONE_VFORK) instead of getting a copy of it: the clone copies no page
tables, and this process takes no copy-on-write fault on each page it writes while
the child lives (some 5% of ``nsbind run``'s time, in the OCI layer's create).  From
its "parked" report on, the child leaves errno - this thread's - alone (spawn.h).
State the kernel keeps per memory is shared with it: oom_score_adj (setting the
child's sets this process's: ``sysctl.set_oom_score_adj`` refuses it) - a caller
that changes such state of the parked child spawns it under :func:`copies`.
Until the child has exec'd or died:

- its stack and its plan stay: a :class:`Hold` keeps them;
- this process is not dumpable: a process in the container could otherwise ptrace
  the parked child and write through it into this one (runc's init stays
  non-dumpable until its exec for the same reason).  The mark is on the memory,
  shared: it is set before the clone and taken off when the last hold ends, if this
  process was dumpable before.

:func:`sweep` ends the holds whose child has gone on - kcmp(2) says it no longer
shares this process's memory: it exec'd, or died (a recycled pid is another
process's memory too) - at each such spawn and when a spawned process is reaped.
Where kcmp is refused (no CAP_SYS_PTRACE over the non-dumpable child, or no
CONFIG_KCMP) a hold stays until the process exits: one stack's address space
(256 KiB, a few pages of it touched) and the plan.

The other spawn children share this process's memory only up to their exec (vfork
style, or waiting for their id maps); when one changes its credentials (setresuid,
a user namespace's root) the kernel clears the memory's dumpable mark, this
process's too, and :func:`prepare` with :func:`hold` (or :func:`settle`) set it
again once the child has exec'd, if it was set before.
"""

from __future__ import annotations

import _thread
import errno
import os

from nsbind._native import ffi, lib
from nsbind._sys.proc import get_dumpable, set_dumpable
from nsbind.ctxlite import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["Hold", "copies", "holds", "may_share", "prepare", "settle", "sweep"]

_PTRACE = lib.CAP_SYS_PTRACE
_INIT_USER_NS = 0xEFFFFFFD  # PROC_USER_INIT_INO: the initial user namespace's inode
_holds: list[Hold] = []
_local = _thread._local()  # copies: the depth of ``with copies()``; dumpable: prepare's
_restore_dumpable = False  # this module made the process non-dumpable


class Hold:
    """What one parked child sharing this process's memory still uses."""

    def __init__(self, plan: object, result: Any) -> None:
        self.plan = plan  # its buffers: the child reads them up to its exec
        self.result = result  # the stack it runs on, and its pid

    def gone(self) -> bool:
        """Whether the child no longer shares this process's memory (exec'd or died)."""
        if lib.nsb_kcmp_vm(os.getpid(), self.result.pid) > 0:
            return True
        return ffi.errno == errno.ESRCH  # else: still ours, or we may not know

    def end(self) -> None:
        lib.nsb_spawn_free_stack(self.result)
        self.plan = None


def holds() -> int:
    """How many children parked at a gate share this process's memory (swept now)."""
    sweep()
    return len(_holds)


@contextmanager
def copies(on: bool = True) -> Iterator[None]:
    """``with copies(on):`` while ``on``, the gated spawns of this thread make their
    child a copy: for a caller that changes per-memory state of the parked child (its
    oom_score_adj, which the kernel sets for every process sharing its memory; hooks
    that might)."""
    if not on:
        yield
        return
    _local.copies = getattr(_local, "copies", 0) + 1
    try:
        yield
    finally:
        _local.copies -= 1


def may_share() -> bool:
    """Whether a parked child may share this process's memory (:func:`prepare`)."""
    caps: Any = ffi.new("struct nsb_caps *")
    if os.geteuid() != 0 or lib.nsb_capget(0, caps) < 0 or not caps.effective >> _PTRACE & 1:
        return False
    try:
        return os.stat("/proc/self/ns/user").st_ino == _INIT_USER_NS
    except OSError:
        return False


def prepare(c: Any) -> bool:
    """Before the clone of the plan ``c``: whether its child will share this process's
    memory past spawn's return (then the process is made non-dumpable first).  Only
    as root with CAP_SYS_PTRACE in the initial user namespace: kcmp on the
    non-dumpable child needs it, so do the helpers that open the parked child's
    /proc/<pid>/ns files (slirp4netns, hooks), and a non-dumpable process of another
    uid could not open its own /proc files (they become root's).  Else the plan's
    child is made a copy (``use_vm`` off).  For a child sharing the memory up to
    its exec that changes its ids (a uid or gid, a new user namespace's root), the
    dumpable mark is read here, to be given back (see the module)."""
    global _restore_dumpable
    if not c.use_vm:
        return False
    if c.gate_fd < 0:
        _local.dumpable = (c.uid >= 0 or c.gid >= 0 or c.sync_fd >= 0) and get_dumpable()
        return False
    if getattr(_local, "copies", 0) or not may_share():
        c.use_vm = 0
        return False
    sweep()
    if not _holds and not _restore_dumpable and get_dumpable():
        set_dumpable(False)
        _restore_dumpable = True
    return True


def hold(shared: bool, plan: object, result: Any) -> None:
    """After a spawn: if its child is parked sharing our memory (``shared``, from
    :func:`prepare`), keep what it uses until it has gone on; else the child has
    exec'd, and the dumpable mark is given back (:func:`prepare`)."""
    if shared:
        _holds.append(Hold(plan, result))
    else:
        _give_back()


def settle() -> None:
    """After a spawn that left no child parked: the process dumpable again if no
    hold is left and it was before."""
    global _restore_dumpable
    _give_back()
    if not _holds and _restore_dumpable:
        _restore_dumpable = False
        set_dumpable(True)


def _give_back() -> None:
    was = getattr(_local, "dumpable", False)
    _local.dumpable = False
    if was and not _holds and not get_dumpable():
        set_dumpable(True)


def sweep() -> None:
    """End the holds of the children that have exec'd or died."""
    if _holds:
        for h in [h for h in _holds if h.gone()]:
            _holds.remove(h)
            h.end()
        settle()
