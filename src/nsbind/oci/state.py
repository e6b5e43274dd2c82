"""The state of a container made by :mod:`nsbind.oci.lifecycle`, kept on disk.

Each container has a directory ``<root>/<id>/`` (mode 0700) holding:

* ``lock``: made by ``create``, flock'd (exclusive) by every lifecycle operation on the
  container;
* ``exec.fifo`` (0622, until ``start``): the start gate its parked process waits on;
* ``config.json`` (the validated config) and ``seccomp.bpf`` (its compiled filter, if
  it has one): kept for exec, hooks and update;
* ``state.json``: the OCI state (``ociVersion``, ``id``, ``status``, ``pid``,
  ``bundle``, ``annotations``) plus, under ``"nsbind"``, what nsbind needs later:
  ``cgroup`` (the cgroup path), ``cgroupDirs`` (its directories with their device and
  inode: :mod:`nsbind.cgroupdirs`), ``cgroupParents`` (parent directories create made,
  removed again by delete when empty), ``created`` (RFC 3339 time) and ``startTime``
  (the process's start time from ``/proc/<pid>/stat``, in clock ticks).

The stored status is ``created`` or ``running``; the status reported is ``stopped``
once the process is gone.  The caller of ``state`` is usually another process than the
one that made the container, so liveness is judged from ``/proc/<pid>/stat``: the pid
is the container's only while its start time is the one recorded (pid reuse, as runc
checks it), and a zombie counts as gone.
"""

from __future__ import annotations

import errno
import fcntl
import os

from nsbind.errors import MessageError
from nsbind.jsonlite import dumps, loads

TYPE_CHECKING = False  # not typing's: state must not import it
if TYPE_CHECKING:
    from typing import Any

    from nsbind.cgroups import Cgroup

__all__ = ["LifecycleError", "check_id", "container_cgroup", "container_dir", "locked",
           "process_alive", "read_kept", "read_state", "remove_parents", "remove_state_dir",
           "report", "start_time", "write_kept", "write_pid_file", "write_state"]

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


class LifecycleError(MessageError, RuntimeError):
    """A lifecycle operation refused (it changed nothing): an unknown container ("does
    not exist"), a duplicate id ("already exists"), a kill of a container that is not
    running ("container not running"), an operation in the wrong state."""

    operation = "oci"


def check_id(container_id: str) -> str:
    """``container_id`` if it is a valid id, else LifecycleError."""
    if not (isinstance(container_id, str) and 0 < len(container_id) <= 128
            and container_id[0] not in "_.-" and _ID_CHARS.issuperset(container_id)):
        raise LifecycleError(f"invalid container id {container_id!r}: "
                             "[A-Za-z0-9][A-Za-z0-9_.-]{0,127} expected", errno.EINVAL)
    return container_id


def container_dir(root: str | os.PathLike[str], container_id: str) -> str:
    """The state directory of ``container_id`` under ``root``."""
    return os.path.join(os.fspath(root), check_id(container_id))


class _Held:
    """A held lock file: closing its fd releases the lock (``with``: at the block's end)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def locked(directory: str, container_id: str, *, create: bool = False) -> _Held:
    """Take the container's lock, held for a ``with`` block; LifecycleError "does not
    exist" without it.  Only ``create`` makes the lock file (``create=True``): an
    operation that opened it with ``O_CREAT`` while a delete removed the directory would
    put a file back in it.  (Not contextlib: a light command does not import it.)"""
    try:
        fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
                     | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        raise LifecycleError(f"container {container_id} does not exist",
                             errno.ENOENT) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return _Held(fd)


def read_state(directory: str, container_id: str) -> dict[str, Any]:
    """The stored state.json (LifecycleError "does not exist" without it)."""
    try:
        with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
            data: dict[str, Any] = loads(f.read())
    except FileNotFoundError:
        raise LifecycleError(f"container {container_id} does not exist",
                             errno.ENOENT) from None
    return data


def write_state(directory: str, data: dict[str, Any]) -> None:
    """Replace state.json atomically (a temporary file renamed over it)."""
    tmp = os.path.join(directory, "state.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(dumps(data))
    os.replace(tmp, os.path.join(directory, "state.json"))


def write_kept(directory: str, name: str, data: bytes) -> None:
    """Keep ``data`` as file ``name`` of the state directory, made once (O_EXCL):
    ``config.json`` as validated at create (for exec, hooks and update), the
    compiled seccomp program (``seccomp.bpf``: exec loads it as it is)."""
    fd = os.open(os.path.join(directory, name),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def read_kept(directory: str, name: str) -> bytes:
    """A file :func:`write_kept` kept."""
    fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_pid_file(path: str | os.PathLike[str], pid: int) -> None:
    """Write ``pid`` to ``path`` atomically (a temporary file renamed over it), as runc
    does: a client polling the file never reads a partial pid."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o644)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(str(pid))
        os.replace(tmp, path)
    except BaseException:
        try:  # noqa: SIM105 (no contextlib on a light command)
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the process's name, which is any 15 bytes the
    process chose (spaces, parentheses, bytes that are not UTF-8): read as bytes, cut at
    the last ")"."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)  # one read: the kernel writes the line whole
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    return data.rpartition(b")")[2].decode("ascii", "replace").split()


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])  # field 22 of proc_pid_stat(5)


def process_alive(pid: int, started: int) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` and not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and int(fields[19]) == started and fields[0] not in ("Z", "X")


def report(data: dict[str, Any]) -> dict[str, Any]:
    """The OCI state of stored ``data`` (``nsbind``'s own keys left out): ``stopped``
    once the process is gone."""
    out = {k: v for k, v in data.items() if k != "nsbind"}
    if not process_alive(int(data["pid"]), int(data["nsbind"]["startTime"])):
        out["status"] = "stopped"
    return out


def remove_state_dir(directory: str) -> None:
    """Remove a container's state directory.  It holds files only: they are unlinked
    through the directory's fd (no path is followed twice) without importing shutil (bz2
    and lzma come with it: milliseconds of every delete); anything else, a directory
    someone put there, goes through shutil.rmtree.  Nothing puts a file back meanwhile:
    other operations open the lock without ``O_CREAT`` (:func:`locked`), and write only
    under it."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        for name in os.listdir(fd):
            try:
                os.unlink(name, dir_fd=fd)
            except IsADirectoryError:
                import shutil

                shutil.rmtree(os.path.join(directory, name))
    finally:
        os.close(fd)
    os.rmdir(directory)


def remove_parents(paths: list[str]) -> None:
    """rmdir the cgroup parent directories a create made, deepest first; one still in
    use (another container's) or gone already is left alone."""
    for path in paths:
        try:  # noqa: SIM105 (no contextlib on a light command)
            os.rmdir(path)
        except OSError:
            pass


def container_cgroup(data: dict[str, Any]) -> Cgroup:
    """The container's cgroup (FileNotFoundError once it is gone).  nsbind.cgroups is
    imported here, on use: state and kill never need it."""
    from nsbind.cgroups import Cgroup

    path = data["nsbind"]["cgroup"]
    if path is None:  # created without one (rootless, nothing delegated)
        raise FileNotFoundError(errno.ENOENT, "the container has no cgroup")
    return Cgroup.open(path)
