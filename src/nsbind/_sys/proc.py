"""Processes: clone3, pidfds, waitid, prctl, capabilities, close_range."""

from __future__ import annotations

import errno
import os
import select

from nsbind import signals
from nsbind._native import ffi, lib
from nsbind._sys.fd import FdLike, OwnedFd, fdnum
from nsbind.enumtypes import IntEnum
from nsbind.errors import InvalidValue, UsageError, check, raise_errno
from nsbind.flags import CloneFlags, WaitFlags, flag_names
from nsbind.frozen import frozen

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = [
    "Capabilities",
    "Capability",
    "PidFd",
    "WaitResult",
    "capbset_drop",
    "capbset_read",
    "capget",
    "capset",
    "clone3",
    "close_range",
    "get_dumpable",
    "get_no_new_privs",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "set_dumpable",
    "set_no_new_privs",
    "set_pdeathsig",
    "thread_count",
    "waitid",
]

_UINT_MAX = 0xFFFFFFFF


# ---------------------------------------------------------------- waitid


@frozen
class WaitResult:
    """What waitid(2) reports about a child: its pid, ``si_code`` and ``si_status``."""

    pid: int
    code: int
    status: int

    @property
    def exited(self) -> bool:
        """The child called exit (``code == CLD_EXITED``)."""
        return self.code == lib.CLD_EXITED

    @property
    def signaled(self) -> bool:
        """The child was killed by a signal (CLD_KILLED or CLD_DUMPED)."""
        return self.code in (lib.CLD_KILLED, lib.CLD_DUMPED)

    @property
    def returncode(self) -> int | None:
        """As ``subprocess``: the exit status, ``-N`` for signal N, None if still running."""
        if self.exited:
            return self.status
        if self.signaled:
            return -self.status
        return None


_EXITED = int(WaitFlags.EXITED)
_NOHANG = int(WaitFlags.NOHANG)


def waitid(pidfd: FdLike, options: int = _EXITED) -> WaitResult | None:
    """waitid(P_PIDFD, pidfd, options): wait for (or, with WNOHANG, poll) a child.

    Returns None when WNOHANG finds no state change.  Only the parent of a
    process can wait for it (ECHILD otherwise).  Retried on EINTR (PEP 475).
    """
    out: Any = ffi.new("struct nsb_wait_result *")
    fd = fdnum(pidfd)
    while lib.nsb_waitid_pidfd(fd, options, out) < 0:
        err = ffi.errno
        if err != errno.EINTR:
            raise_errno(err, "waitid", f"pidfd {fd}")
    if out.pid == 0:
        return None
    return WaitResult(out.pid, out.code, out.status)


# ---------------------------------------------------------------- pidfds


class PidFd(OwnedFd):
    """A pidfd: a handle on one process that cannot be confused by pid reuse.

    It becomes readable (``poll``/``select``/asyncio) when the process exits.
    """

    __slots__ = ("pid",)

    def __init__(self, fd: int, pid: int) -> None:
        super().__init__(fd)
        #: the process id, in the caller's pid namespace, when the fd was made
        self.pid = pid

    @classmethod
    def open(cls, pid: int, *, nonblock: bool = False) -> PidFd:
        """pidfd_open(2) (Linux 5.3): a pidfd for a running process."""
        return pidfd_open(pid, nonblock=nonblock)

    def send_signal(self, sig: int) -> None:
        """pidfd_send_signal(2): signal the process (never a recycled pid)."""
        pidfd_send_signal(self, sig)

    def wait(self, options: int = _EXITED) -> WaitResult:
        """Block until the child changes state (default: exits) and reap it."""
        result = waitid(self, int(options) & ~_NOHANG)  # plain ints: enum ops are slow
        assert result is not None
        return result

    def poll(self) -> WaitResult | None:
        """Reap the child if it has exited, else return None at once."""
        return waitid(self, _EXITED | _NOHANG)

    def readable(self, timeout: float | None = 0.0) -> bool:
        """True once the process has exited (the pidfd polls readable)."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        ms = None if timeout is None else int(timeout * 1000)
        return bool(poller.poll(ms))

    def getfd(self, targetfd: int) -> int:
        """pidfd_getfd(2): duplicate fd ``targetfd`` of the process into ours (CLOEXEC)."""
        return pidfd_getfd(self, targetfd)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<PidFd pid={self.pid} {state}>"


def pidfd_open(pid: int, *, nonblock: bool = False) -> PidFd:
    """pidfd_open(2) (Linux 5.3): a pidfd (O_CLOEXEC) for process ``pid``."""
    flags = lib.PIDFD_NONBLOCK if nonblock else 0
    fd = check(lib.nsb_pidfd_open(pid, flags), "pidfd_open", f"pid {pid}")
    return PidFd(fd, pid)


def pidfd_send_signal(pidfd: FdLike, sig: int) -> None:
    """pidfd_send_signal(2) (Linux 5.1): send ``sig`` to the process behind ``pidfd``."""
    fd = fdnum(pidfd)
    name = signals.describe(sig)
    check(lib.nsb_pidfd_send_signal(fd, sig, 0), "pidfd_send_signal",
          what=f"pidfd_send_signal {name} to pidfd {fd}")


def pidfd_getfd(pidfd: FdLike, targetfd: int) -> int:
    """pidfd_getfd(2) (Linux 5.6): copy fd ``targetfd`` of another process.

    Needs ptrace access to the process (PTRACE_MODE_ATTACH_REALCREDS).  The new
    fd is close-on-exec; the caller owns it.
    """
    fd = fdnum(pidfd)
    return check(lib.nsb_pidfd_getfd(fd, targetfd, 0), "pidfd_getfd",
                 what=f"pidfd_getfd fd {targetfd} of pidfd {fd}")


# ---------------------------------------------------------------- clone3

#: flags a Python child cannot survive: they share memory, threads or the fd table
_CLONE_FORBIDDEN = (CloneFlags.VM | CloneFlags.THREAD | CloneFlags.SIGHAND | CloneFlags.SETTLS
                    | CloneFlags.VFORK | CloneFlags.FILES | CloneFlags.PARENT_SETTID
                    | CloneFlags.CHILD_SETTID | CloneFlags.CHILD_CLEARTID)


def thread_count() -> int:
    """The number of threads of this process (all threads, not only Python's)."""
    return len(os.listdir("/proc/self/task"))


def clone3(
    flags: int = 0,
    *,
    exit_signal: int = signals.SIGCHLD,
    set_tid: Iterable[int] = (),
    cgroup: FdLike | None = None,
) -> tuple[int, PidFd | None]:
    """clone3(2) (Linux 5.3) with fork semantics: the child continues in Python.

    Returns ``(0, None)`` in the child and ``(pid, pidfd)`` in the parent, where
    ``pidfd`` is a :class:`PidFd` if ``CloneFlags.PIDFD`` was given (else None).
    ``cgroup`` (a cgroup v2 directory fd) starts the child in that cgroup
    (CLONE_INTO_CGROUP, Linux 5.7).  ``set_tid`` picks the child's pid in each
    pid namespace, innermost first (Linux 5.5, needs CAP_SYS_ADMIN).

    Like ``os.fork``, fork handlers run and the GIL is held across the call.
    The process must be single-threaded: glibc's own locks are not prepared as
    fork() prepares them.  Flags that share memory, threads or the fd table
    with a Python child (VM, THREAD, FILES, VFORK, ...) are refused; the spawn
    engine uses those, in C.
    """
    flags = int(flags)
    bad = flags & _CLONE_FORBIDDEN
    if bad:
        raise InvalidValue(f"clone3 into Python cannot use {flag_names(CloneFlags, bad)}: "
                           "the child would share memory, threads or fds with this "
                           "interpreter; use nsbind.spawn")
    threads = thread_count()
    if threads > 1:
        raise UsageError(f"clone3 into Python needs a single-threaded process, but {threads} "
                         "threads are alive; use nsbind.spawn (C child) or run the work in a "
                         "process started before the threads")
    args: Any = ffi.new("struct clone_args *")
    pidfd_out = ffi.new("int *", -1)
    tids = list(set_tid)
    tid_array = ffi.new("int[]", tids) if tids else ffi.NULL
    if cgroup is not None:
        flags |= lib.CLONE_INTO_CGROUP
        args.cgroup = fdnum(cgroup)
    args.flags = flags
    args.exit_signal = exit_signal
    if flags & lib.CLONE_PIDFD:
        args.pidfd = int(ffi.cast("uintptr_t", pidfd_out))
    if tids:
        args.set_tid = int(ffi.cast("uintptr_t", tid_array))
        args.set_tid_size = len(tids)

    # in C (pyclone.c): the GIL taken back for the clone and the fork handlers
    # run around it, as os.fork does
    pid = lib.nsb_clone3_python(args, ffi.sizeof("struct clone_args"))
    if pid == 0:
        return 0, None
    if pid < 0:
        raise_errno(ffi.errno, "clone3", what=f"clone3 {flag_names(CloneFlags, flags)}")
    pidfd = PidFd(pidfd_out[0], pid) if flags & lib.CLONE_PIDFD else None
    return pid, pidfd


# ---------------------------------------------------------------- close_range


def close_range(first: int, last: int | None = None, flags: int = 0) -> None:
    """close_range(2) (Linux 5.9): close (or, with CLOEXEC, mark) fds first..last."""
    top = _UINT_MAX if last is None else last
    check(lib.nsb_close_range(first, top, flags), "close_range",
          what=f"close_range {first}..{'max' if last is None else last}")


# ---------------------------------------------------------------- prctl


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2): the raw call; returns the kernel's non-negative result."""
    return check(lib.nsb_prctl(option, arg2, arg3, arg4, arg5), "prctl",
                 what=f"prctl option {option}")


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: execve can no longer grant privileges (irreversible, per thread)."""
    prctl(lib.PR_SET_NO_NEW_PRIVS, 1)


def get_no_new_privs() -> bool:
    """PR_GET_NO_NEW_PRIVS."""
    return prctl(lib.PR_GET_NO_NEW_PRIVS) == 1


def set_pdeathsig(sig: int) -> None:
    """PR_SET_PDEATHSIG: signal this thread gets when its parent thread dies (0: none)."""
    prctl(lib.PR_SET_PDEATHSIG, sig)


def set_dumpable(dumpable: bool) -> None:
    """PR_SET_DUMPABLE: a non-dumpable process cannot be ptraced or read via /proc/<pid>."""
    prctl(lib.PR_SET_DUMPABLE, int(dumpable))


def get_dumpable() -> bool:
    """PR_GET_DUMPABLE."""
    return prctl(lib.PR_GET_DUMPABLE) == 1


# ---------------------------------------------------------------- capabilities


class Capability(IntEnum):
    """Linux capabilities (``capabilities(7)``), numbered as the kernel headers say."""

    CHOWN = lib.CAP_CHOWN
    DAC_OVERRIDE = lib.CAP_DAC_OVERRIDE
    DAC_READ_SEARCH = lib.CAP_DAC_READ_SEARCH
    FOWNER = lib.CAP_FOWNER
    FSETID = lib.CAP_FSETID
    KILL = lib.CAP_KILL
    SETGID = lib.CAP_SETGID
    SETUID = lib.CAP_SETUID
    SETPCAP = lib.CAP_SETPCAP
    LINUX_IMMUTABLE = lib.CAP_LINUX_IMMUTABLE
    NET_BIND_SERVICE = lib.CAP_NET_BIND_SERVICE
    NET_BROADCAST = lib.CAP_NET_BROADCAST
    NET_ADMIN = lib.CAP_NET_ADMIN
    NET_RAW = lib.CAP_NET_RAW
    IPC_LOCK = lib.CAP_IPC_LOCK
    IPC_OWNER = lib.CAP_IPC_OWNER
    SYS_MODULE = lib.CAP_SYS_MODULE
    SYS_RAWIO = lib.CAP_SYS_RAWIO
    SYS_CHROOT = lib.CAP_SYS_CHROOT
    SYS_PTRACE = lib.CAP_SYS_PTRACE
    SYS_PACCT = lib.CAP_SYS_PACCT
    SYS_ADMIN = lib.CAP_SYS_ADMIN
    SYS_BOOT = lib.CAP_SYS_BOOT
    SYS_NICE = lib.CAP_SYS_NICE
    SYS_RESOURCE = lib.CAP_SYS_RESOURCE
    SYS_TIME = lib.CAP_SYS_TIME
    SYS_TTY_CONFIG = lib.CAP_SYS_TTY_CONFIG
    MKNOD = lib.CAP_MKNOD
    LEASE = lib.CAP_LEASE
    AUDIT_WRITE = lib.CAP_AUDIT_WRITE
    AUDIT_CONTROL = lib.CAP_AUDIT_CONTROL
    SETFCAP = lib.CAP_SETFCAP
    MAC_OVERRIDE = lib.CAP_MAC_OVERRIDE
    MAC_ADMIN = lib.CAP_MAC_ADMIN
    SYSLOG = lib.CAP_SYSLOG
    WAKE_ALARM = lib.CAP_WAKE_ALARM
    BLOCK_SUSPEND = lib.CAP_BLOCK_SUSPEND
    AUDIT_READ = lib.CAP_AUDIT_READ
    PERFMON = lib.CAP_PERFMON
    BPF = lib.CAP_BPF
    CHECKPOINT_RESTORE = lib.CAP_CHECKPOINT_RESTORE


def _capset_of(mask: int) -> frozenset[int]:
    return frozenset(_cap(bit) for bit in range(64) if mask >> bit & 1)


def _cap(bit: int) -> int:
    try:
        return Capability(bit)
    except ValueError:  # a capability newer than our headers
        return bit


def _mask(caps: Iterable[int]) -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << int(cap)
    return mask


@frozen
class Capabilities:
    """The effective, permitted and inheritable capability sets of a thread."""

    effective: frozenset[int]
    permitted: frozenset[int]
    inheritable: frozenset[int]


def capget(pid: int = 0) -> Capabilities:
    """capget(2): the capability sets of thread ``pid`` (0: the calling thread)."""
    out: Any = ffi.new("struct nsb_caps *")
    check(lib.nsb_capget(pid, out), "capget", f"pid {pid}" if pid else None)
    return Capabilities(_capset_of(out.effective), _capset_of(out.permitted),
                        _capset_of(out.inheritable))


def capset(caps: Capabilities) -> None:
    """capset(2): set the calling thread's capability sets (per thread).

    The permitted set can only shrink; effective must be within permitted.
    """
    data: Any = ffi.new("struct nsb_caps *")
    data.effective = _mask(caps.effective)
    data.permitted = _mask(caps.permitted)
    data.inheritable = _mask(caps.inheritable)
    check(lib.nsb_capset(data), "capset")


def capbset_read(cap: int) -> bool:
    """PR_CAPBSET_READ: whether ``cap`` is in the calling thread's bounding set."""
    return prctl(lib.PR_CAPBSET_READ, int(cap)) == 1


def capbset_drop(cap: int) -> None:
    """PR_CAPBSET_DROP: remove ``cap`` from the bounding set (needs CAP_SETPCAP; per thread)."""
    check(lib.nsb_prctl(lib.PR_CAPBSET_DROP, int(cap), 0, 0, 0), "prctl",
          what=f"prctl PR_CAPBSET_DROP {_capname(cap)}")


def _capname(cap: int) -> str:
    try:
        return f"CAP_{Capability(cap).name}"
    except ValueError:
        return f"capability {cap}"
