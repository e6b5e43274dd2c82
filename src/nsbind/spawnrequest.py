"""SpawnRequest: everything a spawn's C plan depends on, as one frozen, hashable value.

:func:`nsbind.spawn` turns its keyword arguments into a :class:`SpawnRequest`
(checked: ids in range, names only with a UTS namespace, no NUL bytes) and the
per-call stdio into arguments of its own.  Two equal requests build the same
static plan, so the request is the key of the plan cache (:mod:`nsbind.plancache`);
a request holding an unhashable value is simply not cached.
"""

from __future__ import annotations

import os
from _operator import index  # operator's, without the operator module

from nsbind._sys.fd import FdLike, PathLike, fsbytes
from nsbind.cgroups import Cgroup
from nsbind.errors import InvalidType, InvalidValue, NamespaceRuleError
from nsbind.flags import NAMESPACE_ORDER, Namespace
from nsbind.idmap import check_id
from nsbind.mountstep import MountStep
from nsbind.namedtuples import NamedTuple
from nsbind.namespaces import Namespaces
from nsbind.rootfs import RootFS
from nsbind.spawnplan import CapabilitySets

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from nsbind.seccomp import Filter, Program

__all__ = ["SpawnRequest", "checked_joins"]

_EMPTY = Namespaces()


class SpawnRequest(NamedTuple):
    """The static part of a spawn (see :func:`nsbind.spawn` for each field's meaning).

    ``env`` is the environment as ``(name, value)`` pairs, or None for this process's
    environment, whose content at the time of the call is in ``environ`` (so a changed
    ``os.environ`` makes a different request).  Build one with :meth:`make`.
    """

    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] | None
    environ: tuple[tuple[bytes, bytes], ...] | tuple[tuple[str, str], ...] | None
    cwd: PathLike | None
    namespaces: Namespaces
    hostname: str | None
    domainname: str | None
    mounts: tuple[MountStep, ...]
    rootfs: RootFS | None
    pivot_root: PathLike | None
    cgroup: FdLike | Cgroup | None
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] | None
    rlimits: tuple[tuple[int, tuple[int, int]], ...] | None
    capabilities: CapabilitySets | None
    no_new_privs: bool
    pdeathsig: int
    umask: int
    start_new_session: bool
    process_group: int | None
    init: bool
    seccomp: Program | None = None  # the compiled filter (bytes: hashable)
    gate: bool = False  # a start gate (the fd itself is per spawn): no vfork-style child
    terminal: bool = False  # a new pty as the child's terminal (its socket is per spawn)
    console_size: tuple[int, int] | None = None  # (rows, columns) of that terminal
    joins: tuple[tuple[Namespace, str | FdLike], ...] = ()  # checked_joins(namespaces)

    @classmethod
    def make(cls, args: Sequence[str], env: Mapping[str, str] | None, cwd: PathLike | None,
             namespaces: Namespaces | None, hostname: str | None, domainname: str | None,
             mounts: Sequence[MountStep], rootfs: RootFS | None, pivot_root: PathLike | None,
             cgroup: FdLike | Cgroup | None, uid: int | None, gid: int | None,
             groups: Sequence[int] | None, rlimits: Mapping[int, tuple[int, int]] | None,
             capabilities: CapabilitySets | None, no_new_privs: bool, pdeathsig: int,
             umask: int, start_new_session: bool, process_group: int | None,
             init: bool, seccomp: bytes | Filter | Program | None = None,
             gate: bool = False, terminal: bool = False,
             console_size: tuple[int, int] | None = None) -> SpawnRequest:
        """The request for these :func:`nsbind.spawn` arguments, or ValueError naming the
        argument that no spawn could honour."""
        if not args:
            raise InvalidValue("spawn needs a non-empty argument list")
        ns = _EMPTY if namespaces is None else namespaces
        joins = checked_joins(ns) if ns.joined else ()
        if (hostname is not None or domainname is not None) and Namespace.UTS not in ns.types:
            raise InvalidValue("hostname and domainname need a new UTS namespace "
                               "(namespaces=Namespaces(uts=True)): without one they would "
                               "rename the host")
        if terminal or console_size is not None:
            console_size = _check_terminal(terminal, console_size, process_group)
        if uid is not None:
            uid = check_id("uid", uid)
        if gid is not None:
            gid = check_id("gid", gid)
        if groups is not None:
            groups = tuple(check_id("supplementary group", g) for g in groups)
        if env is None and _may_keep(ns, rootfs, cgroup):
            # this process's environment is part of a request that may be kept (see
            # cacheable); an uncached one reads os.environ when its plan is built
            data = getattr(os.environ, "_data", None)  # bytes -> bytes: no decoding
            environ: tuple[tuple[bytes, bytes], ...] | tuple[tuple[str, str], ...] | None = (
                tuple(data.items()) if isinstance(data, dict) else tuple(os.environ.items()))
            pairs = None
        else:
            environ = None
            pairs = None if env is None else tuple(env.items())
        return tuple.__new__(cls, (
            tuple(args), pairs, environ, cwd, ns, hostname, domainname, tuple(mounts), rootfs,
            pivot_root, cgroup, uid, gid, groups,
            tuple(rlimits.items()) if rlimits else None, capabilities, no_new_privs,
            pdeathsig, umask, start_new_session, process_group, init,
            None if seccomp is None else _program(seccomp), gate, terminal, console_size,
            joins))

    @property
    def environment(self) -> Mapping[str, str]:
        """The child's environment (this process's, read only, when ``env`` was None)."""
        return os.environ if self.env is None else dict(self.env)

    @property
    def cacheable(self) -> bool:
        """Whether the plan may be kept for equal requests: not with a root filesystem,
        a Cgroup (v1 fds per spawn), a new user namespace (id maps) or joined ones."""
        return _may_keep(self.namespaces, self.rootfs, self.cgroup)


def _may_keep(ns: Namespaces, rootfs: RootFS | None, cgroup: object) -> bool:
    return (rootfs is None and not isinstance(cgroup, Cgroup)
            and Namespace.USER not in ns.types and ns.join_target is None and not ns.joined)


def checked_joins(ns: Namespaces) -> tuple[tuple[Namespace, str | FdLike], ...]:
    """``ns.joined`` as (type, nsfs path or fd) in NAMESPACE_ORDER (user first), or the
    error naming the kernel rule a spawn could not honour (see :func:`nsbind.spawn`)."""
    kinds = {kind.value: kind for kind in Namespace}
    out: dict[Namespace, str | FdLike] = {}
    for key, where in ns.joined.items():
        kind = kinds.get(key)
        if kind is None:
            raise InvalidValue(f"joining: {key!r} is not a namespace type ({', '.join(kinds)})")
        if kind in ns.types:
            raise InvalidValue(f"the {key} namespace is both new ({key}=True) and joined "
                               f"(joining({key}=...)): give one")
        if isinstance(where, (str, bytes, os.PathLike)):
            out[kind] = os.fsdecode(fsbytes(where))
        elif (isinstance(where, int) and not isinstance(where, bool) and where >= 0) or \
                callable(getattr(where, "fileno", None)):
            out[kind] = where
        else:
            raise InvalidType(f"joining: the {key} namespace as {where!r}: give an nsfs path "
                              "or fd")
    if Namespace.USER in out and ns.types & {Namespace.PID, Namespace.TIME}:
        raise NamespaceRuleError(
            "a new pid or time namespace is made by the clone, before the child joins the user "
            "namespace: it would belong to the caller's user namespace, in which the child has "
            "no privilege (it could not mount /proc); join them too or create the user one")
    if Namespace.USER in ns.types and Namespace.MNT in out:
        raise NamespaceRuleError(
            "a new user namespace holds no privilege over a joined mount namespace (setns "
            "needs CAP_SYS_ADMIN over its owner): join the user namespace too, or create mnt")
    return tuple((kind, out[kind]) for kind in NAMESPACE_ORDER if kind in out)


def _check_terminal(terminal: bool, size: tuple[int, int] | None,
                    process_group: int | None) -> tuple[int, int] | None:
    """``console_size`` as (rows, columns) of 0..65535 (struct winsize), or InvalidValue."""
    if not terminal:
        raise InvalidValue("console_size needs terminal=True")
    if process_group is not None:
        raise InvalidValue("terminal=True makes the child a session leader (setsid): it "
                           f"cannot also join process group {process_group}")
    if size is None:
        return None
    try:
        rows, cols = (index(n) for n in size)
    except (TypeError, ValueError):
        raise InvalidValue(f"console_size {size!r} is not (rows, columns)") from None
    if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise InvalidValue(f"console_size {size!r}: rows and columns are 0..65535")
    return rows, cols


def _program(seccomp: bytes | Filter | Program) -> Program:
    # nsbind.seccomp (and libseccomp) only for the spawns that ask for a filter
    from nsbind.seccomp import as_program

    return as_program(seccomp)
