"""``create`` of the OCI lifecycle (see :mod:`nsbind.oci.lifecycle`): the state
directory, the cgroup, ``exec.fifo`` and the container's process, parked on the FIFO
before its exec.  Apart from the other operations, which must not import the spec
parser and the spawn machinery."""

from __future__ import annotations

import errno
import os

from nsbind.attachwarm import Warmup, warm_attach
from nsbind.cgrouplayout import held_layout
from nsbind.cgroups import Cgroup
from nsbind.ctxlite import suppress
from nsbind.oci.convert import SpawnArgs, to_spawn
from nsbind.oci.namedcg import join, make
from nsbind.oci.run import build_root, missing_parents
from nsbind.oci.spec import Spec, load_spec
from nsbind.oci.state import (
    LifecycleError,
    container_dir,
    locked,
    remove_parents,
    report,
    start_time,
    write_kept,
    write_pid_file,
    write_state,
)
from nsbind.process import spawn
from nsbind.seccomp import Program
from nsbind.seccompcache import ProgramCache
from nsbind.sharedchild import copies
from nsbind.timestamps import rfc3339

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CGROUP_PARENT", "MAX_PRESERVE_FDS", "create"]

#: where nsbind-oci puts a container whose config has no (or a relative) cgroupsPath:
#: the hierarchies' root, as runc does (``/<id>``)
CGROUP_PARENT = "/"
#: compiled seccomp profiles, in the state root (a name no container id can have)
SECCOMP_CACHE = ".seccomp-cache"

MAX_PRESERVE_FDS = 1024  #: the most fds ``preserve_fds`` may pass on


def _spawn_parked(args: SpawnArgs, cg: Cgroup | None, fifo: str, preserve_fds: int,
                  console_socket: str | None) -> int:
    """Spawn the process with the gate; its pid once it is parked (its terminal, if it
    has one, already sent to ``console_socket``)."""
    gate = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    try:
        # closable once the child has made its mounts
        # the parked child a copy of this process where its oom_score_adj is set or hooks
        # run (per-memory state: nsbind.sharedchild)
        with build_root(args, cg.path if cg is not None else "") as root, \
                copies(args.oom_score_adj is not None or args.hooks is not None):
            kwargs: dict[str, Any] = dict(args.spawn_kwargs)
            proc = spawn(list(args.args), rootfs=root, cgroup=cg, init=args.init,
                         start_gate=gate, pass_fds=range(3, 3 + preserve_fds), **kwargs)
    finally:
        os.close(gate)
    pid = proc.pid
    try:
        console = proc.console
        if console is not None:
            from nsbind.oci.console import send_console

            with console:
                send_console(console_socket or "", console.fileno())
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.pidfd.close()  # let it go: not waited for, not killed
    return pid


def _prepare(args: SpawnArgs, pid: int, state: dict[str, Any], bundle: str) -> None:
    """What the parked process gets before create returns: its sysctls (written in its
    own namespaces through a fresh procfs: nsbind.sysctl), its OOM score adjustment,
    and the prestart, createRuntime and createContainer hooks (a failing one fails the
    create, as the spec says)."""
    if args.sysctl:
        from nsbind.sysctl import apply

        apply(pid, args.sysctl, namespaces=args.own_namespaces)
    if args.oom_score_adj is not None:
        from nsbind.sysctl import set_oom_score_adj

        set_oom_score_adj(pid, args.oom_score_adj)
    if args.hooks is None:
        return
    from nsbind.oci.hooks import phase_hooks, run_hooks

    for phase in ("prestart", "createRuntime", "createContainer"):
        run_hooks(phase_hooks(args.hooks, phase), phase, state, cwd=bundle,
                  join_pid=pid if phase == "createContainer" else None)


def _check_create(spec: Spec, console_socket: str | None, preserve_fds: int) -> None:
    terminal = bool(spec.process is not None and spec.process.terminal)
    if terminal and not console_socket:
        raise LifecycleError("process.terminal is true: a --console-socket is needed to "
                             "hand the terminal to", errno.EINVAL)
    if not terminal and console_socket:
        raise LifecycleError("--console-socket given but process.terminal is false",
                             errno.EINVAL)
    if not 0 <= preserve_fds <= MAX_PRESERVE_FDS:
        raise LifecycleError(f"preserve-fds {preserve_fds}: 0..{MAX_PRESERVE_FDS} "
                             "expected", errno.EINVAL)
    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
        except OSError:
            raise LifecycleError(f"preserve-fds {preserve_fds}: fd {fd} is not open",
                                 errno.EBADF) from None


def create(bundle: str | os.PathLike[str], container_id: str, *,
           root: str | os.PathLike[str], cgroup_parent: str,
           pid_file: str | os.PathLike[str] | None = None,
           console_socket: str | None = None, preserve_fds: int = 0,
           spec: Spec | None = None, no_cgroup: bool = False,
           warmed: bool = False, warmup: Warmup | None = None) -> dict[str, Any]:
    """Create the container: its process parked before its exec; its state.

    With ``process.terminal`` the process gets a new pty of the container's devpts as
    its stdio and /dev/console, and its master goes to ``console_socket`` (required
    then, refused otherwise); else it inherits the caller's stdio.  Fds 3 to
    3+``preserve_fds``-1 are passed on (they must be open).  ``spec``: the bundle's
    config.json when the caller has already loaded it.  ``no_cgroup``: the process
    stays in the caller's cgroup (a rootless container without a delegated cgroup, as
    runc runs one): refused when the spec sets resources or mounts a cgroup.  ``warmed``:
    the caller started the cgroup attach warm-up already
    (:func:`nsbind.attachwarm.warm_attach`), and ``warmup`` is what it returned (create
    stops it once the process has joined its cgroups); else create starts it first."""
    if not (no_cgroup or warmed):
        warmup = warm_attach()
    try:
        with held_layout():  # read once: the steps below ask for it again and again
            return _create(bundle, container_id, root, cgroup_parent, pid_file,
                           console_socket, preserve_fds, spec, no_cgroup, warmup)
    finally:
        if warmup is not None:
            warmup.stop()


def _create(bundle: str | os.PathLike[str], container_id: str, root: str | os.PathLike[str],
            cgroup_parent: str, pid_file: str | os.PathLike[str] | None,
            console_socket: str | None, preserve_fds: int, spec: Spec | None,
            no_cgroup: bool, warmup: Warmup | None) -> dict[str, Any]:
    directory = container_dir(root, container_id)
    bundle = os.path.abspath(os.fspath(bundle))
    if spec is None:
        spec = load_spec(bundle)
    _check_create(spec, console_socket, preserve_fds)
    cache = ProgramCache(os.path.join(root, SECCOMP_CACHE), defer=True)
    args = to_spawn(spec, cgroup_parent=cgroup_parent, seccomp_cache=cache)
    if no_cgroup:
        _check_no_cgroup(spec)
    os.makedirs(os.fspath(root), mode=0o700, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        raise LifecycleError(f"container {container_id} already exists",
                             errno.EEXIST) from None
    try:
        with locked(directory, container_id, create=True):
            state = _create_in(directory, container_id, bundle, spec, args, pid_file,
                               (preserve_fds, console_socket), no_cgroup, warmup)
    except BaseException:
        import shutil  # here: it imports bz2 and lzma

        shutil.rmtree(directory, ignore_errors=True)
        raise
    cache.save()  # the program of a container that was created
    return state


def _create_in(directory: str, container_id: str, bundle: str, spec: Spec, args: SpawnArgs,
               pid_file: str | os.PathLike[str] | None,
               stdio: tuple[int, str | None], no_cgroup: bool,
               warmup: Warmup | None) -> dict[str, Any]:
    fifo = os.path.join(directory, "exec.fifo")
    os.mkfifo(fifo, 0o622)  # as runc: a non-root process writes it (the dir is 0700)
    os.chmod(fifo, 0o622)  # whatever the umask
    # read by us only: the bytes the spec was parsed from, else the spec on one line
    write_kept(directory, "config.json", spec.source or spec.to_bytes(indent=False))
    program = args.spawn_kwargs.get("seccomp")
    if isinstance(program, Program):  # exec loads the same filter, not compiled again
        write_kept(directory, "seccomp.bpf", program.bpf)
    made = [] if no_cgroup else missing_parents(args.cgroup_parent)
    cg = None if no_cgroup else Cgroup.create(args.cgroup_name or container_id,
                                              parent=args.cgroup_parent or None,
                                              **args.cgroup.create)
    pid = 0
    try:
        if cg is not None:
            args.cgroup.apply(cg)
            made += make(cg.path)  # named hierarchies: removed with the parents
        pid = _spawn_parked(args, cg, fifo, *stdio)
        if cg is not None:
            join(cg.path, pid)
        if warmup is not None:
            warmup.stop()  # joined: hooks and the rest need no warm lock
        started = start_time(pid)
        if started is None:
            raise LifecycleError(f"container {container_id}: its process exited at once")
        data = {"ociVersion": spec.oci_version, "id": container_id, "status": "created",
                "pid": pid, "bundle": bundle, "rootfs": args.root,
                "created": rfc3339(),
                "annotations": dict(spec.annotations or {}),
                "nsbind": {"cgroup": cg.path if cg is not None else None,
                           "cgroupDirs": [] if cg is None else cg.directories(),
                           "cgroupParents": made, "startTime": started,
                           "hooks": args.has_hooks,
                           "seccompFlags": program.flags if isinstance(program, Program)
                           else None}}
        _prepare(args, pid, dict(report(data), status="creating"), bundle)
        write_state(directory, data)
        if pid_file is not None:
            write_pid_file(pid_file, pid)
    except BaseException:
        if cg is not None:
            cg.remove()  # kills the parked process with it
        elif pid:
            with suppress(ProcessLookupError):
                os.kill(pid, 9)  # SIGKILL
        if pid:
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)  # our child until we exit: reaped, not left a zombie
        remove_parents(made)
        raise
    if cg is not None:
        cg.close()
    return report(data)


def _check_no_cgroup(spec: Spec) -> None:
    linux = spec.linux
    if linux is not None and linux.resources is not None:
        raise LifecycleError("linux.resources: limits need a cgroup, and this container "
                             "has none (no delegated cgroup)", errno.EPERM)
    for mount in spec.mounts or ():
        if mount.type == "cgroup" or mount.type == "cgroup2":
            raise LifecycleError(f"mounts[{mount.destination}]: a cgroup mount needs a "
                                 "cgroup, and this container has none", errno.EPERM)
