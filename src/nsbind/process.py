"""spawn() and Process: start a program in new namespaces at close to the kernel's cost.

The child is made by the C spawn engine (see ``_native/spawn.h``): clone3 on its own stack with
CLONE_VM|CLONE_VFORK where the plan allows it, so the cost does not grow with the parent's memory;
it runs no Python.  Without VFORK: a new user namespace (the child waits for the id maps this
process writes) and a start gate (the child parks: nsbind.sharedchild); copy-on-write: a time
namespace (the kernel refuses CLONE_VM with it), an init, a joined process's namespaces.
A :class:`Process` holds a pidfd: signals and waits can never hit a recycled pid.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from nsbind import features, idmap, sharedchild, signals
from nsbind._native import ffi, lib
from nsbind._sys.fd import FdLike, OwnedFd, PathLike, fdnum
from nsbind._sys.mount import MountFd, open_tree
from nsbind._sys.ns import NamespaceFd, open_namespace
from nsbind._sys.proc import PidFd, WaitResult
from nsbind.cgroups import Cgroup
from nsbind.ctxlite import contextmanager
from nsbind.errors import InvalidValue, NsbindError
from nsbind.flags import CloneFlags, Namespace, OpenTreeFlags, flag_names
from nsbind.namespaces import Namespaces, thread_path
from nsbind.plancache import StaticPlan
from nsbind.plancache import plans as plan_cache
from nsbind.pool import NamespacePool
from nsbind.rootfs import RootFS, RootPlan
from nsbind.spawnplan import CapabilitySets, MountStep, Plan, SpawnError, spawn_error
from nsbind.spawnrequest import SpawnRequest
from nsbind.spawnstdio import DEVNULL, PIPE, STDOUT, SpawnPipes, Stdio, StdSpec

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator, Mapping, Sequence
    from types import TracebackType
    from typing import IO, Any

    from nsbind.seccomp import Filter, Program

__all__ = ["DEVNULL", "PIPE", "STDOUT", "Process", "spawn"]


class Process:
    """A spawned process, held by a pidfd.  ``returncode`` is ``-N`` for signal N.

    ``console`` is the master of the process's terminal (``spawn(terminal=True)``),
    owned by the Process until the caller takes it (``console.detach()``); leaving a
    ``with`` block closes it."""

    def __init__(self, args: Sequence[str], pidfd: PidFd, stdin: IO[bytes] | None,
                 stdout: IO[bytes] | None, stderr: IO[bytes] | None,
                 console: OwnedFd | None = None) -> None:
        self.args = list(args)
        #: the pidfd; it becomes readable when the process exits
        self.pidfd = pidfd
        #: the pid, in the caller's pid namespace
        self.pid = pidfd.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        #: the pty master of the process's terminal, or None (no terminal)
        self.console = console
        self.returncode: int | None = None

    def _reaped(self, result: WaitResult | None) -> int | None:
        if result is not None:
            self.returncode = result.returncode
            self.pidfd.close()
            sharedchild.sweep()  # what a parked child sharing our memory used: freed
        return self.returncode

    def poll(self) -> int | None:
        """The exit status if the process has exited (and reap it), else None."""
        if self.returncode is None:
            self._reaped(self.pidfd.poll())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; ``subprocess.TimeoutExpired`` after ``timeout``."""
        if self.returncode is not None:
            return self.returncode
        if timeout is not None and not self.pidfd.readable(timeout):
            import subprocess  # here: it imports threading, selectors and locale
            raise subprocess.TimeoutExpired(self.args, timeout)
        code = self._reaped(self.pidfd.wait())
        assert code is not None
        return code

    async def wait_async(self) -> int:
        """Wait without blocking the event loop: the pidfd is watched by the loop
        (no thread per child, no SIGCHLD handler)."""
        if self.returncode is None:
            import asyncio  # here, not at import time: most callers never need it
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            fd = self.pidfd.fileno()

            def exited() -> None:
                if not done.done():
                    done.set_result(None)

            loop.add_reader(fd, exited)
            try:
                await done
            finally:
                loop.remove_reader(fd)
        return self.wait()

    def send_signal(self, sig: int) -> None:
        """Signal the process through its pidfd; nothing once it has been reaped."""
        if self.returncode is None:
            self.pidfd.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signals.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signals.SIGKILL)

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        """Send ``input``, read stdout/stderr to EOF, wait; as ``subprocess.Popen.communicate``."""
        import selectors
        import subprocess
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(input or b"")
        out_fd = self.stdout.fileno() if self.stdout is not None else None
        err_fd = self.stderr.fileno() if self.stderr is not None else None
        chunks: dict[int, list[bytes]] = {fd: [] for fd in (out_fd, err_fd) if fd is not None}
        streams: dict[int, IO[bytes]] = {}
        with selectors.DefaultSelector() as sel:
            if self.stdin is not None:
                if view:
                    os.set_blocking(self.stdin.fileno(), False)
                    streams[self.stdin.fileno()] = self.stdin
                    sel.register(self.stdin.fileno(), selectors.EVENT_WRITE)
                else:
                    self.stdin.close()
            for stream in (self.stdout, self.stderr):
                if stream is not None:
                    streams[stream.fileno()] = stream
                    sel.register(stream.fileno(), selectors.EVENT_READ)
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout or 0)
                for key, _ in sel.select(left):
                    if key.events & selectors.EVENT_WRITE:
                        try:
                            view = view[os.write(key.fd, view[:65536]):]
                        except BrokenPipeError:
                            view = view[:0]
                        done = not view
                    else:
                        data = os.read(key.fd, 65536)
                        chunks[key.fd].append(data)
                        done = not data
                    if done:
                        sel.unregister(key.fd)
                        streams[key.fd].close()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(left)
        return (None if out_fd is None else b"".join(chunks[out_fd]),
                None if err_fd is None else b"".join(chunks[err_fd]))

    def __enter__(self) -> Process:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.console is not None:
            self.console.close()
        if exc is not None and self.returncode is None:
            self.kill()  # do not leave a child running behind an exception
        self.wait()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<Process pid={self.pid} {state} {self.args!r}>"


# ---------------------------------------------------------------- spawn


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: PathLike | None = None,
    namespaces: Namespaces | NamespacePool | None = None,
    hostname: str | None = None,
    domainname: str | None = None,
    mounts: Sequence[MountStep] = (),
    rootfs: RootFS | None = None,
    pivot_root: PathLike | None = None,
    cgroup: FdLike | Cgroup | None = None,
    uid: int | None = None,
    gid: int | None = None,
    groups: Sequence[int] | None = None,
    rlimits: Mapping[int, tuple[int, int]] | None = None,
    capabilities: CapabilitySets | None = None,
    no_new_privs: bool = False,
    pdeathsig: int = 0,
    umask: int = -1,
    start_new_session: bool = False,
    process_group: int | None = None,
    stdin: StdSpec = None,
    stdout: StdSpec = None,
    stderr: StdSpec = None,
    pass_fds: Sequence[int] = (),
    close_fds: bool = True,
    init: bool = False,
    seccomp: bytes | Filter | Program | None = None,
    start_gate: int | None = None,
    terminal: bool = False,
    console_size: tuple[int, int] | None = None,
) -> Process:
    """Start ``args`` in a child that the C engine prepares; return its :class:`Process`.

    ``namespaces`` (a ``Namespaces(...)``, user, pid and time included, or a
    :class:`~nsbind.pool.NamespacePool` whose warm network namespace the child joins)
    are created by the clone itself; ``Namespaces.join(process or nsfs path)`` joins a
    running container's instead, as ``nsenter`` does (user first, the child then root in
    it; pid and time through this thread's ``*_for_children``); user namespaces get
    ``namespaces.uid_map`` / ``gid_map`` (default: root inside is the caller outside),
    written by this process, and the child becomes root of the new user namespace when 0
    is mapped.  ``Namespaces(...).joining(net=path_or_fd, ...)`` mixes both, as an OCI
    config does: each path is opened once and must be an nsfs file of its type
    (NS_GET_NSTYPE), and that fd is joined.  In runc's order: a joined user namespace
    first (the child is then root in it; no id maps are written), the other joined
    ones, then the new ones are unshared inside it - so a new pid or time namespace,
    which only the clone makes, is refused with a joined user namespace; joined pid and
    time namespaces take the child itself (this thread's ``*_for_children``); with a new
    user namespace this thread joins net, uts, ipc and cgroup for the clone (the new
    namespace could not) and a joined mnt is refused.  A type both new and joined is
    refused.  A new mount namespace has its propagation set first (default private).
    ``mounts`` run in order, then the steps of ``rootfs`` (a
    :class:`~nsbind.rootfs.RootFS`: its targets resolved inside it, then pivot_root into
    it) or ``pivot_root`` (a directory that is a mount point), then ``cwd``.  ``cgroup``
    is a cgroup v2 directory fd: the child starts in it (CLONE_INTO_CGROUP); a
    :class:`~nsbind.cgroups.Cgroup` also has the child join its v1 hierarchies before
    anything else.  ``uid``, ``gid`` and ``groups`` are 0..4294967294 (anything else is
    refused, never truncated).  stdio takes ``PIPE``, ``DEVNULL``, ``STDOUT`` (stderr
    only), an fd or a file object; the child gets exactly fds 0-2 and ``pass_fds`` (every
    other fd is closed in the child before the exec).  A failing step raises
    :class:`SpawnError` naming it: ``mount proc on /proc: EPERM (...)``.  From the second
    spawn with an equal :class:`~nsbind.spawnrequest.SpawnRequest` (environment included)
    on, the C plan is reused, except with a rootfs, a Cgroup, a user namespace or joined
    namespaces.

    ``init=True`` (with a new pid namespace) makes the first process a tiny C
    init that forks the command, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/
    SIGUSR1/SIGUSR2/SIGWINCH to it, reaps orphans, and exits with the command's
    status (128+N for signal N), as tini does.  Its child is a copy-on-write
    fork, so the cost then grows with this process's memory.

    ``seccomp`` (a :class:`~nsbind.seccomp.Filter`, its
    :class:`~nsbind.seccomp.Program` or raw ``struct sock_filter[]`` bytes) is loaded
    with seccomp(2) as the child's last step before the exec (after the init's fork:
    the command is filtered, the init is not).  The kernel takes it only with
    ``no_new_privs=True`` or CAP_SYS_ADMIN in the child's user namespace: without
    no_new_privs, a child that sets ``capabilities`` or a non-root ``uid`` loads it
    before those steps instead, as runc does (they then run under the filter, and so
    does the init).

    ``start_gate`` (an fd of a FIFO, best opened ``O_PATH``: runc's exec.fifo) parks the
    child after every step but seccomp and the exec: it reopens the FIFO for writing
    through ``/proc/self/fd/N`` (so a new root needs procfs at /proc) and blocks until
    someone opens the FIFO for reading, then writes ``b"0"`` and goes on.  spawn returns
    once the child is parked: as root sharing this process's memory until its exec (this
    process non-dumpable meanwhile: :mod:`nsbind.sharedchild`), else a copy.  A failure
    before the gate raises :class:`SpawnError`; after it (seccomp, exec) only exit 127.

    ``terminal=True`` gives the child a new pty as its controlling terminal and as
    stdin, stdout and stderr (which must then be None), as runc's
    ``process.terminal``: after its root is set up (so from the container's
    ``/dev/ptmx`` and devpts at ``/dev/pts``), the child opens ``/dev/ptmx``, unlocks
    it and opens the peer with TIOCGPTPEER (never a ``/dev/pts/N`` path); with a
    ``rootfs`` or ``pivot_root`` it replaces whatever the root has at
    ``/dev/console`` (symlinks are unlinked, never followed) by a fresh file with the
    peer bind-mounted onto it (open_tree + move_mount, no /proc: CVE-2025-52565);
    it sets ``console_size`` (rows, columns; TIOCSWINSZ), sends the master to this
    process (one SCM_RIGHTS fd), then setsid (unless ``start_new_session`` did) and
    TIOCSCTTY; a session leader cannot join a ``process_group``.  The master is
    :attr:`Process.console` when spawn returns, also while a ``start_gate`` parks the
    child.  Failures name the step: ``open /dev/ptmx: ENOENT``."""
    pool, ns = ((namespaces, namespaces.namespaces) if isinstance(namespaces, NamespacePool)
                else (None, namespaces))
    request = SpawnRequest.make(
        args, env, cwd, ns, hostname, domainname, mounts, rootfs, pivot_root, cgroup, uid, gid,
        groups, rlimits, capabilities, no_new_privs, pdeathsig, umask, start_new_session,
        process_group, init, seccomp, start_gate is not None, terminal, console_size)
    static, plan, kept = plan_cache.get(request)
    inherited = stdin is None and stdout is None and stderr is None and not pass_fds
    if terminal and not (stdin is None and stdout is None and stderr is None):
        raise InvalidValue("terminal=True makes the pty the child's stdin, stdout and "
                           "stderr: leave stdin, stdout and stderr None")
    if inherited and close_fds and pool is None and static.ready is not None:
        # a repeat whose whole plan is known: no fd to arrange, nothing to release
        return Process(args, _start(static.ready.copy(), SpawnPipes(), static), None, None, None)
    with _Resources() as res:
        res.acquire(request, plan, pool)
        base = max([3, *pass_fds]) + 1
        res.stdio.arrange(stdin, stdout, stderr, tuple(pass_fds), base)
        gate = [] if start_gate is None else [res.gate(plan, start_gate, base)]  # fill reads it
        keep = res.stdio.targets() + gate + res.fill(plan, static, base)
        if terminal:
            keep.append(res.terminal(plan, base))
        plan.set_fds(res.stdio.moves, keep if close_fds else None)
        if (kept and inherited and close_fds and pool is None and static.root is None
                and not static.user and not res.v1_procs and plan.c.use_vm
                and not res.step_fds and not terminal and not gate):
            static.ready = plan.copy()  # the next equal spawn starts from this copy
        if res.for_children:
            with _for_children(res.for_children):
                pidfd = _start(plan, res.pipes, static)
        else:
            pidfd = _start(plan, res.pipes, static)
        console = res.receive_console(pidfd) if terminal else None
        stdin_, stdout_, stderr_ = res.stdio.parent_ends
        return Process(args, pidfd, stdin_, stdout_, stderr_, console)


class _Resources:
    """Everything one spawn acquires besides its plan, released when the spawn is done
    (the child has exec'd or failed); the parent's pipe ends only if it failed."""

    def __init__(self) -> None:
        self.stdio = Stdio()
        self.pipes = SpawnPipes()
        self.pooled: NamespaceFd | None = None
        self.joined: list[tuple[Namespace, NamespaceFd]] = []
        self.for_children: list[tuple[Namespace, NamespaceFd]] = []
        self.v1_procs: list[int] = []
        self.mounts: list[MountFd] = []
        self.step_fds = False
        self.console: socket.socket | None = None  # this end of the terminal's socketpair

    def __enter__(self) -> _Resources:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            self.stdio.close_parent_ends()
        self.stdio.cleanup()
        self.pipes.close_all()
        if self.pooled is not None:
            self.pooled.close()
        for _, nsfd in self.joined:
            nsfd.close()
        for fd in self.v1_procs:
            os.close(fd)
        for mnt in self.mounts:
            mnt.close()
        if self.console is not None:
            self.console.close()

    def acquire(self, request: SpawnRequest, plan: Plan, pool: NamespacePool | None) -> None:
        """Open what the child joins: the target's namespaces, v1 cgroups, a pooled one."""
        ns = request.namespaces
        if request.joins:  # (a pool's own Namespaces joins nothing)
            self.joined = _open_joins(request.joins)
            user = any(k is Namespace.USER for k, _ in self.joined)
            # a new user namespace (made by the clone) could not join the others: this
            # thread joins them for its child and comes back; pid and time always
            here = {Namespace.PID, Namespace.TIME} | (
                {Namespace.NET, Namespace.UTS, Namespace.IPC, Namespace.CGROUP}
                if Namespace.USER in ns.types else set())
            self.for_children = [(k, fd) for k, fd in self.joined if k in here]
            if request.uid is None and user:
                plan.set_ids(0, 0, None)  # root of the joined user namespace, as runc
        elif ns.join_target is not None:
            if pool is not None:
                raise InvalidValue("a namespace pool cannot join another process")
            self.joined = ns.open_join_fds()
            # pid and time namespaces take children only: this thread joins them
            # for its child (and comes back); the child joins the others itself
            self.for_children = [(k, fd) for k, fd in self.joined
                                 if k in (Namespace.PID, Namespace.TIME)]
            if request.uid is None and any(k is Namespace.USER for k, _ in self.joined):
                plan.set_ids(0, 0, None)  # root of the joined user namespace, as nsenter
        if isinstance(request.cgroup, Cgroup):
            for path in request.cgroup.v1_procs_files():  # the child writes "0" to each
                self.v1_procs.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            plan.set_cgroup_procs(self.v1_procs)
        if pool is not None:
            self.pooled = pool.take()  # joined by the child, then closed here

    def fill(self, plan: Plan, static: StaticPlan, base: int) -> list[int]:
        """Fill in the plan's fds: mount step fds, the report and sync pipes, the
        namespaces to join; return the fds the child must keep open until its exec."""
        keep: list[int] = []
        steps = static.steps
        root = static.root
        if root is not None and root.host_sources:
            # a prepared root's child runs inside the root: host sources are opened here
            steps, self.mounts = root.open_host_sources()
        if not features.clone_detached_mounts():  # the child cannot clone them: copies
            from nsbind.mountclone import detached_copies  # (older kernels only)
            steps, copies = detached_copies(steps)  # made here, attached as they are
            self.mounts += copies
        # fds the mount steps use (detached mounts, idmap user namespaces): moved
        # above the stdio targets and kept open until the exec
        self.step_fds = any(step.fd >= 0 or step.userns_fd >= 0 for step in steps)
        if self.step_fds:
            steps = tuple(self.stdio.high_step_fds(step, base) for step in steps)
            keep += [fd for step in steps for fd in (step.fd, step.userns_fd) if fd >= 0]
        if root is not None and root.masks:
            # a prepared root's child cannot reach this /dev/null: hand it a detached bind
            with open_tree("/dev/null", OpenTreeFlags.CLONE) as null:
                plan.c.null_mount_fd = self.stdio.high(null.fileno(), base)
            keep.append(plan.c.null_mount_fd)
        plan.set_mounts(steps)
        if plan.c.use_vm and not static.user and plan.c.gate_fd < 0:
            # vfork style: the child reports into shared memory while we are suspended
            plan.c.report = plan.report
        else:
            self.pipes.err_r, self.pipes.err_w = os.pipe2(os.O_CLOEXEC)
            plan.c.err_fd = self.pipes.err_w
            keep.append(self.pipes.err_w)  # close-on-exec: open until the exec, then gone
        if static.user:
            self.pipes.sync_r, self.pipes.sync_w = os.pipe2(os.O_CLOEXEC)
            plan.c.sync_fd = self.pipes.sync_r
            plan.c.sync_peer_fd = self.pipes.sync_w
        joins = self._joins(root)
        if joins:
            plan.set_setns(joins)
        return keep

    def gate(self, plan: Plan, fd: int, base: int) -> int:
        """Hand the child a close-on-exec copy of the start gate's FIFO fd."""
        try:
            is_fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError as exc:
            raise InvalidValue(f"start_gate fd {fd}: {exc.strerror}") from exc
        if not is_fifo:
            raise InvalidValue(f"start_gate fd {fd} is not a FIFO")
        plan.c.gate_fd = self.stdio.high(fd, base)
        return int(plan.c.gate_fd)

    def terminal(self, plan: Plan, base: int) -> int:
        """A socketpair for the child's pty master: the child's end goes in the plan."""
        import socket  # (a terminal's only: not on every spawn's import path)

        self.console, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:  # close-on-exec, as every socket Python makes
            plan.c.console_sock = self.stdio.high(theirs.fileno(), base)
        return int(plan.c.console_sock)

    def receive_console(self, pidfd: PidFd) -> OwnedFd:
        """The pty master the child sent before its exec (or its gate): exactly one fd,
        else the child is killed and reaped and SpawnError names the step."""
        assert self.console is not None
        import socket

        fds: list[int] = []
        try:
            _, anc, flags, _ = self.console.recvmsg(
                1, socket.CMSG_SPACE(2 * 4), socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += memoryview(data[:len(data) - len(data) % 4]).cast("i").tolist()
            err = errno.EPROTO if flags & socket.MSG_CTRUNC or len(fds) != 1 else 0
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err:
            for fd in fds:
                os.close(fd)
            pidfd.send_signal(signals.SIGKILL)
            pidfd.wait()
            pidfd.close()
            raise spawn_error(err, "terminal", "receive the pty master from the child "
                                               "(one SCM_RIGHTS fd)")
        return OwnedFd(fds[0])

    def _joins(self, root: RootPlan | None) -> list[tuple[int, int]]:
        """(fd, CLONE_NEW* type) of the namespaces the child joins before it closes its
        fds, in NAMESPACE_ORDER: a joined target's (user first), a pooled network
        namespace, a prepared root's mount namespace (mnt: last)."""
        here = {k for k, _ in self.for_children} | {Namespace.MNT}
        joins = [(fd.fileno(), int(k.flag)) for k, fd in self.joined if k not in here]
        if self.pooled is not None:
            joins.append((self.pooled.fileno(), int(CloneFlags.NEWNET)))
        joins += [(fd.fileno(), int(k.flag)) for k, fd in self.joined if k is Namespace.MNT]
        if root is not None and root.namespace is not None:
            joins.append((root.namespace.fileno(), int(CloneFlags.NEWNS)))
        return joins


def _open_joins(joins: Sequence[tuple[Namespace, str | FdLike]]
                ) -> list[tuple[Namespace, NamespaceFd]]:
    """An fd of each namespace of ``Namespaces.joining``: a path opened once and checked (nsfs, its
    type by NS_GET_NSTYPE), and that fd is the one joined; a given fd is checked the same
    and duplicated (the caller keeps its own)."""
    opened: list[tuple[Namespace, NamespaceFd]] = []
    try:
        for kind, where in joins:
            if isinstance(where, str):
                opened.append((kind, open_namespace(where, kind)))
                continue
            num = fdnum(where)
            try:
                nsfd = NamespaceFd(fcntl.fcntl(num, fcntl.F_DUPFD_CLOEXEC, 3), f"fd {num}")
            except OSError as exc:
                raise InvalidValue(f"joining: the {kind.value} namespace fd {num}: "
                                   f"{exc.strerror}") from None
            opened.append((kind, nsfd))
            if lib.nsb_fstatfs_type(nsfd.fileno()) != lib.NSFS_MAGIC:
                raise InvalidValue(f"joining: fd {num} is not a namespace file (not on nsfs)")
            if nsfd.type is not kind:
                raise InvalidValue(f"joining: fd {num} is a {nsfd.type.value} namespace, "
                                   f"not {kind.value}")
    except BaseException:
        for _, fd in opened:
            fd.close()
        raise
    return opened


@contextmanager
def _for_children(targets: Sequence[tuple[Namespace, NamespaceFd]]) -> Iterator[None]:
    """Put this thread's next children into these namespaces (pid, time: through
    *_for_children; net, uts, ipc, cgroup: the thread's own, restored right after the
    clone), then come back."""
    saved: list[NamespaceFd] = []
    try:
        for kind, nsfd in targets:
            saved.append(open_namespace(thread_path(kind)))
            nsfd.setns()
        yield
    finally:
        for back in reversed(saved):
            with back:
                back.setns()


def _start(plan: Plan, pipes: SpawnPipes, static: StaticPlan) -> PidFd:
    """Clone the child, write its id maps (user namespaces), let it go on and wait for
    its exec or its report: the pidfd, or the SpawnError of the step that failed, with
    the child killed and reaped."""
    result: Any = ffi.new("struct nsb_spawn_result *")
    report: Any = plan.report
    shared = sharedchild.prepare(plan.c)  # a gated child sharing our memory (its module)
    if lib.nsb_spawn(plan.c, result) < 0:
        err = ffi.errno
        sharedchild.settle()
        what = f"clone3 {_clone_desc(int(plan.c.clone_flags), plan.c.cgroup_fd)}"
        raise spawn_error(err, "clone3", what)
    pidfd = PidFd(result.pidfd, result.pid)
    pipes.close("err_w")  # so that the exec (close-on-exec) shows as EOF
    failure: SpawnError | None = None
    if static.user:
        pipes.close("sync_r")
        try:
            idmap.write_maps(result.pid, static.uid_map, static.gid_map,
                             deny_setgroups=os.geteuid() != 0, checked=True)
        except NsbindError as exc:
            failure = SpawnError(exc.errno or errno.EPERM, "write id maps", None, str(exc))
            pidfd.send_signal(signals.SIGKILL)
            pipes.close("sync_w")
    # Tell the child to go on (user namespaces), wait for its exec or its report,
    # and free its stack: in C, so that this thread stays off the shared stack.
    rc = lib.nsb_spawn_release(pipes.take("sync_w"), pipes.err_r, result, report)  # closes it
    if rc < 0 and failure is None:
        # the go byte did not reach the child: it never got past its sync step
        failure = spawn_error(ffi.errno or errno.EPIPE, "sync",
                              "tell the child to go on after the id maps (write its sync pipe)")
    elif rc == 1 and failure is None and not (report.step == lib.NSB_STEP_GATE
                                              and report.err == 0):  # parked: not a failure
        step, what = plan.describe(report.step, report.index)
        failure = spawn_error(report.err, step, what, detail=plan.detail(report))
    if failure is not None:
        pidfd.send_signal(signals.SIGKILL)  # nothing of a failed spawn stays running
        pidfd.wait()
        pidfd.close()
        sharedchild.settle()
        raise failure
    sharedchild.hold(shared, plan, result)
    return pidfd


def _clone_desc(flags: int, cgroup_fd: int) -> str:
    text = flag_names(CloneFlags, flags)
    if cgroup_fd >= 0:
        text += f" into cgroup fd {cgroup_fd}"
    return text
