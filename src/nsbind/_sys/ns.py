"""Namespaces at the syscall level: unshare, setns, nsfs fds, host and domain names."""

from __future__ import annotations

import errno
import os

from nsbind._native import lib
from nsbind._sys.fd import FdLike, OwnedFd, PathLike, fdnum, fsbytes
from nsbind.errors import InvalidValue, check, raise_errno
from nsbind.flags import CloneFlags, Namespace, flag_names

__all__ = [
    "NamespaceFd",
    "open_namespace",
    "setdomainname",
    "sethostname",
    "setns",
    "unshare",
]


def unshare(flags: int) -> None:
    """unshare(2): move the calling thread into new namespaces (``CloneFlags.NEW*``).

    Per thread for net, uts, ipc, cgroup and mnt (mnt also unshares CLONE_FS);
    NEWPID and NEWTIME affect only children started afterwards; NEWUSER needs
    a single-threaded process.  Creating namespaces other than user ones needs
    CAP_SYS_ADMIN.
    """
    check(lib.nsb_unshare(int(flags)), "unshare", what=f"unshare {flag_names(CloneFlags, flags)}")


def setns(fd: FdLike, nstype: int | Namespace = 0, *, what: str | None = None) -> None:
    """setns(2): move the calling thread into the namespace behind ``fd``.

    ``fd`` is an nsfs fd (``/proc/<pid>/ns/<type>``) or, since Linux 5.8, a
    pidfd, for which ``nstype`` is a set of ``CloneFlags.NEW*`` naming the
    namespaces to join all at once.  ``nstype`` 0 accepts any type (nsfs only).
    Per thread; joining a user namespace needs a single-threaded process.
    """
    num = fdnum(fd)
    flags = nstype.flag if isinstance(nstype, Namespace) else int(nstype)
    if what is None:
        label = getattr(fd, "label", None) or f"fd {num}"
        kind = f" {_ns_names(flags)}" if flags else ""
        what = f"setns{kind} {label}"
    check(lib.nsb_setns(num, flags), "setns", what=what)


def _ns_names(flags: int) -> str:
    """``"net+uts"`` for CLONE_NEWNET|CLONE_NEWUTS; flag names for anything else."""
    names = [ns.value for ns in Namespace if flags & ns.flag]
    rest = flags & ~sum(ns.flag for ns in Namespace if flags & ns.flag)
    if rest:
        names.append(flag_names(CloneFlags, rest))
    return "+".join(names)


class NamespaceFd(OwnedFd):
    """An fd on a namespace (an nsfs file): keeps the namespace alive while open."""

    __slots__ = ("label",)

    def __init__(self, fd: int, label: str | None = None) -> None:
        super().__init__(fd)
        #: where the fd came from, for messages (e.g. ``/proc/42/ns/net``)
        self.label = label

    @property
    def type(self) -> Namespace:
        """The namespace type, from the NS_GET_NSTYPE ioctl (Linux 4.11)."""
        flag = check(lib.nsb_ioctl(self.fileno(), lib.NS_GET_NSTYPE), "ioctl",
                     what=f"ioctl NS_GET_NSTYPE on {self.label or 'fd'}")
        return Namespace.from_flag(flag)

    @property
    def inode(self) -> int:
        """The namespace's inode number: equal inodes (same device) mean the same namespace."""
        return os.fstat(self.fileno()).st_ino

    def setns(self) -> None:
        """Move the calling thread into this namespace (setns(2), per thread)."""
        setns(self, 0)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<NamespaceFd {self.label or ''} {state}>"


def open_namespace(target: int | PathLike, ns: Namespace | str | None = None) -> NamespaceFd:
    """Open a namespace: ``target`` is a pid (with ``ns`` the type) or an nsfs path.

    The path may be ``/proc/<pid>/ns/<type>`` or a bind mount of one (``ip netns``
    style).  The fd is O_RDONLY|O_CLOEXEC, opened without blocking (a FIFO planted
    at the path cannot hang the caller) and checked to be an nsfs file.
    """
    if isinstance(target, int):
        if ns is None:
            raise InvalidValue("open_namespace(pid) needs the namespace type")
        name = ns.proc_name if isinstance(ns, Namespace) else Namespace(ns).proc_name
        path = f"/proc/{target}/ns/{name}"
    else:
        path = os.fsdecode(fsbytes(target))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if isinstance(target, int) and exc.errno == errno.ENOENT and not os.path.exists(
                f"/proc/{target}"):
            raise_errno(errno.ESRCH, "open", path, what=f"open namespace {path}",
                        detail=f"no process {target}")
        raise_errno(exc.errno or 0, "open", path, what=f"open namespace {path}")
    nsfd = NamespaceFd(fd, path)
    if lib.nsb_fstatfs_type(fd) != lib.NSFS_MAGIC:
        nsfd.close()
        raise InvalidValue(f"{path} is not a namespace file (not on nsfs)")
    if ns is not None and not isinstance(target, int):
        want = ns if isinstance(ns, Namespace) else Namespace(ns)
        if nsfd.type is not want:
            got = nsfd.type
            nsfd.close()
            raise InvalidValue(f"{path} is a {got.value} namespace, not {want.value}")
    return nsfd


def sethostname(name: str | bytes) -> None:
    """sethostname(2): set the hostname of the calling thread's UTS namespace."""
    raw = name.encode() if isinstance(name, str) else name
    check(lib.nsb_sethostname(raw, len(raw)), "sethostname", what=f"sethostname {raw.decode()!r}")


def setdomainname(name: str | bytes) -> None:
    """setdomainname(2): set the NIS domain name of the calling thread's UTS namespace."""
    raw = name.encode() if isinstance(name, str) else name
    check(lib.nsb_setdomainname(raw, len(raw)), "setdomainname",
          what=f"setdomainname {raw.decode()!r}")
