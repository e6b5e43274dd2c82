"""The OCI runtime lifecycle (create, start, state, kill, delete), as ``runc create``
and the rest, on :func:`nsbind.spawn`'s start gate.

``create`` validates the id, makes the state directory (:mod:`nsbind.oci.state`), the
cgroup and ``exec.fifo``, and spawns the bundle's process with ``start_gate``: it does
every step (namespaces, mounts, pivot_root, ids, capabilities, its terminal) and parks
in the open of the FIFO for writing; ``create`` returns then, status ``created``.
``start`` opens the FIFO for reading, which lets the process go on to seccomp and its
exec.  The process
outlives the caller: nothing here waits for it or kills it when Python objects go away.
It is the caller's child, though: a real runtime's caller (conmon, containerd's shim)
is a child subreaper that reaps it; a Python caller reaps it itself (``os.waitpid``).

Every refused operation changes nothing and raises :class:`LifecycleError`.  The
process's stdio is the caller's, or a terminal handed to the console socket.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import shutil
import signal
import time
from typing import Any

from nsbind.cgroups import Cgroup
from nsbind.oci.console import send_console
from nsbind.oci.convert import SpawnArgs, to_spawn
from nsbind.oci.run import build_root, missing_parents
from nsbind.oci.spec import Spec, load_spec
from nsbind.oci.state import (
    LifecycleError,
    container_dir,
    locked,
    process_alive,
    read_state,
    report,
    start_time,
    write_config,
    write_pid_file,
    write_state,
)
from nsbind.process import spawn

__all__ = ["create", "delete", "kill", "start", "state"]

_START_TIMEOUT = 10.0  # seconds start waits for the parked process's byte
MAX_PRESERVE_FDS = 1024  #: the most fds ``preserve_fds`` may pass on


def _remove_parents(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # gone, or in use by another container
            os.rmdir(path)


def _spawn_parked(args: SpawnArgs, cg: Cgroup, fifo: str, preserve_fds: int,
                  console_socket: str | None) -> int:
    """Spawn the process with the gate; its pid once it is parked (its terminal, if it
    has one, already sent to ``console_socket``)."""
    gate = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    try:
        with build_root(args, cg.path) as root:  # the child has made its mounts: closable
            kwargs: dict[str, Any] = dict(args.spawn_kwargs)
            proc = spawn(list(args.args), rootfs=root, cgroup=cg, init=False,
                         start_gate=gate, pass_fds=range(3, 3 + preserve_fds), **kwargs)
    finally:
        os.close(gate)
    pid = proc.pid
    try:
        console = getattr(proc, "console", None)
        if console is not None:
            with console:
                send_console(console_socket or "", console.fileno())
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.pidfd.close()  # let it go: not waited for, not killed
    return pid


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
           console_socket: str | None = None, preserve_fds: int = 0) -> dict[str, Any]:
    """Create the container: its process parked before its exec; its state.

    With ``process.terminal`` the process gets a new pty of the container's devpts as
    its stdio and /dev/console, and its master goes to ``console_socket`` (required
    then, refused otherwise); else it inherits the caller's stdio.  Fds 3 to
    3+``preserve_fds``-1 are passed on (they must be open)."""
    directory = container_dir(root, container_id)
    bundle = os.path.abspath(os.fspath(bundle))
    spec = load_spec(bundle)
    _check_create(spec, console_socket, preserve_fds)
    args = to_spawn(spec, cgroup_parent=cgroup_parent)
    os.makedirs(os.fspath(root), mode=0o700, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        raise LifecycleError(f"container {container_id} already exists",
                             errno.EEXIST) from None
    try:
        with locked(directory, container_id):
            return _create_in(directory, container_id, bundle, spec, args, pid_file,
                              (preserve_fds, console_socket))
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _create_in(directory: str, container_id: str, bundle: str, spec: Spec, args: SpawnArgs,
               pid_file: str | os.PathLike[str] | None,
               stdio: tuple[int, str | None]) -> dict[str, Any]:
    fifo = os.path.join(directory, "exec.fifo")
    os.mkfifo(fifo, 0o622)  # as runc: a non-root process writes it (the dir is 0700)
    os.chmod(fifo, 0o622)  # whatever the umask
    write_config(directory, spec.to_bytes())
    made = missing_parents(args.cgroup_parent)
    cg = Cgroup.create(args.cgroup_name or container_id, parent=args.cgroup_parent or None,
                       **args.cgroup.create)
    try:
        args.cgroup.apply(cg)
        pid = _spawn_parked(args, cg, fifo, *stdio)
        started = start_time(pid)
        if started is None:
            raise LifecycleError(f"container {container_id}: its process exited at once")
        data = {"ociVersion": spec.oci_version, "id": container_id, "status": "created",
                "pid": pid, "bundle": bundle, "rootfs": args.root,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "annotations": dict(spec.annotations or {}),
                "nsbind": {"cgroup": cg.path, "cgroupParents": made, "startTime": started}}
        write_state(directory, data)
        if pid_file is not None:
            write_pid_file(pid_file, pid)
    except BaseException:
        cg.remove()  # kills the parked process with it
        _remove_parents(made)
        raise
    cg.close()
    return report(data)


def state(root: str | os.PathLike[str], container_id: str) -> dict[str, Any]:
    """The container's OCI state (ociVersion, id, status, pid, bundle, annotations)."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        return report(read_state(directory, container_id))


def _read_gate(fifo: str, pid: int, started: int) -> bytes:
    """Open the FIFO for reading (the parked open for writing goes on) and read its byte."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                data = os.read(fd, 1)
                if data:
                    return data
            if not process_alive(pid, started):
                break
            time.sleep(0.001)
    finally:
        os.close(fd)
    return b""


def start(root: str | os.PathLike[str], container_id: str) -> None:
    """Let a created container's process go on to its exec; status ``running``."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        status = report(data)["status"]
        if status != "created":
            raise LifecycleError(f"cannot start container {container_id}: it is {status}, "
                                 "not created", errno.EINVAL)
        fifo = os.path.join(directory, "exec.fifo")
        got = _read_gate(fifo, int(data["pid"]), int(data["nsbind"]["startTime"]))
        if got != b"0":
            raise LifecycleError(f"cannot start container {container_id}: its process did "
                                 "not pass the start gate", errno.ESRCH)
        os.unlink(fifo)
        data["status"] = "running"
        write_state(directory, data)


def kill(root: str | os.PathLike[str], container_id: str,
         sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to a created or running container's process."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        if not _signal(data, sig):
            raise LifecycleError("container not running", errno.ESRCH)


def _signal(data: dict[str, Any], sig: int) -> bool:
    """Signal the container's process through a pidfd checked against its start time."""
    pid, started = int(data["pid"]), int(data["nsbind"]["startTime"])
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not process_alive(pid, started):  # checked after the pidfd: it holds that pid
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def delete(root: str | os.PathLike[str], container_id: str, force: bool = False) -> None:
    """Remove a stopped container (with ``force`` any: its process is killed first):
    its cgroup (and the parents create made, when empty) and its state directory."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        pid, started = int(data["pid"]), int(data["nsbind"]["startTime"])
        if process_alive(pid, started):
            if not force:
                raise LifecycleError(f"cannot delete container {container_id}: it is "
                                     f"{data['status']} (not stopped)", errno.EBUSY)
            if data["status"] == "paused":  # a v1-frozen process takes no SIGKILL
                with contextlib.suppress(FileNotFoundError), \
                        contextlib.closing(Cgroup.open(data["nsbind"]["cgroup"])) as cg:
                    cg.thaw()
            _signal(data, signal.SIGKILL)
            while process_alive(pid, started):
                time.sleep(0.001)
        with contextlib.suppress(FileNotFoundError):
            Cgroup.open(data["nsbind"]["cgroup"]).remove()
        _remove_parents(list(data["nsbind"]["cgroupParents"]))
        shutil.rmtree(directory)
