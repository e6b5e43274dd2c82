"""The monitor of a detached container, as conmon is for podman: a process of its own
(a new session, reparented away from ``nsbind run``) that creates the container — so
it is the container's parent and gets its exit status — writes its stdout and stderr
to a log in Docker's json-file format, records the exit code and time, and removes the
container afterwards when ``--rm`` asked for it.

``nsbind run -d`` waits only until the container has started (or failed to), which
the monitor reports over a pipe.  A monitor that dies leaves the container running
and its record in place; the status is then read from the kernel.
"""

from __future__ import annotations

import json
import os
import selectors
from typing import Any

from nsbind import signals
from nsbind.ctxlite import suppress
from nsbind.engine.errors import EngineError
from nsbind.engine.launch import (
    Launch,
    as_engine_error,
    connect,
    devnull_onto,
    disconnect,
    mount_root,
    remove_container,
    write_bundle,
)
from nsbind.engine.records import now
from nsbind.gcpause import resume

__all__ = ["start_monitor"]

_DRAIN_SECONDS = 2.0  #: how long output is still read once the process has exited


def start_monitor(launch: Launch) -> int:
    """Fork the monitor (detached from this process), wait until it reports the container
    started; the container's pid.  EngineError with the monitor's message otherwise."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the intermediate child: a new session, then the monitor, then gone
        code = 1
        try:
            os.close(rfd)
            os.setsid()
            if os.fork() == 0:
                _monitor(launch, wfd)  # never returns
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    os.waitpid(pid, 0)
    with os.fdopen(rfd, "rb") as reader:
        data = reader.read(1 << 20)
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise EngineError(f"container {launch.name}: its monitor exited before it "
                          "started the container") from None
    if "error" in answer:
        raise EngineError(str(answer["error"]), int(answer.get("status", 125)))
    return int(answer["pid"])


def _monitor(launch: Launch, status_fd: int) -> None:
    """The monitor's life (never returns)."""
    code = 1
    try:
        for sig in (signals.SIGINT, signals.SIGHUP, signals.SIGQUIT, signals.SIGPIPE):
            signals.set_handler(sig, signals.SIG_IGN)
        signals.set_handler(signals.SIGTERM, signals.SIG_DFL)
        code = _serve(launch, status_fd)
    except BaseException as exc:  # told to nsbind run when it is still listening
        err = as_engine_error(exc, f"container {launch.name}")
        with suppress(OSError):
            os.write(status_fd, json.dumps({"error": str(err), "status": err.status}).encode())
    finally:
        os._exit(code)


def _serve(launch: Launch, status_fd: int) -> int:
    from nsbind.engine.jsonlog import LogWriter
    from nsbind.oci.createop import CGROUP_PARENT, create
    from nsbind.oci.lifecycle import start
    from nsbind.oci.runcmd import own_console, receive_master
    from nsbind.oci.state import start_time

    records, cid, opts = launch.records, launch.container_id, launch.opts
    devnull_onto(0, 1, 2)
    records.update(cid, monitorPid=os.getpid(), monitorStartTime=start_time(os.getpid()))
    rootfs = mount_root(launch)
    write_bundle(launch, rootfs)
    readers: dict[int, str] = {}
    stdin_keep = None
    try:
        if opts.interactive:  # kept open: the container's stdin does not see EOF
            stdin_keep, stdin_r = os.pipe2(0)
            os.dup2(stdin_r, 0)
            os.close(stdin_r)
        if opts.tty:
            with own_console() as (sock, listener):
                pid = int(create(launch.storage, cid, root=records.oci_root,
                                 cgroup_parent=CGROUP_PARENT, console_socket=sock,
                                 no_cgroup=launch.config.cgroup_parent is None)["pid"])
                readers[receive_master(listener)] = "stdout"
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (out_w, err_w):
                os.close(fd)
            try:
                pid = int(create(launch.storage, cid, root=records.oci_root,
                                 cgroup_parent=CGROUP_PARENT,
                                 no_cgroup=launch.config.cgroup_parent is None)["pid"])
            finally:
                devnull_onto(1, 2)  # the monitor holds no write end: EOF when they close
            readers = {out_r: "stdout", err_r: "stderr"}
        connect(launch, pid)
        start(records.oci_root, cid)
    except BaseException:
        for fd in readers:
            os.close(fd)
        raise
    records.update(cid, pid=pid, startTime=start_time(pid), startedAt=now())
    os.write(status_fd, json.dumps({"pid": pid}).encode())
    os.close(status_fd)
    resume(collect=True)  # started: the collector runs for the container's life
    with LogWriter(launch.log_path) as log:
        code = _pump(pid, readers, log)
    if stdin_keep is not None:
        os.close(stdin_keep)
    _finish(launch, code)
    return 0


def _pump(pid: int, readers: dict[int, str], log: Any) -> int:
    """Copy the container's output into ``log`` until it has exited and its output is
    drained (bounded: a process of its own that kept a pipe open does not hold the
    monitor); its exit status (128 + N for signal N)."""
    import time

    pidfd = os.pidfd_open(pid)
    sel = selectors.DefaultSelector()
    for fd in readers:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    sel.register(pidfd, selectors.EVENT_READ)
    deadline: float | None = None
    try:
        while readers and (deadline is None or time.monotonic() < deadline):
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in sel.select(timeout):
                fd = int(key.fd)
                if fd == pidfd:
                    sel.unregister(pidfd)
                    deadline = time.monotonic() + _DRAIN_SECONDS
                    continue
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the terminal's other side is gone
                    data = b""
                if data:
                    log.write(readers[fd], data)
                else:
                    sel.unregister(fd)
                    os.close(fd)
                    del readers[fd]
        log.flush()
    finally:
        for fd in readers:
            os.close(fd)
        sel.close()
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _finish(launch: Launch, code: int) -> None:
    """Record the exit; remove the container's process-side remains (its cgroup and
    container-layer state), and everything with ``--rm``."""
    from nsbind.oci import LifecycleError, delete

    records, cid = launch.records, launch.container_id
    with suppress(EngineError):
        disconnect(launch.config, records.update(cid, exitCode=code, finishedAt=now()))
    with suppress(LifecycleError, FileNotFoundError):
        delete(records.oci_root, cid, force=True)
    if launch.opts.rm:
        remove_container(launch.config, cid)
