"""spawn() and Process: start a program in new namespaces at close to the kernel's cost.

The child is made by the C spawn engine (see ``_native/spawn.h``): clone3 on its
own stack with CLONE_VM|CLONE_VFORK where the plan allows it, so the cost does
not grow with the parent's memory; it runs no Python.  Exceptions are the time
namespace (the kernel refuses CLONE_VM with CLONE_NEWTIME: a copy-on-write
child instead) and user namespaces (CLONE_VM without VFORK: the child waits
until this process has written its id maps, and this thread waits for the exec).

A :class:`Process` holds a pidfd: signals and waits can never hit a recycled pid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from nsbind._native import ffi, lib
from nsbind._sys.fd import FdLike, PathLike, fdnum
from nsbind._sys.mount import open_tree
from nsbind._sys.ns import NamespaceFd, open_namespace
from nsbind._sys.proc import PidFd, WaitResult
from nsbind.cgroups import Cgroup
from nsbind.errors import NamespaceRuleError
from nsbind.flags import CloneFlags, MountFlags, Namespace, OpenTreeFlags, flag_names
from nsbind.namespaces import IdMap, Namespaces, _write_maps
from nsbind.pool import NamespacePool
from nsbind.rootfs import RootFS, _Template
from nsbind.spawnplan import CapabilitySets, MountStep, Plan, SpawnError, spawn_error

__all__ = ["DEVNULL", "PIPE", "STDOUT", "Process", "spawn"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

StdSpec = int | IO[Any] | None


class Process:
    """A spawned process, held by a pidfd.  ``returncode`` is ``-N`` for signal N."""

    def __init__(self, args: Sequence[str], pidfd: PidFd, stdin: IO[bytes] | None,
                 stdout: IO[bytes] | None, stderr: IO[bytes] | None) -> None:
        self.args = list(args)
        #: the pidfd; it becomes readable when the process exits
        self.pidfd = pidfd
        #: the pid, in the caller's pid namespace
        self.pid = pidfd.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None

    def _reaped(self, result: WaitResult | None) -> int | None:
        if result is not None:
            self.returncode = result.returncode
            self.pidfd.close()
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
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)

    def communicate(self, input: bytes | None = None,
                    timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        """Send ``input``, read stdout/stderr to EOF, wait; as ``subprocess.Popen.communicate``."""
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
        if exc is not None and self.returncode is None:
            self.kill()  # do not leave a child running behind an exception
        self.wait()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<Process pid={self.pid} {state} {self.args!r}>"


# ---------------------------------------------------------------- spawn


_NS_FLAG = {ns: int(ns.flag) for ns in Namespace}
_NEWUSER, _NEWNET, _NEWNS, _NEWTIME = (int(CloneFlags.NEWUSER), int(CloneFlags.NEWNET),
                                       int(CloneFlags.NEWNS), int(CloneFlags.NEWTIME))
_HAS_VM_CLONE = bool(lib.nsb_spawn_has_vm_clone())


@functools.lru_cache(maxsize=128)
def _clone_flags(types: frozenset[Namespace]) -> int:
    flags = 0
    for kind in types:
        flags |= _NS_FLAG[kind]
    return flags


def _exec_candidates(name: str, env: Mapping[str, str]) -> list[str]:
    """Where execve should look for ``name``: the path itself, or each PATH directory."""
    if "/" in name:
        return [name]
    path = env.get("PATH", os.defpath)
    return [os.path.join(d or ".", name) for d in path.split(os.pathsep)]


class _Stdio:
    """The parent's half of the child's stdio and the fd moves for the plan."""

    def __init__(self) -> None:
        self.moves: list[tuple[int, int, str]] = []  # (high source fd, target, description)
        self.close_after: list[int] = []  # fds to close in the parent once spawned
        self.parent_ends: list[IO[bytes] | None] = [None, None, None]
        self.inherited: list[int] = []  # stdio fds the child keeps as they are

    def _high(self, fd: int, base: int) -> int:
        # every source above every target, so that no dup2 in the child
        # overwrites a source another dup2 still needs
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base)
        self.close_after.append(high)
        return high

    def add(self, target: int, spec: StdSpec, base: int, out1: int | None) -> None:
        desc = f"{('stdin', 'stdout', 'stderr')[target] if target < 3 else 'fd'} to fd {target}"
        if spec is None:
            self.inherited.append(target)  # the child has it already: no move
            return
        if spec == PIPE:
            r, w = os.pipe2(os.O_CLOEXEC)
            mine, theirs = (w, r) if target == 0 else (r, w)
            self.parent_ends[target] = os.fdopen(mine, "wb" if target == 0 else "rb", buffering=0)
            self.close_after.append(theirs)
            src = self._high(theirs, base)
        elif spec == DEVNULL:
            null = os.open(os.devnull, (os.O_RDONLY if target == 0 else os.O_WRONLY) | os.O_CLOEXEC)
            self.close_after.append(null)
            src = self._high(null, base)
        elif spec == STDOUT:
            if target != 2 or out1 is None:
                raise ValueError("STDOUT is only valid for stderr")
            src = out1
        elif isinstance(spec, int):
            src = self._high(spec, base)
        else:
            src = self._high(spec.fileno(), base)
        self.moves.append((src, target, desc))

    def high_step_fds(self, step: MountStep, base: int) -> MountStep:
        """``step`` with its fds replaced by close-on-exec copies above ``base``."""
        if step.fd < 0 and step.userns_fd < 0:
            return step
        return dataclasses.replace(
            step, fd=self._high(step.fd, base) if step.fd >= 0 else -1,
            userns_fd=self._high(step.userns_fd, base) if step.userns_fd >= 0 else -1)

    def cleanup(self) -> None:
        fds, self.close_after = self.close_after, []
        for fd in fds:
            os.close(fd)


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
) -> Process:
    """Start ``args`` in a child that the C engine prepares; return its :class:`Process`.

    ``namespaces`` (a ``Namespaces(...)``, user, pid and time included, or a
    :class:`~nsbind.pool.NamespacePool` whose warm network namespace the child joins)
    are created by the clone itself; ``Namespaces.join(process or nsfs path)`` joins a
    running container's instead, as ``nsenter`` does (user first, the child then root in
    it; pid and time through this thread's ``*_for_children``); user namespaces get
    ``namespaces.uid_map`` / ``gid_map`` (default: root inside is the caller outside),
    written by this process, and the child becomes root of the new user namespace when 0
    is mapped.  A new mount namespace has its propagation set first (default private).
    ``mounts`` run in order, then the steps of ``rootfs`` (a
    :class:`~nsbind.rootfs.RootFS`: its targets resolved inside it, then pivot_root into
    it) or ``pivot_root`` (a directory that is a mount point), then ``cwd``.  ``cgroup``
    is a cgroup v2 directory fd: the child starts in it (CLONE_INTO_CGROUP); a
    :class:`~nsbind.cgroups.Cgroup` also has the child join its v1 hierarchies before
    anything else.  stdio takes ``PIPE``, ``DEVNULL``, ``STDOUT`` (stderr only), an fd
    or a file object; the child gets exactly fds 0-2 and ``pass_fds`` (every other fd is
    close-on-exec).  A failing step raises :class:`SpawnError` naming it: ``mount proc
    on /proc: EPERM (...)``.  Once two spawns had equal arguments (and environment),
    the next ones reuse the kept C plan, except with a rootfs, a Cgroup, a user
    namespace or joined namespaces.

    ``init=True`` (with a new pid namespace) makes the first process a tiny C
    init that forks the command, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/
    SIGUSR1/SIGUSR2/SIGWINCH to it, reaps orphans, and exits with the command's
    status (128+N for signal N), as tini does.  Its child is a copy-on-write
    fork, so the cost then grows with this process's memory.
    """
    if not args:
        raise ValueError("spawn needs a non-empty argument list")
    pool = namespaces if isinstance(namespaces, NamespacePool) else None
    ns: Namespaces = (namespaces.namespaces if isinstance(namespaces, NamespacePool)
                      else namespaces or Namespaces())
    if (hostname is not None or domainname is not None) and Namespace.UTS not in ns.types:
        raise ValueError("hostname and domainname need a new UTS namespace "
                         "(namespaces=Namespaces(uts=True)): without one they would rename "
                         "the host")
    joining = ns._join is not None
    # the plan's static part (everything but fds), reused for a repeated spawn
    key = None
    if not joining and rootfs is None and not isinstance(cgroup, Cgroup) \
            and not ns.types & _USER_ONLY:
        key = _plan_key(args, env, ns, hostname, domainname, mounts, pivot_root, cwd, cgroup,
                        uid, gid, groups, rlimits, capabilities, no_new_privs, pdeathsig,
                        umask, start_new_session, process_group, init)
    static = _PLANS.get(key) if key is not None else None
    if static is None:
        static = _static_plan(args, env, ns, joining, hostname, domainname, mounts, rootfs,
                              pivot_root, cwd, cgroup, uid, gid, groups, rlimits, capabilities,
                              no_new_privs, pdeathsig, umask, start_new_session,
                              process_group, init)
        if key is not None and _SEEN.pop(key, False):
            # the second spawn with these arguments: keep its plan for the next ones
            if len(_PLANS) >= 32:
                _PLANS.clear()
            _PLANS[key] = static
            plan = static.plan.copy()
        else:
            if key is not None:  # the first: remember only that it was asked for
                if len(_SEEN) >= 64:
                    _SEEN.clear()
                _SEEN[key] = True
                key = None
            plan = static.plan
    else:
        plan = static.plan.copy()
    inherited_stdio = stdin is None and stdout is None and stderr is None and not pass_fds
    simple = inherited_stdio and close_fds and pool is None
    if simple and static.ready is not None:
        # a repeat whose whole plan is known: no fd to arrange, nothing to release
        return Process(args, _start(static.ready.copy(), _Pipes(), False, [], []),
                       None, None, None)
    user, uid_map, gid_map, template = static.user, static.uid_map, static.gid_map, \
        static.template
    steps = list(static.steps)

    # Everything acquired from here on is released in the finally below.
    stdio = _Stdio()
    pipes = _Pipes()
    pooled: NamespaceFd | None = None
    joined: list[tuple[Namespace, NamespaceFd]] = []
    v1_procs: list[int] = []
    try:
        if ns._join is not None:
            if pool is not None:
                raise ValueError("a namespace pool cannot join another process")
            joined = ns._join.open_all(ns.types)
            if uid is None and any(k is Namespace.USER for k, _ in joined):
                uid = gid = 0  # root of the joined user namespace, as nsenter
                plan.set_ids(uid, gid, None)
        if isinstance(cgroup, Cgroup):
            for path in cgroup.v1_procs_files():  # the child writes "0" to each
                v1_procs.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            plan.set_cgroup_procs(v1_procs)
        if pool is not None:
            pooled = pool.take()  # joined by the child, then closed here
        base = max([3, *pass_fds]) + 1
        if inherited_stdio:
            stdio.inherited = [0, 1, 2]  # the common case, without the general moves
        else:
            for target, spec in enumerate((stdin, stdout, stderr)):
                out1 = next((src for src, dst, _ in stdio.moves if dst == 1), 1)
                stdio.add(target, spec, base, out1)
            for fd in pass_fds:
                stdio.add(fd, fd, base, None)
        keep = [t for _, t, _ in stdio.moves] + stdio.inherited
        # fds the mount steps use (detached mounts, idmap user namespaces): moved
        # above the stdio targets and kept open until the exec
        step_fds = any(step.fd >= 0 or step.userns_fd >= 0 for step in steps)
        if step_fds:
            steps = [stdio.high_step_fds(step, base) for step in steps]
            keep += [fd for step in steps for fd in (step.fd, step.userns_fd) if fd >= 0]
        if template is not None and template.masks:
            # a prepared root's child cannot reach this /dev/null: hand it a detached bind
            with open_tree("/dev/null", OpenTreeFlags.CLONE) as null:
                plan.c.null_mount_fd = stdio._high(null.fileno(), base)
            keep.append(plan.c.null_mount_fd)
        plan.set_mounts(steps)
        if plan.c.use_vm and not user:
            # vfork style: the child reports into shared memory while we are suspended
            plan.c.report = plan.report
        else:
            pipes.err_r, pipes.err_w = os.pipe2(os.O_CLOEXEC)
            plan.c.err_fd = pipes.err_w
            keep.append(pipes.err_w)  # close-on-exec: open until the exec, then gone
        plan.set_fds(stdio.moves, keep if close_fds else None)
        if user:
            pipes.sync_r, pipes.sync_w = os.pipe2(os.O_CLOEXEC)
            plan.c.sync_fd = pipes.sync_r
            plan.c.sync_peer_fd = pipes.sync_w
        # namespaces the child joins before it closes its fds: a prepared root's mount
        # namespace, a pooled one; pid and time namespaces take children only: this
        # thread joins them for its child (and comes back); the child joins the
        # others itself, user first
        joins = [] if template is None else [(template.ns.fileno(), int(CloneFlags.NEWNS))]
        if pooled is not None:
            joins.append((pooled.fileno(), int(CloneFlags.NEWNET)))
        joins += [(fd.fileno(), int(k.flag)) for k, fd in joined
                  if k not in (Namespace.PID, Namespace.TIME)]
        if joins:
            plan.set_setns(joins)
        if (key is not None and simple and template is None and not user and not v1_procs
                and plan.c.use_vm and not step_fds):
            static.ready = plan.copy()  # the next equal spawn starts from this copy
        for_children = [(k, fd) for k, fd in joined if k in (Namespace.PID, Namespace.TIME)]
        if for_children:
            with _for_children(for_children):
                pidfd = _start(plan, pipes, user, uid_map, gid_map)
        else:
            pidfd = _start(plan, pipes, user, uid_map, gid_map)
    except BaseException:
        for stream in stdio.parent_ends:
            if stream is not None:
                stream.close()
        raise
    finally:
        stdio.cleanup()
        pipes.close_all()
        if pooled is not None:
            pooled.close()
        for _, nsfd in joined:
            nsfd.close()
        for fd in v1_procs:
            os.close(fd)
    return Process(args, pidfd, *stdio.parent_ends)


@dataclasses.dataclass
class _Static:
    """What spawn derives from its arguments before any fd is made (see _static_plan),
    and, once a spawn with inherited stdio has completed it, the whole plan (``ready``)."""

    plan: Plan
    user: bool
    uid_map: list[IdMap]
    gid_map: list[IdMap]
    steps: tuple[MountStep, ...]
    template: _Template | None
    ready: Plan | None = None


#: static plans of recent repeated spawns, by _plan_key (cleared when full), and the
#: keys of spawns asked for once so far (a one-off spawn keeps no plan)
_PLANS: dict[tuple[object, ...], _Static] = {}
_SEEN: dict[tuple[object, ...], bool] = {}
_USER_ONLY = frozenset({Namespace.USER})


def _plan_key(args: Sequence[str], env: Mapping[str, str] | None, ns: Namespaces,
              hostname: str | None, domainname: str | None, mounts: Sequence[MountStep],
              pivot_root: PathLike | None, cwd: PathLike | None, cgroup: object,
              uid: int | None, gid: int | None, groups: Sequence[int] | None,
              rlimits: Mapping[int, tuple[int, int]] | None, *flags: object
              ) -> tuple[object, ...] | None:
    """Everything a static plan depends on, or None when something is not hashable."""
    if env is None:
        data = getattr(os.environ, "_data", None)  # bytes -> bytes: no decoding
        envkey: object = ("environ", tuple(data.items()) if isinstance(data, dict)
                          else tuple(os.environ.items()))
    else:
        envkey = tuple(env.items())
    key = (tuple(args), envkey, ns.types, ns.propagation, ns.loopback, hostname, domainname,
           tuple(mounts), pivot_root, cwd, cgroup, uid, gid,
           None if groups is None else tuple(groups),
           tuple(rlimits.items()) if rlimits else None, *flags)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _static_plan(args: Sequence[str], env: Mapping[str, str] | None, ns: Namespaces,
                 joining: bool, hostname: str | None, domainname: str | None,
                 mounts: Sequence[MountStep], rootfs: RootFS | None,
                 pivot_root: PathLike | None, cwd: PathLike | None,
                 cgroup: FdLike | Cgroup | None, uid: int | None, gid: int | None,
                 groups: Sequence[int] | None, rlimits: Mapping[int, tuple[int, int]] | None,
                 capabilities: CapabilitySets | None, no_new_privs: bool, pdeathsig: int,
                 umask: int, start_new_session: bool, process_group: int | None,
                 init: bool) -> _Static:
    """The plan's part that depends on the arguments only: exec, clone flags, mount steps,
    names, ids, limits, capabilities (no fd is opened here)."""
    environ = os.environ if env is None else env  # read only
    plan = Plan()
    plan.set_exec(_exec_candidates(args[0], environ), args, environ)

    # what the clone creates, as CLONE_NEW* bits (tested as ints: enum hashing is slow)
    flags = 0 if joining else _clone_flags(ns.types)
    plan.c.clone_flags = flags
    user = bool(flags & _NEWUSER)
    uid_map: list[IdMap] = []
    gid_map: list[IdMap] = []
    if user:
        uid_map = ns.uid_map or [(0, os.geteuid(), 1)]
        gid_map = ns.gid_map or [(0, os.getegid(), 1)]
    if user and uid is None and any(inside == 0 for inside, _, _ in uid_map):
        uid = 0
        if any(inside == 0 for inside, _, _ in gid_map):
            gid = 0
            if groups is None and os.geteuid() == 0:
                groups = []
    plan.c.loopback = int(bool(flags & _NEWNET) and ns.loopback)
    steps = list(mounts)
    template = None
    if rootfs is not None:
        if not flags & _NEWNS:
            raise ValueError("rootfs needs a new mount namespace (Namespaces(mnt=True)): "
                             "its mounts are made in the child's own")
        if pivot_root is not None:
            raise ValueError("give rootfs or pivot_root, not both")
        template = rootfs._template_for(ns, bool(steps))
        if template is not None:
            # join the prepared namespace and unshare a private copy of it, instead of
            # copying the host's mount table, binding the root and pivoting into it
            steps += template.steps
            plan.c.clone_flags = flags & ~_NEWNS
            plan.c.unshare_flags = _NEWNS
        else:
            steps += rootfs._all_steps()
            pivot_root = rootfs.path
    if flags & _NEWNS and ns.propagation is not None and template is None:
        steps.insert(0, _propagation_step(ns.propagation))
    # (the plan's defaults: nothing of these; each setter only for what is asked)
    c: Any = plan.c
    if hostname is not None or domainname is not None:
        plan.set_names(hostname, domainname)
    if pivot_root is not None or cwd is not None:
        plan.set_root(pivot_root, cwd)
    if rlimits:
        plan.set_rlimits(rlimits)
    if uid is not None or gid is not None or groups is not None:
        plan.set_ids(uid, gid, groups)
    if capabilities is not None:
        plan.set_caps(capabilities)
    if no_new_privs:
        c.no_new_privs = 1
    if pdeathsig:
        c.pdeathsig = pdeathsig
    if umask != -1:
        c.umask = umask
    if start_new_session:
        c.setsid = 1
    if process_group is not None:
        c.pgid = process_group
    if isinstance(cgroup, Cgroup):
        v2 = cgroup.v2
        c.cgroup_fd = -1 if v2 is None else v2.fileno()
    elif cgroup is not None:
        c.cgroup_fd = fdnum(cgroup)
    if init:
        c.init = 1
    # time namespaces refuse CLONE_VM; an init outlives the exec of its child
    # and a process sharing its memory may not join a user namespace (userns_install)
    c.use_vm = int(not flags & _NEWTIME and not init and not joining
                   and _HAS_VM_CLONE)

    return _Static(plan, user, uid_map, gid_map, tuple(steps), template)


@contextlib.contextmanager
def _for_children(targets: Sequence[tuple[Namespace, NamespaceFd]]) -> Iterator[None]:
    """Put this thread's next children into these pid/time namespaces, then come back."""
    saved: list[NamespaceFd] = []
    try:
        for kind, nsfd in targets:
            name = "pid_for_children" if kind is Namespace.PID else "time_for_children"
            saved.append(open_namespace(f"/proc/thread-self/ns/{name}"))
            nsfd.setns()
        yield
    finally:
        for back in reversed(saved):
            with back:
                back.setns()


@functools.lru_cache(maxsize=8)
def _propagation_step(kind: int) -> MountStep:
    """``mount --make-r<kind> /``, the first step in a new mount namespace."""
    return MountStep(None, "/", None, MountFlags.REC | kind)


class _Pipes:
    """The report and sync pipes of one spawn; each fd is closed exactly once."""

    def __init__(self) -> None:
        self.err_r = self.err_w = self.sync_r = self.sync_w = -1

    def close(self, name: str) -> None:
        fd = getattr(self, name)
        setattr(self, name, -1)
        if fd >= 0:
            os.close(fd)

    def close_all(self) -> None:
        for name in ("err_r", "err_w", "sync_r", "sync_w"):
            self.close(name)


def _start(plan: Plan, pipes: _Pipes, user: bool, uid_map: list[IdMap],
           gid_map: list[IdMap]) -> PidFd:
    result: Any = ffi.new("struct nsb_spawn_result *")
    report: Any = plan.report
    if lib.nsb_spawn(plan.c, result) < 0:
        err = ffi.errno
        what = f"clone3 {_clone_desc(int(plan.c.clone_flags), plan.c.cgroup_fd)}"
        raise spawn_error(err, "clone3", what)
    pidfd = PidFd(result.pidfd, result.pid)
    pipes.close("err_w")  # so that the exec (close-on-exec) shows as EOF
    failure: SpawnError | None = None
    if user:
        pipes.close("sync_r")
        try:
            _write_maps(result.pid, uid_map, gid_map, deny_setgroups=os.geteuid() != 0)
        except NamespaceRuleError as exc:
            failure = SpawnError(getattr(exc, "errno", None) or errno.EPERM, "write id maps",
                                 None, str(exc))
            pidfd.send_signal(signal.SIGKILL)
            pipes.close("sync_w")
    # Tell the child to go on (user namespaces), wait for its exec or its report,
    # and free its stack: in C, so that this thread stays off the shared stack.
    sync_w, pipes.sync_w = pipes.sync_w, -1  # nsb_spawn_release closes it
    rc = lib.nsb_spawn_release(sync_w, pipes.err_r, result, report)
    if rc == 1 and failure is None:
        step, what = plan.describe(report.step, report.index)
        failure = spawn_error(report.err, step, what, detail=plan.detail(report))
    if failure is not None:
        pidfd.wait()  # the child has exited (status 127) or is about to
        pidfd.close()
        raise failure
    return pidfd


def _clone_desc(flags: int, cgroup_fd: int) -> str:
    text = flag_names(CloneFlags, flags)
    if cgroup_fd >= 0:
        text += f" into cgroup fd {cgroup_fd}"
    return text
