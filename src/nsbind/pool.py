"""A warm pool of fresh network namespaces, so that spawning into a new one is cheap.

Creating a network namespace is most of the cost of a spawn with CLONE_NEWNET
(hundreds of microseconds in the kernel, more with ``lo`` brought up).  A
:class:`NamespacePool` keeps ``size`` fresh, never-used network namespaces ready
- made by a background thread, which enters each one in its own thread only
(network namespaces are per thread) - and ``spawn(..., namespaces=pool)`` makes
the child join one with setns instead of creating it.  Each pooled namespace is
handed out once; the pool refills behind.
"""

from __future__ import annotations

import time

from nsbind._sys.ns import NamespaceFd, open_namespace
from nsbind.errors import InvalidValue
from nsbind.flags import Namespace
from nsbind.namespaces import Namespaces

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections import deque
    from types import TracebackType
else:  # collections' deque, without the collections package (spawn imports this module)
    from _collections import deque

__all__ = ["NamespacePool"]


class NamespacePool:
    """Fresh network namespaces made ahead of time; the other types are made per spawn.

    ``NamespacePool(net=True, pid=True, mnt=True, size=8)``: a spawn with this
    pool joins a pooled network namespace (``lo`` up unless ``loopback=False``)
    and gets new pid and mount namespaces from clone3 as usual.  Close the pool
    (or use it as a context manager) to stop its thread and free what is left.
    Needs CAP_SYS_ADMIN.
    """

    #: seconds without a take() before the thread refills (unless the pool is empty)
    REFILL_AFTER_IDLE = 0.002

    def __init__(self, *, net: bool = True, size: int = 8, loopback: bool = True,
                 pid: bool = False, mnt: bool = False, uts: bool = False, ipc: bool = False,
                 cgroup: bool = False) -> None:
        if not net:
            raise InvalidValue("NamespacePool pools network namespaces: net=True")
        if size < 1:
            raise InvalidValue("the pool size must be at least 1")
        self.size = size
        self.loopback = loopback
        #: the namespaces created per spawn, besides the pooled network namespace
        self.namespaces = Namespaces(pid=pid, mnt=mnt, uts=uts, ipc=ipc, cgroup=cgroup)
        self._ready: deque[NamespaceFd] = deque()
        import threading  # here: a process that makes no pool does not import it

        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._last_take = 0.0
        self._thread = threading.Thread(target=self._fill, name="nsbind-netns-pool", daemon=True)
        self._thread.start()

    def _make(self) -> NamespaceFd:
        with Namespaces(net=True, loopback=self.loopback):
            return open_namespace("/proc/thread-self/ns/net", Namespace.NET)

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if len(self._ready) >= self.size:
                        self._cond.wait()
                        continue
                    # Refill in the gaps between spawns: creating a namespace takes
                    # kernel locks (rtnl) that a spawn in progress also wants.
                    quiet = time.monotonic() - self._last_take
                    if quiet >= self.REFILL_AFTER_IDLE or not self._ready:
                        break
                    self._cond.wait(self.REFILL_AFTER_IDLE - quiet)
                if self._closed:
                    return
            try:
                fresh = self._make()
            except BaseException as exc:  # reported to the next take()
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                if self._closed:
                    fresh.close()
                    return
                self._ready.append(fresh)
                self._cond.notify_all()

    def take(self) -> NamespaceFd:
        """A fresh network namespace (an fd the caller closes); made now if none is ready."""
        with self._cond:
            if self._closed:
                raise InvalidValue("the NamespacePool is closed")
            if self._error is not None:
                raise self._error
            if self._ready:
                fresh = self._ready.popleft()
                self._last_take = time.monotonic()
                self._cond.notify_all()  # refill behind, once spawns pause
                return fresh
        return self._make()  # empty: do not wait for the thread

    def ready(self) -> int:
        """How many namespaces are waiting."""
        with self._cond:
            return len(self._ready)

    def wait_full(self, timeout: float | None = None) -> bool:
        """Block until the pool holds ``size`` namespaces (True) or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self._ready) >= self.size or self._error is not None or self._closed,
                timeout)

    def close(self) -> None:
        """Stop the thread and free the namespaces not handed out."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        while self._ready:
            self._ready.popleft().close()

    def __enter__(self) -> NamespacePool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
