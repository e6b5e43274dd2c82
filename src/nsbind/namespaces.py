"""Namespaces as a context manager, joining, persisting, and namespace identities.

Kernel rules this module applies (see namespaces(7), unshare(2), setns(2)):

- net, uts, ipc, cgroup and mnt namespaces belong to a *thread*: entering them in a
  ``with Namespaces(...)`` block moves only the calling thread; other threads stay where
  they are.  For mnt the thread first gets its own root/cwd (``unshare(CLONE_FS)``), so
  this works in a threaded process too.
- pid and time namespaces apply to *children*: a process started inside the block
  (os.fork, subprocess, clone3) is PID 1 of the new pid namespace.  When that first
  process exits, the pid namespace is dead and later forks in the block fail with ENOMEM.
- Leaving restores every namespace the block changed (setns back to fds saved
  on entry), also when the block raised.  Restoring a time namespace needs a
  single-threaded process (the kernel returns EUSERS otherwise).
- A user namespace cannot be left: the kernel allows no setns back into an ancestor user
  namespace.  ``Namespaces(user=True)`` is therefore refused as a ``with`` block; use
  :meth:`Namespaces.unshare` (for good, single-threaded process only) or run the work in
  a child (``spawn``/``call_in``).
- Creating namespaces other than user ones, and every setns, needs CAP_SYS_ADMIN.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from nsbind._sys.fd import FdLike, PathLike, fsbytes
from nsbind._sys.mount import mount, move_mount, open_tree, umount2
from nsbind._sys.ns import NamespaceFd, open_namespace, setns, unshare
from nsbind._sys.proc import PidFd, pidfd_open, thread_count
from nsbind.errors import (
    InvalidType,
    InvalidValue,
    NamespaceRuleError,
    NoSuchProcess,
    NsbindError,
    UsageError,
    error_for,
)
from nsbind.flags import (
    NAMESPACE_ORDER,
    CloneFlags,
    MountFlags,
    MoveMountFlags,
    Namespace,
    OpenTreeFlags,
    Propagation,
    UmountFlags,
)
from nsbind.idmap import IdMap, MapWriter, check_map, write_maps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

__all__ = ["IdMap", "Namespaces", "current", "for_children", "of", "persist",
           "thread_path", "unpersist"]

# The order in which namespaces are restored on exit (user is never left)
_RESTORE_ORDER = tuple(ns for ns in NAMESPACE_ORDER if ns is not Namespace.USER)


def thread_path(ns: Namespace) -> str:
    """The nsfs path of the calling thread's namespace of type ``ns``; for pid and time
    the one its children get (``pid_for_children``), which is what unshare changes.

    /proc/thread-self, because namespaces belong to threads.  The pid (time) file is
    absent while a new pid namespace has no process yet.
    """
    name = f"{ns.value}_for_children" if ns in (Namespace.PID, Namespace.TIME) else ns.value
    return f"/proc/thread-self/ns/{name}"


def current() -> dict[Namespace, int]:
    """The calling thread's own namespaces, as inode numbers (equal inode: same namespace).

    For pid and time these are the namespaces the thread is in; after
    ``unshare(CLONE_NEWPID)`` its children go elsewhere (see :func:`for_children`).
    """
    return {ns: os.stat(f"/proc/thread-self/ns/{ns.value}").st_ino for ns in Namespace}


def for_children(ns: Namespace) -> int | None:
    """The inode of the pid or time namespace the calling thread's children will get.

    None while a new pid namespace has no process yet (the kernel shows none).
    """
    if ns not in (Namespace.PID, Namespace.TIME):
        raise InvalidValue(f"only pid and time have a separate namespace for children, not {ns}")
    try:
        return os.stat(thread_path(ns)).st_ino
    except FileNotFoundError:
        return None


def of(pid: int) -> dict[Namespace, int]:
    """The namespaces of process ``pid`` (its main thread), as inode numbers."""
    return {ns: os.stat(f"/proc/{pid}/ns/{ns.value}").st_ino for ns in Namespace}


class Namespaces:
    """Enter new namespaces (or join existing ones) in the calling thread, and come back.

    >>> with Namespaces(net=True, uts=True):
    ...     nsbind.sethostname("box")      # only this thread sees it

    ``propagation`` is applied to every mount of a new mount namespace
    (default private, as ``unshare(1)``; None leaves it as inherited).
    ``loopback`` brings ``lo`` up in a new network namespace.  ``uid_map`` and
    ``gid_map`` are for :meth:`unshare` with ``user=True`` (default: root
    inside is the caller outside).  An object is entered once; nest new ones.
    """

    def __init__(
        self,
        *,
        pid: bool = False,
        net: bool = False,
        ipc: bool = False,
        mnt: bool = False,
        uts: bool = False,
        user: bool = False,
        cgroup: bool = False,
        time: bool = False,
        uid_map: Sequence[IdMap] | None = None,
        gid_map: Sequence[IdMap] | None = None,
        propagation: Propagation | None = Propagation.PRIVATE,
        loopback: bool = True,
    ) -> None:
        wanted = {Namespace.PID: pid, Namespace.NET: net, Namespace.IPC: ipc,
                  Namespace.MNT: mnt, Namespace.UTS: uts, Namespace.USER: user,
                  Namespace.CGROUP: cgroup, Namespace.TIME: time}
        #: the namespace types this object creates (or joins)
        self.types = frozenset(ns for ns, on in wanted.items() if on)
        if (uid_map or gid_map) and not user:
            raise InvalidValue("uid_map and gid_map need user=True")
        self._uid_map = tuple(check_map("uid_map", uid_map)) if uid_map else None
        self._gid_map = tuple(check_map("gid_map", gid_map)) if gid_map else None
        self.propagation = propagation
        self.loopback = loopback
        self._join: _JoinTarget | None = None
        self._joined: tuple[tuple[str, PathLike | FdLike], ...] = ()  # see joining()
        self._saved: dict[Namespace, NamespaceFd] | None = None
        self._cwd: int | None = None
        self._hash = hash(self._key())

    @property
    def uid_map(self) -> list[IdMap] | None:
        """The uid map asked for (checked when given; None: the default)."""
        return None if self._uid_map is None else list(self._uid_map)

    @property
    def gid_map(self) -> list[IdMap] | None:
        """The gid map asked for (checked when given; None: the default)."""
        return None if self._gid_map is None else list(self._gid_map)

    @property
    def joined(self) -> dict[str, PathLike | FdLike]:
        """What :meth:`joining` added: an nsfs path or fd per type (spawn checks them)."""
        return dict(self._joined)

    def _key(self) -> tuple[object, ...]:
        return (self.types, self.propagation, self.loopback, self._uid_map, self._gid_map,
                self.join_target, self._joined)

    def __eq__(self, other: object) -> bool:
        """Equal when they ask for the same namespaces (what a spawn plan depends on)."""
        if not isinstance(other, Namespaces):
            return NotImplemented
        return self is other or (self._hash == other._hash and self._key() == other._key())

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def join(
        cls,
        target: int | PidFd | PathLike | object,
        *,
        pid: bool = False,
        net: bool = False,
        ipc: bool = False,
        mnt: bool = False,
        uts: bool = False,
        cgroup: bool = False,
        time: bool = False,
    ) -> Namespaces:
        """A context manager that joins the namespaces of ``target`` and comes back.

        ``target`` is a pid, a :class:`PidFd` (or an object with a ``pidfd``
        attribute, such as a spawned process), or the path of an nsfs file
        (``/proc/<pid>/ns/net`` or a :func:`persist` ed one).  With a process and
        no type named, every namespace that differs from the caller's is joined
        (except user, which cannot be left).  A pidfd joins several types in one
        setns call (Linux 5.8); older kernels fall back to one fd per type.
        """
        self = cls(pid=pid, net=net, ipc=ipc, mnt=mnt, uts=uts, cgroup=cgroup, time=time)
        self._join = _JoinTarget(target)
        self._hash = hash(self._key())
        return self

    def joining(self, **where: PathLike | FdLike) -> Namespaces:
        """A copy that :func:`nsbind.spawn` makes with these namespaces joined too (OCI
        ``linux.namespaces[].path``): ``Namespaces(mnt=True).joining(net="/run/netns/x",
        ipc=fd)``, an nsfs path or fd per type; the kernel's rules: spawn's docstring."""
        new = Namespaces.__new__(Namespaces)
        vars(new).update(vars(self), _saved=None, _cwd=None,
                         _joined=tuple({**dict(self._joined), **where}.items()))
        new._hash = hash(new._key())
        return new

    @property
    def join_target(self) -> int | str | None:
        """For :meth:`join`: the pid or the nsfs path joined; None for new namespaces."""
        if self._join is None:
            return None
        return self._join.path if self._join.path is not None else self._join.pid

    def open_join_fds(self) -> list[tuple[Namespace, NamespaceFd]]:
        """For :meth:`join`: nsfs fds of the target's namespaces, in
        :data:`~nsbind.flags.NAMESPACE_ORDER` (user first), for a child to join.

        With a process and no type named: every namespace that differs from the
        caller's, user included.  The caller owns (closes) the fds.
        """
        if self._join is None:
            raise InvalidValue("open_join_fds() is for Namespaces.join(...), not new namespaces")
        return self._join.open_all(self.types)

    def _check_rules(self, types: frozenset[Namespace]) -> None:
        if self._joined:
            raise UsageError("Namespaces.joining(...) is for nsbind.spawn, not a with-block")
        if Namespace.USER in types:
            threads = thread_count()
            if threads > 1:
                raise NamespaceRuleError(
                    f"cannot enter a user namespace: {threads} threads are alive and the kernel "
                    "allows unshare(CLONE_NEWUSER) only in a single-threaded process; run the "
                    "work in a child with nsbind.call_in or nsbind.spawn")

    def __enter__(self) -> Namespaces:
        if self._saved is not None:
            raise UsageError("this Namespaces is already entered; nest a new Namespaces object")
        if self._join is None and Namespace.USER in self.types:
            raise NamespaceRuleError(
                "a user namespace cannot be left again (the kernel allows no setns back into an "
                "ancestor user namespace), so Namespaces(user=True) is not a with-block: use "
                ".unshare() to enter it for good in a single-threaded process, or run the work "
                "in a child with nsbind.call_in or nsbind.spawn")
        types = self._join.types(self.types) if self._join is not None else self.types
        self._check_rules(types)
        if Namespace.PID in types and not os.path.exists(thread_path(Namespace.PID)):
            raise NamespaceRuleError(
                "this thread's children already go to a new pid namespace that has no process "
                "yet (an enclosing Namespaces(pid=True)?); another pid namespace must be "
                "created or joined by a process inside the first one: use call_in or spawn")
        saved = {ns: open_namespace(thread_path(ns)) for ns in types}
        self._saved = saved
        if Namespace.MNT in types:
            self._cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if self._join is not None:
                self._join.enter(types)
            else:
                self._create(types)
        except BaseException as exc:
            try:
                self._restore()
            except BaseException as restore_error:
                if sys.version_info >= (3, 11):
                    exc.add_note(f"and restoring the namespaces failed: {restore_error}")
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def unshare(self) -> None:
        """Enter the new namespaces for good (no restore), including a user namespace.

        With ``user=True`` the process must be single-threaded; the uid/gid
        maps are written by a short-lived helper process that stays in the
        parent user namespace (a process cannot map more than its own id from
        inside).  Unprivileged callers get setgroups denied, as the kernel
        requires.  When id 0 is mapped, the process becomes root (uid and gid 0,
        no supplementary groups) of the new user namespace, as in a container.
        """
        if self._join is not None:
            raise UsageError("unshare() creates namespaces; use a with-block to join")
        self._check_rules(self.types)
        if Namespace.USER not in self.types:
            self._create(self.types)
            return
        uid_map, gid_map = self._maps()
        if os.geteuid() != 0 and _self_mapping(uid_map, os.geteuid()) and _self_mapping(
                gid_map, os.getegid()):
            # An unprivileged process may map its own ids from inside (setgroups denied).
            self._create(self.types, after_unshare=lambda: write_maps(
                os.getpid(), uid_map, gid_map, deny_setgroups=True))
        else:
            with MapWriter((uid_map, gid_map)) as writer:

                def write_maps_then_become_root() -> None:
                    writer.write()
                    _become_root(uid_map, gid_map)

                self._create(self.types, after_unshare=write_maps_then_become_root)

    def enter_for_good(self) -> frozenset[Namespace]:
        """Enter (create or join) the namespaces with no way back; return the types that
        changed.  For a process that exists for this work only (a call_in child);
        :meth:`unshare` rules apply to new user namespaces."""
        if self._join is None:
            self.unshare()
            return self.types
        self.__enter__()
        saved, self._saved = self._saved or {}, None
        cwd, self._cwd = self._cwd, None
        for fd in saved.values():
            fd.close()
        if cwd is not None:
            os.close(cwd)
        return frozenset(saved)

    def _maps(self) -> tuple[list[IdMap], list[IdMap]]:
        uid_map = self.uid_map or [(0, os.geteuid(), 1)]
        gid_map = self.gid_map or [(0, os.getegid(), 1)]
        return uid_map, gid_map

    def _create(self, types: frozenset[Namespace],
                after_unshare: Callable[[], None] | None = None) -> None:
        flags = 0
        for ns in types:
            flags |= ns.flag
        if Namespace.MNT in types:
            flags |= CloneFlags.FS  # the thread's own root and cwd, so setns(mnt) works
        try:
            unshare(flags)
        except NsbindError as exc:
            _explain_unshare_error(exc, types)
            raise
        if after_unshare is not None:
            after_unshare()
        if Namespace.MNT in types and self.propagation is not None:
            mount(None, "/", None, MountFlags.REC | self.propagation)
        if Namespace.NET in types and self.loopback:
            from nsbind._sys.net import set_link_up  # here: with struct, 0.6 ms a start
            set_link_up("lo")

    def _restore(self) -> None:
        saved, self._saved = self._saved or {}, None
        cwd, self._cwd = self._cwd, None
        first_error: BaseException | None = None
        for ns in _RESTORE_ORDER:
            fd = saved.pop(ns, None)
            if fd is None:
                continue
            try:
                with fd:
                    if _differs(fd, ns):
                        setns(fd, ns, what=f"restore {ns.value} namespace")
            except Exception as exc:
                error: BaseException = exc
                if ns is Namespace.TIME and getattr(exc, "errno", None) == errno.EUSERS:
                    error = NamespaceRuleError(
                        f"cannot restore the time namespace: {thread_count()} threads are alive "
                        "and setns into a time namespace needs a single-threaded process")
                first_error = first_error or error
        if cwd is not None:
            try:
                os.fchdir(cwd)  # setns(mnt) moved the thread to the namespace's root
            finally:
                os.close(cwd)
        for fd in saved.values():  # only after an earlier failure
            fd.close()
        if first_error is not None:
            raise first_error

    def __repr__(self) -> str:
        kinds = ",".join(sorted(ns.value for ns in self.types)) or "none"
        state = "entered" if self._saved is not None else "not entered"
        verb = "join" if self._join is not None else "new+join" if self._joined else "new"
        return f"<Namespaces {verb} {kinds} {state}>"


def _differs(saved: NamespaceFd, ns: Namespace) -> bool:
    """Whether the thread is no longer in the namespace ``saved`` was opened on."""
    try:
        return os.fstat(saved.fileno()).st_ino != os.stat(thread_path(ns)).st_ino
    except FileNotFoundError:  # pid_for_children of a new pid namespace with no process yet
        return True


class _JoinTarget:
    """Where :meth:`Namespaces.join` goes: a process (pid or pidfd) or an nsfs file."""

    def __init__(self, target: object) -> None:
        self.pid: int | None = None
        self.pidfd: PidFd | None = None
        self.path: str | None = None
        if isinstance(target, PidFd):
            self.pidfd, self.pid = target, target.pid
        elif isinstance(getattr(target, "pidfd", None), PidFd):
            self.pidfd = target.pidfd  # type: ignore[attr-defined]
            self.pid = self.pidfd.pid if self.pidfd is not None else None
        elif isinstance(target, int) and not isinstance(target, bool):
            if target <= 0:
                raise InvalidValue(f"cannot join the namespaces of pid {target}: a pid is positive")
            if not os.path.exists(f"/proc/{target}"):
                raise NoSuchProcess(errno.ESRCH, "join", str(target),
                                    what=f"join the namespaces of pid {target}",
                                    detail="no such process")
            self.pid = target
        elif isinstance(target, (str, bytes, os.PathLike)):
            self.path = os.fsdecode(fsbytes(target))
        else:
            raise InvalidType(f"cannot join the namespaces of {target!r}: give a pid, a PidFd, "
                              "a process or an nsfs path")

    def types(self, asked: frozenset[Namespace]) -> frozenset[Namespace]:
        if self.path is not None:
            with open_namespace(self.path) as nsfd:
                kind = nsfd.type
            if asked and asked != {kind}:
                names = ",".join(sorted(ns.value for ns in asked))
                raise InvalidValue(f"{self.path} is a {kind.value} namespace, not {names}")
            if kind is Namespace.USER:
                raise NamespaceRuleError("a user namespace cannot be left again, so joining "
                                         f"{self.path} is not a with-block")
            return frozenset({kind})
        if asked:
            return asked
        assert self.pid is not None
        theirs, ours = of(self.pid), current()
        return frozenset(ns for ns in Namespace
                         if ns is not Namespace.USER and theirs[ns] != ours[ns])

    def open_all(self, asked: frozenset[Namespace]) -> list[tuple[Namespace, NamespaceFd]]:
        """nsfs fds of the target's namespaces for a spawned child to join, user first
        (as nsenter does: its capabilities there then allow the rest).  With a process
        and no type named: every namespace that differs from the caller's, user too."""
        if self.path is not None:
            nsfd = open_namespace(self.path)
            if asked and asked != {nsfd.type}:
                kind = nsfd.type
                nsfd.close()
                names = ",".join(sorted(ns.value for ns in asked))
                raise InvalidValue(f"{self.path} is a {kind.value} namespace, not {names}")
            return [(nsfd.type, nsfd)]
        assert self.pid is not None
        if asked:
            types = set(asked)
        else:
            theirs, ours = of(self.pid), current()
            types = {ns for ns in Namespace if theirs[ns] != ours[ns]}
        opened: list[tuple[Namespace, NamespaceFd]] = []
        try:
            for ns in NAMESPACE_ORDER:
                if ns in types:
                    opened.append((ns, open_namespace(self.pid, ns)))
            if self.pidfd is not None:
                self.pidfd.send_signal(0)  # still the same process: the fds are its own
        except BaseException:
            for _, fd in opened:
                fd.close()
            raise
        return opened

    def enter(self, types: frozenset[Namespace]) -> None:
        if not types:
            return
        if Namespace.MNT in types:
            unshare(CloneFlags.FS)
        if self.path is not None:
            with open_namespace(self.path) as nsfd:
                nsfd.setns()
            return
        assert self.pid is not None
        flags = 0
        for ns in types:
            flags |= ns.flag
        owned = None
        pidfd = self.pidfd
        if pidfd is None:
            pidfd = owned = pidfd_open(self.pid)
        try:
            setns(pidfd, flags, what=f"join {'+'.join(sorted(n.value for n in types))} "
                                     f"namespaces of pid {self.pid}")
        except NsbindError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # pre-5.8 kernel: no setns on pidfds; one nsfs fd per type
            for ns in _RESTORE_ORDER:
                if ns in types:
                    with open_namespace(self.pid, ns) as nsfd:
                        nsfd.setns()
        finally:
            if owned is not None:
                owned.close()


def _sysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}") as f:
            return f.read().strip()
    except OSError:
        return "absent"


def _explain_unshare_error(exc: NsbindError, types: frozenset[Namespace]) -> None:
    """Add the kernel rule behind an unshare failure to the error's detail."""
    why = None
    if exc.errno == errno.EPERM and Namespace.USER in types:
        why = ("user namespaces may be restricted here: "
               f"user.max_user_namespaces={_sysctl('user.max_user_namespaces')}, "
               "kernel.apparmor_restrict_unprivileged_userns="
               f"{_sysctl('kernel.apparmor_restrict_unprivileged_userns')}, "
               f"kernel.unprivileged_userns_clone={_sysctl('kernel.unprivileged_userns_clone')}"
               "; a chroot or seccomp filter can forbid them too")
    elif exc.errno == errno.EPERM:
        why = "creating namespaces other than user namespaces needs CAP_SYS_ADMIN"
    elif exc.errno == errno.EINVAL and Namespace.USER in types and thread_count() > 1:
        why = f"unshare(CLONE_NEWUSER) needs a single-threaded process; {thread_count()} threads"
    elif exc.errno == errno.EINVAL and Namespace.PID in types:
        why = ("this thread's children already go to a new pid namespace that has no process "
               "yet (an enclosing Namespaces(pid=True)?); a nested pid namespace must be "
               "created by a process inside the first one: use call_in or spawn")
    elif exc.errno == errno.ENOSPC:
        limits = ", ".join(f"user.max_{ns.value}_namespaces="
                           f"{_sysctl(f'user.max_{ns.value}_namespaces')}"
                           for ns in sorted(types, key=lambda n: n.value))
        why = f"a namespace limit is reached: {limits} (or 32 nested user namespaces)"
    if why:
        exc.detail = f"{exc.detail}; {why}" if exc.detail else why


def _become_root(uid_map: Sequence[IdMap], gid_map: Sequence[IdMap]) -> None:
    """Switch to uid/gid 0 of the new user namespace if they are mapped and we are not them."""
    if os.getuid() != 0 and any(inside == 0 for inside, _, _ in uid_map):
        if any(inside == 0 for inside, _, _ in gid_map):
            os.setgroups([])
            os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)


def _self_mapping(lines: Sequence[IdMap], own: int) -> bool:
    return len(lines) == 1 and lines[0][1] == own and lines[0][2] == 1


def persist(path: PathLike, target: int | None = None, ns: Namespace = Namespace.NET) -> None:
    """Keep a namespace alive after its last process: bind-mount its nsfs file on ``path``.

    ``target`` is a pid (default: the calling thread).  Like ``ip netns add``: the file
    is created if missing; :func:`unpersist` removes it.  The mount is made in the
    calling thread's mount namespace.  ``path`` is resolved once, to an fd: a symlink
    as its last component, or anything but an empty regular file, is refused (a bind
    mount must not land on what a symlink points at).
    """
    shown = os.fsdecode(fsbytes(path))
    source = f"/proc/{target}/ns/{ns.value}" if target is not None else thread_path(ns)
    created = False
    try:
        fd = os.open(shown, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o444)
        created = True
    except FileExistsError:
        try:
            fd = os.open(shown, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise error_for(exc.errno or errno.EINVAL, "open", shown,
                            what=f"persist a namespace on {shown}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (not created and st.st_size != 0):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not an empty regular file"
            raise InvalidValue(f"persist a namespace on {shown}: it is {kind}")
        with open_tree(source, OpenTreeFlags.CLONE) as nsmount:
            move_mount(nsmount, "", fd, "", MoveMountFlags.F_EMPTY_PATH
                       | MoveMountFlags.T_EMPTY_PATH, what=f"bind {source} on {shown}")
    except BaseException:
        if created:
            os.unlink(shown)
        raise
    finally:
        os.close(fd)


def unpersist(path: PathLike) -> None:
    """Undo :func:`persist`: detach the bind mount and remove the file (a symlink at
    ``path`` is not followed)."""
    umount2(path, UmountFlags.DETACH | UmountFlags.NOFOLLOW)
    os.unlink(path)
