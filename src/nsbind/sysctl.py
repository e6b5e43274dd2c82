"""Namespaced sysctls and ``oom_score_adj`` of a container process, written safely.

A container controls its own mount namespace, so a path such as
``/proc/<pid>/root/proc/sys/...`` or ``/proc/sys`` seen from inside it can lead
anywhere (CVE-2025-52881: writes redirected through a mount the container made).
:func:`apply` never writes through a path the container controls:

1. the target's net, ipc and uts namespaces are opened once, as nsfs fds
   (``/proc/<pid>/ns/<type>``, checked to be nsfs files of the right type, while a
   pidfd shows the process is still the one asked for);
2. a short-lived helper *thread* joins them with setns(2) (net, ipc and uts are per
   thread: the calling thread and the rest of the process stay where they are);
3. that thread makes a fresh procfs instance with the new mount API (fsopen("proc"),
   fsmount: a detached mount, never attached anywhere, gone when its fd is closed);
4. it opens ``sys/<key with dots as slashes>`` beneath it with openat2
   (RESOLVE_BENEATH | NO_SYMLINKS | NO_MAGICLINKS | NO_XDEV, O_WRONLY | O_NOFOLLOW),
   checks the fd is on procfs (fstatfs PROC_SUPER_MAGIC) and a regular file, and
   writes the value.

Which namespace a /proc/sys file acts on is the *current thread's* (net and ipc
tables are looked up per ``current->nsproxy``; the uts strings are read and written
through ``current->nsproxy`` too), so the open and the write both happen in the
helper thread.  fsopen is Linux 5.2 and openat2 5.6: a kernel with openat2 has
fsopen, so there is no fallback to a clone of the host's /proc.

Keys follow runc's rules (``libcontainer/configs/validate``): only namespaced sysctls,
each allowed only when the container has its own namespace of that type.
"""

from __future__ import annotations

import errno
import os
import stat

from nsbind._native import lib
from nsbind._sys.fd import OwnedFd
from nsbind._sys.mount import fsopen, fstatfs_type, openat2
from nsbind._sys.ns import NamespaceFd, open_namespace, setns
from nsbind._sys.proc import PidFd, pidfd_open
from nsbind.errors import Forbidden, InvalidType, InvalidValue, NsbindError, error_for
from nsbind.flags import MountAttr, Namespace, ResolveFlags
from nsbind.lazyre import LazyPattern

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

__all__ = [
    "IPC_SYSCTLS",
    "MAX_VALUE_BYTES",
    "UTS_SYSCTLS",
    "apply",
    "check",
    "check_value",
    "namespace_of",
    "normalize",
    "set_oom_score_adj",
]

#: the kernel.* sysctls of the ipc namespace (fs.mqueue.* are too)
IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})
#: the sysctls of the uts namespace
UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})
#: the longest value written (a sysctl write takes at most a page)
MAX_VALUE_BYTES = 4095
_MAX_KEY = 255
#: one component of a dotted key; "/" inside stands for a "." of the file name
#: (an interface name such as eno2.100), as sysctl(8) and runc write it
_COMPONENT = LazyPattern(r"[A-Za-z0-9_-][A-Za-z0-9_/-]*")
_NS_NAMES = {"net": Namespace.NET, "network": Namespace.NET, "ipc": Namespace.IPC,
             "uts": Namespace.UTS}
_OTHER_NS = {"pid", "mnt", "mount", "user", "cgroup", "time"}
_WORDS = {Namespace.NET: "network", Namespace.IPC: "ipc", Namespace.UTS: "uts"}
_RESOLVE = (ResolveFlags.BENEATH | ResolveFlags.NO_SYMLINKS | ResolveFlags.NO_MAGICLINKS
            | ResolveFlags.NO_XDEV)
_OPEN_WRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


# ---------------------------------------------------------------- keys and values


def normalize(key: str) -> str:
    """``key`` in dotted form: a key written with slashes (``net/ipv4/ip_forward``) has
    its separators swapped as runc does (``net/ipv4/conf/eno2.100/rp_filter`` becomes
    ``net.ipv4.conf.eno2/100.rp_filter``); a dotted key is returned as it is."""
    first = min((i for i in (key.find("."), key.find("/")) if i >= 0), default=-1)
    if first < 0 or key[first] == ".":
        return key
    return key.translate(str.maketrans("./", "/."))


def _path(name: str) -> str:
    """The file of dotted ``name`` below /proc/sys."""
    return name.translate(str.maketrans("./", "/."))


def _check_name(key: str) -> str:
    if not isinstance(key, str):
        raise InvalidType(f"sysctl key {key!r} is not a string")
    name = normalize(key)
    shown = name[:80] if name.isprintable() and name else repr(key[:80])
    if not name or len(name) > _MAX_KEY:
        raise InvalidValue(f"sysctl {shown}: a key is 1..{_MAX_KEY} characters; refused")
    parts = name.split(".")
    if not all(_COMPONENT.fullmatch(p) for p in parts):
        raise InvalidValue(f"sysctl {shown}: not a sysctl name (dotted components of "
                           "[A-Za-z0-9_-], no '..', no leading or trailing dot); refused")
    return name


def namespace_of(key: str) -> Namespace:
    """The namespace type whose sysctl ``key`` is (dotted or slash form): IPC for
    :data:`IPC_SYSCTLS` and ``fs.mqueue.*``, NET for ``net.*``, UTS for
    :data:`UTS_SYSCTLS`; Forbidden naming the key for any other (it is not namespaced:
    writing it would change the host), InvalidValue for a malformed key."""
    name = _check_name(key)
    if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return Namespace.IPC
    if name.startswith("net."):
        return Namespace.NET
    if name in UTS_SYSCTLS:
        return Namespace.UTS
    raise Forbidden(f"sysctl {name}: not namespaced; refused (it would change the host)")


def _namespace_set(namespaces: Collection[str | Namespace]) -> frozenset[Namespace]:
    out = set()
    for ns in namespaces:
        if isinstance(ns, Namespace):
            out.add(ns)
        elif ns in _NS_NAMES:
            out.add(_NS_NAMES[ns])
        elif ns not in _OTHER_NS:
            raise InvalidValue(f"sysctl: {ns!r} is not a namespace type")
    return frozenset(out)


def check(key: str, namespaces: Collection[str | Namespace]) -> str:
    """The dotted form of ``key`` if it may be written in a container that has its own
    ``namespaces`` (names as in ``/proc/<pid>/ns`` or the OCI spec: ``net``/``network``,
    ``ipc``, ``uts``, ... or :class:`Namespace` members); otherwise Forbidden naming the
    key and the namespace it needs (InvalidValue for a malformed key)."""
    need = namespace_of(key)
    name = normalize(key)
    if need not in _namespace_set(namespaces):
        raise Forbidden(f"sysctl {name}: needs the container's own {_WORDS[need]} namespace "
                        "(in the host's it would change the host); refused")
    return name


def check_value(key: str, value: str) -> bytes:
    """``value`` as written for ``key``: a string of at most :data:`MAX_VALUE_BYTES`
    bytes (UTF-8) with no NUL and no newline but an optional trailing one."""
    if not isinstance(value, str):
        raise InvalidType(f"sysctl {key}: value {value!r} is not a string")
    raw = value.encode("utf-8", errors="surrogateescape")
    body = raw[:-1] if raw.endswith(b"\n") else raw
    if b"\0" in body or b"\n" in body:
        raise InvalidValue(f"sysctl {key}: value {value[:40]!r} has a NUL or a newline; refused")
    if len(raw) > MAX_VALUE_BYTES:
        raise InvalidValue(f"sysctl {key}: value is {len(raw)} bytes, more than "
                           f"{MAX_VALUE_BYTES}; refused")
    return raw


# ---------------------------------------------------------------- writing


def apply(pid: int, values: Mapping[str, str], *,
          namespaces: Collection[str | Namespace]) -> None:
    """Write the sysctls ``values`` (key → value) for the container process ``pid``,
    whose own namespaces are ``namespaces`` (as for :func:`check`).

    Every key and value is checked before anything is written; a namespace the process
    turns out to share with the caller (its netns is ours, ...) is refused too.  The
    writes then go through a fresh procfs instance made by a helper thread inside the
    process's namespaces (see the module's docstring), in the order given; a write the
    kernel refuses raises its error (``write sysctl net.ipv4.ip_forward: EINVAL
    (...)``) and the keys before it stay written, as with runc.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InvalidValue(f"sysctl: pid {pid!r} is not a process id")
    writes = [(check(key, namespaces), value) for key, value in values.items()]
    data = [(name, check_value(name, value), namespace_of(name)) for name, value in writes]
    if not data:
        return
    needed = [ns for ns in (Namespace.NET, Namespace.IPC, Namespace.UTS)
              if any(need is ns for _, _, need in data)]
    fds = _open_namespaces(pid, needed, {need: name for name, _, need in data})
    try:
        _in_thread(lambda: _write_all(fds, data), f"nsbind-sysctl-{pid}")
    finally:
        for fd in fds:
            fd.close()


def _open_namespaces(pid: int, needed: list[Namespace],
                     example: Mapping[Namespace, str]) -> list[NamespaceFd]:
    """nsfs fds of ``pid``'s ``needed`` namespaces, none of them the caller's own."""
    fds: list[NamespaceFd] = []
    try:
        with _Alive(pid, "sysctl") as pidfd:
            for ns in needed:
                fd = open_namespace(pid, ns)
                fds.append(fd)
                if fd.type is not ns:
                    raise InvalidValue(f"sysctl: {fd.label} is a {fd.type.value} namespace")
                mine = os.stat(f"/proc/thread-self/ns/{ns.proc_name}")
                got = os.fstat(fd.fileno())
                if (got.st_dev, got.st_ino) == (mine.st_dev, mine.st_ino):
                    raise Forbidden(
                        f"sysctl {example[ns]}: process {pid} shares this process's "
                        f"{_WORDS[ns]} namespace (writing would change the host's); refused")
            if pidfd.readable(0):
                raise error_for(errno.ESRCH, "sysctl", f"pid {pid}",
                                what=f"sysctl: process {pid} exited")
    except BaseException:
        for fd in fds:
            fd.close()
        raise
    return fds


class _Alive:
    """A pidfd on ``pid``, refused (naming ``who`` and the pid) if it has exited."""

    def __init__(self, pid: int, who: str) -> None:
        try:
            self.pidfd: PidFd = pidfd_open(pid)
        except NsbindError as exc:
            raise error_for(exc.errno or errno.ESRCH, "pidfd_open", f"pid {pid}",
                            what=f"{who}: no process {pid}") from None
        if self.pidfd.readable(0):
            self.pidfd.close()
            raise error_for(errno.ESRCH, "pidfd_open", f"pid {pid}",
                            what=f"{who}: process {pid} has exited")

    def __enter__(self) -> PidFd:
        return self.pidfd

    def __exit__(self, *exc: object) -> None:
        self.pidfd.close()


def _in_thread(fn: Callable[[], None], name: str) -> None:
    """Run ``fn`` in a new thread (which exits with whatever namespaces it joined) and
    raise its exception here."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    import threading  # here: a container without sysctls never starts the thread

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def _write_all(fds: list[NamespaceFd], data: list[tuple[str, bytes, Namespace]]) -> None:
    """In the helper thread: join ``fds``, make a procfs instance, write each value."""
    for nsfd in fds:
        setns(nsfd, nsfd.type, what=f"setns {nsfd.type.value} {nsfd.label}")
    with fsopen("proc") as ctx:
        ctx.create()
        proc = ctx.mount(MountAttr.NOSUID | MountAttr.NODEV | MountAttr.NOEXEC)
    with proc:
        for name, raw, _need in data:
            with _open_proc_file(proc, f"sys/{_path(name)}", f"sysctl {name}",
                                 _OPEN_WRITE) as fd:
                _write(fd, raw, f"sysctl {name}")


def _open_proc_file(root: OwnedFd, path: str, shown: str, flags: int) -> OwnedFd:
    """``path`` beneath the procfs ``root``, verified to be a regular file on procfs."""
    try:
        fd = openat2(root, path, flags, resolve=_RESOLVE)
    except NsbindError as exc:
        detail = "no such file in this kernel" if exc.errno == errno.ENOENT else None
        raise error_for(exc.errno or errno.EIO, "openat2", path, what=f"open {shown}",
                        detail=detail) from None
    try:
        if fstatfs_type(fd) != lib.PROC_SUPER_MAGIC:
            raise InvalidValue(f"open {shown}: not on procfs; refused")
        mode = os.fstat(fd.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise InvalidValue(f"open {shown}: not a regular file; refused")
    except BaseException:
        fd.close()
        raise
    return fd


def _write(fd: OwnedFd, raw: bytes, shown: str, detail: str | None = None) -> None:
    try:
        done = os.write(fd.fileno(), raw)
    except OSError as exc:
        raise error_for(exc.errno or errno.EIO, "write", shown, what=f"write {shown}",
                        detail=detail if exc.errno in (errno.EACCES, errno.EPERM) else None
                        ) from None
    if done != len(raw):
        raise error_for(errno.EIO, "write", shown, what=f"write {shown}",
                        detail=f"short write: {done} of {len(raw)} bytes")


# ---------------------------------------------------------------- oom_score_adj


def set_oom_score_adj(pid: int, value: int) -> None:
    """Set ``/proc/<pid>/oom_score_adj`` to ``value`` (-1000..1000; anything else is
    refused, never clamped).

    The process is pinned by a pidfd first (an exited one is refused naming the pid);
    the file is opened beneath the host's /proc (checked to be procfs) with openat2
    (no symlinks, no magic links, no other mount) and written only while the pidfd
    shows the same process alive.  Lowering the value below the process's
    ``oom_score_adj_min`` (the lowest a privileged writer set; inherited) needs
    CAP_SYS_RESOURCE: without it the kernel says EACCES, and the error says why.
    The kernel sets the value of every process that shares the target's memory: a
    process that shares this one's (a child parked at its start gate:
    :mod:`nsbind.sharedchild`) is refused.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"oom_score_adj of pid {pid}: {value!r} is not an integer")
    if not -1000 <= value <= 1000:
        raise InvalidValue(f"oom_score_adj of pid {pid}: {value} is out of range "
                           "-1000..1000; refused")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise InvalidValue(f"oom_score_adj: pid {pid!r} is not a process id")
    shown = f"oom_score_adj of pid {pid}"
    with _Alive(pid, shown) as pidfd, _host_proc() as proc:
        if lib.nsb_kcmp_vm(os.getpid(), pid) == 0:
            raise Forbidden(f"{shown}: it shares this process's memory, whose every process "
                            "the kernel would give the value; refused")
        path = f"{pid}/oom_score_adj"
        with _open_proc_file(proc, path, shown, os.O_RDONLY | os.O_CLOEXEC) as fd:
            now = os.read(fd.fileno(), 64).decode().strip()
        with _open_proc_file(proc, path, shown, _OPEN_WRITE) as fd:
            if pidfd.readable(0):
                raise error_for(errno.ESRCH, "write", shown,
                                what=f"write {shown}: the process has exited")
            why = (f"lowering it (now {now}) below the lowest value a privileged writer set "
                   "needs CAP_SYS_RESOURCE, which this process lacks")
            _write(fd, str(value).encode(), shown, detail=why)


def _host_proc() -> OwnedFd:
    """An O_PATH fd on this process's /proc, checked to be procfs."""
    fd = OwnedFd(os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    if fstatfs_type(fd) != lib.PROC_SUPER_MAGIC:
        fd.close()
        raise InvalidValue("/proc is not procfs; refused")
    return fd
