"""The rules a parsed spec must follow, as runc's libcontainer/configs/validate has them.

:func:`validate` runs every rule in :data:`RULES` over a :class:`~nsbind.oci.spec.Spec`;
each rule is a function that raises :class:`SpecError` naming the JSON path and the
value.  What a host lacks decides some of them (:class:`Host`): an SELinux label on a host
without SELinux is refused, as runc refuses it; an AppArmor profile on a host without
AppArmor is logged at debug level and ignored, as runc ignores it.
"""

from __future__ import annotations

import os
import resource

from nsbind.charsets import ALNUM, DIGITS, UPPER, Word
from nsbind.errors import InvalidValue
from nsbind.frozen import fields_of, frozen
from nsbind.idmap import check_map
from nsbind.lazyre import LazyPattern
from nsbind.oci.cgpath import parse_cgroups_path
from nsbind.oci.schema import SpecError

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from nsbind.oci.spec import IdMapping, Linux, Spec

__all__ = ["NAMESPACES", "RULES", "Host", "validate"]


#: namespace types of the spec (config-linux.md), in its order
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
_CPU_LIST = LazyPattern(r"\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*")
_PAGE_SIZE = LazyPattern(r"\d+(?:KB|MB|GB|TB|PB)")
_PROPAGATION = {"shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate",
                "runbindable"}
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
_UTS_SYSCTLS = {"kernel.hostname", "kernel.domainname"}
_SECCOMP_ACTIONS = {"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                    "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                    "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"}
_SECCOMP_OPS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}
_SECCOMP_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
_ARCH = Word(UPPER + DIGITS + "_", UPPER + DIGITS + "_", prefix="SCMP_ARCH_")
_PERSONALITY = {"LINUX", "LINUX32"}


@frozen
class Host:
    """What this host offers that some spec fields need."""

    apparmor: bool = False
    selinux: bool = False
    rt_group_sched: bool = False

    @classmethod
    def probe(cls) -> Host:
        """This host, read from /sys (nothing is changed)."""
        apparmor = False
        try:
            with open("/sys/module/apparmor/parameters/enabled") as file:
                apparmor = file.read().strip() == "Y"
        except OSError:
            pass
        rt = any(os.path.exists(f"/sys/fs/cgroup/{d}/cpu.rt_runtime_us")
                 for d in ("cpu", "cpu,cpuacct"))
        return cls(apparmor=apparmor, selinux=os.path.exists("/sys/fs/selinux/enforce"),
                   rt_group_sched=rt)


def _fail(message: str) -> SpecError:
    return SpecError(message)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _absolute(path: str, value: str, *, dotdot: bool = True) -> None:
    if not value.startswith("/"):
        raise _fail(f"{path} {_short(value)} is not an absolute path")
    if "\0" in value:
        raise _fail(f"{path} {_short(value)} contains a NUL character")
    if dotdot and ".." in value.split("/"):
        raise _fail(f"{path} {_short(value)} contains a '..' component")


_SEMVER_PART = frozenset(ALNUM + ".-")


def _version_ok(version: str) -> bool:
    """``1\\.[012]\\.\\d+(?:-[0-9A-Za-z.-]+)?(?:\\+[0-9A-Za-z.-]+)?``: a 1.0 to 1.2
    release, with a pre-release and a build part as semver writes them."""
    if version[:2] != "1." or version[2:3] not in ("0", "1", "2") or version[3:4] != ".":
        return False
    rest = version[4:]
    # the digits: re's \\d, any Unicode decimal digit
    count = next((i for i, c in enumerate(rest) if not c.isdecimal()), len(rest))
    if not count:
        return False
    pre, plus, build = rest[count:].partition("+")
    if plus and not (build and _SEMVER_PART.issuperset(build)):
        return False
    return not pre or (pre[0] == "-" and len(pre) > 1 and _SEMVER_PART.issuperset(pre[1:]))


def check_version(spec: Spec, host: Host) -> None:
    if not _version_ok(spec.oci_version):
        raise _fail(f"ociVersion {_short(spec.oci_version)} is not supported (1.0.x to 1.2.x)")


def check_process(spec: Spec, host: Host) -> None:
    process = spec.process
    if process is None:
        return
    if not process.args:
        raise _fail("process.args: must name the program to run (empty or missing)")
    _absolute("process.cwd", process.cwd, dotdot=False)
    for i, entry in enumerate(process.env or ()):
        check_env(f"process.env[{i}]", entry)
    if any("\0" in arg for arg in process.args):
        raise _fail("process.args: an argument contains a NUL character")
    if process.oom_score_adj is not None and not -1000 <= process.oom_score_adj <= 1000:
        raise _fail(f"process.oomScoreAdj {process.oom_score_adj} is out of range "
                    "(-1000..1000)")
    if process.console_size is not None and not process.terminal:
        raise _fail("process.consoleSize: only for a process with a terminal")
    if process.user.umask is not None and process.user.umask > 0o777:
        raise _fail(f"process.user.umask {process.user.umask:#o} is out of range (0..0o777)")
    seen: set[str] = set()
    for i, limit in enumerate(process.rlimits or ()):
        where = f"process.rlimits[{i}]"
        if not limit.type.startswith("RLIMIT_") or not hasattr(resource, limit.type):
            raise _fail(f"{where}.type {_short(limit.type)} is not an RLIMIT_* name")
        if limit.type in seen:
            raise _fail(f"{where}.type {limit.type} appears twice")
        seen.add(limit.type)
        if limit.soft > limit.hard:
            raise _fail(f"{where}: soft {limit.soft} is more than hard {limit.hard}")


def check_env(path: str, entry: str) -> None:
    """``KEY=VALUE``, the key non-empty, no NUL anywhere."""
    key, sep, _ = entry.partition("=")
    if not sep or not key or "\0" in entry:
        raise _fail(f"{path} {_short(entry)} is not KEY=VALUE (without NUL)")


def check_root(spec: Spec, host: Host) -> None:
    if spec.root is None:
        raise _fail("root: required field missing")
    if not spec.root.path or "\0" in spec.root.path:
        raise _fail(f"root.path {_short(spec.root.path)} is empty or contains a NUL")


def check_mounts(spec: Spec, host: Host) -> None:
    for i, mount in enumerate(spec.mounts or ()):
        where = f"mounts[{i}]"
        _absolute(f"{where}.destination", mount.destination)
        for name in ("type", "source"):
            if "\0" in (getattr(mount, name) or ""):
                raise _fail(f"{where}.{name} contains a NUL character")
        if any("\0" in option for option in mount.options or ()):
            raise _fail(f"{where}.options: an option contains a NUL character")
        if (mount.uid_mappings is None) != (mount.gid_mappings is None):
            raise _fail(f"{where}: uidMappings and gidMappings go together (an idmapped "
                        "mount needs both)")
        _check_maps(f"{where}.uidMappings", mount.uid_mappings)
        _check_maps(f"{where}.gidMappings", mount.gid_mappings)


def _check_maps(path: str, maps: Iterable[IdMapping] | None) -> None:
    if maps is None:
        return
    try:
        check_map(path, [(m.container_id, m.host_id, m.size) for m in maps])
    except InvalidValue as exc:
        raise _fail(str(exc)) from None


def check_namespaces(spec: Spec, host: Host) -> None:
    linux = spec.linux
    seen: set[str] = set()
    for i, ns in enumerate(linux.namespaces or () if linux else ()):
        where = f"linux.namespaces[{i}]"
        if ns.type not in NAMESPACES:
            raise _fail(f"{where}.type {_short(ns.type)} is not a namespace type "
                        f"({', '.join(NAMESPACES)})")
        if ns.type in seen:
            raise _fail(f"{where}.type {ns.type} appears twice")
        seen.add(ns.type)
        if ns.path is not None:
            _absolute(f"{where}.path", ns.path)


def _joined(linux: Linux, kind: str) -> bool:
    return any(ns.type == kind and ns.path is not None for ns in linux.namespaces or ())


def check_id_mappings(spec: Spec, host: Host) -> None:
    linux = spec.linux
    if linux is None:
        return
    for name, maps in (("uidMappings", linux.uid_mappings), ("gidMappings", linux.gid_mappings)):
        if maps is None:
            continue
        if not linux.has_namespace("user"):
            raise _fail(f"linux.{name}: needs a user namespace (linux.namespaces has none)")
        if _joined(linux, "user"):
            raise _fail(f"linux.{name}: not allowed when joining an existing user namespace")
        _check_maps(f"linux.{name}", maps)


def check_names(spec: Spec, host: Host) -> None:
    for name in ("hostname", "domainname"):
        value = getattr(spec, name)
        if value is None:
            continue
        if spec.linux is None or not spec.linux.has_namespace("uts"):
            raise _fail(f"{name} {_short(value)}: needs a UTS namespace")
        if len(value.encode()) > 64 or "\0" in value:
            raise _fail(f"{name} {_short(value)} is longer than 64 bytes or contains a NUL")


def check_sysctl(spec: Spec, host: Host) -> None:
    linux = spec.linux
    for key, value in (linux.sysctl or {}).items() if linux else ():
        where = f"linux.sysctl[{key[:80]!r}]"
        name = key.replace("/", ".")
        if not name or "\0" in name or "" in name.split(".") or "\0" in value:
            raise _fail(f"{where}: not a sysctl name, or a NUL in its value")
        if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
            needed = "ipc"
        elif name.startswith("net."):
            needed = "network"
        elif name in _UTS_SYSCTLS:
            needed = "uts"
        else:
            raise _fail(f"{where}: not a namespaced sysctl (it would change the host)")
        assert linux is not None
        if not linux.has_namespace(needed):
            raise _fail(f"{where}: needs a {needed} namespace (linux.namespaces has none)")


def check_hooks(spec: Spec, host: Host) -> None:
    if spec.hooks is None:
        return
    for name, meta in ((f.name, f.metadata) for f in fields_of(spec.hooks)):
        for i, hook in enumerate(getattr(spec.hooks, name) or ()):
            where = f"hooks.{meta['json']}[{i}]"
            _absolute(f"{where}.path", hook.path)
            for j, entry in enumerate(hook.env or ()):
                check_env(f"{where}.env[{j}]", entry)
            if hook.timeout is not None and hook.timeout <= 0:
                raise _fail(f"{where}.timeout {hook.timeout} must be positive (seconds)")


def check_cgroups_path(spec: Spec, host: Host) -> None:
    if spec.linux is not None and spec.linux.cgroups_path:
        parse_cgroups_path(spec.linux.cgroups_path)


def _at_least(path: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise _fail(f"{path} {value} is out of range (at least {low})")


def check_resources(spec: Spec, host: Host) -> None:
    res = spec.linux.resources if spec.linux else None
    if res is None:
        return
    where = "linux.resources"
    if res.memory is not None:
        for name in ("limit", "reservation", "swap"):
            _at_least(f"{where}.memory.{name}", getattr(res.memory, name), -1)
        if res.memory.swappiness is not None and res.memory.swappiness > 100:
            raise _fail(f"{where}.memory.swappiness {res.memory.swappiness} is out of range "
                        "(0..100)")
    if res.cpu is not None:
        _check_cpu(spec, host)
    if res.pids is not None:
        _at_least(f"{where}.pids.limit", res.pids.limit, -1)
    if res.block_io is not None:
        _check_block_io(res.block_io)
    for i, page in enumerate(res.hugepage_limits or ()):
        if not _PAGE_SIZE.fullmatch(page.page_size):
            raise _fail(f"{where}.hugepageLimits[{i}].pageSize {_short(page.page_size)} is "
                        "not a page size (e.g. 2MB)")
    for i, rule in enumerate(res.devices or ()):
        _check_device_rule(f"{where}.devices[{i}]", rule)
    for key, value in (res.unified or {}).items():
        if not key or "/" in key or key.startswith(".") or "\0" in key + value:
            raise _fail(f"{where}.unified[{key[:80]!r}] is not a cgroup file name")


def _check_cpu(spec: Spec, host: Host) -> None:
    assert spec.linux is not None and spec.linux.resources is not None
    cpu = spec.linux.resources.cpu
    assert cpu is not None
    where = "linux.resources.cpu"
    _at_least(f"{where}.quota", cpu.quota, -1)
    for name in ("cpus", "mems"):
        value = getattr(cpu, name)
        if value and not _CPU_LIST.fullmatch(value):
            raise _fail(f"{where}.{name} {_short(value)} is not a list like 0-3,5")
    if cpu.idle not in (None, 0, 1):
        raise _fail(f"{where}.idle {cpu.idle} is out of range (0 or 1)")
    for name in ("realtimeRuntime", "realtimePeriod"):
        attr = "realtime_runtime" if name == "realtimeRuntime" else "realtime_period"
        if getattr(cpu, attr) is not None and not host.rt_group_sched:
            raise _fail(f"{where}.{name}: not supported (this kernel has no RT group "
                        "scheduling: CONFIG_RT_GROUP_SCHED)")


def _check_block_io(block_io: Any) -> None:
    where = "linux.resources.blockIO"
    weights = [("weight", block_io.weight), ("leafWeight", block_io.leaf_weight)]
    for i, device in enumerate(block_io.weight_device or ()):
        weights += [(f"weightDevice[{i}].weight", device.weight),
                    (f"weightDevice[{i}].leafWeight", device.leaf_weight)]
    for name, value in weights:
        if value is not None and value != 0 and not 10 <= value <= 1000:
            raise _fail(f"{where}.{name} {value} is out of range (10..1000)")


def _check_device_rule(where: str, rule: Any) -> None:
    if rule.type is not None and rule.type not in ("a", "b", "c"):
        raise _fail(f"{where}.type {_short(rule.type)} is not a, b or c")
    if rule.access is not None and (not rule.access or set(rule.access) - set("rwm")):
        raise _fail(f"{where}.access {_short(rule.access)} is not a combination of r, w, m")
    for name in ("major", "minor"):
        _at_least(f"{where}.{name}", getattr(rule, name), -1)


def check_devices(spec: Spec, host: Host) -> None:
    seen: set[str] = set()
    for i, device in enumerate(spec.linux.devices or () if spec.linux else ()):
        where = f"linux.devices[{i}]"
        _absolute(f"{where}.path", device.path)
        if device.type not in ("c", "b", "u", "p"):
            raise _fail(f"{where}.type {_short(device.type)} is not c, b, u or p")
        if device.type != "p" and (device.major is None or device.minor is None):
            raise _fail(f"{where}: a {device.type} device needs major and minor")
        for name in ("major", "minor"):
            _at_least(f"{where}.{name}", getattr(device, name), 0)
        if device.file_mode is not None and device.file_mode > 0o7777:
            raise _fail(f"{where}.fileMode {device.file_mode:#o} has bits beyond 0o7777")
        if device.path in seen:
            raise _fail(f"{where}.path {device.path} appears twice")
        seen.add(device.path)


def check_seccomp(spec: Spec, host: Host) -> None:
    seccomp = spec.linux.seccomp if spec.linux else None
    if seccomp is None:
        return
    where = "linux.seccomp"
    actions = [(f"{where}.defaultAction", seccomp.default_action)]
    actions += [(f"{where}.syscalls[{i}].action", s.action)
                for i, s in enumerate(seccomp.syscalls or ())]
    for path, action in actions:
        if action not in _SECCOMP_ACTIONS:
            raise _fail(f"{path} {_short(action)} is not a seccomp action (SCMP_ACT_*)")
        if action == "SCMP_ACT_NOTIFY" and not seccomp.listener_path:
            raise _fail(f"{path} SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
    if seccomp.listener_path:
        _absolute(f"{where}.listenerPath", seccomp.listener_path)
    for i, arch in enumerate(seccomp.architectures or ()):
        if not _ARCH.matches(arch):
            raise _fail(f"{where}.architectures[{i}] {_short(arch)} is not SCMP_ARCH_*")
    for i, flag in enumerate(seccomp.flags or ()):
        if flag not in _SECCOMP_FLAGS:
            raise _fail(f"{where}.flags[{i}] {_short(flag)} is not a seccomp filter flag")
    for i, syscall in enumerate(seccomp.syscalls or ()):
        if not syscall.names or not all(syscall.names):
            raise _fail(f"{where}.syscalls[{i}].names: empty, or an empty name")
        for j, arg in enumerate(syscall.args or ()):
            if arg.index > 5:
                raise _fail(f"{where}.syscalls[{i}].args[{j}].index {arg.index} is out of "
                            "range (0..5)")
            if arg.op not in _SECCOMP_OPS:
                raise _fail(f"{where}.syscalls[{i}].args[{j}].op {_short(arg.op)} is not "
                            "SCMP_CMP_*")


def check_linux_misc(spec: Spec, host: Host) -> None:
    linux = spec.linux
    if linux is None:
        return
    if linux.rootfs_propagation is not None and linux.rootfs_propagation not in _PROPAGATION:
        raise _fail(f"linux.rootfsPropagation {_short(linux.rootfs_propagation)} is not one "
                    f"of {', '.join(sorted(_PROPAGATION))}")
    for name, paths in (("maskedPaths", linux.masked_paths),
                        ("readonlyPaths", linux.readonly_paths)):
        for i, value in enumerate(paths or ()):
            _absolute(f"linux.{name}[{i}]", value)
    if linux.personality is not None:
        if linux.personality.domain not in _PERSONALITY:
            raise _fail(f"linux.personality.domain {_short(linux.personality.domain)}: not "
                        "supported (LINUX or LINUX32)")
        if linux.personality.flags:
            raise _fail("linux.personality.flags: not supported (personality flags)")
    if linux.time_offsets is not None:
        if not linux.has_namespace("time") or _joined(linux, "time"):
            raise _fail("linux.timeOffsets: needs a new time namespace")
        for clock, offset in linux.time_offsets.items():
            if clock not in ("monotonic", "boottime"):
                raise _fail(f"linux.timeOffsets[{clock[:80]!r}] is not monotonic or boottime")
            if offset.nanosecs is not None and offset.nanosecs >= 10**9:
                raise _fail(f"linux.timeOffsets[{clock!r}].nanosecs {offset.nanosecs} is out "
                            "of range (0..999999999)")


def check_host_features(spec: Spec, host: Host) -> None:
    labels = [("process.selinuxLabel", spec.process.selinux_label if spec.process else None),
              ("linux.mountLabel", spec.linux.mount_label if spec.linux else None)]
    for path, label in labels:
        if label and not host.selinux:
            raise _fail(f"{path}: not supported (SELinux is not enabled on this host)")
    if spec.process is not None and spec.process.apparmor_profile and not host.apparmor:
        from nsbind.oci.runtimelog import logger

        logger("nsbind.oci.spec").debug(
            "process.apparmorProfile %r ignored: AppArmor is not enabled on this host",
            spec.process.apparmor_profile)


#: every rule, in the order they run
RULES: tuple[Callable[[Spec, Host], None], ...] = (
    check_version, check_root, check_process, check_mounts, check_namespaces,
    check_id_mappings, check_names, check_sysctl, check_hooks, check_cgroups_path,
    check_resources, check_devices, check_seccomp, check_linux_misc, check_host_features)


def validate(spec: Spec, host: Host) -> None:
    """Run every rule; the first broken one raises SpecError naming the JSON path."""
    for rule in RULES:
        rule(spec, host)
