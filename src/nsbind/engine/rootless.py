"""Rootless containers: an unprivileged caller becomes root of a user namespace of its
own before it makes anything, as podman does.  Its ids map as: 0 is the caller, and
1.. the caller's subordinate range from ``/etc/subuid`` / ``/etc/subgid``, written
by the setuid ``newuidmap`` / ``newgidmap`` (Debian's ``uidmap``); without a range
(or without those programs) only the caller's own id is mapped, as 0.

The image store and the container storage are then written as that root: files keep
their owners (mapped into the range), and removing them later needs the same map,
which :func:`enter` makes again.

Limits need a cgroup the user may make: containers go below the cgroup v2 subtree
delegated to the user (the highest cgroup above its own that it owns, as systemd's
``Delegate=yes`` leaves a unit's), in ``<subtree>/nsbind``; without one they run in
the caller's cgroup, and a limit is refused saying so.
"""

from __future__ import annotations

import os
import pwd
import shutil

from nsbind.engine.errors import EngineError
from nsbind.frozen import frozen

__all__ = ["MAX_SUBID_FILE", "IdRange", "UserMap", "enter", "rootless_cgroup_parent",
           "subordinate_range", "subordinate_ranges", "user_map"]

MAX_SUBID_FILE = 1 << 20  #: /etc/subuid is a few lines; more is not read


@frozen
class IdRange:
    """``count`` ids from ``start`` (outside the namespace)."""

    start: int
    count: int


@frozen
class UserMap:
    """What :func:`enter` maps: the caller's uid and gid, and their subordinate ranges
    (None: only the caller's own id)."""

    uid: int
    gid: int
    uids: IdRange | None
    gids: IdRange | None

    @property
    def single(self) -> bool:
        return self.uids is None or self.gids is None


def subordinate_ranges(path: str, name: str, number: int | None) -> list[IdRange]:
    """Every range ``path`` (/etc/subuid or /etc/subgid) gives ``name`` (or the number),
    in file order, checked: ids in 1..2**32-2, the range inside it; a line that is not
    is skipped.  A file that is not a regular one is refused (EngineError)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as f:
        import stat

        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise EngineError(f"{path}: not a regular file")
        text = f.read(MAX_SUBID_FILE).decode("utf-8", "replace")
    owners = (name,) if number is None else (name, str(number))
    found = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in owners:
            continue
        if not (fields[1].isascii() and fields[1].isdigit() and fields[2].isascii()
                and fields[2].isdigit()):
            continue
        start, count = int(fields[1]), int(fields[2])
        if start > 0 and count > 0 and start + count <= 2**32 - 1:
            found.append(IdRange(start, count))
    return found


def subordinate_range(path: str, name: str, number: int) -> IdRange | None:
    """The first range ``path`` gives ``name`` (or the number), at most 65536 ids of it
    (see :func:`subordinate_ranges`).  None when there is none."""
    found = subordinate_ranges(path, name, number)
    return IdRange(found[0].start, min(found[0].count, 65536)) if found else None


def user_map() -> UserMap:
    """The map :func:`enter` would make for the caller."""
    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        return UserMap(uid, gid, None, None)
    return UserMap(uid, gid, subordinate_range("/etc/subuid", name, uid),
                   subordinate_range("/etc/subgid", name, uid))


def rootless_cgroup_parent() -> str | None:
    """The cgroup parent of the caller's containers: ``nsbind`` below the v2 subtree
    delegated to it; None when nothing is delegated."""
    from nsbind.cgrouplayout import cgroup_layout, delegation_root

    top = delegation_root(cgroup_layout())
    return None if top is None else f"{top.rstrip('/')}/nsbind"


def _run_id_tools(pid: int, umap: UserMap) -> str | None:
    """In a child: newuidmap and newgidmap for ``pid``; an error message or None."""
    import subprocess

    assert umap.uids is not None and umap.gids is not None
    for tool, own, ids in (("newuidmap", umap.uid, umap.uids), ("newgidmap", umap.gid,
                                                               umap.gids)):
        proc = subprocess.run([tool, str(pid), "0", str(own), "1", "1", str(ids.start),
                               str(ids.count)], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"{tool}: {proc.stderr.strip() or f'exit status {proc.returncode}'}"
    return None


def enter(umap: UserMap | None = None) -> UserMap:
    """Move this (single-threaded) process into a new user namespace where it is root,
    mapped as the module doc says; the map.  EngineError naming what refused."""
    import nsbind
    from nsbind import CloneFlags

    umap = umap or user_map()
    if umap.single:
        try:
            nsbind.unshare(CloneFlags.NEWUSER)
        except OSError as exc:
            raise EngineError(f"rootless: a user namespace: {exc}") from None
        for name, text in (("uid_map", f"0 {umap.uid} 1\n"), ("setgroups", "deny"),
                           ("gid_map", f"0 {umap.gid} 1\n")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        return umap
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    child = os.fork()
    if child == 0:  # waits for the unshare, writes the maps, reports
        status = 1
        try:
            os.close(go_w)
            os.close(done_r)
            if os.read(go_r, 1) == b"1":
                error = _run_id_tools(parent, umap)
                os.write(done_w, (error or "").encode()[:4000])
                status = 0
        finally:
            os._exit(status)
    os.close(go_r)
    os.close(done_w)
    try:
        try:
            nsbind.unshare(CloneFlags.NEWUSER)
        except OSError as exc:
            os.write(go_w, b"0")
            raise EngineError(f"rootless: a user namespace: {exc}") from None
        os.write(go_w, b"1")
        os.close(go_w)
        go_w = -1
        with os.fdopen(done_r, "rb") as reader:
            done_r = -1
            error = reader.read(8192).decode("utf-8", "replace")
    finally:
        for fd in (go_w, done_r):
            if fd >= 0:
                os.close(fd)
        os.waitpid(child, 0)
    if error:
        raise EngineError(f"rootless: {error}")
    return umap
