"""What a test may leave behind on the machine, and a diff of two snapshots.

A snapshot holds this process's mounts (/proc/self/mountinfo), open fds, child
processes, the directories of every cgroup hierarchy, the host's hostname, the v1
hierarchy each controller is bound to (/proc/cgroups), and the host's network: links,
addresses, nftables tables and the forwarding switches.  :func:`report`
sorts what ``after`` has that ``before`` did not into *leaks* (what this run -
nsbind or its tests - made and left: a test fails on them) and *foreign*
changes (what other programs on the host made meanwhile: information only).

A machine keeps changing under a test run: systemd starts units, a management
agent makes a cgroup per job, another user (or another test run) starts a
container.  So the guard only fails on what it can attribute to this run:

cgroups
    A new cgroup directory, ``<hierarchy mount point>/<rel>``, is a leak when

    * ``rel`` starts with this run's parent, ``nsbind-test-<pid of the run>``
      (conftest's TEST_CGROUP_PARENT, made at the root of each hierarchy), or
      with nsbind's default parent, ``nsbind`` (``Cgroup.create`` without
      ``parent=``) - the first component must *equal* one of them: a sibling
      at the root such as ``nsbind-churn-7`` or ``nsbind-test-<another pid>``
      (another run) is not ours;
    * a component of ``rel`` carries this run's pid as the test fixtures name
      things: ``nsbind-test-<pid>``, or ``test-<pid>`` / ``test-<pid>-...``
      (conftest's ``test_cgroup``) - wherever such a cgroup was made;
    * it lies inside this process's own cgroup (not a hierarchy's root) and its
      name starts with ``nsbind`` or ``test``: a non-root ``Cgroup.create``
      defaults there, and the machine's own process control names nothing so;
    * its hierarchy is mounted on a path this run owns (below).

    Nothing else is: siblings at a hierarchy's root, other cgroups of the
    machine (even named ``nsbind-*``), other test runs' parents.  A caveat of
    the rule: a program on the same host creating cgroups under ``/nsbind``
    (nsbind's default parent) while the tests run would count as a leak.

v1 hierarchies
    A controller newly bound to a v1 hierarchy (/proc/cgroups) is a leak - a
    hierarchy unmounted while it still had cgroups lives on - unless it is
    clearly not ours: some process outside this run (not this process nor one of
    its descendants) has that hierarchy mounted, outside the paths this run owns.

mounts
    /proc/self/mountinfo is this process's mount namespace, shared with whatever
    else runs in it.  A new mount is a leak when its mount point lies in a path
    this run owns: its directories (pytest's base temp dir and the run's temp
    dir, which conftest makes ``tempfile.gettempdir()`` and $TMPDIR, so that what
    nsbind makes there - ``RootFS``'s ``nsbind-rootfs-*`` mount points - is the
    run's), and nsbind's own state directory (``/var/lib/nsbind``).  Mounts
    elsewhere (systemd's /run/user/N, a container runtime's overlays) are
    foreign, whatever their source or type: the tests' tmpfs, overlay, proc
    and bind mounts are what the rest of the machine mounts too, so those say
    nothing of who made a mount.  Mounts in other mount namespaces - every
    test's private one included - are never seen at all.

processes
    Children of this process (/proc/self/task/*/children), confirmed to still
    be ours (their parent is this process) when reported: a pid that was ours
    once and is now someone else's (reused after the exit) is not, nor is a
    grandchild reparented to init or a subreaper; foreign processes never are.

fds and the hostname
    Every new fd of this process, and any change of the hostname/domainname
    the guard reads, are leaks.

the host's network
    The links of the host's network namespace (/sys/class/net), their addresses
    (netlink), the nftables ruleset and the IPv4/IPv6 forwarding switches.  A link
    that appeared or went away, or an address that changed on such a link, is a leak
    when its name starts with ``nsb``: every link nsbind makes (``nsbind0``,
    ``nsbr*`` bridges, ``nsbv*`` veths) and every link the tests make (``nsbt*``)
    does.  An nftables table whose name starts with ``nsbind`` (nsbind's ``inet
    nsbind`` and the tests' ``nsbind-test-<pid>``) that appeared, went away or whose
    chains and rules changed (handles aside) is a leak.  A forwarding switch that
    changed is a leak: nsbind turns IPv4 forwarding on for bridge networks, and the
    tests put it back.  Other links, addresses and tables are foreign.  Without
    root the ruleset cannot be read and is not compared.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal

OUR_CGROUP_PREFIXES = ("nsbind", "test")
OUR_LINK_PREFIX = "nsb"  # nsbind0, nsbr*, nsbv* (nsbind), nsbt* (the tests)
OUR_TABLE_PREFIX = "nsbind"
FORWARDING = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
NSBIND_STATE_DIR = "/var/lib/nsbind"  # nsbind.image.store's default for root


def _default_parent() -> str:
    from nsbind.cgroups import DEFAULT_PARENT

    return DEFAULT_PARENT


@dataclasses.dataclass(frozen=True)
class Run:
    """What belongs to this test run: the pid its names carry, its cgroup parent,
    nsbind's default cgroup parent and the directories it owns (real paths)."""

    pid: int
    cgroup_parent: str
    default_parent: str
    paths: tuple[str, ...]

    def owns_path(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths)

    def names_cgroup(self, name: str) -> bool:
        """A cgroup name only this run's tests produce."""
        tag = f"test-{self.pid}"
        return name == self.cgroup_parent or name == tag or name.startswith(tag + "-")


def _run_for(pid: int, paths: tuple[str, ...] = ()) -> Run:
    return Run(pid, f"nsbind-test-{pid}", _default_parent(),
               tuple(os.path.realpath(p) for p in (*paths, NSBIND_STATE_DIR)))


_run: Run | None = None


def configure(*, cgroup_parent: str, paths: list[str]) -> Run:
    """Tell the guard this run's cgroup parent and its directories (temp dirs)."""
    global _run
    _run = dataclasses.replace(_run_for(os.getpid(), tuple(paths)), cgroup_parent=cgroup_parent)
    return _run


def current_run() -> Run:
    """The configured run, or (for a plain import) one of this process with no paths."""
    return _run if _run is not None else _run_for(os.getpid())


@dataclasses.dataclass(frozen=True)
class Snapshot:
    mounts: frozenset[tuple[str, str]]  # (mount id, mount point)
    fds: frozenset[tuple[int, str]]  # (fd, what it points to)
    children: frozenset[int]
    cgroups: frozenset[str]  # absolute directory paths
    uts: tuple[str, str]  # the host's hostname and domainname
    hierarchies: frozenset[tuple[str, str]]  # (controller, v1 hierarchy id) of /proc/cgroups
    cgroup_tops: tuple[str, ...] = ()  # the hierarchies' mount points
    links: frozenset[str] = frozenset()  # the host netns's link names
    addresses: frozenset[tuple[str, str]] = frozenset()  # (link, address/prefix)
    nft_tables: frozenset[tuple[str, str, str]] = frozenset()  # (family, name, digest)
    forwarding: tuple[str, ...] = ()  # the FORWARDING switches' values


@dataclasses.dataclass(frozen=True)
class Report:
    leaks: list[str]  # what this run left behind
    foreign: list[str]  # what other programs changed meanwhile (information)


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """A mountinfo path field (spaces, tabs, newlines and backslashes are \\ooo)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> frozenset[tuple[str, str]]:
    with open("/proc/self/mountinfo") as f:
        return frozenset((line.split()[0], _unescape(line.split()[4])) for line in f)


def mount_points() -> list[str]:
    """The mount points of this process's mount namespace."""
    return [point for _id, point in _mounts()]


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


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), int(fields[3])


def is_our_child(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] == os.getpid()


def cgroup_mounts() -> list[str]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy of this process."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                points.append(_unescape(fields[4]))
    return points


def _cgroups(tops: list[str]) -> frozenset[str]:
    dirs: set[str] = set()
    for top in tops:
        for root, subdirs, _files in os.walk(top):  # a cgroup removed meanwhile is skipped
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


def _links() -> frozenset[str]:
    return frozenset(os.listdir("/sys/class/net"))


def _addresses() -> frozenset[tuple[str, str]]:
    import socket

    from pyroute2 import IPRoute

    out = set()
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            try:
                name = socket.if_indextoname(msg["index"])
            except OSError:  # the link went away meanwhile
                name = f"#{msg['index']}"
            out.add((name, f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
    return frozenset(out)


def _nft_tables() -> frozenset[tuple[str, str, str]]:
    """(family, table, a digest of its chains, sets and rules without their handles);
    empty without root or without libnftables."""
    import hashlib
    import json

    if os.geteuid() != 0:
        return frozenset()
    from nsbind.errors import Missing
    from nsbind.net.nat import NftablesError, nft

    try:
        items = nft([{"list": {"ruleset": None}}])
    except (Missing, NftablesError):
        return frozenset()
    tables: dict[tuple[str, str], list[str]] = {}
    for item in items:
        for kind, body in item.items():
            if kind == "metainfo" or not isinstance(body, dict):
                continue
            key = (str(body.get("family")), str(body.get("table", body.get("name"))))
            clean = {k: v for k, v in body.items() if k != "handle"}
            tables.setdefault(key, []).append(json.dumps([kind, clean], sort_keys=True))
    return frozenset((family, name, hashlib.sha256("\n".join(sorted(lines)).encode())
                      .hexdigest()[:16]) for (family, name), lines in tables.items())


def _forwarding() -> tuple[str, ...]:
    values = []
    for path in FORWARDING:
        try:
            with open(path) as f:
                values.append(f.read().strip())
        except OSError:
            values.append("")
    return tuple(values)


def snapshot() -> Snapshot:
    tops = cgroup_mounts()
    return Snapshot(_mounts(), _fds(), _children(), _cgroups(tops), _uts(), _hierarchies(),
                    tuple(tops), _links(), _addresses(), _nft_tables(), _forwarding())


def _network_report(before: Snapshot, after: Snapshot, leaks: list[str],
                    foreign: list[str]) -> None:
    for name in sorted(after.links ^ before.links):
        line = f"link {name} {'left' if name in after.links else 'removed'}"
        (leaks if name.startswith(OUR_LINK_PREFIX) else foreign).append(line)
    for name, address in sorted(after.addresses ^ before.addresses):
        verb = "added to" if (name, address) in after.addresses else "removed from"
        line = f"address {address} {verb} {name}"
        (leaks if name.startswith(OUR_LINK_PREFIX) else foreign).append(line)
    names = {(f, n) for f, n, _ in after.nft_tables ^ before.nft_tables}
    for family, name in sorted(names):
        was = {(f, n) for f, n, _ in before.nft_tables}
        now = {(f, n) for f, n, _ in after.nft_tables}
        what = "changed" if (family, name) in was & now else (
            "left" if (family, name) in now else "removed")
        line = f"nftables table {family} {name} {what}"
        (leaks if name.startswith(OUR_TABLE_PREFIX) else foreign).append(line)
    if after.forwarding != before.forwarding:
        leaks.append(f"forwarding switches {', '.join(FORWARDING)} changed from "
                     f"{before.forwarding} to {after.forwarding}")


def cgroup_is_ours(path: str, tops: list[str] | tuple[str, ...], run: Run,
                   own: list[str] | None = None) -> bool:
    """Whether a cgroup directory is one this run can have made (the module's rule)."""
    top = max((t for t in tops if path.startswith(t.rstrip("/") + "/")), key=len, default=None)
    if top is None:
        return False
    if run.owns_path(top):
        return True  # a hierarchy mounted by a test
    parts = path[len(top.rstrip("/")) + 1:].split("/")
    if parts[0] in (run.cgroup_parent, run.default_parent):
        return True
    if any(run.names_cgroup(p) for p in parts):
        return True
    inside_own = any(path.startswith(o + "/") for o in (own or []))
    return inside_own and parts[-1].startswith(OUR_CGROUP_PREFIXES)


def _descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    parent_of: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            parent_of[int(name)] = stat[0]
    below = {pid}
    grew = True
    while grew:
        grew = False
        for child, parent in parent_of.items():
            if parent in below and child not in below:
                below.add(child)
                grew = True
    return below


def hierarchy_held_elsewhere(controller: str, run: Run) -> str | None:
    """A mount of ``controller``'s v1 hierarchy that a process outside this run holds
    (in any mount namespace, on a path this run does not own): "pid N at PATH"."""
    ours = _descendants(os.getpid())
    seen: set[str] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ours:
            continue
        try:
            ns = os.readlink(f"/proc/{name}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{name}/mountinfo") as f:
                lines = f.read().splitlines()
        except OSError:  # gone, or a kernel thread
            continue
        for line in lines:
            fields = line.split()
            tail = fields[fields.index("-") + 1:]
            point = _unescape(fields[4])
            if (tail[0] == "cgroup" and controller in tail[2].split(",")
                    and not run.owns_path(point)):
                return f"pid {name} at {point}"
    return None


def report(before: Snapshot, after: Snapshot, run: Run | None = None) -> Report:
    """What ``after`` has that ``before`` did not: this run's leaks, and the rest."""
    run = run or current_run()
    leaks: list[str] = []
    foreign: list[str] = []
    for mount_id, point in sorted(after.mounts - before.mounts):
        line = f"mount {point} (id {mount_id})"
        (leaks if run.owns_path(point) else foreign).append(line)
    before_fds = dict(before.fds)
    for fd, target in sorted(after.fds - before.fds):
        if before_fds.get(fd) is None:
            leaks.append(f"fd {fd} -> {target}")
    for pid in sorted(after.children - before.children):
        if is_our_child(pid):
            leaks.append(f"child process {pid}")
    for controller, hid in sorted(after.hierarchies - before.hierarchies):
        if hid == "0":
            continue  # unbound: a hierarchy went away
        line = f"cgroup v1 hierarchy {hid} of {controller}"
        holder = hierarchy_held_elsewhere(controller, run)
        if holder is None:
            leaks.append(line + " (left after an unmount)")
        else:
            foreign.append(f"{line} (mounted by {holder})")
    if after.uts != before.uts:
        leaks.append(f"host hostname/domainname changed from {before.uts} to {after.uts}")
    tops = after.cgroup_tops or tuple(cgroup_mounts())
    own = _own_cgroup_dirs()
    for path in sorted(after.cgroups - before.cgroups):
        (leaks if cgroup_is_ours(path, tops, run, own) else foreign).append(f"cgroup {path}")
    _network_report(before, after, leaks, foreign)
    return Report(leaks, foreign)


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    """Human-readable leaks: what this run left between ``before`` and ``after``."""
    return report(before, after).leaks


def reap_leaked_children(before: Snapshot, after: Snapshot) -> None:
    """SIGKILL and reap children that appeared between the snapshots and are still
    ours, so that one leaking test does not leave a process holding the run's pipes.

    Each is pinned with a pidfd and checked to be this process's child first: a
    pid from the snapshot may have exited and been reused by someone else."""
    for pid in after.children - before.children:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not is_our_child(pid):
                continue
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        finally:
            os.close(pidfd)


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
