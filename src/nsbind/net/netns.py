"""Network namespace targets, and running code inside one without moving the caller.

Kernel rules applied here (see network_namespaces(7), setns(2)):

- A network namespace belongs to a *thread*.  :func:`run_in` runs the function in a
  short-lived helper thread that joins the namespace (``Namespaces.join``) and
  leaves it again; the calling thread, and every other thread, stays where it is.
  Nothing forks, so this is safe in a threaded program (pyroute2's own ``netns=``
  helpers fork a child to make the socket).
- A netlink or inet socket belongs to the namespace its creating thread was in when
  it was made, for its whole life: a socket made inside :func:`run_in` keeps
  talking to that namespace after the helper thread has left it.
- An open nsfs fd keeps its namespace alive.  :func:`open_netns` pins the target
  once, so a pid reused by another process, or a persisted file replaced, cannot
  redirect later steps to another namespace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from nsbind._sys.fd import PathLike
from nsbind._sys.ns import NamespaceFd, open_namespace
from nsbind._sys.proc import PidFd
from nsbind.errors import InvalidType, InvalidValue
from nsbind.flags import Namespace
from nsbind.namespaces import Namespaces

__all__ = ["HasPidfd", "NetnsTarget", "open_netns", "run_in"]

R = TypeVar("R")


class HasPidfd(Protocol):
    """A process held by a pidfd, such as :class:`nsbind.Process`."""

    pidfd: PidFd

#: where a network lives: ``Namespaces.join(...)``, a pid, a :class:`PidFd`, an object
#: with a ``pidfd`` (a :class:`~nsbind.Process`), an nsfs path (``/proc/<pid>/ns/net``,
#: a persisted file) or an open :class:`NamespaceFd`
NetnsTarget: TypeAlias = "Namespaces | int | PidFd | NamespaceFd | PathLike | HasPidfd"


def open_netns(target: NetnsTarget) -> NamespaceFd:
    """An nsfs fd (O_CLOEXEC, owned by the caller) on the network namespace of ``target``.

    A pid or process must still exist (a pidfd is checked after the open, so the fd
    is that process's namespace, not a reused pid's); a path must be a *network*
    namespace file; a ``Namespaces`` must be a :meth:`Namespaces.join` (new
    namespaces have no identity before they are entered).  A :class:`NamespaceFd`
    is duplicated."""
    if isinstance(target, NamespaceFd):
        fd = NamespaceFd(os.dup(target.fileno()), target.label)
        _check_net(fd)
        return fd
    if isinstance(target, Namespaces):
        if target.join_target is None:
            raise InvalidValue("a network target given as Namespaces must be "
                               "Namespaces.join(...): new namespaces have no identity yet")
        if target.types and Namespace.NET not in target.types:
            raise InvalidValue(f"{target!r} does not join a network namespace")
        fds = target.open_join_fds()
        found = None
        for ns, nsfd in fds:
            if ns is Namespace.NET and found is None:
                found = nsfd
            else:
                nsfd.close()
        if found is None:
            raise InvalidValue(f"{target.join_target}: its network namespace is the caller's "
                               "own (give net=True to join it anyway)")
        return found
    if isinstance(target, bool):
        raise InvalidType(f"a network target cannot be {target!r}")
    if isinstance(target, (int, PidFd)) or isinstance(getattr(target, "pidfd", None), PidFd):
        fds = Namespaces.join(target, net=True).open_join_fds()
        return fds[0][1]
    if isinstance(target, (str, bytes, os.PathLike)):
        return open_namespace(target, Namespace.NET)
    raise InvalidType(f"cannot find a network namespace in {target!r}: give Namespaces.join(...),"
                      " a pid, a PidFd, a Process, an nsfs path or a NamespaceFd")


def _check_net(fd: NamespaceFd) -> None:
    if fd.type is not Namespace.NET:
        kind = fd.type
        fd.close()
        raise InvalidValue(f"{fd.label or 'the fd'} is a {kind.value} namespace, not net")


def run_in(target: NetnsTarget | None, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Call ``fn(*args, **kwargs)`` inside the network namespace of ``target`` and return
    its result (or raise its exception), from a helper thread that joins the namespace
    and leaves it; the calling thread never changes namespace.  None: call ``fn`` here,
    in the caller's own namespace.  Needs CAP_SYS_ADMIN (setns)."""
    if target is None:
        return fn(*args, **kwargs)
    with open_netns(target) as nsfd:
        return _in_thread(nsfd, fn, args, kwargs)


def _in_thread(nsfd: NamespaceFd, fn: Callable[..., R], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> R:
    result: list[R] = []
    error: list[BaseException] = []
    # /proc/self/fd/N: the fd table is the process's, so the helper thread opens the
    # very namespace the caller pinned
    where = f"/proc/self/fd/{nsfd.fileno()}"

    def helper() -> None:
        try:
            with Namespaces.join(where, net=True):
                result.append(fn(*args, **kwargs))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=helper, name="nsbind-netns", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
