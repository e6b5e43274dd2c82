"""call_in: run a Python callable inside namespaces and get its result back.

Namespaces that need a new process (user, pid, time) or that must not touch the
caller (anything, in a threaded program) are entered by a child, never by the
caller.  The children come from a zygote: multiprocessing's *forkserver*, a
process started by fork+exec from a clean, single-threaded state, which forks
one child per call.  So call_in is safe from a threaded, asyncio or
numpy-importing parent, where ``fork()`` or ``unshare(CLONE_NEWUSER)`` in the
caller would fail or deadlock.

The child first joins the calling thread's own namespaces (where they differ
from the zygote's), so a call made inside ``with Namespaces(net=True)`` nests
under that network namespace; then it creates (or joins) the requested ones.
For pid and time it forks once more, so that the callable runs as PID 1 of
the new pid namespace.  Callables and arguments travel pickled: module-level
functions, not lambdas or closures.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from multiprocessing.reduction import DupFd
from typing import Any, TypeVar

from nsbind._sys.ns import NamespaceFd, open_namespace, setns, unshare
from nsbind._sys.proc import pidfd_open, set_dumpable, set_pdeathsig
from nsbind.errors import NsbindError
from nsbind.flags import NAMESPACE_ORDER, CloneFlags, Namespace
from nsbind.namespaces import Namespaces, thread_path

__all__ = ["CallInError", "RemoteTraceback", "call_in", "start_zygote"]

R = TypeVar("R")

# The caller's namespaces the child re-joins (user cannot be joined back; see namespaces.py).
_CALLER_TYPES: tuple[Namespace, ...] = tuple(
    ns for ns in NAMESPACE_ORDER if ns is not Namespace.USER)


class CallInError(RuntimeError):
    """The child of a :func:`call_in` died, timed out, or could not be started."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in a :func:`call_in` child."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\n(traceback in the call_in child)\n{self.text}"


def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, multiprocessing.context.ForkServerContext)
    if not multiprocessing.forkserver._forkserver._forkserver_pid:  # type: ignore[attr-defined]
        # Imported once in the zygote, not once per call: nsbind, and the main
        # module (whose functions callers may pass).
        ctx.set_forkserver_preload(["__main__", "nsbind.callin"])
    return ctx


def start_zygote() -> None:
    """Start the zygote now (else the first call_in starts it, ~50 ms).

    Call it early, before threads exist, to keep the first call fast.  The
    zygote inherits the namespaces of the calling thread at this moment.
    """
    _context()
    multiprocessing.forkserver.ensure_running()


def call_in(
    namespaces: Namespaces,
    fn: Callable[..., R],
    /,
    *args: Any,
    timeout: float | None = None,
    **kwargs: Any,
) -> R:
    """Run ``fn(*args, **kwargs)`` in a child inside ``namespaces``; return its result.

    ``namespaces`` is a new set (``Namespaces(user=True, pid=True, ...)``, user,
    pid and time included) or a join (``Namespaces.join(pid, net=True)``).  An
    exception raised by ``fn`` is re-raised here, with the child's traceback as
    its ``__cause__``.  A child killed by a signal or exiting without an answer
    raises :class:`CallInError`.  ``timeout`` (seconds; a keyword call_in keeps
    for itself) kills the child after that long: CallInError, nothing left behind.
    """
    ctx = _context()
    reader, writer = ctx.Pipe(duplex=False)
    caller = _caller_fds()
    proc = ctx.Process(target=_child_main, name="nsbind-call_in", daemon=True,
                       args=(_spec(namespaces), [(ns, _PassFd(fd.fileno())) for ns, fd in caller],
                             fn, args, kwargs, writer))
    try:
        try:
            proc.start()  # pickles the request; the fds travel to the zygote with it
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise CallInError(f"call_in needs a picklable, module-level callable and "
                              f"arguments: {exc}") from exc
        finally:
            writer.close()
            for _, fd in caller:
                fd.close()
        return _await_reply(proc, reader, timeout)  # type: ignore[no-any-return]
    finally:
        reader.close()
        if proc.pid is not None:
            proc.join()
            proc.close()


class _PassFd:
    """An fd number that, pickled while the zygote request is built, travels as an fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return (_received_fd, (DupFd(self.fd),))


def _received_fd(dup: Any) -> int:
    return int(dup.detach())


def _caller_fds() -> list[tuple[Namespace, NamespaceFd]]:
    """The calling thread's namespaces (pid/time: the ones for its children)."""
    fds = []
    for ns in _CALLER_TYPES:
        path = thread_path(ns)
        if os.path.exists(path):  # pid_for_children is absent until a new pid ns has a process
            fds.append((ns, open_namespace(path)))
    return fds


def _spec(namespaces: Namespaces) -> dict[str, Any]:
    join = namespaces.join_target
    return {
        "types": sorted(ns.value for ns in namespaces.types),
        "uid_map": namespaces.uid_map,
        "gid_map": namespaces.gid_map,
        "propagation": namespaces.propagation,
        "loopback": namespaces.loopback,
        "join_pid": join if isinstance(join, int) else None,
        "join_path": join if isinstance(join, str) else None,
    }


def _await_reply(proc: multiprocessing.process.BaseProcess,
                 reader: multiprocessing.connection.Connection, timeout: float | None) -> Any:
    assert proc.pid is not None
    try:
        watch = pidfd_open(proc.pid)  # kill through a pidfd: never a recycled pid
    except NsbindError:
        watch = None  # already gone: its answer (or EOF) is in the pipe
    try:
        if not reader.poll(timeout):
            if watch is not None:
                watch.send_signal(signal.SIGKILL)
            proc.join()
            raise CallInError(f"call_in timed out after {timeout} s; the child was killed")
        try:
            kind, value, text = reader.recv()
        except EOFError:
            proc.join()
            raise CallInError(_death(proc.exitcode)) from None
    finally:
        if watch is not None:
            watch.close()
    if kind == "ok":
        return value
    if kind == "died":
        raise CallInError(_death(value))
    raise value from RemoteTraceback(text)


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        return f"the call_in child was killed by {signal.Signals(-code).name}"
    return f"the call_in child exited (status {code}) without answering"


# ---------------------------------------------------------------- the child side


def _child_main(spec: dict[str, Any], caller: list[tuple[Namespace, int]],
                fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                conn: multiprocessing.connection.Connection) -> None:
    try:
        if spec["join_pid"] is not None or spec["join_path"] is not None:
            # CVE-2016-9962: while it holds this host's fds, a process joining a
            # container must not be ptrace-able or readable through /proc by the
            # container's processes
            set_dumpable(False)
        moved_children = _join_caller(caller)
        needs_fork = _enter(spec) or moved_children
    except BaseException as exc:
        _reply(conn, exc)
        return
    if not needs_fork:
        _run(fn, args, kwargs, conn)
        return
    pid = os.fork()  # the first process of the new pid (or time) namespace
    if pid == 0:
        try:
            set_pdeathsig(signal.SIGKILL)
            _run(fn, args, kwargs, conn)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        _send(conn, ("died", -os.WTERMSIG(status), ""))


def _join_caller(caller: list[tuple[Namespace, int]]) -> bool:
    """Join the caller thread's namespaces; True if pid or time (for children) moved."""
    moved = False
    for ns, fd in caller:
        try:
            if os.fstat(fd).st_ino != os.stat(thread_path(ns)).st_ino:
                if ns is Namespace.MNT:
                    unshare(CloneFlags.FS)
                setns(fd, ns, what=f"join the caller's {ns.value} namespace")
                moved = moved or ns in (Namespace.PID, Namespace.TIME)
        finally:
            os.close(fd)
    return moved


def _enter(spec: dict[str, Any]) -> bool:
    types = {Namespace(t): True for t in spec["types"]}
    kinds = {ns.value: on for ns, on in types.items()}
    if spec["join_pid"] is not None or spec["join_path"] is not None:
        target = spec["join_pid"] if spec["join_pid"] is not None else spec["join_path"]
        kinds.pop("user", None)
        # for good: this process exists for the call only
        entered = Namespaces.join(target, **kinds).enter_for_good()
        return bool(entered & {Namespace.PID, Namespace.TIME})
    Namespaces(uid_map=spec["uid_map"], gid_map=spec["gid_map"],
               propagation=spec["propagation"], loopback=spec["loopback"],
               **kinds).unshare()
    return bool(set(types) & {Namespace.PID, Namespace.TIME})


def _run(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
         conn: multiprocessing.connection.Connection) -> None:
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        _reply(conn, exc)
        return
    _send(conn, ("ok", value, ""))


def _reply(conn: multiprocessing.connection.Connection, exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    _send(conn, ("error", exc, text))


def _send(conn: multiprocessing.connection.Connection, message: tuple[str, Any, str]) -> None:
    try:
        conn.send(message)
    except Exception as exc:  # an unpicklable result or exception
        kind, value, text = message
        conn.send(("error", CallInError(f"call_in could not send the {kind!r} reply back: "
                                        f"{exc}; it was {value!r}"), text))
