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
the new pid namespace.

What travels.  The callable and its arguments go to the child pickled: functions
of modules by name; functions of the running script (``__main__``) by value,
with the script's globals they use, because the child never runs the caller's
script (multiprocessing's children would import it again, running its top
level once per call).  Classes defined in the script cannot travel: define them
in a module.  The answer comes back as data: the child is not trusted (it may
run in namespaces a container controls), so by default only plain values are
accepted (None, bool, int, float, complex, str, bytes, bytearray, tuple, list,
dict, set, frozenset, range, slice, nested) and exceptions come back as their
builtin or nsbind type, else as :class:`RemoteError` naming the type.
``trusted=True`` unpickles whatever the child sends: only for code you trust.
"""

from __future__ import annotations

import errno
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.popen_forkserver
import multiprocessing.spawn
import os
import pickle
import threading
import time
import traceback
import types
from collections.abc import Callable
from multiprocessing.reduction import DupFd
from typing import Any, TypeVar

from nsbind import signals
from nsbind._sys.ns import NamespaceFd, open_namespace, setns, unshare
from nsbind._sys.proc import pidfd_open, set_dumpable, set_pdeathsig
from nsbind.callwire import (
    Call,
    CallInError,
    PendingCall,
    RemoteError,
    RemoteTraceback,
    load_answer,
    remote_exception,
)
from nsbind.ctxlite import suppress
from nsbind.errors import NsbindError, UsageError
from nsbind.flags import NAMESPACE_ORDER, CloneFlags, Namespace
from nsbind.namespaces import Namespaces, thread_path

__all__ = ["MAX_ANSWER_BYTES", "CallInError", "RemoteError", "RemoteTraceback", "call_in",
           "start_zygote"]

R = TypeVar("R")

#: the largest answer call_in reads from its child (a longer one is refused)
MAX_ANSWER_BYTES = 256 << 20

# The caller's namespaces the child re-joins (user cannot be joined back; see namespaces.py).
_CALLER_TYPES: tuple[Namespace, ...] = tuple(
    ns for ns in NAMESPACE_ORDER if ns is not Namespace.USER)


def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, multiprocessing.context.ForkServerContext)
    if not multiprocessing.forkserver._forkserver._forkserver_pid:  # type: ignore[attr-defined]
        # Imported once in the zygote, not once per call.  Not "__main__": the
        # zygote and its children never run the caller's script (see _ZygotePopen).
        ctx.set_forkserver_preload(["nsbind.callin"])
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
    trusted: bool = False,
    **kwargs: Any,
) -> R:
    """Run ``fn(*args, **kwargs)`` in a child inside ``namespaces``; return its result.

    ``namespaces`` is a new set (``Namespaces(user=True, pid=True, ...)``, user,
    pid and time included) or a join (``Namespaces.join(pid, net=True)``).
    ``fn`` is a function of a module or of the running script (sent by value
    with the script's globals it uses: the child does not run the script, so a
    script needs no ``if __name__ == "__main__":`` guard for call_in); lambdas
    and closures of other modules, and classes defined in the script, cannot be
    sent (:class:`CallInError`).

    The child is not trusted: by default its answer must be plain data (None,
    bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set,
    frozenset, range, slice, nested), else CallInError naming what it asked
    for; nothing the child sends runs code here.  An exception raised by ``fn``
    is re-raised here as itself when it is a builtin or nsbind exception, else
    as :class:`RemoteError` naming its type; either way with the child's
    traceback as its ``__cause__``.  ``trusted=True`` unpickles the answer as
    it comes (any object, any exception): only for code you trust, running in
    namespaces nothing untrusted controls.

    A child killed by a signal or exiting without an answer raises CallInError.
    ``timeout`` (seconds) kills the child after that long: CallInError, nothing
    left behind.  ``timeout`` and ``trusted`` are keywords call_in keeps for
    itself (not passed to ``fn``).
    """
    _context()
    spec = _spec(namespaces)
    caller = _caller_fds()
    reader, writer = multiprocessing.Pipe(duplex=False)
    proc: _ZygoteProcess | None = None
    try:
        try:
            proc = _ZygoteProcess(target=_child_main, name="nsbind-call_in", daemon=True,
                                  args=(spec, [(ns, _PassFd(fd.fileno())) for ns, fd in caller],
                                        Call(fn, args, kwargs), writer))
            proc.start()  # pickles the request; the fds travel to the zygote with it
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise CallInError(f"call_in needs a picklable callable (a function of a module "
                              f"or of the script) and picklable arguments: {exc}",
                              errno.EINVAL) from exc
        finally:
            writer.close()
            for _, fd in caller:
                fd.close()
        return _await_reply(proc, reader, timeout, trusted)  # type: ignore[no-any-return]
    finally:
        reader.close()
        if proc is not None and proc.pid is not None:
            proc.join()
            proc.close()


# ---------------------------------------------------------------- the zygote's children


class _SpawnWithoutMain:
    """``multiprocessing.spawn`` as a call_in child's launch sees it: the preparation
    data leaves out the main module, so the child does not import the caller's
    script again (which would run its top level once per call, and, without an
    ``if __name__ == "__main__":`` guard, call_in itself inside the child)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing.spawn, name)

    @staticmethod
    def get_preparation_data(name: str) -> dict[str, Any]:
        data = multiprocessing.spawn.get_preparation_data(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data


def _launch_without_main() -> Callable[..., None]:
    """multiprocessing's own forkserver launch, its ``spawn`` being _SpawnWithoutMain.
    (The same code, so it follows the running Python's protocol with the zygote.)"""
    launch = multiprocessing.popen_forkserver.Popen._launch  # type: ignore[attr-defined]
    namespace = dict(vars(multiprocessing.popen_forkserver), spawn=_SpawnWithoutMain())
    return types.FunctionType(launch.__code__, namespace, launch.__name__,
                              launch.__defaults__, launch.__closure__)


class _ZygotePopen(multiprocessing.popen_forkserver.Popen):
    _launch = _launch_without_main()


class _ZygoteProcess(multiprocessing.context.ForkServerProcess):
    """A forkserver process whose child does not run the caller's ``__main__``."""

    @staticmethod
    def _Popen(process_obj: Any) -> multiprocessing.popen_forkserver.Popen:
        return _ZygotePopen(process_obj)


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
    if namespaces.joined:
        raise UsageError("call_in takes new namespaces or Namespaces.join(...), not "
                         "Namespaces(...).joining(...): that mix is for nsbind.spawn")
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
                 reader: multiprocessing.connection.Connection, timeout: float | None,
                 trusted: bool) -> Any:
    assert proc.pid is not None
    try:
        watch = pidfd_open(proc.pid)  # kill through a pidfd: never a recycled pid
    except NsbindError:
        watch = None  # already gone: its answer (or EOF) is in the pipe
    deadline = None if timeout is None else time.monotonic() + timeout
    expired = threading.Event()

    def expire() -> None:  # the answer started but did not finish in time
        expired.set()
        if watch is not None:
            with suppress(NsbindError):  # gone already
                watch.send_signal(signals.SIGKILL)

    timer: threading.Timer | None = None
    try:
        if not reader.poll(timeout):
            if watch is not None:
                watch.send_signal(signals.SIGKILL)
            proc.join()
            raise CallInError(f"call_in timed out after {timeout} s; the child was killed",
                              errno.ETIMEDOUT)
        if deadline is not None:  # the rest of the answer is bound by the same deadline
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
            timer.start()
        try:
            data = reader.recv_bytes(MAX_ANSWER_BYTES)
        except (EOFError, OSError) as exc:
            if isinstance(exc, OSError) and watch is not None:  # a refused answer: stop it
                with suppress(NsbindError):
                    watch.send_signal(signals.SIGKILL)
            proc.join()
            if expired.is_set():
                raise CallInError(f"call_in timed out after {timeout} s in the middle of the "
                                  "child's answer; the child was killed",
                                  errno.ETIMEDOUT) from None
            if isinstance(exc, EOFError):
                raise CallInError(_death(proc.exitcode)) from None
            raise CallInError(f"call_in refused the child's answer: {exc} (at most "
                              f"{MAX_ANSWER_BYTES} bytes)", errno.EBADMSG) from None
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()
        if watch is not None:
            watch.close()
    reply = load_answer(data, trusted)
    if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ok":
        return reply[1]
    if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "died" \
            and isinstance(reply[1], int):
        raise CallInError(_death(-reply[1]))
    if isinstance(reply, tuple) and len(reply) == 5 and reply[0] == "error" \
            and all(isinstance(x, str) for x in reply[1:4]) \
            and isinstance(reply[4], (bytes, type(None))):
        _, type_name, message, text, pickled = reply
        raise remote_exception(type_name, message, text, pickled, trusted) \
            from RemoteTraceback(text)
    raise CallInError(f"call_in got a malformed answer from its child: {type(reply).__name__} "
                      f"{str(reply)[:200]}")


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        return f"the call_in child was killed by {signals.describe(-code)}"
    return f"the call_in child exited (status {code}) without answering"


# ---------------------------------------------------------------- the child side


def _child_main(spec: dict[str, Any], caller: list[tuple[Namespace, int]], call: PendingCall,
                conn: multiprocessing.connection.Connection) -> None:
    try:
        fn, args, kwargs = call.load()
    except BaseException as exc:
        for _, fd in caller:
            os.close(fd)
        _reply(conn, CallInError(f"call_in could not load the callable or its arguments in "
                                 f"the child: {type(exc).__name__}: {exc}", errno.EINVAL))
        return
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
            set_pdeathsig(signals.SIGKILL)
            _run(fn, args, kwargs, conn)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        _send(conn, ("died", os.WTERMSIG(status)))


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
    _send(conn, ("ok", value))


def _reply(conn: multiprocessing.connection.Connection, exc: BaseException) -> None:
    """Send an exception as its type's name, its message, the traceback text and (when
    it pickles) the exception itself, for the parent to take back or name."""
    cls = type(exc)
    type_name = f"{cls.__module__}.{cls.__qualname__}"
    text = "".join(traceback.format_exception(exc))
    try:
        message = str(exc)
    except Exception:  # a broken __str__
        message = f"<{type_name} whose str() failed>"
    try:
        pickled: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        pickled = None
    _send(conn, ("error", type_name, message, text, pickled))


def _send(conn: multiprocessing.connection.Connection, message: tuple[Any, ...]) -> None:
    try:
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # a result that does not pickle
        value = message[1]
        _reply(conn, CallInError(f"call_in could not send the child's {message[0]!r} answer "
                                 f"back: {type(exc).__name__}: {exc}; it was a "
                                 f"{type(value).__module__}.{type(value).__qualname__}"))
        return
    conn.send_bytes(data)
