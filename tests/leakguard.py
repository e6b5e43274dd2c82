"""What a test may leave behind on the machine, and a diff of two snapshots.

A snapshot holds this process's mounts (/proc/self/mountinfo), open fds, child
processes, and the directories of every cgroup hierarchy.  New cgroups inside
the caller's own cgroup belong to the machine's own process control unless
they are named like ours (``nsbind*``, ``test*``).
"""

from __future__ import annotations

import dataclasses
import os

OUR_CGROUP_PREFIXES = ("nsbind", "test")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    mounts: frozenset[tuple[str, str]]  # (mount id, mount point)
    fds: frozenset[tuple[int, str]]  # (fd, what it points to)
    children: frozenset[int]
    cgroups: frozenset[str]  # absolute directory paths
    uts: tuple[str, str]  # the host's hostname and domainname
    hierarchies: frozenset[tuple[str, str]]  # (controller, v1 hierarchy id) of /proc/cgroups


def _mounts() -> frozenset[tuple[str, str]]:
    with open("/proc/self/mountinfo") as f:
        return frozenset((line.split()[0], line.split()[4]) for line in f)


def _fds() -> frozenset[tuple[int, str]]:
    out = set()
    listing = "/proc/self/fd"
    for name in os.listdir(listing):
        try:
            target = os.readlink(f"{listing}/{name}")
        except FileNotFoundError:  # the fd os.listdir itself used, now closed
            continue
        out.add((int(name), target))
    return frozenset(out)


def _children() -> frozenset[int]:
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return frozenset(pids)


def cgroup_mounts() -> list[str]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy of this process."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                points.append(fields[4])
    return points


def _cgroups() -> frozenset[str]:
    dirs: set[str] = set()
    for top in cgroup_mounts():
        for root, subdirs, _files in os.walk(top):
            dirs.update(os.path.join(root, d) for d in subdirs)
    return frozenset(dirs)


def _own_cgroup_dirs() -> list[str]:
    """The caller's own cgroup directory in each hierarchy (not the root)."""
    own = []
    by_controllers: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            by_controllers[controllers] = path
    for top in cgroup_mounts():
        for controllers, path in by_controllers.items():
            if path == "/":
                continue
            candidate = top.rstrip("/") + path
            if os.path.isdir(candidate) and (controllers in top or controllers == ""):
                own.append(candidate)
    return own


def _uts() -> tuple[str, str]:
    with open("/proc/sys/kernel/hostname") as h, open("/proc/sys/kernel/domainname") as d:
        return h.read().strip(), d.read().strip()


def _hierarchies() -> frozenset[tuple[str, str]]:
    """Which v1 hierarchy each controller is bound to: a v1 hierarchy mounted and
    unmounted while it still had cgroups lives on, unmounted, in every process's
    /proc/self/cgroup."""
    with open("/proc/cgroups") as f:
        return frozenset((fields[0], fields[1]) for line in f
                         if not line.startswith("#") and (fields := line.split()))


def snapshot() -> Snapshot:
    return Snapshot(_mounts(), _fds(), _children(), _cgroups(), _uts(), _hierarchies())


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    """Human-readable leaks: what ``after`` has that ``before`` did not."""
    leaks = []
    for mount_id, point in sorted(after.mounts - before.mounts):
        leaks.append(f"mount {point} (id {mount_id})")
    before_fds = dict(before.fds)
    for fd, target in sorted(after.fds - before.fds):
        if before_fds.get(fd) is None:
            leaks.append(f"fd {fd} -> {target}")
    for pid in sorted(after.children - before.children):
        leaks.append(f"child process {pid}")
    for controller, hid in sorted(after.hierarchies - before.hierarchies):
        leaks.append(f"cgroup v1 hierarchy {hid} of {controller} (left after an unmount)")
    if after.uts != before.uts:
        leaks.append(f"host hostname/domainname changed from {before.uts} to {after.uts}")
    own = _own_cgroup_dirs()
    for path in sorted(after.cgroups - before.cgroups):
        inside_own = any(path.startswith(o + "/") for o in own)
        if inside_own and not os.path.basename(path).startswith(OUR_CGROUP_PREFIXES):
            continue  # the machine's own process control works there
        leaks.append(f"cgroup {path}")
    return leaks


def reap_leaked_children(before: Snapshot, after: Snapshot) -> None:
    """SIGKILL and reap children that appeared between the snapshots (all ours),
    so that one leaking test does not leave a process holding the run's pipes."""
    import signal

    for pid in after.children - before.children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def wait_for_joined_threads(timeout: float = 2.0) -> None:
    """Give threads that a test joined time to leave the kernel's task list.

    Thread.join() returns before the OS thread is gone from /proc/self/task;
    the next test's single-thread checks (clone3, user namespaces) would see it.
    """
    import threading
    import time

    deadline = time.monotonic() + timeout
    while (len(os.listdir("/proc/self/task")) > threading.active_count()
           and time.monotonic() < deadline):
        time.sleep(0.001)
