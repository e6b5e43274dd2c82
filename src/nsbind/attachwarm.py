"""Warming the kernel's cgroup attach lock before a process joins cgroup v1 hierarchies.

Moving a process between cgroups (a write to ``cgroup.procs``) takes the kernel's
``cgroup_threadgroup_rwsem`` for writing.  It is a per-cpu rwsem: its first writer waits
for an RCU grace period, 10 to 30 ms on this 2-core host, unless the hierarchy was
mounted with ``favordynmods``; a writer that comes within a grace period of the last
one's exit does not wait.  cgroup v2 is joined at clone (``CLONE_INTO_CGROUP``) without
that lock, but on a hybrid or v1 host a container's process still joins each v1
hierarchy with a write, as runc's does, and that first write was the largest single wait
of ``nsbind-oci create``.

:func:`warm_attach` takes the wait early, in a thread of its own, so that it overlaps
what the caller does before the real attach (parsing the spec, making the cgroup): the
thread writes this process into the cgroup it is already in (a move the kernel leaves
undone: no controller sees it), and writes again every :data:`PERIOD` seconds, well
inside a grace period, so the lock is still warm whenever the real attach comes.  Not
more often: each write is a whole attach, holding the lock (and the cgroup mutex) that
fork, exit, mkdir in a cgroup and the container's own clone wait on; at 2 ms the writes
cost ``nsbind run`` a tenth of its time, at 5 ms nothing measurable, and at 20 ms the
lock goes cold now and then.  The caller stops it as soon as its process has joined
(:meth:`Warmup.stop`).  It stops by itself after
:data:`MAX_HOLD` seconds.
"""

from __future__ import annotations

import _thread
import os
import time

from nsbind.cgrouplayout import CgroupLayout, cgroup_layout
from nsbind.ctxlite import suppress

__all__ = ["MAX_HOLD", "PERIOD", "Warmup", "warm_attach"]

PERIOD = 0.005  #: seconds between the warm-up's writes
MAX_HOLD = 2.0  #: seconds a warm-up nobody stops lasts


class Warmup:
    """A running warm-up of the attach lock through one v1 ``cgroup.procs``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.writes = 0  #: how many writes it has made so far
        self._stop = _thread.allocate_lock()
        self._stop.acquire()  # held until stop(): the thread's sleep between writes
        self._ended = _thread.allocate_lock()
        self._ended.acquire()  # released by the thread as it ends
        self.tid = 0  #: the thread's kernel id, once it runs
        # the thread starts with every signal blocked (it inherits this mask): one the
        # kernel gave it would not interrupt the main thread's blocking wait (a waitpid
        # for the container), so a Ctrl-C to forward would wait with it
        from nsbind import signals  # here: the pure v2 host and the light commands need none

        mask = signals.block_all()
        try:
            _thread.start_new_thread(self._run, ())
        finally:
            signals.set_mask(mask)

    def _run(self) -> None:
        self.tid = _thread.get_native_id()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)  # once: each write is a move
        except OSError:
            self._ended.release()
            return
        try:
            deadline = time.monotonic() + MAX_HOLD
            while True:
                os.write(fd, b"0")  # this process, into the cgroup it is in
                self.writes += 1
                if self._stop.acquire(timeout=PERIOD) or time.monotonic() >= deadline:
                    break
        except OSError:
            pass  # a cgroup that refuses the move: no warm-up, not an error
        finally:
            os.close(fd)
            self._ended.release()

    def stop(self) -> None:
        """End the warm-up (the thread ends after its current write, if any); idempotent."""
        if self._stop.locked():
            with suppress(RuntimeError):  # released by a concurrent stop()
                self._stop.release()

    def wait(self, timeout: float) -> bool:
        """Whether the thread has ended, waiting up to ``timeout`` seconds."""
        if self._ended.acquire(timeout=timeout):
            self._ended.release()
            return True
        return False


def warm_attach(layout: CgroupLayout | None = None) -> Warmup | None:
    """Start the warm-up (see the module's text) on a cgroup v1 hierarchy of ``layout``
    (default: this process's, read now) where this process may write its own cgroup's
    ``cgroup.procs``; None where there is none (a pure v2 host, or the caller may not
    write its own cgroup).  Stop it once the process it warms for has joined its
    cgroups.  The earlier it starts, the more of its first write's wait is hidden."""
    if layout is None:
        layout = cgroup_layout()
    for h in layout.hierarchies:
        if h.version != 1 or h.own is None:
            continue
        path = os.path.join(h.path_of(h.own), "cgroup.procs")
        if os.access(path, os.W_OK):
            try:
                return Warmup(path)
            except RuntimeError:  # no thread to be had (a pids limit): only a warm-up
                return None
    return None
