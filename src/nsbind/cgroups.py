"""Control groups: where each controller lives on this host (cgroup v2, v1, or both).

This is the discovery half of the cgroup API: :func:`cgroup_layout` reads
/proc/self/mountinfo, /proc/cgroups and /proc/self/cgroup and says whether the
host is *unified* (cgroup v2 only), *hybrid* (v2 mounted, some controllers still
on v1 hierarchies) or *legacy* (v1 only), which hierarchy carries each logical
controller, which controllers the kernel has but nobody mounted (e.g.
net_cls/net_prio), and the caller's own cgroup in each hierarchy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import time
from collections.abc import Callable
from typing import Any, Literal

from nsbind._sys.fd import OwnedFd
from nsbind._sys.mount import umount2
from nsbind._sys.mountinfo import parse_mountinfo
from nsbind._sys.proc import PidFd
from nsbind.cgroupfs import CgroupFd, parse_flat, validate_name
from nsbind.cgroupstats import (
    CgroupStats,
    EventsWatch,
    parse_blkio,
    parse_io_stat,
    wait_until,
    wait_until_async,
)

__all__ = ["Cgroup", "CgroupLayout", "CgroupStats", "Hierarchy", "cgroup_layout", "mount_v1",
           "unmount_v1"]

Mode = Literal["unified", "hybrid", "legacy", "none"]


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    version: int  # 1 or 2
    mountpoint: str
    controllers: frozenset[str]  # v1: as mounted; v2: cgroup.controllers of the root
    name: str | None  # v1 named hierarchies (name=systemd)
    own: str | None  # the caller's cgroup in this hierarchy (e.g. "/" or "/user.slice")

    def path_of(self, cgroup: str) -> str:
        """The directory of ``cgroup`` (a path inside the hierarchy) in this mount."""
        return os.path.join(self.mountpoint, cgroup.lstrip("/")).rstrip("/") or "/"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "mountpoint": self.mountpoint,
                "controllers": sorted(self.controllers), "name": self.name, "own": self.own}


@dataclasses.dataclass(frozen=True)
class CgroupLayout:
    """The host's cgroup layout, as data."""

    mode: Mode
    hierarchies: tuple[Hierarchy, ...]
    #: controllers the kernel knows (enabled in /proc/cgroups)
    available: frozenset[str]
    #: logical controller -> the hierarchy that carries it
    controllers: dict[str, Hierarchy]

    @property
    def unified(self) -> Hierarchy | None:
        """The cgroup v2 hierarchy, if mounted."""
        return next((h for h in self.hierarchies if h.version == 2), None)

    @property
    def unmounted(self) -> frozenset[str]:
        """Controllers the kernel has that no mounted hierarchy carries."""
        return self.available - set(self.controllers)

    def hierarchy_for(self, controller: str) -> Hierarchy:
        """Where ``controller`` lives; a clear error naming what the host has otherwise."""
        try:
            return self.controllers[controller]
        except KeyError:
            where = ", ".join(sorted(self.controllers)) or "none"
            extra = (f"; {controller} is compiled in but not mounted"
                     if controller in self.available else "")
            raise LookupError(f"no cgroup hierarchy carries the {controller} controller on "
                              f"this host (mounted: {where}){extra}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode,
                "hierarchies": [h.to_dict() for h in self.hierarchies],
                "controllers": {c: h.mountpoint for c, h in sorted(self.controllers.items())},
                "unmounted": sorted(self.unmounted)}


def _try_read(fd: CgroupFd, name: str) -> str | None:
    try:
        return fd.read(name)
    except FileNotFoundError:
        return None


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_controllers(mountpoint: str) -> str:
    return _read(os.path.join(mountpoint, "cgroup.controllers"))


def cgroup_layout(
    mountinfo: str | None = None,
    proc_cgroups: str | None = None,
    self_cgroup: str | None = None,
    read_controllers: Callable[[str], str] | None = None,
) -> CgroupLayout:
    """Discover the cgroup layout of the calling process's mount and cgroup namespaces.

    The arguments (file contents, and a function reading a v2 mount's
    ``cgroup.controllers``) default to this process's /proc files; passing them
    lets tools describe another process or a recorded host.
    """
    mountinfo = _read("/proc/self/mountinfo") if mountinfo is None else mountinfo
    proc_cgroups = _read("/proc/cgroups") if proc_cgroups is None else proc_cgroups
    self_cgroup = _read("/proc/self/cgroup") if self_cgroup is None else self_cgroup
    read_controllers = read_controllers or _read_controllers

    available = frozenset(
        fields[0] for line in proc_cgroups.splitlines()
        if line and not line.startswith("#") and (fields := line.split()) and fields[3] == "1")
    own_v1: dict[frozenset[str], str] = {}
    own_v2: str | None = None
    for line in self_cgroup.splitlines():
        if not line:
            continue
        hid, names, path = line.split(":", 2)
        if hid == "0" and names == "":
            own_v2 = path
        else:
            own_v1[frozenset(names.split(","))] = path

    hierarchies: list[Hierarchy] = []
    seen: set[str] = set()
    for entry in parse_mountinfo(mountinfo):
        if entry.fstype not in ("cgroup", "cgroup2") or entry.root != "/" or entry.dev in seen:
            continue  # not a cgroup fs, a bind of a sub-cgroup, or a second mount of one
        seen.add(entry.dev)
        if entry.fstype == "cgroup2":
            try:
                v2_controllers = frozenset(read_controllers(entry.mountpoint).split())
            except OSError:
                v2_controllers = frozenset()
            hierarchies.append(Hierarchy(2, entry.mountpoint, v2_controllers, None, own_v2))
            continue
        opts = entry.superopts.split(",")
        name = next((o[5:] for o in opts if o.startswith("name=")), None)
        v1_controllers = frozenset(o for o in opts if o in available)
        key = frozenset(v1_controllers | ({f"name={name}"} if name else set()))
        hierarchies.append(Hierarchy(1, entry.mountpoint, v1_controllers, name,
                                     own_v1.get(key)))

    controllers: dict[str, Hierarchy] = {}
    for h in hierarchies:  # v1 first: a controller bound to v1 is unusable on v2
        if h.version == 1:
            for c in h.controllers:
                controllers[c] = h
    for h in hierarchies:
        if h.version == 2:
            for c in h.controllers:
                controllers.setdefault(c, h)
    has_v1 = any(h.version == 1 and h.controllers for h in hierarchies)
    has_v2 = any(h.version == 2 for h in hierarchies)
    mode: Mode = ("hybrid" if has_v1 and has_v2 else "unified" if has_v2
                  else "legacy" if has_v1 else "none")
    return CgroupLayout(mode, tuple(hierarchies), available, controllers)


def mount_v1(controllers: list[str], target: str) -> CgroupLayout:
    """Mount a cgroup v1 hierarchy of ``controllers`` (e.g. ``["net_cls", "net_prio"]``,
    which hybrid hosts often leave unmounted) on ``target`` in the calling thread's
    mount namespace; return the new layout.  Needs CAP_SYS_ADMIN.

    The hierarchy is kernel-wide: remove the cgroups made in it, then
    :func:`unmount_v1`; the kernel keeps a hierarchy alive (unmounted, listed in
    every process's /proc/self/cgroup) if it still had cgroups when unmounted."""
    from nsbind import mounts  # the mount helpers sit above this module

    unknown = set(controllers) - cgroup_layout().available
    if unknown:
        raise LookupError(f"this kernel has no cgroup controller {sorted(unknown)}")
    with open("/proc/cmdline") as f:
        no_v1 = next((w for w in f.read().split() if w.startswith("cgroup_no_v1=")), None)
    if no_v1 is not None:
        raise LookupError(f"this kernel was booted with {no_v1}: it mounts no cgroup v1 "
                          "hierarchy")
    mounts.apply([mounts.cgroup(controllers, target, readonly=False)])
    with open("/proc/thread-self/mountinfo") as f:
        return cgroup_layout(mountinfo=f.read())


def unmount_v1(target: str, controllers: list[str], timeout: float = 10.0) -> None:
    """Unmount a v1 hierarchy made by :func:`mount_v1` once the kernel has released
    every cgroup removed from it (``/proc/cgroups``), so the hierarchy goes away."""
    def proc_cgroups() -> dict[str, tuple[int, int]]:  # controller -> (hierarchy, count)
        with open("/proc/cgroups") as f:
            return {fields[0]: (int(fields[1]), int(fields[2])) for line in f
                    if not line.startswith("#") and (fields := line.split())}

    deadline = time.monotonic() + timeout
    while (left := max(proc_cgroups()[c][1] for c in controllers) - 1) > 0:
        if time.monotonic() > deadline:
            raise OSError(f"cgroup v1 hierarchy at {target} still has {left} cgroups; "
                          "remove them before unmounting (or it stays, unmounted)")
        time.sleep(0.005)
    umount2(target)
    # the kernel destroys the hierarchy asynchronously after the last unmount
    while any(proc_cgroups()[c][0] for c in controllers):
        if time.monotonic() > deadline:
            raise OSError(f"cgroup v1 hierarchy of {','.join(controllers)} is still alive "
                          f"after unmounting {target}: is it mounted elsewhere?")
        time.sleep(0.005)


def _delegated(layout: CgroupLayout, parent: str | None) -> tuple[Hierarchy, str]:
    """(the v2 hierarchy, the parent path) a non-root caller may create cgroups in."""
    v2 = layout.unified
    uid = os.geteuid()
    if v2 is None:
        raise PermissionError(f"uid {uid} cannot create cgroups: this host has no cgroup v2 "
                              "hierarchy, and v1 hierarchies are not delegated")
    path = parent if parent is not None else (v2.own or "/")
    where = v2.path_of(path)
    try:
        owner = os.stat(where).st_uid
    except OSError as exc:
        raise PermissionError(f"uid {uid} has no delegated cgroup at {where}: "
                              f"{exc.strerror}") from None
    if owner != uid or not os.access(where, os.W_OK):
        raise PermissionError(
            f"uid {uid} has no delegated cgroup subtree: {where} belongs to uid {owner} "
            "(ask the system for one, e.g. systemd's Delegate=yes, or pass parent= a "
            "cgroup you own)")
    return v2, path


# ---------------------------------------------------------------- Cgroup

DEFAULT_PARENT = "nsbind"


def _enable_controllers(cg: CgroupFd) -> None:
    """Give the children of a v2 cgroup every controller it has (cgroup.subtree_control),
    as runc does along a container's path; never called on a hierarchy's root."""
    have = cg.read("cgroup.controllers").split()
    enabled = set(cg.read("cgroup.subtree_control").split())
    missing = [c for c in have if c not in enabled]
    if missing:
        try:
            cg.write("cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        except OSError as exc:
            # EBUSY: the cgroup has member processes (a non-root caller's own
            # delegated cgroup); the new cgroup then has no controllers, and a
            # limit set on it names the missing file
            if exc.errno != errno.EBUSY:
                raise


def _mkdir(h: Hierarchy, parent: CgroupFd, name: str, *, exist_ok: bool) -> CgroupFd:
    """mkdir a cgroup; in a v1 cpuset hierarchy, give it its parent's cpus and mems
    (a v1 cpuset starts empty, and joining an empty one fails with ENOSPC)."""
    child = parent.mkdir(name, exist_ok=exist_ok)
    if h.version == 1 and "cpuset" in h.controllers:
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if not child.read(knob).strip():
                child.write(knob, parent.read(knob).strip())
    return child


class Cgroup:
    """One logical cgroup that spans every mounted hierarchy of the host.

    On a unified host that is one cgroup v2 directory; on a hybrid host (like
    one with memory, pids, cpu... on v1) the same path is created in the v2
    hierarchy and in each v1 hierarchy with controllers, and the API speaks of
    controllers, not of where they are mounted.  Create with :meth:`create`;
    ``remove()`` (or leaving the ``with`` block) kills the members and removes
    every directory it created.  Needs root (write access to the hierarchies).
    """

    def __init__(self, path: str, dirs: dict[Hierarchy, CgroupFd], layout: CgroupLayout) -> None:
        #: the cgroup's path inside each hierarchy, e.g. ``/nsbind/job-42``
        self.path = path
        self.layout = layout
        self._dirs = dirs
        self._device_prog: OwnedFd | None = None  # the eBPF device program attached

    # ------------------------------------------------------------ life cycle

    @classmethod
    def create(
        cls,
        name: str,
        *,
        parent: str | None = None,
        memory_max: int | str | None = None,
        memory_high: int | str | None = None,
        memory_swap_max: int | str | None = None,
        pids_max: int | str | None = None,
        cpu_max: float | None = None,
        cpu_weight: int | None = None,
        cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None,
        layout: CgroupLayout | None = None,
    ) -> Cgroup:
        """Create ``<parent>/<name>`` in every hierarchy and apply the limits given.

        ``parent`` is a path below each hierarchy's root (created if missing).
        For root it defaults to ``nsbind`` (as Docker uses ``/docker``) - never
        the caller's own cgroup.  A non-root caller gets the cgroup v2 subtree
        delegated to it (a cgroup it owns, by default its own one) and only the
        v2 hierarchy; without a delegation the error says so.  On any failure
        whatever was created is removed again.
        """
        validate_name(name)
        layout = layout or cgroup_layout()
        if os.geteuid() == 0:
            parent = DEFAULT_PARENT if parent is None else parent
            targets = [h for h in layout.hierarchies if h.version == 2 or h.controllers]
        else:
            v2, parent = _delegated(layout, parent)
            targets = [v2]
        parts = [validate_name(p) for p in parent.strip("/").split("/") if p]
        if not targets:
            raise LookupError("no cgroup hierarchy is mounted on this host")
        dirs: dict[Hierarchy, CgroupFd] = {}
        path = "/" + "/".join([*parts, name])
        self = cls(path, dirs, layout)
        try:
            for h in targets:
                with CgroupFd.open(h.mountpoint, v1=h.version == 1) as root:
                    here = root
                    opened = []
                    try:
                        for part in parts:
                            here = _mkdir(h, here, part, exist_ok=True)
                            opened.append(here)
                            if h.version == 2:  # controllers for the cgroup below
                                _enable_controllers(here)
                        dirs[h] = _mkdir(h, here, name, exist_ok=False)
                    finally:
                        for fd in opened:
                            fd.close()
            if memory_max is not None:
                self.set_memory_max(memory_max)
            if memory_high is not None:
                self.set_memory_high(memory_high)
            if memory_swap_max is not None:
                self.set_memory_swap_max(memory_swap_max)
            if pids_max is not None:
                self.set_pids_max(pids_max)
            if cpu_max is not None:
                self.set_cpu_max(cpu_max)
            if cpu_weight is not None:
                self.set_cpu_weight(cpu_weight)
            if cpuset_cpus is not None or cpuset_mems is not None:
                self.set_cpuset(cpus=cpuset_cpus, mems=cpuset_mems)
        except BaseException:
            self.remove()
            raise
        return self

    @classmethod
    def open(cls, path: str, *, layout: CgroupLayout | None = None) -> Cgroup:
        """An existing cgroup (``/nsbind/job-42``) in every hierarchy that has it.

        :meth:`remove` then removes it, so open only what you own."""
        layout = layout or cgroup_layout()
        dirs: dict[Hierarchy, CgroupFd] = {}
        for h in layout.hierarchies:
            if h.version == 2 or h.controllers:
                where = h.path_of(path)
                if os.path.isdir(where):
                    dirs[h] = CgroupFd.open(where, v1=h.version == 1)
        if not dirs:
            raise FileNotFoundError(f"no cgroup {path} in any hierarchy of this host")
        return cls("/" + path.strip("/"), dirs, layout)

    def remove(self) -> None:
        """Kill every member, wait until the cgroup is empty, remove its directories."""
        if not self._dirs:
            return
        if self.procs():
            self.kill()
        deadline = time.monotonic() + 10
        while self.procs() and time.monotonic() < deadline:
            time.sleep(0.002)
        if self._device_prog is not None:  # detached with the cgroup; just close it
            self._device_prog.close()
            self._device_prog = None
        errors = []
        for h, fd in list(self._dirs.items()):
            fd.close()
            try:
                os.rmdir(h.path_of(self.path))
                del self._dirs[h]
            except OSError as exc:
                errors.append(f"{h.path_of(self.path)}: {exc.strerror}")
        if errors:
            raise OSError(f"cannot remove cgroup {self.path}: {'; '.join(errors)}")

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # ------------------------------------------------------------ where things are

    def _dir_for(self, controller: str) -> CgroupFd:
        h = self.layout.hierarchy_for(controller)
        try:
            return self._dirs[h]
        except KeyError:
            raise LookupError(f"cgroup {self.path} was not created in {h.mountpoint}") from None

    @property
    def v2(self) -> CgroupFd | None:
        """The cgroup v2 directory fd (for CLONE_INTO_CGROUP), if the host has v2."""
        return next((fd for h, fd in self._dirs.items() if h.version == 2), None)

    def v1_procs_files(self) -> list[str]:
        """The cgroup.procs files of the v1 hierarchies (a spawned child joins them)."""
        return [os.path.join(h.path_of(self.path), "cgroup.procs")
                for h in self._dirs if h.version == 1]

    # ------------------------------------------------------------ members

    def attach(self, pid: int | PidFd) -> None:
        """Move a process (a pid, or a :class:`~nsbind.PidFd`) into this cgroup in
        every hierarchy.  (cgroup.procs takes a pid: a pidfd is checked to be alive
        first, so a recycled pid is not moved.)"""
        if isinstance(pid, PidFd):
            pid.send_signal(0)  # ESRCH if it is gone
            pid = pid.pid
        for fd in self._dirs.values():
            fd.attach(pid)

    def procs(self) -> list[int]:
        """The member pids (from the v2 hierarchy if there is one)."""
        fd = self.v2 or next(iter(self._dirs.values()))
        return fd.procs()

    # ------------------------------------------------------------ controllers

    def set_memory_max(self, value: int | str) -> None:
        """Memory limit (bytes, or with K/M/G): memory.max on v2, memory.limit_in_bytes on v1."""
        h = self.layout.hierarchy_for("memory")
        self._dir_for("memory").write("memory.max" if h.version == 2
                                      else "memory.limit_in_bytes", value)

    def set_pids_max(self, value: int | str) -> None:
        """Maximum number of tasks (pids.max, same name on v1 and v2); ``"max"`` for none."""
        self._dir_for("pids").write("pids.max", value)

    def set_cpu_max(self, cpus: float | None, period_us: int = 100_000) -> None:
        """CPU bandwidth in CPUs (0.5: half of one CPU; None: unlimited).

        v2: ``cpu.max`` = "quota period"; v1: ``cpu.cfs_period_us`` and ``cpu.cfs_quota_us``.
        """
        if cpus is not None and cpus <= 0:
            raise ValueError(f"cpu_max must be positive, not {cpus}")
        quota = -1 if cpus is None else max(1000, round(cpus * period_us))
        fd = self._dir_for("cpu")
        if self.layout.hierarchy_for("cpu").version == 2:
            fd.write("cpu.max", f"{'max' if quota < 0 else quota} {period_us}")
        else:
            fd.write("cpu.cfs_period_us", period_us)
            fd.write("cpu.cfs_quota_us", quota)

    def set_cpu_weight(self, weight: int) -> None:
        """Relative CPU share, 1..10000 (default 100): cpu.weight on v2, cpu.shares on v1
        (converted as runc does: shares = 2 + (weight - 1) * 262142 / 9999, inverted)."""
        if not 1 <= weight <= 10000:
            raise ValueError(f"cpu_weight must be within 1..10000, not {weight}")
        fd = self._dir_for("cpu")
        if self.layout.hierarchy_for("cpu").version == 2:
            fd.write("cpu.weight", weight)
        else:
            fd.write("cpu.shares", 2 + (weight - 1) * 262142 // 9999)

    def set_cpuset(self, *, cpus: str | None = None, mems: str | None = None) -> None:
        """Allowed CPUs and memory nodes ("0-1,3"): cpuset.cpus / cpuset.mems (v1 and v2)."""
        fd = self._dir_for("cpuset")
        if cpus is not None:
            fd.write("cpuset.cpus", cpus)
        if mems is not None:
            fd.write("cpuset.mems", mems)

    def set_devices(self, allow: list[str], *, bpf: bool | None = None) -> None:
        """Deny every device, then allow the rules given (``"c 1:3 rwm"``: /dev/null;
        ``"b 8:* r"``; ``"a"``: everything).

        v1: devices.deny / devices.allow.  v2: an eBPF program
        (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup, replacing the one an
        earlier call attached.  ``bpf`` picks the v2 way on a hybrid host too
        (default: where the devices controller lives; eBPF on a pure v2 host).
        """
        from nsbind import devicebpf  # bpf(2) code loads when device rules are set

        rules = [devicebpf.parse_rule(rule) for rule in allow]  # ValueError first
        h = self.layout.controllers.get("devices")
        use_bpf = (h is None or h.version == 2) if bpf is None else bpf
        if not use_bpf:
            if h is None:
                raise LookupError("this host has no devices controller")
            fd = self._dirs[h]
            fd.write("devices.deny", "a")
            for rule in rules:
                fd.write("devices.allow", str(rule))
            return
        v2 = self.v2
        if v2 is None:
            raise LookupError(f"cgroup {self.path} has no cgroup v2 directory for a device "
                              "program")
        prog = devicebpf.load(rules)
        try:
            devicebpf.attach(prog, v2.fileno(), v2.path)
        except BaseException:
            prog.close()
            raise
        old, self._device_prog = self._device_prog, prog
        if old is not None:
            try:
                devicebpf.detach(old, v2.fileno(), v2.path)
            finally:
                old.close()

    def set_io_weight(self, weight: int) -> None:
        """Proportional IO share, 1..10000 (default 100): io.weight on v2 (blk-iocost) or
        io.bfq.weight; on v1 blkio.weight / blkio.bfq.weight (10..1000, converted as
        runc does).  LookupError when no IO scheduler here weighs cgroups."""
        if not 1 <= weight <= 10000:
            raise ValueError(f"io weight must be within 1..10000, not {weight}")
        controller = "io" if "io" in self.layout.controllers else "blkio"
        h = self.layout.hierarchy_for(controller)
        base = h.path_of(self.path)
        if h.version == 2:
            names, value = ["io.weight", "io.bfq.weight"], weight
        else:
            names, value = ["blkio.weight", "blkio.bfq.weight"], 10 + (weight - 1) * 990 // 9999
        name = next((n for n in names if os.path.exists(os.path.join(base, n))), None)
        if name is None:
            raise LookupError(f"no {' or '.join(names)} in {base}: no IO scheduler here "
                              "weighs cgroups (blk-iocost on v2, BFQ)")
        self._dirs[h].write(name, value if h.version == 1 or name == "io.bfq.weight"
                            else f"default {value}")

    def set_io_limits(self, device: str, *, read_bps: int | None = None,
                      write_bps: int | None = None, read_iops: int | None = None,
                      write_iops: int | None = None) -> None:
        """Throttle one block device ("major:minor"): io.max on v2, blkio.throttle.* on v1."""
        limits = {"rbps": read_bps, "wbps": write_bps, "riops": read_iops, "wiops": write_iops}
        given = {k: v for k, v in limits.items() if v is not None}
        if not given:
            return
        controller = "io" if "io" in self.layout.controllers else "blkio"
        h = self.layout.hierarchy_for(controller)
        fd = self._dirs[h]
        if h.version == 2:
            fd.write("io.max", f"{device} " + " ".join(f"{k}={v}" for k, v in given.items()))
            return
        files = {"rbps": "read_bps_device", "wbps": "write_bps_device",
                 "riops": "read_iops_device", "wiops": "write_iops_device"}
        for key, value in given.items():
            fd.write(f"blkio.throttle.{files[key]}", f"{device} {value}")

    def cpu_usage_us(self) -> int:
        """CPU time used by the members, in microseconds (cpu.stat usage_usec on v2,
        cpuacct.usage on v1)."""
        try:
            h = self.layout.hierarchy_for("cpuacct")
        except LookupError:
            h = self.layout.hierarchy_for("cpu")
        fd = self._dirs[h]
        if h.version == 2:
            return parse_flat(fd.read("cpu.stat"))["usage_usec"]
        return int(fd.read("cpuacct.usage")) // 1000

    def oom_kills(self) -> int:
        """How many members the OOM killer ended (memory.events or memory.oom_control)."""
        h = self.layout.hierarchy_for("memory")
        text = self._dir_for("memory").read("memory.events" if h.version == 2
                                            else "memory.oom_control")
        return parse_flat(text).get("oom_kill", 0)

    def set_memory_high(self, value: int | str) -> None:
        """Throttling threshold: memory.high on v2; v1 has only the soft limit
        (memory.soft_limit_in_bytes, reclaimed under global pressure)."""
        h = self.layout.hierarchy_for("memory")
        self._dir_for("memory").write("memory.high" if h.version == 2
                                      else "memory.soft_limit_in_bytes", value)

    def set_memory_swap_max(self, value: int | str) -> None:
        """Swap limit: memory.swap.max on v2; on v1 memory.memsw.limit_in_bytes (memory
        plus swap: set memory_max first).  LookupError without swap accounting."""
        h = self.layout.hierarchy_for("memory")
        name = "memory.swap.max" if h.version == 2 else "memory.memsw.limit_in_bytes"
        if not os.path.exists(os.path.join(h.path_of(self.path), name)):
            raise LookupError(f"{name} is missing on {h.path_of(self.path)}: this kernel "
                              "has no swap accounting (CONFIG_MEMCG_SWAP, swapaccount=1)")
        self._dir_for("memory").write(name, value)

    def set_hugetlb_max(self, page_size: str, value: int | str) -> None:
        """HugeTLB limit for one page size ("2MB", "1GB"): hugetlb.<size>.max on v2,
        hugetlb.<size>.limit_in_bytes on v1."""
        h = self.layout.hierarchy_for("hugetlb")
        suffix = "max" if h.version == 2 else "limit_in_bytes"
        self._dir_for("hugetlb").write(f"hugetlb.{page_size}.{suffix}", value)

    def set_net_cls_classid(self, classid: int) -> None:
        """net_cls.classid (v1 only): the tc class of the members' packets (0xAAAABBBB)."""
        self._dir_for("net_cls").write("net_cls.classid", classid)

    def set_net_prio(self, priorities: dict[str, int]) -> None:
        """net_prio.ifpriomap (v1 only): the socket priority per interface."""
        fd = self._dir_for("net_prio")
        for ifname, prio in priorities.items():
            fd.write("net_prio.ifpriomap", f"{ifname} {prio}")

    # ------------------------------------------------------------ stats and events

    def _has(self, controller: str) -> CgroupFd | None:
        try:
            return self._dir_for(controller)
        except LookupError:
            return None

    def stats(self) -> CgroupStats:
        """Memory current/peak/stat, CPU usage, pids, per-device IO and OOM kills."""
        mem = self._has("memory")
        v2mem = mem is not None and self.layout.hierarchy_for("memory").version == 2
        current = peak = None
        memory_stat: dict[str, int] = {}
        if mem is not None:
            cur = _try_read(mem, "memory.current" if v2mem else "memory.usage_in_bytes")
            top = _try_read(mem, "memory.peak" if v2mem else "memory.max_usage_in_bytes")
            current = None if cur is None else int(cur)
            peak = None if top is None else int(top)
            memory_stat = parse_flat(_try_read(mem, "memory.stat") or "")
        pids = self._has("pids")
        pids_now = None if pids is None else int(pids.read("pids.current"))
        io: dict[str, dict[str, int]] = {}
        if (fd := self._has("io")) is not None:
            io = parse_io_stat(_try_read(fd, "io.stat") or "")
        elif (fd := self._has("blkio")) is not None:
            io = parse_blkio(_try_read(fd, "blkio.throttle.io_service_bytes") or "",
                             _try_read(fd, "blkio.throttle.io_serviced") or "")
        cpu = None
        with contextlib.suppress(LookupError, KeyError):
            cpu = self.cpu_usage_us()
        return CgroupStats(current, peak, memory_stat, cpu, pids_now, io,
                           self.oom_kills() if mem is not None else None)

    def events(self) -> dict[str, int]:
        """cgroup.events (populated, frozen; v2) merged with memory.events or
        memory.oom_control (oom, oom_kill, ...)."""
        out: dict[str, int] = {}
        if self.v2 is not None:
            out.update(self.v2.events())
        mem = self._has("memory")
        if mem is not None:
            v2mem = self.layout.hierarchy_for("memory").version == 2
            out.update(parse_flat(mem.read("memory.events" if v2mem
                                           else "memory.oom_control")))
        return out

    def watch(self) -> EventsWatch:
        """A pollable watch of the v2 cgroup.events (``fileno()`` for select/asyncio)."""
        if self.v2 is None:
            raise LookupError(f"cgroup {self.path} has no cgroup v2 directory to watch")
        return EventsWatch(self.v2)

    def wait_until_empty(self, timeout: float | None = None) -> bool:
        """Block until no process is left (False after ``timeout`` seconds)."""
        if self.v2 is None:
            return wait_until(None, lambda: not self.procs(), timeout)
        with self.watch() as w:
            return wait_until(w, lambda: w.read().get("populated") == 0, timeout)

    async def wait_empty(self) -> None:
        """Wait on the event loop until no process is left (the kernel's notification
        on cgroup.events: no thread, no busy loop; v1-only hosts poll)."""
        if self.v2 is None:
            await wait_until_async(None, lambda: not self.procs())
            return
        with self.watch() as w:
            await wait_until_async(w, lambda: w.read().get("populated") == 0)

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every member (cgroup.freeze on v2, freezer.state on v1) and wait until
        the kernel reports it frozen (``frozen 1`` in cgroup.events, ``FROZEN``)."""
        if self.v2 is not None:
            with self.watch() as w:
                self.v2.freeze()
                done = wait_until(w, lambda: w.read().get("frozen") == 1, timeout)
        else:
            fd = self._dir_for("freezer")
            fd.write("freezer.state", "FROZEN")
            done = wait_until(None, lambda: fd.read("freezer.state").strip() == "FROZEN",
                              timeout)
        if not done:
            raise TimeoutError(f"cgroup {self.path} did not freeze within {timeout} s")

    def thaw(self) -> None:
        if self.v2 is not None:
            self.v2.thaw()
        else:
            self._dir_for("freezer").write("freezer.state", "THAWED")

    def kill(self) -> None:
        """SIGKILL every member: cgroup.kill on v2 (Linux 5.14), else freeze, signal, thaw."""
        v2 = self.v2
        if v2 is not None:
            v2.kill()
            return
        self.freeze()
        try:
            for pid in self.procs():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.thaw()

    def __repr__(self) -> str:
        return f"<Cgroup {self.path} in {len(self._dirs)} hierarchies>"
