"""The spawn plan: Python's description of a child, laid out as the C engine reads it.

A :class:`Plan` owns every cffi buffer the C child reads (strings, arrays), so
they stay alive until the child has exec'd.  It also knows how to name each
step for a :class:`SpawnError` (``mount proc on /proc: EPERM``).
"""

from __future__ import annotations

import errno
import os
import resource

# collections.abc's class, without importing the collections package
from _collections_abc import Mapping

from nsbind._native import ffi, lib
from nsbind._sys.fd import PathLike, fsbytes
from nsbind._sys.proc import Capability
from nsbind.errors import InvalidValue, NsbindError, error_for
from nsbind.flags import Namespace
from nsbind.fnlite import lru_cache
from nsbind.frozen import frozen
from nsbind.mountstep import MountStep, MountSteps, report_message

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from nsbind.seccomp import Program

__all__ = ["CapabilitySets", "MountStep", "Plan", "SpawnError", "SpawnNotFound",
           "SpawnPermissionDenied"]


class SpawnError(NsbindError):
    """A step of a spawn failed (in the child, or in the parent around it).

    ``step`` names the step (``"mount"``, ``"exec"``, ``"write uid_map"``, ...); the
    message names the step and its argument: ``mount proc on /proc: EPERM (...)``.
    """

    @property
    def step(self) -> str:
        return self.syscall


class SpawnNotFound(SpawnError, FileNotFoundError):
    """A spawn step failed with ENOENT (e.g. ``exec /bin/nosuch``)."""


class SpawnPermissionDenied(SpawnError, PermissionError):
    """A spawn step failed with EPERM or EACCES."""


def spawn_error(err: int, step: str, what: str, target: str | None = None,
                detail: str | None = None) -> SpawnError:
    """The SpawnError subclass for ``err``."""
    builtin = type(error_for(err, step))
    cls: type[SpawnError] = SpawnError
    if issubclass(builtin, FileNotFoundError):
        cls = SpawnNotFound
    elif issubclass(builtin, PermissionError):
        cls = SpawnPermissionDenied
    return cls(err, step, target, what, detail)


@frozen
class CapabilitySets:
    """The capabilities a spawned process keeps (everything else is dropped).

    ``bounding`` defaults to ``permitted``; ``effective`` to ``permitted``.
    """

    permitted: frozenset[int]
    effective: frozenset[int] | None = None
    inheritable: frozenset[int] = frozenset()
    ambient: frozenset[int] = frozenset()
    bounding: frozenset[int] | None = None


def _mask(caps: frozenset[int]) -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << int(cap)
    return mask


_RLIMIT_NAMES = {getattr(resource, n): n for n in sorted(dir(resource), reverse=True)
                 if n.startswith("RLIMIT_") and n != "RLIMIT_OFILE"}


class Plan:
    """Build a ``struct nsb_spawn_plan``; every buffer lives as long as the Plan."""

    def __init__(self) -> None:
        self._keep: list[Any] = []
        self.c: Any = ffi.new("struct nsb_spawn_plan *")
        lib.nsb_spawn_plan_init(self.c)
        #: where a vfork-style child reports a failed step
        self.report: Any = ffi.new("struct nsb_spawn_report *")
        self.exec_paths: list[str] = []
        self.mounts = _NO_MOUNTS
        self.rlimits: list[tuple[int, int, int]] = []
        self.fd_sources: list[str] = []
        self.hostname: str | None = None
        self.domainname: str | None = None
        self.pivot_root: str | None = None
        self.cwd: str | None = None
        self.groups: list[int] = []
        self.setns: list[tuple[int, int]] = []
        self.seccomp: Program | None = None

    def copy(self) -> Plan:
        """A plan for another spawn with the same static part: a copy of the C struct
        whose pointers share this plan's (read-only) buffers."""
        new = Plan.__new__(Plan)
        new.__dict__.update(self.__dict__)
        new._keep = [self]  # its buffers live as long as the copy
        new.c = ffi.new("struct nsb_spawn_plan *", self.c[0])
        new.report = ffi.new("struct nsb_spawn_report *")
        if self.c.report != ffi.NULL:
            new.c.report = new.report  # the copy's child reports into the copy's own
        return new

    # -------------------------------------------------------------- buffers

    def _str(self, value: str | bytes | None) -> Any:
        if value is None:
            return ffi.NULL
        raw = value.encode() if isinstance(value, str) else value
        if b"\0" in raw:
            raise InvalidValue(f"string contains a NUL byte: {raw!r}")
        buf = ffi.new("char[]", raw)
        self._keep.append(buf)
        return buf

    # -------------------------------------------------------------- setters

    def set_exec(self, paths: Sequence[str], argv: Sequence[str | bytes],
                 env: Mapping[str, str] | Sequence[bytes]) -> None:
        self.exec_paths = list(paths)
        raw_paths = [fsbytes(p) for p in paths]
        raw_argv = [os.fsencode(a) for a in argv]
        if isinstance(env, (dict, Mapping)):  # dict first: the fast check
            pairs = []
            for k, v in env.items():
                if "=" in k or not k:
                    raise InvalidValue(f"invalid environment variable name {k!r}")
                pairs.append(os.fsencode(k) + b"=" + os.fsencode(v))
        else:
            pairs = list(env)
        # every string in one buffer and the three NULL-terminated arrays in one
        # more, filled by C: two allocations however long the environment is
        strings = raw_paths + raw_argv + pairs
        blob = b"\0".join(strings) + b"\0"
        if blob.count(b"\0") != len(strings) + (not strings):
            bad = next(s for s in strings if b"\0" in s)
            raise InvalidValue(f"string contains a NUL byte: {bad!r}")
        counts = (len(raw_paths), len(raw_argv), len(pairs))
        buf = ffi.new("char[]", blob)
        arr = ffi.new("char *[]", len(strings) + 3)
        lib.nsb_strv_fill(buf, arr, _int_array(counts), 3)
        self._keep += [buf, arr]
        self.c.exec_paths = arr
        self.c.argv = arr + (counts[0] + 1)
        self.c.envp = arr + (counts[0] + counts[1] + 2)

    def set_names(self, hostname: str | None, domainname: str | None) -> None:
        self.hostname, self.domainname = hostname, domainname
        self.c.hostname = self._str(hostname)
        self.c.domainname = self._str(domainname)

    def set_mounts(self, steps: Sequence[MountStep]) -> None:
        # the same steps (e.g. only the propagation change) come again and again:
        # their C array is read-only, so spawns share it
        self.mounts = _mount_steps(tuple(steps))
        if self.mounts.steps:
            self.c.mounts = self.mounts.c
            self.c.n_mounts = len(self.mounts)

    def set_root(self, pivot_root: PathLike | None, cwd: PathLike | None) -> None:
        self.pivot_root = None if pivot_root is None else os.fsdecode(fsbytes(pivot_root))
        self.cwd = None if cwd is None else os.fsdecode(fsbytes(cwd))
        self.c.pivot_root = self._str(None if pivot_root is None else fsbytes(pivot_root))
        self.c.cwd = self._str(None if cwd is None else fsbytes(cwd))

    def set_rlimits(self, rlimits: Mapping[int, tuple[int, int]]) -> None:
        self.rlimits = [(int(r), soft, hard) for r, (soft, hard) in rlimits.items()]
        if not self.rlimits:
            return
        arr: Any = ffi.new("struct nsb_rlimit[]", len(self.rlimits))
        for i, (res, soft, hard) in enumerate(self.rlimits):
            arr[i].resource = res
            arr[i].soft = soft if soft >= 0 else resource.RLIM_INFINITY
            arr[i].hard = hard if hard >= 0 else resource.RLIM_INFINITY
        self._keep.append(arr)
        self.c.rlimits = arr
        self.c.n_rlimits = len(self.rlimits)

    def set_ids(self, uid: int | None, gid: int | None, groups: Sequence[int] | None) -> None:
        self.c.uid = -1 if uid is None else uid
        self.c.gid = -1 if gid is None else gid
        if groups is not None:
            self.groups = list(groups)
            arr = ffi.new("unsigned int[]", self.groups or [0])
            self._keep.append(arr)
            self.c.set_groups = 1
            self.c.groups = arr
            self.c.n_groups = len(self.groups)

    def set_caps(self, caps: CapabilitySets | None) -> None:
        if caps is None:
            return
        c: Any = self.c
        c.set_caps = 1
        c.cap_permitted = _mask(caps.permitted)
        c.cap_effective = _mask(caps.permitted if caps.effective is None else caps.effective)
        # an ambient capability must also be inheritable (and permitted)
        c.cap_inheritable = _mask(caps.inheritable | caps.ambient)
        c.cap_ambient = _mask(caps.ambient)
        c.cap_bounding = _mask(caps.permitted if caps.bounding is None else caps.bounding)

    def set_cgroup_procs(self, fds: Sequence[int]) -> None:
        """cgroup.procs fds of v1 hierarchies the child joins (writing "0")."""
        if fds:
            arr = ffi.new("int[]", list(fds))
            self._keep.append(arr)
            self.c.cgroup_procs_fds, self.c.n_cgroup_procs = arr, len(fds)

    def set_setns(self, joins: Sequence[tuple[int, int]]) -> None:
        """Namespaces the child joins first: (fd, CLONE_NEW* type)."""
        self.setns = list(joins)
        fds = ffi.new("int[]", [fd for fd, _ in joins])
        types = ffi.new("int[]", [t for _, t in joins])
        self._keep += [fds, types]
        self.c.setns_fds, self.c.setns_types, self.c.n_setns = fds, types, len(joins)

    def set_fds(self, moves: Sequence[tuple[int, int, str]], keep: Sequence[int] | None) -> None:
        """``moves``: (source fd, target fd, description); ``keep``: fds left open (or None)."""
        self.fd_sources = [desc for _, _, desc in moves]
        if moves:
            arr: Any = ffi.new("struct nsb_fd_map[]", len(moves))
            for i, (src, dst, _) in enumerate(moves):
                setattr(arr[i], "from", src)  # a Python keyword
                arr[i].to = dst
            self._keep.append(arr)
            self.c.fds = arr
            self.c.n_fds = len(moves)
        if keep is not None:
            kept = tuple(sorted(set(keep)))
            karr = _int_array(kept)
            self._keep.append(karr)  # alive while this plan (or a copy) is, cache or not
            self.c.close_fds = 1
            self.c.keep_fds = karr
            self.c.n_keep_fds = len(kept)

    def set_seccomp(self, program: Program) -> None:
        """The BPF program the child loads right before the exec (this plan owns the
        buffer: a cffi allocation, aligned for struct sock_filter)."""
        self.seccomp = program
        buf = ffi.new("char[]", program.bpf)
        self._keep.append(buf)
        self.c.seccomp_filter = buf
        self.c.seccomp_len = len(program.bpf) // 8
        self.c.seccomp_flags = program.flags

    # -------------------------------------------------------------- reporting

    def detail(self, report: Any) -> str | None:
        """Extra words for a report: for a mount, the phase and the kernel's message."""
        if report.step == lib.NSB_STEP_SECCOMP:
            return self._seccomp_detail(report.err)
        if report.step == lib.NSB_STEP_GATE:
            return ("the child reopens the FIFO through /proc/self/fd: its root needs procfs "
                    "of its pid namespace at /proc")
        if report.step != lib.NSB_STEP_MOUNT:
            return None
        msg = report_message(report)
        return self.mounts.explain(report.index, report.err, report.phase, msg)[1]

    def describe(self, step: int, index: int) -> tuple[str, str]:
        """(step name, the step with its argument) for a report from the child."""
        s = lib
        if step == s.NSB_STEP_EXEC:
            path = self.exec_paths[index] if 0 <= index < len(self.exec_paths) else "?"
            return "exec", f"exec {path}"
        if step == s.NSB_STEP_MOUNT:
            return "mount", self.mounts.steps[index].describe()
        if step == s.NSB_STEP_PIVOT_ROOT:
            return "pivot_root", self._pivot_substep(index)
        if step == s.NSB_STEP_CHDIR:
            return "chdir", f"chdir {self.cwd}"
        if step == s.NSB_STEP_HOSTNAME:
            return "sethostname", f"sethostname {self.hostname!r}"
        if step == s.NSB_STEP_DOMAINNAME:
            return "setdomainname", f"setdomainname {self.domainname!r}"
        if step == s.NSB_STEP_RLIMIT:
            res, soft, hard = self.rlimits[index]
            return "setrlimit", f"setrlimit {_RLIMIT_NAMES.get(res, res)} {soft}:{hard}"
        if step == s.NSB_STEP_SETGROUPS:
            return "setgroups", f"setgroups {self.groups}"
        if step == s.NSB_STEP_SETGID:
            return "setgid", f"setgid {self.c.gid}"
        if step == s.NSB_STEP_SETUID:
            if index == s.NSB_SUB_SETUID_KEEPCAPS:
                return "setuid", "keep capabilities across setuid"
            return "setuid", f"setuid {self.c.uid}"
        if step == s.NSB_STEP_CAPBSET:
            return "capbset", f"drop {_capname(index)} from the bounding set"
        if step == s.NSB_STEP_AMBIENT:
            if index == s.NSB_SUB_AMBIENT_CLEAR:
                return "ambient", "clear ambient capabilities"
            return "ambient", f"raise ambient {_capname(index)}"
        if step == s.NSB_STEP_CAPSET:
            if index == s.NSB_SUB_CAPSET_CLEAR_INHERITABLE:
                return "capset", "capset (clear the inheritable set)"
            return "capset", "capset"
        if step == s.NSB_STEP_LOOPBACK:
            return "loopback", _LOOPBACK_SUBSTEPS.get(index, "bring lo up")
        if step == s.NSB_STEP_SIGNALS:
            if index == s.NSB_SUB_SIGNALS_MASK:
                return "signals", "empty the signal mask"
            return "signals", f"reset the handler of signal {index}"
        if step == s.NSB_STEP_CGROUP:
            return "cgroup", f"join cgroup v1 hierarchy #{index} (write 0 to cgroup.procs)"
        if step == s.NSB_STEP_SETNS:
            fd, kind = self.setns[index]
            name = next((ns.value for ns in Namespace if int(ns.flag) == kind), str(kind))
            return "setns", f"join the {name} namespace (fd {fd})"
        if step == s.NSB_STEP_DUP2:
            return "dup2", f"dup2 {self.fd_sources[index]}"
        if step == s.NSB_STEP_TERMINAL:
            return "terminal", _TERMINAL_SUBSTEPS.get(index, f"terminal (sub-step {index})")
        if step == s.NSB_STEP_CONSOLE:
            return "console", _CONSOLE_SUBSTEPS.get(index, f"console (sub-step {index})")
        simple = {
            s.NSB_STEP_SYNC: ("sync", "become root of the new user namespace"
                              if index == s.NSB_SUB_SYNC_ROOT
                              else "wait for the parent to write the id maps"),
            s.NSB_STEP_UNSHARE: ("unshare", "unshare a private copy of the prepared root's "
                                            "mount namespace"),
            s.NSB_STEP_SETSID: ("setsid", "setsid"),
            s.NSB_STEP_SETPGID: ("setpgid", f"setpgid {self.c.pgid}"),
            s.NSB_STEP_INIT: ("init", "fork the command under init"),
            s.NSB_STEP_NO_NEW_PRIVS: ("no_new_privs", "set no_new_privs"),
            s.NSB_STEP_PDEATHSIG: ("pdeathsig", "set the parent-death signal"),
            s.NSB_STEP_CLOSE_RANGE: ("close_range", "close_range (close every fd not kept)"),
            s.NSB_STEP_SECCOMP: ("seccomp", "load the seccomp filter"),
            s.NSB_STEP_GATE: ("gate", "wait for start (exec fifo)"),
        }
        return simple.get(step, (f"step {step}", f"step {step}"))

    def _seccomp_detail(self, err: int) -> str:
        """Why the kernel may have refused the filter."""
        from nsbind.seccomp import flag_names  # loaded by the spawn that had a filter

        program = self.seccomp
        size = 0 if program is None else len(program.bpf) // 8
        flags = flag_names(0 if program is None else program.flags)
        if err == errno.EACCES:
            return ("seccomp(2) needs no_new_privs or CAP_SYS_ADMIN in the child's user "
                    "namespace, and the child has neither by then: spawn with "
                    "no_new_privs=True (or keep CAP_SYS_ADMIN)")
        return f"a program of {size} instructions, flags {flags}"

    def _pivot_substep(self, index: int) -> str:
        """The PIVOT_ROOT sub-step a report's index names (``enum nsb_spawn_substep``)."""
        s = lib
        words = {
            s.NSB_SUB_PIVOT_ENTER: f"enter the new root {self.pivot_root}",
            s.NSB_SUB_PIVOT_ROOT: f"pivot_root to {self.pivot_root}",
            s.NSB_SUB_PIVOT_DETACH: "detach the old root",
            s.NSB_SUB_PIVOT_CHDIR: "chdir / in the new root",
        }
        return words.get(index, f"pivot_root to {self.pivot_root} (sub-step {index})")


_NO_MOUNTS = MountSteps(())

_LOOPBACK_SUBSTEPS = {
    lib.NSB_SUB_LOOPBACK_SOCKET: "bring lo up (open a socket for its ioctls)",
    lib.NSB_SUB_LOOPBACK_GETFLAGS: "bring lo up (read its flags: SIOCGIFFLAGS)",
    lib.NSB_SUB_LOOPBACK_SETFLAGS: "bring lo up (set IFF_UP: SIOCSIFFLAGS)",
}

_TERMINAL_SUBSTEPS = {
    lib.NSB_SUB_TTY_PTMX: "open /dev/ptmx",
    lib.NSB_SUB_TTY_UNLOCK: "unlock the pty (ioctl TIOCSPTLCK)",
    lib.NSB_SUB_TTY_PEER: "open the pty's peer (ioctl TIOCGPTPEER)",
    lib.NSB_SUB_TTY_WINSIZE: "set the terminal's window size (ioctl TIOCSWINSZ)",
    lib.NSB_SUB_TTY_SEND: "send the pty master to the parent (SCM_RIGHTS)",
    lib.NSB_SUB_TTY_SETSID: "setsid (a session for the terminal)",
    lib.NSB_SUB_TTY_SETCTTY: "make the pty the controlling terminal (ioctl TIOCSCTTY)",
    lib.NSB_SUB_TTY_STDIO: "dup2 the pty onto stdin, stdout and stderr",
}

_CONSOLE_SUBSTEPS = {
    lib.NSB_SUB_CONSOLE_DEV: "open /dev (a directory, not a symlink)",
    lib.NSB_SUB_CONSOLE_UNLINK: "unlink /dev/console",
    lib.NSB_SUB_CONSOLE_CREATE: "create /dev/console (a fresh file)",
    lib.NSB_SUB_CONSOLE_CLONE: "clone the pty's peer for /dev/console (open_tree)",
    lib.NSB_SUB_CONSOLE_MOUNT: "bind the pty's peer onto /dev/console (move_mount)",
}


@lru_cache(maxsize=64)
def _int_array(values: tuple[int, ...]) -> Any:
    """A read-only ``int[]`` of ``values``, shared by the plans that keep the same fds."""
    return ffi.new("int[]", values or (0,))


@lru_cache(maxsize=64)
def _mount_steps(steps: tuple[MountStep, ...]) -> MountSteps:
    return MountSteps(steps)


def _capname(cap: int) -> str:
    try:
        return f"CAP_{Capability(cap).name}"
    except ValueError:
        return f"capability {cap}"
