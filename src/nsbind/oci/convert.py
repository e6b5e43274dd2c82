"""A validated OCI :class:`~nsbind.oci.spec.Spec` as the arguments of :func:`nsbind.spawn`.

:func:`to_spawn` maps what nsbind can run today and refuses the rest with a SpecError
naming the JSON path (``linux.personality: not supported yet``): a field is never
silently dropped.  Mapped: process args, env, cwd, user (uid, gid, additionalGids,
umask: 0022 when absent, as runc; HOME from the root's /etc/passwd when the env
lacks it, as runc), terminal and consoleSize, the five capability sets (an ambient one
that is not also inheritable and permitted is left out, as runc ends up), rlimits,
noNewPrivileges; root path and readonly; hostname, domainname; mounts
(:mod:`nsbind.oci.mountconv`); namespaces, new or joined by ``path``, uid/gid
mappings; maskedPaths, readonlyPaths, devices, rootfsPropagation (absent: rslave, as
runc); linux.resources (:mod:`nsbind.oci.resconv`); linux.seccomp.  Carried for the
lifecycle, which applies them to the created process: linux.sysctl (keys checked here
against the container's own namespaces), oomScoreAdj, hooks.  Annotations are not
interpreted; an apparmorProfile on a host without AppArmor is ignored, as runc does.

Refused for now: an apparmorProfile where AppArmor is enabled, selinuxLabel,
mountLabel, personality, timeOffsets.
"""

from __future__ import annotations

import os
import resource

from nsbind._sys.ns import open_namespace
from nsbind.errors import NsbindError
from nsbind.flags import Propagation
from nsbind.frozen import field, fields_of, frozen
from nsbind.idmap import IdMap
from nsbind.mountstep import MountStep
from nsbind.namespaces import Namespaces
from nsbind.oci.cgpath import CgroupsPath
from nsbind.oci.mountconv import MountItem, convert_devices, convert_mounts
from nsbind.oci.resconv import CgroupSettings, convert_resources
from nsbind.oci.schema import SpecError, dump
from nsbind.oci.spec import Hooks, IdMapping, Linux, Process, Spec
from nsbind.oci.validate import Host
from nsbind.seccomp import Filter
from nsbind.seccompcache import ProgramCache
from nsbind.spawnplan import CapabilitySets
from nsbind.users import resolve_user

__all__ = ["INIT_ANNOTATION", "SpawnArgs", "process_kwargs", "to_spawn"]

#: an annotation nsbind reads: ``"true"`` puts nsbind's init in front of the process as
#: PID 1 of its pid namespace (what ``docker run --init`` does with tini): it reaps
#: orphans and passes signals on, and exits with the process's status
INIT_ANNOTATION = "nsbind.init"

_NS_KINDS = {"pid": "pid", "network": "net", "ipc": "ipc", "mount": "mnt", "uts": "uts",
             "user": "user", "cgroup": "cgroup", "time": "time"}
_PROPAGATION = {"private": Propagation.PRIVATE, "rprivate": Propagation.PRIVATE,
                "slave": Propagation.SLAVE, "rslave": Propagation.SLAVE,
                "shared": Propagation.SHARED, "rshared": Propagation.SHARED,
                "unbindable": Propagation.UNBINDABLE, "runbindable": Propagation.UNBINDABLE}


@frozen
class SpawnArgs:
    """Everything a run needs: the keywords of :func:`nsbind.spawn` (``spawn_kwargs``),
    the root filesystem (``root``, ``root_readonly``, ``mounts`` in order: steps, and
    cgroup mounts made once the cgroup path is known; ``masked``, ``readonly``) and the
    cgroup (``cgroup_parent`` and ``cgroup_name``, None: the container id; settings)."""

    args: tuple[str, ...]
    spawn_kwargs: dict[str, object]
    root: str
    root_readonly: bool
    mounts: tuple[MountItem, ...]
    masked: tuple[str, ...]
    readonly: tuple[str, ...]
    cgroup_parent: str
    cgroup_name: str | None
    cgroup: CgroupSettings
    new_pid_namespace: bool
    own_namespaces: frozenset[str] = frozenset()
    sysctl: dict[str, str] = field(default_factory=dict)
    oom_score_adj: int | None = None
    hooks: Hooks | None = None
    init: bool = False

    @property
    def needs_lifecycle(self) -> str | None:
        """What only the lifecycle (create, then start) can do: sysctls, an OOM score
        adjustment and hooks need the process made and not yet started."""
        if self.sysctl:
            return "linux.sysctl"
        if self.oom_score_adj is not None:
            return "process.oomScoreAdj"
        return "hooks" if self.has_hooks else None

    @property
    def has_hooks(self) -> bool:
        """Whether some phase of ``hooks`` has a hook."""
        return self.hooks is not None and any(getattr(self.hooks, f.name)
                                              for f in fields_of(self.hooks))


def _refuse_unsupported(spec: Spec, host: Host) -> None:
    proc, linux = spec.process, spec.linux
    if proc is not None:
        if proc.apparmor_profile and host.apparmor:  # without AppArmor: ignored (runc)
            raise SpecError("process.apparmorProfile: not supported yet (AppArmor is "
                            "enabled on this host)")
        if proc.selinux_label:
            raise SpecError("process.selinuxLabel: not supported yet")
    if linux is not None:
        for name, given in (("mountLabel", bool(linux.mount_label)),
                            ("personality", linux.personality is not None),
                            ("timeOffsets", bool(linux.time_offsets))):
            if given:
                raise SpecError(f"linux.{name}: not supported yet")


def _env(proc: Process, rootfs: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for i, item in enumerate(proc.env or ()):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SpecError(f"process.env[{i}] {item[:80]!r} is not NAME=VALUE")
        env[key] = value
    if "HOME" not in env:  # as runc: the user's home in the root's /etc/passwd, or /
        try:
            env["HOME"] = resolve_user(rootfs, str(proc.user.uid)).home
        except (NsbindError, OSError):
            env["HOME"] = "/"
    return env


def _rlimits(proc: Process) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for i, r in enumerate(proc.rlimits or ()):
        res = getattr(resource, r.type, None) if r.type.startswith("RLIMIT_") else None
        if not isinstance(res, int):
            raise SpecError(f"process.rlimits[{i}].type {r.type[:80]!r} is not a resource "
                            "limit this Python knows")
        if r.soft > r.hard:
            raise SpecError(f"process.rlimits[{i}]: soft {r.soft} is above hard {r.hard}")
        out[res] = (r.soft, r.hard)
    return out


def _capabilities(proc: Process) -> CapabilitySets | None:
    caps = proc.capabilities
    if caps is None:
        return None  # as runc: the capabilities are left as they are

    def of(sets: tuple[int, ...] | None) -> frozenset[int]:
        return frozenset(int(c) for c in sets or ())

    # the kernel raises an ambient capability only if it is permitted and inheritable;
    # runc (1.1) tries, fails and goes on without it: so does this
    inheritable, permitted = of(caps.inheritable), of(caps.permitted)
    return CapabilitySets(permitted=permitted, effective=of(caps.effective),
                          inheritable=inheritable,
                          ambient=of(caps.ambient) & inheritable & permitted,
                          bounding=of(caps.bounding))


def _groups(additional: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The supplementary groups to set: none asked for in a user namespace whose
    setgroups is denied (a single-id map written without newgidmap) is left alone, as
    runc does, rather than refused."""
    if additional:
        return tuple(additional)
    try:  # os calls: a text file in ascii imports its codec, 0.4 ms of every create
        fd = os.open("/proc/self/setgroups", os.O_RDONLY | os.O_CLOEXEC)
        try:
            denied = os.read(fd, 64).strip() == b"deny"
        finally:
            os.close(fd)
    except OSError:
        denied = False
    return None if denied else ()


def process_kwargs(proc: Process, rootfs: str) -> dict[str, object]:
    """The keywords of :func:`nsbind.spawn` for an OCI ``process`` (the container's or
    an exec's): env (HOME from ``rootfs``'s /etc/passwd when absent), cwd, uid, gid,
    groups, umask, capabilities, rlimits, no_new_privs and, with ``terminal``, the
    terminal and its size."""
    user = proc.user
    kwargs: dict[str, object] = {
        "env": _env(proc, rootfs), "cwd": proc.cwd, "uid": user.uid, "gid": user.gid,
        "groups": _groups(user.additional_gids),
        "umask": 0o022 if user.umask is None else user.umask,
        "capabilities": _capabilities(proc), "rlimits": _rlimits(proc),
        "no_new_privs": bool(proc.no_new_privileges),
    }
    if proc.terminal:
        kwargs["terminal"] = True
        if proc.console_size is not None:
            kwargs["console_size"] = (proc.console_size.height, proc.console_size.width)
    return kwargs


def _idmap(entries: tuple[IdMapping, ...] | None) -> list[IdMap] | None:
    if not entries:
        return None
    return [(m.container_id, m.host_id, m.size) for m in entries]


def _namespaces(linux: Linux) -> tuple[Namespaces, frozenset[str]]:
    """The spawn's Namespaces (new ones, and those joined by path) and the OCI types
    of the container's own namespaces, new or joined (not the host's)."""
    new: dict[str, bool] = {}
    joined: dict[str, str] = {}
    for i, ns in enumerate(linux.namespaces or ()):
        kind = _NS_KINDS.get(ns.type)
        if kind is None:
            raise SpecError(f"linux.namespaces[{i}].type {ns.type[:80]!r}: unknown")
        if ns.path:
            try:  # checked here to name the field; spawn opens and checks it again
                open_namespace(ns.path, kind).close()
            except OSError as exc:
                raise SpecError(f"linux.namespaces[{i}].path: {exc}", exc.errno) from None
            joined[kind] = ns.path
        else:
            new[kind] = True
    if "mnt" not in new:
        raise SpecError("linux.namespaces: a new mount namespace is required")
    prop = Propagation.SLAVE  # runc's default for the root (MS_SLAVE|MS_REC)
    if linux.rootfs_propagation:
        prop = _PROPAGATION[linux.rootfs_propagation]
    user = new.pop("user", False)
    spawn_ns = Namespaces(pid=new.get("pid", False), net=new.get("net", False),
                          ipc=new.get("ipc", False), mnt=True, uts=new.get("uts", False),
                          cgroup=new.get("cgroup", False), time=new.get("time", False),
                          user=user, uid_map=_idmap(linux.uid_mappings) if user else None,
                          gid_map=_idmap(linux.gid_mappings) if user else None,
                          propagation=prop)
    if joined:
        try:
            spawn_ns = spawn_ns.joining(**joined)
        except NsbindError as exc:
            raise SpecError(f"linux.namespaces: {exc}") from None
    own = {ns.type for ns in linux.namespaces or ()}
    return spawn_ns, frozenset(own)


def _cgroup_place(linux: Linux, parent: str) -> tuple[str, str | None]:
    """(the parent path, the cgroup's name; None: the container id)."""
    parts: CgroupsPath | None = linux.cgroups_path_parts
    if parts is None:
        return parent, None
    path = parts.cgroupfs_path()
    if parts.form != "absolute":
        path = f"{parent.strip('/')}/{path}"
    head, _, name = path.strip("/").rpartition("/")
    return head, name


def to_spawn(spec: Spec, *, cgroup_parent: str, host: Host | None = None,
             seccomp_cache: ProgramCache | None = None) -> SpawnArgs:
    """The :class:`SpawnArgs` of ``spec``, or SpecError naming the JSON path of the
    first field nsbind cannot run yet (see the module doc).  ``seccomp_cache``: where
    compiled seccomp profiles are kept (a runtime compiles each one once)."""
    _refuse_unsupported(spec, host or Host.probe())
    proc, linux = spec.process, spec.linux or Linux()
    if proc is None or not proc.args:
        raise SpecError("process.args: a command is required")
    if spec.root is None or spec.rootfs is None:
        raise SpecError("root.path: a root filesystem is required")
    if not os.path.isabs(spec.rootfs):
        raise SpecError(f"root.path {spec.root.path[:80]!r} is relative and no bundle "
                        "directory is known")
    items = convert_mounts(spec.mounts or (), spec.bundle)
    items += convert_devices(linux.devices or ())
    # resolved inside the root once here, not by RootFS.add for every container
    items = [i.in_root() if isinstance(i, MountStep) else i for i in items]
    seccomp = None
    if linux.seccomp is not None:  # compiled here, once: a Program from then on
        section = dump(linux.seccomp)
        seccomp = (Filter.from_oci(section).program() if seccomp_cache is None
                   else seccomp_cache.program(section))
    kwargs = process_kwargs(proc, spec.rootfs)
    namespaces, own = _namespaces(linux)
    kwargs.update({"hostname": spec.hostname, "domainname": spec.domainname,
                   "namespaces": namespaces, "seccomp": seccomp})
    sysctl = dict(linux.sysctl or {})
    if sysctl:
        from nsbind.sysctl import check as check_sysctl
    for key in sysctl:
        try:
            check_sysctl(key, own)
        except NsbindError as exc:
            raise SpecError(f"linux.sysctl[{key[:80]!r}]: {exc}") from None
    parent, name = _cgroup_place(linux, cgroup_parent)
    return SpawnArgs(
        args=proc.args, spawn_kwargs=kwargs, root=spec.rootfs,
        root_readonly=bool(spec.root.readonly), mounts=tuple(items),
        masked=linux.masked_paths or (), readonly=linux.readonly_paths or (),
        cgroup_parent=parent, cgroup_name=name,
        cgroup=convert_resources(linux.resources),
        new_pid_namespace=linux.has_namespace("pid"), own_namespaces=own, sysctl=sysctl,
        oom_score_adj=proc.oom_score_adj, hooks=spec.hooks,
        init=(spec.annotations or {}).get(INIT_ANNOTATION) == "true")
