"""Static spawn plans: built from a :class:`~nsbind.spawnrequest.SpawnRequest`, and kept
for requests that come again.

A static plan is the part of a C spawn plan that depends on the request only (exec
paths, argv, envp, clone flags, mount steps, names, ids, limits, capabilities); no fd
is opened while it is built.  A plan is kept from the second spawn of an equal request
on (a one-off spawn keeps nothing); each later spawn starts from a copy of the C struct.
"""

from __future__ import annotations

import os

from nsbind._native import lib
from nsbind._sys.fd import fdnum
from nsbind.cgroups import Cgroup
from nsbind.errors import InvalidValue
from nsbind.flags import CloneFlags, MountFlags, Namespace
from nsbind.fnlite import lru_cache
from nsbind.idmap import IdMap
from nsbind.mountstep import MountStep
from nsbind.rootfs import RootPlan
from nsbind.spawnplan import Plan
from nsbind.spawnrequest import SpawnRequest

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["PlanCache", "StaticPlan", "build_static", "plans"]

_NS_FLAG = {ns: int(ns.flag) for ns in Namespace}
_NEWUSER, _NEWNET, _NEWNS, _NEWTIME = (int(CloneFlags.NEWUSER), int(CloneFlags.NEWNET),
                                       int(CloneFlags.NEWNS), int(CloneFlags.NEWTIME))
_HAS_VM_CLONE = bool(lib.nsb_spawn_has_vm_clone())


class StaticPlan:
    """What a spawn derives from its request before any fd is made, and, once a spawn
    with inherited stdio has completed it, the whole plan (``ready``)."""

    __slots__ = ("gid_map", "plan", "ready", "root", "steps", "uid_map", "user")

    def __init__(self, plan: Plan, user: bool, uid_map: list[IdMap], gid_map: list[IdMap],
                 steps: tuple[MountStep, ...], root: RootPlan | None,
                 ready: Plan | None = None) -> None:
        self.plan = plan
        self.user = user  # a new user namespace: the parent writes its id maps
        self.uid_map = uid_map
        self.gid_map = gid_map
        self.steps = steps
        self.root = root  # a prepared root the child joins (None: plain)
        self.ready = ready


@lru_cache(maxsize=128)
def _clone_flags(types: frozenset[Namespace]) -> int:
    flags = 0
    for kind in types:
        flags |= _NS_FLAG[kind]
    return flags


@lru_cache(maxsize=8)
def _propagation_step(kind: int) -> MountStep:
    """``mount --make-r<kind> /``, the first step in a new mount namespace."""
    return MountStep(None, "/", None, MountFlags.REC | kind)


def _exec_candidates(name: str, env: Mapping[str, str]) -> list[str]:
    """Where execve should look for ``name``: the path itself, or each PATH directory."""
    if "/" in name:
        return [name]
    path = env.get("PATH", os.defpath)
    return [os.path.join(d or ".", name) for d in path.split(os.pathsep)]


def _user_ids(request: SpawnRequest, flags: int) -> tuple[list[IdMap], list[IdMap],
                                                        int | None, int | None,
                                                        tuple[int, ...] | None]:
    """The id maps of a new user namespace and the ids the child takes in it: root
    inside when 0 is mapped and no uid was asked for."""
    uid, gid, groups = request.uid, request.gid, request.groups
    if not flags & _NEWUSER:
        return [], [], uid, gid, groups
    ns = request.namespaces
    # a Namespaces checked its maps when it was made; the defaults map one id
    uid_map = ns.uid_map or [(0, os.geteuid(), 1)]
    gid_map = ns.gid_map or [(0, os.getegid(), 1)]
    if uid is None and any(inside == 0 for inside, _, _ in uid_map):
        uid = 0
        if any(inside == 0 for inside, _, _ in gid_map):
            gid = 0
            if groups is None and os.geteuid() == 0:
                groups = ()
    return uid_map, gid_map, uid, gid, groups


def _becomes_root(uid_map: list[IdMap], gid_map: list[IdMap]) -> bool:
    """Whether uid and gid 0 are both mapped in a new user namespace."""
    return (any(inside == 0 for inside, _, _ in uid_map)
            and any(inside == 0 for inside, _, _ in gid_map))


def _root_steps(request: SpawnRequest, flags: int
                ) -> tuple[list[MountStep], RootPlan | None, Any]:
    """The mount steps, the prepared root joined (if any) and the directory to pivot into."""
    steps = list(request.mounts)
    pivot_root = request.pivot_root
    root = None
    if request.rootfs is not None:
        if not flags & _NEWNS:
            raise InvalidValue("rootfs needs a new mount namespace (Namespaces(mnt=True)): "
                             "its mounts are made in the child's own")
        if pivot_root is not None:
            raise InvalidValue("give rootfs or pivot_root, not both")
        rootplan = request.rootfs.plan_for(request.namespaces, bool(steps))
        steps += rootplan.steps
        if rootplan.namespace is not None:
            # join the prepared namespace and unshare a private copy of it, instead of
            # copying the host's mount table, binding the root and pivoting into it
            root = rootplan
        else:
            pivot_root = rootplan.pivot_root
    propagation = request.namespaces.propagation
    if flags & _NEWNS and propagation is not None and root is None:
        steps.insert(0, _propagation_step(propagation))
    return steps, root, pivot_root


def build_static(request: SpawnRequest) -> StaticPlan:
    """The static plan for ``request`` (no fd is opened here)."""
    plan = Plan()
    environ = request.environment
    plan.set_exec(_exec_candidates(request.args[0], environ), request.args, environ)
    ns = request.namespaces
    joining = ns.join_target is not None or bool(request.joins)
    # what the clone creates, as CLONE_NEW* bits (tested as ints: enum hashing is slow)
    flags = 0 if ns.join_target is not None else _clone_flags(ns.types)
    plan.c.clone_flags = flags
    if any(kind is Namespace.USER for kind, _ in request.joins):
        # runc's order: the child joins the user namespace (and the others) first, then
        # unshares the new ones, which the joined user namespace then owns
        plan.c.clone_flags, plan.c.unshare_flags = 0, flags
    uid_map, gid_map, uid, gid, groups = _user_ids(request, flags)
    if flags & _NEWUSER and _becomes_root(uid_map, gid_map):
        plan.c.userns_root = 1  # root inside before the steps that make files
    plan.c.loopback = int(bool(flags & _NEWNET) and ns.loopback)
    steps, root, pivot_root = _root_steps(request, flags)
    if root is not None:  # the child joins the prepared mount namespace, then unshares
        if plan.c.unshare_flags:
            raise InvalidValue("a prepared RootFS's mount namespace belongs to this process's "
                               "user namespace: a child in a joined user namespace cannot "
                               "join it (use the RootFS unprepared)")
        plan.c.clone_flags = flags & ~_NEWNS
        plan.c.unshare_flags = _NEWNS
    # (the plan's defaults: nothing of these; each setter only for what is asked)
    c: Any = plan.c
    if request.hostname is not None or request.domainname is not None:
        plan.set_names(request.hostname, request.domainname)
    if pivot_root is not None or request.cwd is not None:
        plan.set_root(pivot_root, request.cwd)
    if request.rlimits:
        plan.set_rlimits(dict(request.rlimits))
    if uid is not None or gid is not None or groups is not None:
        plan.set_ids(uid, gid, groups)
    if request.capabilities is not None:
        plan.set_caps(request.capabilities)
    if request.no_new_privs:
        c.no_new_privs = 1
    if request.pdeathsig:
        c.pdeathsig = request.pdeathsig
    if request.umask != -1:
        c.umask = request.umask
    if request.start_new_session:
        c.setsid = 1
    if request.process_group is not None:
        c.pgid = request.process_group
    cgroup = request.cgroup
    if isinstance(cgroup, Cgroup):
        v2 = cgroup.v2
        c.cgroup_fd = -1 if v2 is None else v2.fileno()
    elif cgroup is not None:
        c.cgroup_fd = fdnum(cgroup)
    if request.init:
        c.init = 1
    if request.seccomp is not None:
        plan.set_seccomp(request.seccomp)
    if request.terminal:  # the socket the master goes back over is per spawn
        # a child in a root of its own gets a fresh /dev/console (never the host's)
        c.console_mount = int(request.rootfs is not None or request.pivot_root is not None)
        c.console_rows, c.console_cols = request.console_size or (0, 0)
    # time namespaces refuse CLONE_VM; an init outlives the exec of its child; a
    # process sharing its memory may not join a user namespace (userns_install); a
    # gated child in a new user namespace is a copy (it would park sharing memory
    # with a caller it changed the ids of; other gated children: nsbind.sharedchild)
    c.use_vm = int(not flags & _NEWTIME and not request.init and not joining
                   and not (request.gate and flags & _NEWUSER) and _HAS_VM_CLONE)
    return StaticPlan(plan, bool(flags & _NEWUSER), uid_map, gid_map, tuple(steps), root)


class PlanCache:
    """Static plans of recent repeated requests (cleared when full), and the requests
    seen once so far (a one-off spawn keeps no plan)."""

    def __init__(self, size: int = 32, seen: int = 64) -> None:
        self.size, self.seen_size = size, seen
        self.plans: dict[SpawnRequest, StaticPlan] = {}
        self.seen: dict[SpawnRequest, bool] = {}

    def get(self, request: SpawnRequest) -> tuple[StaticPlan, Plan, bool]:
        """(the static plan, the plan this spawn fills in, whether the static plan is
        kept): a kept plan is never filled in itself, only copies of it."""
        key: SpawnRequest | None = request if request.cacheable else None
        try:
            static = self.plans.get(key) if key is not None else None
        except TypeError:  # something in the request is not hashable: not cached
            key = static = None
        if static is not None:
            return static, static.plan.copy(), True
        static = build_static(request)
        if key is None:
            return static, static.plan, False
        if self.seen.pop(key, False):
            # the second spawn with this request: keep its plan for the next ones
            if len(self.plans) >= self.size:
                self.plans.clear()
            self.plans[key] = static
            return static, static.plan.copy(), True
        if len(self.seen) >= self.seen_size:  # the first: remember only that it was asked
            self.seen.clear()
        self.seen[key] = True
        return static, static.plan, False


#: the process-wide cache spawn uses
plans = PlanCache()
