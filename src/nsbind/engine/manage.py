"""The commands around a container once it runs: stop, kill, rm, wait, inspect, exec,
ps, and the cgroup behind stats and top.  Each acts on the record and, for the
process, through the container layer (:mod:`nsbind.oci`)."""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from nsbind import signals
from nsbind.ctxlite import suppress
from nsbind.engine.errors import EngineError
from nsbind.engine.launch import EngineConfig, as_engine_error, devnull_onto, remove_container
from nsbind.engine.records import status_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["container_pids", "describe", "exec_command", "kill", "ps_rows", "rm", "stop",
           "wait"]


def _signal(config: EngineConfig, record: dict[str, Any], sig: int) -> bool:
    from nsbind.oci import LifecycleError
    from nsbind.oci import kill as oci_kill

    try:
        oci_kill(config.records().oci_root, record["id"], sig)
        return True
    except (LifecycleError, ProcessLookupError):
        return False


def kill(config: EngineConfig, ref: str, sig: int = signals.SIGKILL) -> str:
    """Send ``sig`` to a running container's process; its id."""
    records = config.records()
    record = records.load(records.find(ref))
    if status_of(record) not in ("running", "paused") or not _signal(config, record, sig):
        raise EngineError(f"cannot kill container {ref}: container {record['id'][:12]} "
                          "is not running", err=errno.ESRCH)
    return str(record["id"])


def _wait_exit(config: EngineConfig, container_id: str, timeout: float | None) -> bool:
    """Wait until the container has exited (and its monitor recorded it, when it has a
    live one); whether it did within ``timeout`` seconds (None: forever)."""
    records = config.records()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            record = records.load(container_id)
        except EngineError:  # removed meanwhile (a foreground --rm run, its monitor)
            return True
        if status_of(record) == "exited" and (record.get("exitCode") is not None
                                              or not _monitor_alive(record)):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _monitor_alive(record: dict[str, Any]) -> bool:
    from nsbind.oci.state import process_alive

    pid, started = int(record.get("monitorPid") or 0), record.get("monitorStartTime")
    return bool(pid) and isinstance(started, int) and process_alive(pid, started)


def stop(config: EngineConfig, ref: str, timeout: int | None = None) -> str:
    """The stop signal, then SIGKILL after ``timeout`` seconds (the container's stop
    timeout by default, 10 unless set); its id.  A stopped container is left alone."""
    records = config.records()
    record = records.load(records.find(ref))
    cid = str(record["id"])
    status = status_of(record)
    if status in ("running", "paused"):
        wait_for = int(record.get("stopTimeout", 10)) if timeout is None else timeout
        if status == "paused":
            _signal(config, record, signals.SIGKILL)
        else:
            _signal(config, record, int(record.get("stopSignal") or signals.SIGTERM))
        if not _wait_exit(config, cid, max(wait_for, 0)):
            _signal(config, record, signals.SIGKILL)
            _wait_exit(config, cid, 30)
    return cid


def rm(config: EngineConfig, ref: str, force: bool = False) -> str:
    """Remove a container that is not running (with ``force`` any: killed first); its
    name."""
    records = config.records()
    record = records.load(records.find(ref))
    cid = str(record["id"])
    status = status_of(record)
    if status in ("running", "paused"):
        if not force:
            raise EngineError(f"cannot remove container {ref}: container is "
                              f"{status}: stop the container before removing "
                              "or force remove", err=errno.EBUSY)
        _signal(config, record, signals.SIGKILL)
        _wait_exit(config, cid, 30)
    remove_container(config, cid)
    return str(record["name"])


def wait(config: EngineConfig, ref: str) -> int:
    """Block until the container exits; its exit code (-1 when no monitor was left to
    record it)."""
    records = config.records()
    cid = records.find(ref)
    _wait_exit(config, cid, None)
    code = records.load(cid).get("exitCode")
    return -1 if code is None else int(code)


def describe(config: EngineConfig, ref: str) -> dict[str, Any]:
    """``inspect``: the record with its live status and the OCI spec it runs."""
    import json

    records = config.records()
    record = records.load(records.find(ref))
    out: dict[str, Any] = {"Id": record["id"], "Name": "/" + str(record["name"]),
                           "Created": record["created"], "Image": record["image"],
                           "ImageDigest": record.get("imageDigest")}
    status = status_of(record)
    out["State"] = {"Status": status, "Running": status == "running",
                    "Paused": status == "paused", "Pid": record["pid"] if status in (
                        "running", "paused") else 0,
                    "ExitCode": record.get("exitCode"),
                    "StartedAt": record.get("startedAt"),
                    "FinishedAt": record.get("finishedAt")}
    out["Config"] = {"Hostname": record.get("hostname"), "Cmd": record.get("command"),
                     "StopSignal": signals.describe(int(record["stopSignal"])),
                     "StopTimeout": record.get("stopTimeout"), "Tty": record.get("tty")}
    out["HostConfig"] = {"AutoRemove": record.get("autoRemove"),
                         "NetworkMode": record.get("net"), "CgroupPath": record.get("cgroup")}
    out["LogPath"] = record.get("log")
    out["Storage"] = record.get("storage")
    with suppress(OSError, ValueError), \
            open(os.path.join(str(record["storage"]), "config.json"), "rb") as f:
        out["Spec"] = json.loads(f.read(16 << 20))
    return out


def ps_rows(config: EngineConfig, all_: bool = False) -> list[dict[str, Any]]:
    """``ps``: one row per container (only running ones without ``all_``), oldest first."""
    rows = []
    for record in config.records().records():
        status = status_of(record)
        if not all_ and status not in ("running", "paused"):
            continue
        rows.append({"ID": record["id"][:12], "Id": record["id"], "Names": record["name"],
                     "Image": record["image"], "Command": " ".join(record.get("command")
                                                                    or []),
                     "CreatedAt": record["created"], "State": status,
                     "Status": _status_text(record, status), "Pid": record.get("pid"),
                     "ExitCode": record.get("exitCode")})
    return rows


def _status_text(record: dict[str, Any], status: str) -> str:
    if status == "exited":
        code = record.get("exitCode")
        return f"Exited ({'unknown' if code is None else code})"
    if status == "running":
        return "Up"
    return status.capitalize()


def container_pids(config: EngineConfig, ref: str) -> tuple[str, list[int]]:
    """The cgroup path and the host pids of a running container's processes."""
    from nsbind.oci.ops import container_pids as oci_pids

    records = config.records()
    record = records.load(records.find(ref))
    if status_of(record) not in ("running", "paused"):
        raise EngineError(f"container {ref} is not running", err=errno.ESRCH)
    return str(record["cgroup"]), oci_pids(records.oci_root, record["id"])


def exec_command(config: EngineConfig, ref: str, command: Sequence[str], *,
                 interactive: bool = False, tty: bool = False, env: Sequence[str] = (),
                 user: str | None = None, workdir: str | None = None,
                 detach: bool = False) -> int:
    """Run ``command`` in a running container: its namespaces, cgroup, root, seccomp
    filter, environment (``env`` added) and user (``user`` a name or id resolved in the
    container's own /etc/passwd); its exit status (126/127 when it cannot be run)."""
    from nsbind.oci.execproc import ExecOptions, exec_in

    records = config.records()
    record = records.load(records.find(ref))
    if status_of(record) != "running":
        raise EngineError(f"container {ref} is not running", err=errno.EINVAL)
    if not command:
        raise EngineError("exec: a command is required")
    if workdir is not None and not workdir.startswith("/"):
        raise EngineError(f"exec -w {workdir!r}: the working directory must be absolute")
    home: int | None = None  # this process's own cgroup.procs, to go back once it spawned
    spawned = False

    def leave(_pid: int) -> None:
        nonlocal spawned
        spawned = True
        if home is not None:
            _leave_cgroup(home)

    try:
        if config.rootless:  # this process moves into the container's namespaces for good
            if record.get("cgroup") is not None:  # first: the cgroup namespace hides it
                home = _enter_cgroup(str(record["cgroup"]))
            _join_user_namespace(int(record["pid"]))
        uid_gid: str | None = None
        gids: tuple[int, ...] = ()
        if user is not None:
            from nsbind.users import resolve_user

            try:
                found = resolve_user(f"/proc/{int(record['pid'])}/root", user)
            except (LookupError, ValueError) as exc:
                raise EngineError(f"exec -u {user}: {exc}") from None
            uid_gid, gids = f"{found.uid}:{found.gid}", found.groups
        if not interactive:
            devnull_onto(0)
        opts = ExecOptions(command=tuple(command), tty=tty, env=tuple(env), user=uid_gid,
                           additional_gids=tuple(gids), cwd=workdir, detach=detach,
                           join_cgroup=not config.rootless, null_stdio=detach,
                           on_spawned=None if home is None else leave)
        try:
            return exec_in(records.oci_root, record["id"], opts)
        except OSError as exc:
            raise as_engine_error(exc, f"exec in {ref}") from None
    finally:
        if home is not None:
            if not spawned:  # the exec failed before its process ran (one move: each
                _leave_cgroup(home)  # write to cgroup.procs takes a kernel-wide lock)
            os.close(home)


def _enter_cgroup(path: str) -> int | None:
    """Move this (rootless, single-threaded) process into the container's cgroup, where
    the process it execs then starts; an fd of its own cgroup's cgroup.procs, opened
    first, to go back by.  None: this process stays where it is, as runc leaves a
    rootless exec, when it cannot come back (its cgroup is not the user's: a session
    systemd did not delegate) or the kernel refuses the move (another login session,
    whose subtree meets the container's only at a cgroup of root's: EACCES; a container
    cgroup that is no leaf: EBUSY; one that is going: ENOENT)."""
    from nsbind.cgroups import Cgroup, cgroup_layout

    layout = cgroup_layout()
    v2 = layout.unified
    if v2 is None or v2.own is None or "/.." in v2.own:  # (outside this cgroupns's view)
        return None
    try:
        home = os.open(os.path.join(v2.path_of(v2.own), "cgroup.procs"),
                       os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        cgroup = Cgroup.open(path, layout=layout)
        try:
            cgroup.attach(os.getpid())
        finally:
            cgroup.close()
    except OSError:
        os.close(home)
        return None
    return home


def _leave_cgroup(home: int) -> None:
    """Back to this process's own cgroup, now that its child started in the container's:
    the container's limits are not charged for it.  The kernel checks the move in the
    cgroup namespace, and with the credentials, of ``home``'s opener (since the fix for
    CVE-2021-4197: 5.16, and the stable kernels it went back to); a kernel without it
    refuses the move under nsdelegate, and this process then stays."""
    with suppress(OSError):
        os.write(home, b"0")


def _join_user_namespace(pid: int) -> None:
    """Enter ``pid``'s user namespace (a rootless container's, which this user owns) with
    the whole (single-threaded) process, and its pid (for children), net, uts, ipc and
    cgroup namespaces: a spawn joins those for the clone and comes back, which an
    unprivileged process could not do to the host's."""
    import nsbind

    for kind in ("user", "pid", "net", "uts", "ipc", "cgroup"):
        path = f"/proc/{pid}/ns/{kind}"
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            nsbind.setns(fd)
        except OSError as exc:
            raise EngineError(f"exec: the container's {kind} namespace: {exc}") from None
        finally:
            os.close(fd)
