"""The OCI runtime lifecycle (create, start, state, kill, delete), as ``runc create``
and the rest, on :func:`nsbind.spawn`'s start gate.

``create`` validates the id, makes the state directory (:mod:`nsbind.oci.state`), the
cgroup and ``exec.fifo``, and spawns the bundle's process with ``start_gate``: it does
every step (namespaces, mounts, pivot_root, ids, capabilities) and parks in the open of
the FIFO for writing; ``create`` returns then, status ``created``.  ``start`` opens the
FIFO for reading, which lets the process go on to seccomp and its exec.  The process
outlives the caller: nothing here waits for it or kills it when Python objects go away.
It is the caller's child, though: a real runtime's caller (conmon, containerd's shim)
is a child subreaper that reaps it; a Python caller reaps it itself (``os.waitpid``).

Every refused operation changes nothing and raises :class:`LifecycleError`.  The
process's stdio is the caller's (no terminal, no console socket yet).
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
from nsbind.oci.convert import SpawnArgs, to_spawn
from nsbind.oci.run import build_root, missing_parents
from nsbind.oci.spec import Spec, load_spec
from nsbind.oci.state import (
    LifecycleError,
    container_dir,
    locked,
    process_alive,
    read_state,
    start_time,
    write_state,
)
from nsbind.process import spawn

__all__ = ["create", "delete", "kill", "start", "state"]

_START_TIMEOUT = 10.0  # seconds start waits for the parked process's byte


def _remove_parents(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # gone, or in use by another container
            os.rmdir(path)


def _spawn_parked(args: SpawnArgs, cg: Cgroup, fifo: str) -> int:
    """Spawn the process with the gate; its pid once it is parked."""
    gate = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    try:
        with build_root(args, cg.path) as root:  # the child has made its mounts: closable
            kwargs: dict[str, Any] = dict(args.spawn_kwargs)
            proc = spawn(list(args.args), rootfs=root, cgroup=cg, init=False,
                         start_gate=gate, **kwargs)
    finally:
        os.close(gate)
    pid = proc.pid
    proc.pidfd.close()  # let it go: not waited for, not killed
    return pid


def create(bundle: str | os.PathLike[str], container_id: str, *,
           root: str | os.PathLike[str], cgroup_parent: str,
           pid_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Create the container: its process parked before its exec; its state."""
    directory = container_dir(root, container_id)
    bundle = os.path.abspath(os.fspath(bundle))
    spec = load_spec(bundle)
    args = to_spawn(spec, cgroup_parent=cgroup_parent)
    os.makedirs(os.fspath(root), mode=0o700, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        raise LifecycleError(f"container {container_id} already exists",
                             errno.EEXIST) from None
    try:
        with locked(directory, container_id):
            return _create_in(directory, container_id, bundle, spec, args, pid_file)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _create_in(directory: str, container_id: str, bundle: str, spec: Spec, args: SpawnArgs,
               pid_file: str | os.PathLike[str] | None) -> dict[str, Any]:
    fifo = os.path.join(directory, "exec.fifo")
    os.mkfifo(fifo, 0o600)
    made = missing_parents(args.cgroup_parent)
    cg = Cgroup.create(args.cgroup_name or container_id, parent=args.cgroup_parent or None,
                       **args.cgroup.create)
    try:
        args.cgroup.apply(cg)
        pid = _spawn_parked(args, cg, fifo)
        started = start_time(pid)
        if started is None:
            raise LifecycleError(f"container {container_id}: its process exited at once")
        data = {"ociVersion": spec.oci_version, "id": container_id, "status": "created",
                "pid": pid, "bundle": bundle, "annotations": dict(spec.annotations or {}),
                "nsbind": {"cgroup": cg.path, "cgroupParents": made, "startTime": started,
                           "created": datetime.datetime.now(datetime.timezone.utc)
                           .isoformat()}}
        write_state(directory, data)
        if pid_file is not None:
            tmp = f"{os.fspath(pid_file)}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(str(pid))
            os.replace(tmp, pid_file)
    except BaseException:
        cg.remove()  # kills the parked process with it
        _remove_parents(made)
        raise
    cg.close()
    return _report(data)


def _report(data: dict[str, Any]) -> dict[str, Any]:
    """The OCI state: the stored one, ``stopped`` once the process is gone."""
    out = {k: v for k, v in data.items() if k != "nsbind"}
    if not process_alive(int(data["pid"]), int(data["nsbind"]["startTime"])):
        out["status"] = "stopped"
    return out


def state(root: str | os.PathLike[str], container_id: str) -> dict[str, Any]:
    """The container's OCI state (ociVersion, id, status, pid, bundle, annotations)."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        return _report(read_state(directory, container_id))


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
        status = _report(data)["status"]
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
            _signal(data, signal.SIGKILL)
            while process_alive(pid, started):
                time.sleep(0.001)
        with contextlib.suppress(FileNotFoundError):
            Cgroup.open(data["nsbind"]["cgroup"]).remove()
        _remove_parents(list(data["nsbind"]["cgroupParents"]))
        shutil.rmtree(directory)
