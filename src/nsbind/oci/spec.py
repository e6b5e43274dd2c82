"""The OCI runtime spec (``config.json``, runtime-spec 1.0-1.2) as typed, frozen objects.

:func:`load_spec` reads a bundle's ``config.json`` (or its bytes) and :func:`parse_spec` a
decoded JSON value; both return a :class:`Spec` that has passed every rule of
:mod:`nsbind.oci.validate`, or raise :class:`SpecError` naming the JSON path
(``process.user.uid 4294967295 is out of range ...``, ``linux.intelRdt: not supported``).
Attribute names are the JSON names in snake case; a field absent from the JSON is None,
so :meth:`Spec.to_json` writes back exactly what was read.  Capabilities are
:class:`~nsbind.Capability` members.  :func:`default_spec` is what ``runc spec`` writes.
"""

# schema.field is dataclasses.field with the JSON name and converter in its metadata, and
# its default is None: nothing is called per instance

from __future__ import annotations

import os

from nsbind import jsonlite
from nsbind._sys.proc import Capability
from nsbind.errors import InvalidValue
from nsbind.frozen import field as record_field
from nsbind.frozen import replace_fields
from nsbind.idmap import check_id
from nsbind.jsonvalues import MAX_JSON_BYTES, kind_of
from nsbind.oci import validate
from nsbind.oci.cgpath import CgroupsPath, parse_cgroups_path
from nsbind.oci.jsonfile import decode_json, read_json_bytes
from nsbind.oci.schema import (
    BOOL,
    I64,
    STR,
    U16,
    U32,
    U64,
    Conv,
    SpecError,
    build,
    check_depth,
    dump,
    field,
    list_of,
    map_of,
    obj,
    record,
)

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Capabilities", "Hook", "Hooks", "IdMapping", "Linux", "Mount", "Namespace",
           "Process", "Resources", "Rlimit", "Root", "Seccomp", "Spec", "SpecError", "User",
           "load_spec", "parse_spec"]



def _cap(value: object, path: str) -> Capability:
    name = STR.load(value, path)
    member = Capability.__members__.get(name[4:]) if name.startswith("CAP_") else None
    if member is None:
        raise SpecError(f"{path} {name[:80]!r} is not a capability this kernel's headers know")
    return member


def _id(value: object, path: str) -> int:
    try:
        return check_id(path, value)
    except InvalidValue as exc:
        raise SpecError(str(exc)) from None


ID = Conv(_id)
CAP = Conv(_cap, lambda cap: f"CAP_{Capability(cap).name}")
STRS = list_of(STR)


@record
class IdMapping:
    container_id: int = field("containerID", ID, required=True)
    host_id: int = field("hostID", ID, required=True)
    size: int = field("size", U32, required=True)


IDMAPS = list_of(obj(IdMapping))


@record
class User:
    uid: int = field("uid", ID, required=True)
    gid: int = field("gid", ID, required=True)
    umask: int | None = field("umask", U32)
    additional_gids: tuple[int, ...] | None = field("additionalGids", list_of(ID))


@record
class Capabilities:
    bounding: tuple[Capability, ...] | None = field("bounding", list_of(CAP))
    effective: tuple[Capability, ...] | None = field("effective", list_of(CAP))
    inheritable: tuple[Capability, ...] | None = field("inheritable", list_of(CAP))
    permitted: tuple[Capability, ...] | None = field("permitted", list_of(CAP))
    ambient: tuple[Capability, ...] | None = field("ambient", list_of(CAP))


@record
class Rlimit:
    type: str = field("type", STR, required=True)
    soft: int = field("soft", U64, required=True)
    hard: int = field("hard", U64, required=True)


@record
class ConsoleSize:
    height: int = field("height", U32, required=True)
    width: int = field("width", U32, required=True)


@record
class Process:
    terminal: bool | None = field("terminal", BOOL)
    console_size: ConsoleSize | None = field("consoleSize", obj(ConsoleSize))
    user: User = field("user", obj(User), required=True)
    args: tuple[str, ...] | None = field("args", STRS)
    env: tuple[str, ...] | None = field("env", STRS)
    cwd: str = field("cwd", STR, required=True)
    capabilities: Capabilities | None = field("capabilities", obj(Capabilities))
    rlimits: tuple[Rlimit, ...] | None = field("rlimits", list_of(obj(Rlimit)))
    no_new_privileges: bool | None = field("noNewPrivileges", BOOL)
    oom_score_adj: int | None = field("oomScoreAdj", I64)
    apparmor_profile: str | None = field("apparmorProfile", STR)
    selinux_label: str | None = field("selinuxLabel", STR)


@record
class Root:
    path: str = field("path", STR, required=True)
    readonly: bool | None = field("readonly", BOOL)


@record
class Mount:
    destination: str = field("destination", STR, required=True)
    type: str | None = field("type", STR)
    source: str | None = field("source", STR)
    options: tuple[str, ...] | None = field("options", STRS)
    uid_mappings: tuple[IdMapping, ...] | None = field("uidMappings", IDMAPS)
    gid_mappings: tuple[IdMapping, ...] | None = field("gidMappings", IDMAPS)


@record
class Hook:
    path: str = field("path", STR, required=True)
    args: tuple[str, ...] | None = field("args", STRS)
    env: tuple[str, ...] | None = field("env", STRS)
    timeout: int | None = field("timeout", I64)


HOOKS = list_of(obj(Hook))


@record
class Hooks:
    prestart: tuple[Hook, ...] | None = field("prestart", HOOKS)
    create_runtime: tuple[Hook, ...] | None = field("createRuntime", HOOKS)
    create_container: tuple[Hook, ...] | None = field("createContainer", HOOKS)
    start_container: tuple[Hook, ...] | None = field("startContainer", HOOKS)
    poststart: tuple[Hook, ...] | None = field("poststart", HOOKS)
    poststop: tuple[Hook, ...] | None = field("poststop", HOOKS)


@record
class Namespace:
    type: str = field("type", STR, required=True)
    path: str | None = field("path", STR)


@record
class Memory:
    limit: int | None = field("limit", I64)
    reservation: int | None = field("reservation", I64)
    swap: int | None = field("swap", I64)
    swappiness: int | None = field("swappiness", U64)
    disable_oom_killer: bool | None = field("disableOOMKiller", BOOL)
    check_before_update: bool | None = field("checkBeforeUpdate", BOOL)


@record
class Cpu:
    shares: int | None = field("shares", U64)
    quota: int | None = field("quota", I64)
    period: int | None = field("period", U64)
    realtime_runtime: int | None = field("realtimeRuntime", I64)
    realtime_period: int | None = field("realtimePeriod", U64)
    cpus: str | None = field("cpus", STR)
    mems: str | None = field("mems", STR)
    idle: int | None = field("idle", I64)


@record
class Pids:
    limit: int = field("limit", I64, required=True)


@record
class WeightDevice:
    major: int = field("major", I64, required=True)
    minor: int = field("minor", I64, required=True)
    weight: int | None = field("weight", U16)
    leaf_weight: int | None = field("leafWeight", U16)


@record
class ThrottleDevice:
    major: int = field("major", I64, required=True)
    minor: int = field("minor", I64, required=True)
    rate: int = field("rate", U64, required=True)


THROTTLE = list_of(obj(ThrottleDevice))


@record
class BlockIO:
    weight: int | None = field("weight", U16)
    leaf_weight: int | None = field("leafWeight", U16)
    weight_device: tuple[WeightDevice, ...] | None = field("weightDevice",
                                                           list_of(obj(WeightDevice)))
    throttle_read_bps_device: tuple[ThrottleDevice, ...] | None = field(
        "throttleReadBpsDevice", THROTTLE)
    throttle_write_bps_device: tuple[ThrottleDevice, ...] | None = field(
        "throttleWriteBpsDevice", THROTTLE)
    throttle_read_iops_device: tuple[ThrottleDevice, ...] | None = field(
        "throttleReadIOPSDevice", THROTTLE)
    throttle_write_iops_device: tuple[ThrottleDevice, ...] | None = field(
        "throttleWriteIOPSDevice", THROTTLE)


@record
class HugepageLimit:
    page_size: str = field("pageSize", STR, required=True)
    limit: int = field("limit", U64, required=True)


@record
class DeviceRule:
    allow: bool = field("allow", BOOL, required=True)
    type: str | None = field("type", STR)
    major: int | None = field("major", I64)
    minor: int | None = field("minor", I64)
    access: str | None = field("access", STR)


@record
class InterfacePriority:
    name: str = field("name", STR, required=True)
    priority: int = field("priority", U32, required=True)


@record
class Network:
    class_id: int | None = field("classID", U32)
    priorities: tuple[InterfacePriority, ...] | None = field(
        "priorities", list_of(obj(InterfacePriority)))


@record
class Resources:
    memory: Memory | None = field("memory", obj(Memory))
    cpu: Cpu | None = field("cpu", obj(Cpu))
    pids: Pids | None = field("pids", obj(Pids))
    block_io: BlockIO | None = field("blockIO", obj(BlockIO))
    hugepage_limits: tuple[HugepageLimit, ...] | None = field(
        "hugepageLimits", list_of(obj(HugepageLimit)))
    devices: tuple[DeviceRule, ...] | None = field("devices", list_of(obj(DeviceRule)))
    network: Network | None = field("network", obj(Network))
    unified: dict[str, str] | None = field("unified", map_of(STR))


@record
class Device:
    type: str = field("type", STR, required=True)
    path: str = field("path", STR, required=True)
    major: int | None = field("major", I64)
    minor: int | None = field("minor", I64)
    file_mode: int | None = field("fileMode", U32)
    uid: int | None = field("uid", ID)
    gid: int | None = field("gid", ID)


@record
class SyscallArg:
    index: int = field("index", U32, required=True)
    value: int = field("value", U64, required=True)
    value_two: int | None = field("valueTwo", U64)
    op: str = field("op", STR, required=True)


@record
class Syscall:
    names: tuple[str, ...] = field("names", STRS, required=True)
    action: str = field("action", STR, required=True)
    errno_ret: int | None = field("errnoRet", U32)
    args: tuple[SyscallArg, ...] | None = field("args", list_of(obj(SyscallArg)))


@record
class Seccomp:
    default_action: str = field("defaultAction", STR, required=True)
    default_errno_ret: int | None = field("defaultErrnoRet", U32)
    architectures: tuple[str, ...] | None = field("architectures", STRS)
    flags: tuple[str, ...] | None = field("flags", STRS)
    listener_path: str | None = field("listenerPath", STR)
    syscalls: tuple[Syscall, ...] | None = field("syscalls", list_of(obj(Syscall)))


@record
class Personality:
    domain: str = field("domain", STR, required=True)
    flags: tuple[str, ...] | None = field("flags", STRS)


@record
class TimeOffset:
    secs: int | None = field("secs", I64)
    nanosecs: int | None = field("nanosecs", U32)


@record
class Linux:
    namespaces: tuple[Namespace, ...] | None = field("namespaces", list_of(obj(Namespace)))
    uid_mappings: tuple[IdMapping, ...] | None = field("uidMappings", IDMAPS)
    gid_mappings: tuple[IdMapping, ...] | None = field("gidMappings", IDMAPS)
    sysctl: dict[str, str] | None = field("sysctl", map_of(STR))
    resources: Resources | None = field("resources", obj(Resources))
    cgroups_path: str | None = field("cgroupsPath", STR)
    rootfs_propagation: str | None = field("rootfsPropagation", STR)
    masked_paths: tuple[str, ...] | None = field("maskedPaths", STRS)
    readonly_paths: tuple[str, ...] | None = field("readonlyPaths", STRS)
    devices: tuple[Device, ...] | None = field("devices", list_of(obj(Device)))
    seccomp: Seccomp | None = field("seccomp", obj(Seccomp))
    mount_label: str | None = field("mountLabel", STR)
    personality: Personality | None = field("personality", obj(Personality))
    time_offsets: dict[str, TimeOffset] | None = field("timeOffsets",
                                                       map_of(obj(TimeOffset)))

    @property
    def cgroups_path_parts(self) -> CgroupsPath | None:
        """``cgroupsPath`` split into its form and parts (None when absent)."""
        if not self.cgroups_path:
            return None  # absent or "": the runtime's default
        return parse_cgroups_path(self.cgroups_path, "linux.cgroupsPath")

    def has_namespace(self, kind: str) -> bool:
        """Whether the container gets (or joins) a namespace of this type."""
        return any(ns.type == kind for ns in self.namespaces or ())


@record
class Spec:
    """A validated ``config.json``.  ``bundle`` is the bundle directory it was read
    against (None for bytes or a bare object), ``rootfs`` the root path resolved against
    it (a string only: nothing on the filesystem is looked at), ``source`` the bytes it
    was parsed from (None for a decoded object)."""

    oci_version: str = field("ociVersion", STR, required=True)
    process: Process | None = field("process", obj(Process))
    root: Root | None = field("root", obj(Root))
    hostname: str | None = field("hostname", STR)
    domainname: str | None = field("domainname", STR)
    mounts: tuple[Mount, ...] | None = field("mounts", list_of(obj(Mount)))
    hooks: Hooks | None = field("hooks", obj(Hooks))
    annotations: dict[str, str] | None = field("annotations", map_of(STR))
    linux: Linux | None = field("linux", obj(Linux))
    bundle: str | None = None
    rootfs: str | None = None
    source: bytes | None = record_field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON object: what was read, with every field it had."""
        return dump(self)

    def to_bytes(self, *, indent: bool = True) -> bytes:
        """``config.json`` as runc writes it (tab-indented), or on one line (``indent``
        false: the C encoder's, some ten times faster on a spec with a seccomp profile).
        (:attr:`source` is what was read, when the spec was read from bytes.)"""
        if not indent:
            return jsonlite.dumps(self.to_json(), separators=(",", ":")).encode() + b"\n"
        return jsonlite.dumps(self.to_json(), indent="\t").encode() + b"\n"


def parse_spec(obj: Any, *, bundle: str | None = None,
               host: validate.Host | None = None, source: bytes | None = None) -> Spec:
    """A decoded ``config.json`` as a validated :class:`Spec`, or SpecError naming the
    path.  ``host`` says what this host has (AppArmor, SELinux, ...; probed by default);
    ``source``: the bytes ``obj`` was decoded from, kept as the spec's."""
    check_depth(obj)
    spec = build(Spec, obj, "")
    rootfs = None
    if spec.root is not None:
        rootfs = spec.root.path
        if bundle is not None:
            rootfs = os.path.normpath(os.path.join(bundle, rootfs))
    spec = replace_fields(spec, bundle=bundle, rootfs=rootfs, source=source)
    validate.validate(spec, validate.Host.probe() if host is None else host)
    return spec


def load_spec(path_or_bytes: str | os.PathLike[str] | bytes, *,
              host: validate.Host | None = None) -> Spec:
    """A bundle's ``config.json`` as a validated :class:`Spec`: ``path_or_bytes`` is the
    bundle directory, the file, or its contents (then no bundle is known)."""
    bundle = None
    if isinstance(path_or_bytes, bytes):
        what = "config.json"
        data = path_or_bytes
        value = decode_json(data, what)
    else:
        what = os.fspath(path_or_bytes)
        if os.path.isdir(what) or not (os.path.lexists(what) or what.endswith(".json")):
            what = os.path.join(what, "config.json")  # a bundle directory (maybe missing)
        bundle = os.path.dirname(os.path.abspath(what))
        data, value = read_json_bytes(what, MAX_JSON_BYTES)
    if not isinstance(value, dict):
        raise SpecError(f"{what}: the spec must be an object, not {kind_of(value)}")
    return parse_spec(value, bundle=bundle, host=host, source=data)
