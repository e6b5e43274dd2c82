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

import errno
import os
import time

from nsbind.cgroupdirs import remove_empty
from nsbind.oci.state import (
    LifecycleError,
    container_cgroup,
    container_dir,
    locked,
    process_alive,
    read_state,
    remove_parents,
    remove_state_dir,
    report,
    write_state,
)

TYPE_CHECKING = False  # not typing's: state, start and kill must not import it
if TYPE_CHECKING:
    from typing import Any

__all__ = ["delete", "kill", "read_gate", "start", "state"]

_START_TIMEOUT = 10.0  # seconds start waits for the parked process's byte


def state(root: str | os.PathLike[str], container_id: str) -> dict[str, Any]:
    """The container's OCI state (ociVersion, id, status, pid, bundle, annotations)."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        return report(read_state(directory, container_id))


def read_gate(fifo: str, pid: int, started: int) -> bytes:
    """``start``'s wait: open the start gate's FIFO ``fifo`` for reading (the parked open
    for writing goes on) and read the byte of process ``pid`` (started at ``started``,
    clock ticks since boot); b"" when it cannot come.  Waits in poll(2) on the FIFO and
    a pidfd of the process, not in a sleep loop: the byte is read as soon as it is
    written; a process that ends, or closes the FIFO without writing (a hangup), ends
    the wait.  A FIFO that never had a writer reads as end-of-file but does not poll as
    hung up: until the parked open completes, poll waits.  The byte may come from a
    process that has exited since (a short command)."""
    import select  # here: state and kill never wait

    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = -1
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if pidfd >= 0:
                poller.register(pidfd, select.POLLIN)
            deadline = time.monotonic() + _START_TIMEOUT
            hangup = False
            while True:
                try:
                    data = os.read(fd, 1)
                    if data or hangup:
                        return data  # b"" after a hangup: the writer left without it
                except BlockingIOError:
                    pass
                if pidfd < 0 or not process_alive(pid, started):
                    try:
                        return os.read(fd, 1)  # what it wrote before it ended, if anything
                    except BlockingIOError:
                        return b""
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                events = dict(poller.poll(max(1, int(left * 1000))))
                hangup = bool(events.get(fd, 0) & select.POLLHUP)
        finally:
            if pidfd >= 0:
                os.close(pidfd)
    finally:
        os.close(fd)


def start(root: str | os.PathLike[str], container_id: str) -> None:
    """Let a created container's process go on to its exec; status ``running``."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        status = report(data)["status"]
        if status != "created":
            raise LifecycleError(f"cannot start container {container_id}: it is {status}, "
                                 "not created", errno.EINVAL)
        _hooks(directory, data, "startContainer")
        fifo = os.path.join(directory, "exec.fifo")
        got = read_gate(fifo, int(data["pid"]), int(data["nsbind"]["startTime"]))
        if got != b"0":
            raise LifecycleError(f"cannot start container {container_id}: its process did "
                                 "not pass the start gate", errno.ESRCH)
        os.unlink(fifo)
        data["status"] = "running"
        write_state(directory, data)
        _hooks(directory, data, "poststart")


def _hooks(directory: str, data: dict[str, Any], phase: str) -> None:
    """Run the container's ``phase`` hooks (read from its kept config.json; none are
    looked for when create saw none).  startContainer runs in the container's
    namespaces and a failure fails the start; poststart and poststop failures are
    logged as warnings (logger ``nsbind.oci``), as the spec says."""
    if not data["nsbind"].get("hooks"):
        return
    from nsbind.jsonlite import loads
    from nsbind.oci.hooks import HookError, phase_hooks, run_hooks
    from nsbind.oci.spec import parse_spec
    from nsbind.oci.state import read_kept

    hooks = parse_spec(loads(read_kept(directory, "config.json"))).hooks
    state = report(data)
    try:
        run_hooks(phase_hooks(hooks, phase), phase, state, cwd=data["bundle"],
                  join_pid=int(data["pid"]) if phase == "startContainer" else None)
    except HookError as exc:
        if phase == "startContainer":
            raise
        from nsbind.oci.runtimelog import logger

        logger("nsbind.oci").warning("%s", exc)


def kill(root: str | os.PathLike[str], container_id: str,
         sig: int = 15) -> None:
    """Send ``sig`` (default SIGTERM) to a created or running container's process."""
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
        from nsbind.signals import pidfd_send_signal  # state never signals

        pidfd_send_signal(pidfd, sig)
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
                import contextlib  # (contextlib on use: imports collections and functools)

                with contextlib.suppress(FileNotFoundError), \
                        contextlib.closing(container_cgroup(data)) as cg:
                    cg.thaw()
            _signal(data, 9)  # SIGKILL
            while process_alive(pid, started):
                time.sleep(0.001)
        dirs = data["nsbind"].get("cgroupDirs")
        if dirs is None or not remove_empty(dirs):  # members left: kill them, then remove
            try:  # noqa: SIM105 (no contextlib on a light command)
                container_cgroup(data).remove()
            except FileNotFoundError:
                pass
        remove_parents(list(data["nsbind"]["cgroupParents"]))
        data["status"] = "stopped"
        _hooks(directory, data, "poststop")
        remove_state_dir(directory)
