"""Control groups: one logical cgroup across every mounted hierarchy of the host.

:class:`Cgroup` creates (or opens) the same path in the cgroup v2 hierarchy and in each v1
hierarchy with controllers, and speaks of controllers, not of where they are mounted: where each
lives comes from :mod:`nsbind.cgrouplayout`, which file a setting writes on v1 or v2 (and how the
value is converted) from the tables of :mod:`nsbind.cgroupsettings`.  Every value is checked before
anything is created or written (ValueError naming the argument).  A cgroup is reached once, through
directory fds opened without following symlinks or crossing mounts; every later operation goes
through those fds.
"""

from __future__ import annotations

import errno
import os
import time

from nsbind import features, signals
from nsbind._sys.fd import OwnedFd
from nsbind._sys.proc import PidFd
from nsbind.cgroupcontrollers import check_enabled, check_root_enables, usable_controllers
from nsbind.cgroupdirs import rmdir_if_same
from nsbind.cgroupfs import CgroupFd
from nsbind.cgrouplayout import (
    CgroupLayout,
    Hierarchy,
    cgroup_layout,
    cgroup_path_parts,
    check_cgroup_name,
    delegated_subtree,
    enable_controllers,
    mkdir_cgroup,
    mount_v1,
    open_cgroup,
    open_in_hierarchy,
    privileged_over,
    unmount_v1,
)
from nsbind.cgroupsettings import (
    READINGS,
    SETTINGS,
    CpuMax,
    HugetlbMax,
    IoLimits,
    Reading,
    Setting,
    check_cpus,
    check_device,
    check_io_rate,
    check_memory_size,
    check_page_size,
    check_period,
)
from nsbind.cgroupstats import CgroupStats, EventsWatch, wait_until, wait_until_async
from nsbind.ctxlite import suppress
from nsbind.errors import Expired, InUse, InvalidValue, LookupFailed, Missing, error_for

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_PARENT", "Cgroup", "CgroupLayout", "CgroupStats", "Hierarchy",
           "cgroup_layout", "mkdir_cgroup", "mount_v1", "unmount_v1", "usable_controllers"]

#: where root's cgroups go when ``create`` is given no parent (as Docker uses /docker)
DEFAULT_PARENT = "nsbind"

#: the settings ``Cgroup.create`` takes as keywords, applied in this order
CREATE_SETTINGS = ("memory_max", "memory_high", "memory_swap_max", "pids_max", "cpu_max",
                   "cpu_weight", "cpu_shares", "cpuset_cpus", "cpuset_mems")


def _has_file(fd: CgroupFd, name: str) -> bool:
    try:
        os.stat(name, dir_fd=fd.fileno(), follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _step(h: Hierarchy, here: CgroupFd, part: str,
          made: list[tuple[CgroupFd, str]]) -> CgroupFd:
    """Open (creating it if missing) the parent cgroup ``part`` below ``here``;
    a directory this call creates is recorded in ``made``."""
    try:
        child = mkdir_cgroup(h, here, part)
    except FileExistsError:
        return mkdir_cgroup(h, here, part, exist_ok=True)
    made.append((here, part))
    return child


class Cgroup:
    """One logical cgroup that spans every mounted hierarchy of the host.

    On a unified host that is one cgroup v2 directory; on a hybrid host (like
    one with memory, pids, cpu... on v1) the same path is created in the v2
    hierarchy and in each v1 hierarchy with controllers.  Create with
    :meth:`create`; ``remove()`` (or leaving the ``with`` block) kills the members
    and removes every directory it created.  Needs root (write access to the
    hierarchies), or a delegated v2 subtree."""

    def __init__(self, path: str, dirs: dict[Hierarchy, CgroupFd], layout: CgroupLayout,
                 parents: dict[Hierarchy, CgroupFd] | None = None) -> None:
        #: the cgroup's path inside each hierarchy, e.g. ``/nsbind/job-42``
        self.path = path
        self.layout = layout
        self._dirs = dirs
        self._parents = {} if parents is None else parents  # for rmdir
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
        cpu_shares: int | None = None,
        cpuset_cpus: str | None = None,
        cpuset_mems: str | None = None,
        layout: CgroupLayout | None = None,
    ) -> Cgroup:
        """Create ``<parent>/<name>`` in every hierarchy and apply the limits given.

        ``parent`` is a path below each hierarchy's root (created if missing).
        For root it defaults to ``nsbind`` (as Docker uses ``/docker``) - never
        the caller's own cgroup.  A non-root caller (also root of a user namespace,
        which may write no hierarchy's root) gets the cgroup v2 subtree delegated to
        it (a cgroup it owns, by default its own one) and only the v2 hierarchy;
        without a delegation the error says so.

        Every argument is checked first (ValueError naming it; LookupError for a
        limit whose controller is missing) and nothing is created then.  On a
        later failure every directory this call created is removed again, deepest
        first, in every hierarchy."""
        check_cgroup_name(name)
        parts = None if parent is None else cgroup_path_parts(parent, "parent")
        given = dict(zip(CREATE_SETTINGS, (memory_max, memory_high, memory_swap_max, pids_max,
                                           cpu_max, cpu_weight, cpu_shares, cpuset_cpus,
                                           cpuset_mems), strict=True))
        if cpu_weight is not None and cpu_shares is not None:
            raise InvalidValue(f"cpu_shares={cpu_shares!r}: cpu_weight={cpu_weight!r} sets "
                               "the same file (cpu.shares, cpu.weight); give one of them")
        values = {key: SETTINGS[key].check(key, value)
                  for key, value in given.items() if value is not None}
        layout = layout or cgroup_layout()
        targets, parts = cls._targets(layout, parts)
        self = cls("/" + "/".join([*parts, name]), {}, layout, {})
        placed = [(key, self._hierarchy(SETTINGS[key].controllers)) for key in values]
        for key, h in placed:
            if h not in targets:
                raise LookupFailed(f"{key}: the {h.mountpoint} hierarchy is not delegated to "
                                   f"uid {os.geteuid()}" + " (no v1 one is)" * (h.version == 1))
        check_root_enables(layout, [(k, h, SETTINGS[k].controllers) for k, h in placed])
        self._build(targets, parts, name, values)
        return self

    @staticmethod
    def _targets(layout: CgroupLayout,
                 parts: list[str] | None) -> tuple[list[Hierarchy], list[str]]:
        """(the hierarchies to create the cgroup in, the parent's components)."""
        if not any(h.holds_cgroups for h in layout.hierarchies):
            raise LookupFailed("no cgroup hierarchy is mounted on this host")
        targets = [h for h in layout.hierarchies if h.holds_cgroups and privileged_over(h)]
        if targets:
            return targets, [DEFAULT_PARENT] if parts is None else parts
        # not root, or root of a user namespace: its delegated v2 subtree
        v2, parent = delegated_subtree(layout, None if parts is None else "/" + "/".join(parts))
        return [v2], cgroup_path_parts(parent, "parent")

    def _build(self, targets: list[Hierarchy], parts: list[str], name: str,
               values: dict[str, Any]) -> None:
        """mkdir the parents and the cgroup in every hierarchy, then apply ``values``;
        on failure remove exactly the directories made here, deepest first."""
        made: list[tuple[CgroupFd, str]] = []  # (parent fd, name) of each directory made
        opened: list[CgroupFd] = []
        try:
            for h in targets:
                here, privileged = h.open_root(), privileged_over(h)
                opened.append(here)
                for part in parts:
                    here = _step(h, here, part, made)
                    opened.append(here)
                    if h.version == 2:  # controllers for the cgroup below
                        enable_controllers(here, privileged=privileged)
                self._dirs[h] = mkdir_cgroup(h, here, name)
                made.append((here, name))
                self._parents[h] = here
            for key, value in values.items():
                self._apply(SETTINGS[key], value)
        except BaseException as exc:
            self._undo(made, exc)
            raise
        finally:
            keep = {id(fd) for fd in self._parents.values()}
            for fd in opened:
                if id(fd) not in keep:
                    fd.close()

    def _undo(self, made: list[tuple[CgroupFd, str]], exc: BaseException) -> None:
        for fd in self._dirs.values():
            fd.close()
        self._dirs.clear()
        self._parents.clear()
        left = []
        for parent, name in reversed(made):
            try:
                parent.rmdir(name)
            except OSError as err:
                left.append(str(err))
        if left and hasattr(exc, "add_note"):  # Python 3.11
            exc.add_note("left behind: " + "; ".join(left))

    @classmethod
    def open(cls, path: str, *, layout: CgroupLayout | None = None) -> Cgroup:
        """An existing cgroup (``/nsbind/job-42``) in every hierarchy that has it.

        The path is checked first (no ``..``, ``.``, empty component or NUL: a
        ValueError naming it) and resolved once, beneath each hierarchy's mount,
        refusing symlinks and mount points.  :meth:`remove` then removes it, so
        open only what you own; :meth:`close` lets it go without removing it."""
        parts = cgroup_path_parts(path, "path", allow_root=False)
        layout = layout or cgroup_layout()
        dirs: dict[Hierarchy, CgroupFd] = {}
        parents: dict[Hierarchy, CgroupFd] = {}
        try:
            for h in layout.hierarchies:
                if h.holds_cgroups:
                    found = open_in_hierarchy(h, parts)
                    if found is not None:
                        parents[h], dirs[h] = found
        except BaseException:
            for fd in [*dirs.values(), *parents.values()]:
                fd.close()
            raise
        if not dirs:
            raise Missing(f"no cgroup {'/' + '/'.join(parts)} in any hierarchy "
                          "of this host")
        return cls("/" + "/".join(parts), dirs, layout, parents)

    def remove(self) -> None:
        """Kill every member, wait until the cgroup is empty, remove its directories
        (each only if it is still the directory opened: not one renamed into place)."""
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
        name = self.path.rsplit("/", 1)[-1]
        errors = []
        for h, fd in list(self._dirs.items()):
            try:
                self._rmdir(h, name, fd)
            except OSError as exc:
                errors.append(str(exc))
                continue
            del self._dirs[h]
            fd.close()
            self._parents.pop(h).close()
        if errors:
            raise InUse(f"cannot remove cgroup {self.path}: {'; '.join(errors)}")

    def _rmdir(self, h: Hierarchy, name: str, fd: CgroupFd) -> None:
        """rmdir ``name`` in its parent if it is still the directory ``fd`` is on."""
        parent, mine = self._parent(h), os.fstat(fd.fileno())
        path = f"{parent.path.rstrip('/')}/{name}"
        if not rmdir_if_same(parent.fileno(), name, mine.st_dev, mine.st_ino, path):
            raise error_for(errno.ESTALE, "rmdir", path, what=f"remove cgroup {path}",
                            detail="not the cgroup opened there: renamed or replaced")

    def close(self) -> None:
        """Let the cgroup go without removing it: close its directory fds."""
        for fd in [*self._dirs.values(), *self._parents.values()]:
            fd.close()
        self._dirs.clear()
        self._parents.clear()
        if self._device_prog is not None:
            self._device_prog.close()
            self._device_prog = None

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # ------------------------------------------------------------ where things are

    def _parent(self, h: Hierarchy) -> CgroupFd:
        """The parent directory's fd in ``h`` (opened now for a Cgroup built by hand)."""
        if h not in self._parents:
            parts = cgroup_path_parts(self.path, "path", allow_root=False)
            with h.open_root() as root:
                self._parents[h] = (open_cgroup(root, "/".join(parts[:-1])) if parts[:-1]
                                    else CgroupFd(os.dup(root.fileno()), root.path))
        return self._parents[h]

    def _hierarchy(self, controllers: tuple[str, ...]) -> Hierarchy:
        """The hierarchy of the first of ``controllers`` the host has."""
        for c in controllers:
            if c in self.layout.controllers:
                return self.layout.controllers[c]
        return self.layout.hierarchy_for(controllers[-1])  # the LookupError

    def _dir_in(self, h: Hierarchy) -> CgroupFd:
        try:
            return self._dirs[h]
        except KeyError:
            raise LookupFailed(f"cgroup {self.path} was not created in {h.mountpoint}") from None

    def _dir_for(self, controller: str) -> CgroupFd:
        return self._dir_in(self.layout.hierarchy_for(controller))

    def _apply(self, setting: Setting, value: Any) -> None:
        """Write a checked ``value`` of ``setting`` where its controller lives."""
        h = self._hierarchy(setting.controllers)
        fd = self._dir_in(h)
        check_enabled(self.layout, h, fd, setting.controllers, setting.name, self.path)
        for name, text in setting.writes(h.version, value, lambda f: _has_file(fd, f), fd.path):
            fd.write(name, text)

    def _set(self, key: str, value: object) -> None:
        self._apply(SETTINGS[key], SETTINGS[key].check(key, value))

    def _read(self, reading: Reading, *, required: bool = False) -> Any:
        """A statistic, parsed; None (or, if ``required``, the error) when the host
        has no such controller or the cgroup no such file."""
        try:
            h = self._hierarchy(reading.controllers)
            fd = self._dir_in(h)
            files, parse = reading.source(h.version)
            texts = [fd.read(name) for name in files]
        except (LookupError, FileNotFoundError):
            if required:
                raise
            return None
        return parse(*texts)

    @property
    def v2(self) -> CgroupFd | None:
        """The cgroup v2 directory fd (for CLONE_INTO_CGROUP), if the host has v2."""
        return next((fd for h, fd in self._dirs.items() if h.version == 2), None)

    def directories(self) -> list[tuple[str, int, int]]:
        """Each directory of the cgroup: its path, st_dev and st_ino (of the fds held)."""
        stats = [(fd.path, os.fstat(fd.fileno())) for fd in self._dirs.values()]
        return [(path, st.st_dev, st.st_ino) for path, st in stats]

    def v1_procs_files(self) -> list[str]:
        """The cgroup.procs files of the v1 hierarchies (a spawned child joins them),
        as paths through this object's directory fds (``/proc/thread-self/fd/N/...``):
        valid in the calling thread while the cgroup is open."""
        return [f"/proc/thread-self/fd/{fd.fileno()}/cgroup.procs"
                for h, fd in self._dirs.items() if h.version == 1]

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
        """Memory limit (bytes, or with K/M/G; "max"): memory.max on v2,
        memory.limit_in_bytes on v1."""
        self._set("memory_max", value)

    def set_pids_max(self, value: int | str) -> None:
        """Maximum number of tasks (pids.max, same name on v1 and v2); ``"max"`` for none."""
        self._set("pids_max", value)

    def set_cpu_max(self, cpus: float | None, period_us: int = 100_000) -> None:
        """CPU bandwidth in CPUs (0.5: half of one CPU; None: unlimited) per period (1 ms..1 s):
        ``cpu.max`` = "quota period" on v2; ``cpu.cfs_period_us``, ``cpu.cfs_quota_us`` on v1."""
        period = check_period("period_us", period_us)
        checked = None if cpus is None else check_cpus("cpu_max", cpus, period)
        self._apply(SETTINGS["cpu_max"], CpuMax.of(checked, period))

    def set_cpu_weight(self, weight: int) -> None:
        """Relative CPU share, 1..10000 (default 100): cpu.weight on v2, cpu.shares on v1
        (converted as runc does: shares = 2 + (weight - 1) * 262142 / 9999)."""
        self._set("cpu_weight", weight)

    def set_cpu_shares(self, shares: int) -> None:
        """v1 CPU shares, 2..262144 (default 1024; as ``docker --cpu-shares``, OCI
        ``linux.resources.cpu.shares``): cpu.shares on v1, written as is; on v2
        cpu.weight = 1 + (shares - 2) * 9999 / 262142, as runc converts it."""
        self._set("cpu_shares", shares)

    def set_cpuset(self, *, cpus: str | None = None, mems: str | None = None) -> None:
        """Allowed CPUs and memory nodes ("0-1,3"): cpuset.cpus / cpuset.mems (v1 and v2)."""
        checked = {key: SETTINGS[key].check(key, value)
                   for key, value in (("cpuset_cpus", cpus), ("cpuset_mems", mems))
                   if value is not None}
        for key, value in checked.items():
            self._apply(SETTINGS[key], value)

    def set_devices(self, allow: list[str], *, bpf: bool | None = None) -> None:
        """Deny every device, then allow the rules given (``"c 1:3 rwm"``: /dev/null;
        ``"b 8:* r"``; ``"a"``: everything).

        v1: devices.deny / devices.allow.  v2: an eBPF program
        (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup, replacing the one an
        earlier call attached.  ``bpf`` picks the v2 way on a hybrid host too
        (default: where the devices controller lives; eBPF on a pure v2 host)."""
        rules = SETTINGS["devices"].check("allow", allow)  # ValueError first
        if bpf not in (None, True, False):
            raise InvalidValue(f"bpf={bpf!r}: must be True, False or None")
        h = self.layout.controllers.get("devices")
        if not ((h is None or h.version == 2) if bpf is None else bpf):
            if h is None:
                raise LookupFailed("this host has no devices controller")
            self._apply(SETTINGS["devices"], rules)
            return
        self._attach_device_program(rules)

    def _attach_device_program(self, rules: list[Any]) -> None:
        from nsbind import devicebpf  # bpf(2) code loads when device rules are set

        v2 = self.v2
        if v2 is None:
            raise LookupFailed(f"cgroup {self.path} has no cgroup v2 directory for a device "
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
        self._set("io_weight", weight)

    def set_io_limits(self, device: str, *, read_bps: int | str | None = None,
                      write_bps: int | str | None = None, read_iops: int | str | None = None,
                      write_iops: int | str | None = None) -> None:
        """Throttle one block device ("major:minor") per second ("max": no limit):
        io.max on v2, blkio.throttle.* on v1."""
        dev = check_device("device", device)
        given = {"rbps": ("read_bps", read_bps), "wbps": ("write_bps", write_bps),
                 "riops": ("read_iops", read_iops), "wiops": ("write_iops", write_iops)}
        rates = {key: check_io_rate(arg, value)
                 for key, (arg, value) in given.items() if value is not None}
        if rates:
            self._apply(SETTINGS["io_limits"], IoLimits(dev, rates))

    def set_memory_high(self, value: int | str) -> None:
        """Throttling threshold: memory.high on v2; v1 has only the soft limit
        (memory.soft_limit_in_bytes, reclaimed under global pressure)."""
        self._set("memory_high", value)

    def set_memory_swap_max(self, value: int | str) -> None:
        """Swap limit: memory.swap.max on v2; on v1 memory.memsw.limit_in_bytes (memory
        plus swap: set memory_max first).  LookupError without swap accounting."""
        self._set("memory_swap_max", value)

    def set_hugetlb_max(self, page_size: str, value: int | str) -> None:
        """HugeTLB limit for one page size ("2MB", "1GB"): hugetlb.<size>.max on v2,
        hugetlb.<size>.limit_in_bytes on v1."""
        limit = HugetlbMax(check_page_size("page_size", page_size),
                           check_memory_size("hugetlb_max", value))
        self._apply(SETTINGS["hugetlb_max"], limit)

    def set_net_cls_classid(self, classid: int) -> None:
        """net_cls.classid (v1 only): the tc class of the members' packets (0xAAAABBBB)."""
        self._set("net_cls_classid", classid)

    def set_net_prio(self, priorities: dict[str, int]) -> None:
        """net_prio.ifpriomap (v1 only): the socket priority per interface."""
        self._set("net_prio", priorities)

    # ------------------------------------------------------------ stats and events

    def cpu_usage_us(self) -> int:
        """CPU time used by the members, in microseconds (cpu.stat usage_usec on v2,
        cpuacct.usage on v1)."""
        usage: int = self._read(READINGS["cpu_usage_us"], required=True)
        return usage

    def oom_kills(self) -> int:
        """How many members the OOM killer ended (memory.events or memory.oom_control)."""
        events: dict[str, int] = self._read(READINGS["memory_events"], required=True)
        return events.get("oom_kill", 0)

    def stats(self) -> CgroupStats:
        """Memory current/peak/stat, CPU usage, pids, per-device IO and OOM kills."""
        def read(name: str) -> Any:
            return self._read(READINGS[name])

        events = read("memory_events")
        return CgroupStats(read("memory_current"), read("memory_peak"),
                           read("memory_stat") or {}, read("cpu_usage_us"),
                           read("pids_current"), read("io") or {},
                           None if events is None else events.get("oom_kill", 0))

    def events(self) -> dict[str, int]:
        """cgroup.events (populated, frozen; v2) merged with memory.events or
        memory.oom_control (oom, oom_kill, ...)."""
        out: dict[str, int] = {}
        if self.v2 is not None:
            out.update(self.v2.events())
        out.update(self._read(READINGS["memory_events"]) or {})
        return out

    def watch(self) -> EventsWatch:
        """A pollable watch of the v2 cgroup.events (``fileno()`` for select/asyncio)."""
        if self.v2 is None:
            raise LookupFailed(f"cgroup {self.path} has no cgroup v2 directory to watch")
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
            raise Expired(f"cgroup {self.path} did not freeze within {timeout} s")

    def thaw(self) -> None:
        """Let the members run again (cgroup.freeze=0 on v2, freezer.state=THAWED on v1)."""
        if self.v2 is not None:
            self.v2.thaw()
        else:
            self._dir_for("freezer").write("freezer.state", "THAWED")

    def kill(self) -> None:
        """SIGKILL every member: cgroup.kill on v2 where the kernel has it
        (:func:`nsbind.features.cgroup_kill`, Linux 5.14), else freeze, signal, thaw."""
        v2 = self.v2
        if v2 is not None and features.cgroup_kill():
            v2.kill()
            return
        self.freeze()
        try:
            for pid in self.procs():
                with suppress(ProcessLookupError):
                    os.kill(pid, signals.SIGKILL)
        finally:
            self.thaw()

    def __repr__(self) -> str:
        return f"<Cgroup {self.path} in {len(self._dirs)} hierarchies>"
