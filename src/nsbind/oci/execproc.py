"""``nsbind-oci exec``: a new process in a created or running container, as ``runc
exec``.

The process is described by a ``process.json`` (``--process``, what conmon and
containerd's shim send) or by the container's own ``process`` with the command, env,
cwd, user, terminal and capabilities the flags give.  It joins every namespace of the
container's process (its user namespace first), the container's cgroup, and gets the
container's seccomp filter; it is validated as a ``process`` of config.json is.
Detached (``-d``), the runtime writes ``--pid-file`` and returns: the process is left
to the caller's subreaper; else it waits, passing signals on, and exits with the
process's status.  A paused container refuses exec unless ``--ignore-paused``.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

from nsbind.cgroups import Cgroup
from nsbind.frozen import fields_of, frozen, replace_fields
from nsbind.namespaces import Namespaces
from nsbind.oci.console import send_console
from nsbind.oci.convert import process_kwargs
from nsbind.oci.jsonfile import read_json_file
from nsbind.oci.namedcg import join
from nsbind.oci.schema import SpecError, build
from nsbind.oci.spec import Capabilities, Process, Spec, User, parse_spec
from nsbind.oci.state import (
    LifecycleError,
    container_dir,
    locked,
    read_kept,
    read_state,
    report,
    write_pid_file,
)
from nsbind.oci.validate import Host, check_process
from nsbind.oci.waiting import wait_foreground
from nsbind.process import Process as Child
from nsbind.process import spawn
from nsbind.spawnstdio import DEVNULL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ExecOptions", "exec_in"]

MAX_PROCESS_JSON = 4 << 20  #: the largest process.json read


@frozen
class ExecOptions:
    """The options of ``exec`` (see the module doc); ``command`` replaces the
    container's args when ``process`` (a process.json path) is None."""

    process: str | None = None
    command: tuple[str, ...] = ()
    detach: bool = False
    pid_file: str | None = None
    console_socket: str | None = None
    tty: bool = False
    cwd: str | None = None
    env: tuple[str, ...] = ()
    user: str | None = None
    additional_gids: tuple[int, ...] = ()
    caps: tuple[str, ...] = ()
    no_new_privs: bool = False
    preserve_fds: int = 0
    ignore_paused: bool = False
    #: False: the caller has put itself where the process belongs (a rootless engine
    #: that joined the container's cgroup namespace, in which the host's cgroup paths
    #: cannot be opened); the process starts in the caller's cgroup
    join_cgroup: bool = True
    #: stdin, stdout and stderr /dev/null, not the caller's (without a terminal): what
    #: ``docker exec -d`` gives the process; runc's ``exec -d`` hands the caller's on
    null_stdio: bool = False
    #: called with the process's pid once it runs, before the wait
    on_spawned: Callable[[int], None] | None = None


def _read_process(path: str) -> Process:
    return build(Process, read_json_file(path, MAX_PROCESS_JSON, "exec --process"),
                 "process")


def _merge_env(base: tuple[str, ...], extra: tuple[str, ...]) -> tuple[str, ...]:
    env = {e.partition("=")[0]: e for e in base}
    env.update({e.partition("=")[0]: e for e in extra})
    return tuple(env.values())


def _user(text: str, base: User, gids: tuple[int, ...]) -> User:
    uid, _, gid = text.partition(":")
    try:
        return replace_fields(base, uid=int(uid), gid=int(gid) if gid else base.gid,
                                   additional_gids=gids or base.additional_gids)
    except ValueError:
        raise SpecError(f"exec --user {text[:40]!r}: UID[:GID] expected") from None


def _with_caps(caps: Capabilities | None, names: tuple[str, ...]) -> Capabilities:
    extra = build(Capabilities, {"bounding": list(names)}, "exec --cap").bounding or ()
    caps = caps or Capabilities()
    return Capabilities(**{f.name: tuple(dict.fromkeys((*(getattr(caps, f.name) or ()),
                                                        *extra)))
                           for f in fields_of(Capabilities)})


def _process(spec: Spec, opts: ExecOptions) -> Process:
    if opts.process is not None:
        return _read_process(opts.process)
    base = spec.process
    if base is None:
        raise SpecError("exec: the container has no process to start from")
    if not opts.command:
        raise SpecError("exec: a command (or --process) is needed")
    proc = replace_fields(
        base, args=opts.command, env=_merge_env(base.env or (), opts.env),
        cwd=opts.cwd or base.cwd, terminal=opts.tty, console_size=None,
        no_new_privileges=base.no_new_privileges or opts.no_new_privs)
    if opts.user is not None or opts.additional_gids:
        proc = replace_fields(proc, user=_user(opts.user or str(base.user.uid),
                                                    base.user, opts.additional_gids))
    if opts.caps:
        proc = replace_fields(proc, capabilities=_with_caps(base.capabilities,
                                                                 opts.caps))
    return proc


def _spawn(directory: str, data: dict[str, Any], spec: Spec, proc: Process,
           opts: ExecOptions) -> Child:
    check_process(replace_fields(spec, process=proc), Host.probe())
    if proc.terminal and not opts.console_socket and opts.detach:
        raise LifecycleError("exec: a terminal for a detached process needs "
                             "--console-socket", errno.EINVAL)
    kwargs = process_kwargs(proc, str(data.get("rootfs") or "/"))
    if opts.null_stdio and not proc.terminal:
        kwargs.update(stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
    seccomp = None
    if data["nsbind"].get("seccompFlags") is not None:  # the filter create compiled
        from nsbind.seccomp import Program

        seccomp = Program(read_kept(directory, "seccomp.bpf"),
                          int(data["nsbind"]["seccompFlags"]))
    path = data["nsbind"]["cgroup"] if opts.join_cgroup else None
    cg = Cgroup.open(path) if path is not None else None  # None: created without one
    try:
        child = spawn(list(proc.args or ()), namespaces=Namespaces.join(int(data["pid"])),
                      cgroup=cg, seccomp=seccomp, pass_fds=range(3, 3 + opts.preserve_fds),
                      **kwargs)  # type: ignore[arg-type]
    finally:
        if cg is not None:
            cg.close()
    if path is not None:
        join(path, child.pid)
    return child


def exec_in(root: str | os.PathLike[str], container_id: str, opts: ExecOptions) -> int:
    """Run a process in the container (see the module doc); its exit status, or 0 when
    detached."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        status = report(data)["status"]
        if status == "stopped" or (status == "paused" and not opts.ignore_paused):
            raise LifecycleError(f"cannot exec in container {container_id}: it is "
                                 f"{status}", errno.EINVAL)
        spec = parse_spec(json.loads(read_kept(directory, "config.json")))
        child = _spawn(directory, data, spec, _process(spec, opts), opts)
    master = None
    try:
        if opts.on_spawned is not None:
            opts.on_spawned(child.pid)
        console = child.console
        if console is not None and opts.console_socket:
            with console:
                send_console(opts.console_socket, console.fileno())
        elif console is not None:
            master = console.detach()
        if opts.pid_file is not None:
            write_pid_file(opts.pid_file, child.pid)
    except BaseException:
        child.kill()
        child.wait()
        raise
    if opts.detach:
        child.pidfd.close()
        return 0
    child.pidfd.close()
    try:
        return wait_foreground(child.pid, master)
    finally:
        if master is not None:
            os.close(master)
