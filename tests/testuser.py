"""An unprivileged user made for a test run, and removed after it without a trace.

``useradd`` and ``usermod`` write /etc/passwd, group, shadow, gshadow, subuid and
subgid (and their ``-`` backups): each of those files is restored byte for byte
afterwards, or removed if it was not there.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator

import nsbind

ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid",
                 "/etc/subgid")
SUBID_COUNT = 65536


@contextlib.contextmanager
def kept(*paths: str) -> Iterator[None]:
    """Restore ``paths`` afterwards exactly as they were (or remove them)."""
    saved = {p: pathlib.Path(p).read_bytes() if os.path.exists(p) else None for p in paths}
    try:
        yield
    finally:
        for path, data in saved.items():
            if data is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                pathlib.Path(path).write_bytes(data)


def free_subid_base(name_hint: int) -> int:
    """A subordinate id range start that no line of /etc/subuid or /etc/subgid overlaps."""
    taken: list[tuple[int, int]] = []
    for path in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(FileNotFoundError):
            for line in pathlib.Path(path).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    taken.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    base = 300000 + (name_hint % 1000) * SUBID_COUNT
    while any(start < base + SUBID_COUNT and base < end for start, end in taken):
        base += SUBID_COUNT
    return base


@contextlib.contextmanager
def made_user(name: str, home: pathlib.Path, *, subids: bool) -> Iterator[pwd.struct_passwd]:
    """A user ``name`` with ``home`` (made, owned by it) and, with ``subids``, one range of
    65,536 subordinate uids and gids; gone afterwards, its files with it."""
    with kept(*ACCOUNT_FILES, *(f + "-" for f in ACCOUNT_FILES)):  # and useradd's backups
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh",
                        "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name],
                       check=True, capture_output=True)
        try:
            if subids:
                for path in ("/etc/subuid", "/etc/subgid"):  # usermod needs them
                    pathlib.Path(path).touch(mode=0o644)
                base = free_subid_base(os.getpid())
                for flag in ("--add-subuids", "--add-subgids"):
                    subprocess.run(["usermod", flag, f"{base}-{base + SUBID_COUNT - 1}", name],
                                   check=True, capture_output=True)
            entry = pwd.getpwnam(name)
            home.mkdir(mode=0o755, exist_ok=True)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            yield entry
        finally:
            subprocess.run(["userdel", name], check=False, capture_output=True)


def remove_cgroup_tree(path: str) -> None:
    """Kill every process of the cgroup tree at ``path`` and remove it, leaves first."""
    kill = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill):
        with open(kill, "w") as f:
            f.write("1")
    deadline = time.monotonic() + 10
    for top, dirs, _files in os.walk(path, topdown=False):
        for d in [*(os.path.join(top, d) for d in dirs), *([path] if top == path else [])]:
            while True:
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(pid), signal.SIGKILL)
                    time.sleep(0.01)


@contextlib.contextmanager
def delegated_cgroup(uid: int, gid: int, prefix: str = "nsbind-unpriv"
                     ) -> Iterator[tuple[str, str]]:
    """(the subtree relative to the v2 root, its leaf's cgroup.procs), delegated to uid
    as systemd's Delegate=yes does: a cgroup at the v2 root (``<prefix>-<pid>``) owned by
    the user with its cgroup.procs, cgroup.subtree_control and cgroup.threads, and a
    leaf (``pytest``) for the user's processes; removed afterwards with what is in it."""
    mount = nsbind.cgroup2_mountpoint()
    name = f"{prefix}-{os.getpid()}"
    top = os.path.join(mount, name)
    os.mkdir(top)
    try:
        leaf = os.path.join(top, "pytest")
        os.mkdir(leaf)
        for d in (top, leaf):
            for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                os.chown(os.path.join(d, entry), uid, gid)
        yield name, os.path.join(leaf, "cgroup.procs")
    finally:
        remove_cgroup_tree(top)
