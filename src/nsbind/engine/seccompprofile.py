"""The seccomp section of ``nsbind run``'s OCI spec: the default profile, and a Docker (or
OCI) seccomp profile file converted for the container's capabilities.

:func:`default_profile` is a *denylist equivalent* of Docker's default profile, not
Docker's allowlist: every syscall is allowed (``SCMP_ACT_ALLOW``) except those Docker's
profile refuses, which fail with EPERM unless the container holds the capability that
Docker's profile lets them through with (mount, umount2, pivot_root, unshare, setns and
the new mount API need CAP_SYS_ADMIN; ptrace, process_vm_*, kcmp and userfaultfd
CAP_SYS_PTRACE; bpf CAP_SYS_ADMIN or CAP_BPF; ...); keyctl, add_key, request_key,
swapon/swapoff, io_uring and a few obsolete ones are refused always.  As Docker does,
clone with a namespace flag fails with EPERM and clone3 with ENOSYS (its flags are behind
a pointer, so C libraries fall back to clone) without CAP_SYS_ADMIN, and socket(AF_VSOCK)
is refused.  What differs: a syscall the kernel adds later is allowed, where Docker's
allowlist refuses it.  The native architecture and its compat ones (x86 and x32 beside
x86-64, arm beside arm64) are judged alike, as Docker's ``archMap`` has them.

:func:`convert_profile` reads Docker's profile format (``defaultAction``,
``defaultErrnoRet``, ``architectures`` or ``archMap``, ``flags``, ``listenerPath``,
``syscalls[]`` with ``name``/``names``, ``action``, ``errnoRet``, ``args``, ``includes``
and ``excludes``), applies ``includes``/``excludes`` (``caps``, ``arches``,
``minKernel``) against the container's capabilities and this host as moby does, and
keeps only what the OCI schema has.  Errors are EngineError naming the profile's field.
"""

from __future__ import annotations

import errno
import os

# collections.abc's class, without importing the collections package
from _collections_abc import Mapping

from nsbind.engine.errors import EngineError

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import Any

__all__ = ["ALWAYS_DENIED", "ARCH_MAP", "CAP_GATED", "convert_profile", "default_profile",
           "native_arch"]

#: syscalls refused unless the container holds one of the capabilities
CAP_GATED: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("CAP_SYS_ADMIN",), ("mount", "umount", "umount2", "pivot_root", "unshare", "setns",
                          "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
                          "open_tree", "mount_setattr", "name_to_handle_at",
                          "lookup_dcookie", "quotactl", "quotactl_fd", "fanotify_init",
                          "sethostname", "setdomainname")),
    (("CAP_SYS_ADMIN", "CAP_BPF"), ("bpf",)),
    (("CAP_SYS_ADMIN", "CAP_PERFMON"), ("perf_event_open",)),
    (("CAP_SYS_ADMIN", "CAP_SYSLOG"), ("syslog",)),
    (("CAP_SYS_BOOT",), ("reboot", "kexec_load", "kexec_file_load")),
    (("CAP_SYS_MODULE",), ("init_module", "finit_module", "delete_module")),
    (("CAP_SYS_TIME",), ("settimeofday", "stime", "clock_settime", "clock_adjtime")),
    (("CAP_SYS_PACCT",), ("acct",)),
    (("CAP_SYS_PTRACE",), ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
                           "userfaultfd")),
    (("CAP_DAC_READ_SEARCH",), ("open_by_handle_at",)),
    (("CAP_SYS_RAWIO",), ("iopl", "ioperm")),
    (("CAP_SYS_NICE",), ("get_mempolicy", "mbind", "set_mempolicy")),
    (("CAP_SYS_TTY_CONFIG",), ("vhangup",)),
    (("CAP_SYS_CHROOT",), ("chroot",)),
)
#: syscalls refused whatever the capabilities
ALWAYS_DENIED = ("keyctl", "add_key", "request_key", "swapon", "swapoff", "nfsservctl",
                 "create_module", "get_kernel_syms", "query_module", "uselib", "ustat",
                 "sysfs", "_sysctl", "vm86", "vm86old", "io_uring_setup", "io_uring_enter",
                 "io_uring_register")
#: the namespace flags of clone(2) Docker's profile refuses without CAP_SYS_ADMIN
_CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                   0x20000000, 0x40000000)
_AF_VSOCK = 40
#: native architecture -> the compat ones judged with it (Docker's archMap)
ARCH_MAP = {"SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
            "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
            "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
            "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",)}
_MACHINES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64",
             "arm64": "SCMP_ARCH_AARCH64", "i686": "SCMP_ARCH_X86", "i386": "SCMP_ARCH_X86",
             "armv7l": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE",
             "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
             "mips64": "SCMP_ARCH_MIPS64", "loongarch64": "SCMP_ARCH_LOONGARCH64"}


def native_arch() -> str:
    """This host's architecture as a libseccomp name (``SCMP_ARCH_X86_64``)."""
    machine = os.uname().machine
    return _MACHINES.get(machine, f"SCMP_ARCH_{machine.upper()}")


def _deny(names: list[str], err: int = errno.EPERM) -> dict[str, Any]:
    return {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": err}


def default_profile(caps: Collection[str]) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` of the default profile for a container whose bounding
    set is ``caps`` (``CAP_X`` names).  clone3 answers ENOSYS without CAP_SYS_ADMIN, as
    Docker's does (its flags cannot be checked): glibc, and nsbind's init, then fork
    with clone, whose namespace flags are refused."""
    have = set(caps)
    denied = [name for needed, names in CAP_GATED if not have.intersection(needed)
              for name in names]
    syscalls = [_deny([*ALWAYS_DENIED, *denied])]
    if "CAP_SYS_ADMIN" not in have:
        index = 1 if native_arch() in ("SCMP_ARCH_S390X", "SCMP_ARCH_S390") else 0
        syscalls += [{**_deny(["clone"]), "args": [
            {"index": index, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
            for flag in _CLONE_NS_FLAGS]
        syscalls.append(_deny(["clone3"], errno.ENOSYS))
    syscalls.append({**_deny(["socket"]), "args": [
        {"index": 0, "value": _AF_VSOCK, "op": "SCMP_CMP_EQ"}]})
    arch = native_arch()
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": [arch, *ARCH_MAP.get(arch, ())], "syscalls": syscalls}


class _Reader:
    def fail(self, path: str, why: str) -> EngineError:
        return EngineError(f"invalid seccomp profile: {path}: {why}")

    def obj(self, value: object, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, "must be an object")
        return value

    def strings(self, value: object, path: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(path, "must be a list of strings")
        return value


def _kernel() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "0")
    except (IndexError, ValueError):
        return 0, 0


def _min_kernel(value: object, path: str, reader: _Reader) -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise reader.fail(path, "must be a string like 4.8")
    major, _, minor = value.partition(".")
    if not major.isdigit() or not (minor.isdigit() or not minor):
        raise reader.fail(path, f"{value[:40]!r} is not a kernel version like 4.8")
    return int(major), int(minor or "0")


def _applies(rule: Mapping[str, Any], path: str, caps: set[str], arch: str,
             reader: _Reader) -> bool:
    """moby's includes/excludes: excluded when an excluded arch is this one, an excluded
    cap is held, or the kernel is at least minKernel; included only when this arch is
    listed, every listed cap is held, and the kernel is at least minKernel."""
    kernel = _kernel()
    ex = reader.obj(rule.get("excludes") or {}, f"{path}.excludes")
    if arch in reader.strings(ex.get("arches"), f"{path}.excludes.arches"):
        return False
    if caps.intersection(reader.strings(ex.get("caps"), f"{path}.excludes.caps")):
        return False
    floor = _min_kernel(ex.get("minKernel"), f"{path}.excludes.minKernel", reader)
    if floor is not None and kernel >= floor:
        return False
    inc = reader.obj(rule.get("includes") or {}, f"{path}.includes")
    arches = reader.strings(inc.get("arches"), f"{path}.includes.arches")
    if arches and arch not in arches:
        return False
    if not set(reader.strings(inc.get("caps"), f"{path}.includes.caps")) <= caps:
        return False
    floor = _min_kernel(inc.get("minKernel"), f"{path}.includes.minKernel", reader)
    return floor is None or kernel >= floor


def _architectures(profile: Mapping[str, Any], arch: str, reader: _Reader) -> list[str]:
    plain = reader.strings(profile.get("architectures"), "architectures")
    arch_map = profile.get("archMap")
    if arch_map is None:
        return plain
    if plain:
        raise reader.fail("archMap", "both architectures and archMap are given; use one")
    if not isinstance(arch_map, list):
        raise reader.fail("archMap", "must be a list")
    out: list[str] = []
    for i, entry in enumerate(arch_map):
        entry = reader.obj(entry, f"archMap[{i}]")
        name = entry.get("architecture")
        if not isinstance(name, str):
            raise reader.fail(f"archMap[{i}].architecture", "must be a string")
        if name == arch:
            out += [name, *reader.strings(entry.get("subArchitectures"),
                                          f"archMap[{i}].subArchitectures")]
    return out


def convert_profile(profile: Mapping[str, Any], caps: Collection[str]) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` of a Docker or OCI seccomp ``profile`` for a container
    whose bounding set is ``caps``; see the module doc."""
    reader = _Reader()
    profile = reader.obj(profile, "the profile")
    have, arch = set(caps), native_arch()
    action = profile.get("defaultAction")
    if not isinstance(action, str):
        raise reader.fail("defaultAction", "must be a string")
    out: dict[str, Any] = {"defaultAction": action}
    for key in ("defaultErrnoRet", "listenerPath"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    architectures = _architectures(profile, arch, reader)
    if architectures:
        out["architectures"] = architectures
    flags = reader.strings(profile.get("flags"), "flags")
    if flags:
        out["flags"] = flags
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        raise reader.fail("syscalls", "must be a list")
    syscalls: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        path = f"syscalls[{i}]"
        rule = reader.obj(rule, path)
        names = reader.strings(rule.get("names"), f"{path}.names")
        name = rule.get("name")
        if name is not None:
            if names or not isinstance(name, str):
                raise reader.fail(path, "use either name (a string) or names")
            names = [name]
        if not names:
            raise reader.fail(f"{path}.names", "no syscall named")
        if not _applies(rule, path, have, arch, reader):
            continue
        entry: dict[str, Any] = {"names": names, "action": rule.get("action")}
        for key in ("errnoRet", "args"):
            if rule.get(key) is not None:
                entry[key] = rule[key]
        syscalls.append(entry)
    if syscalls:
        out["syscalls"] = syscalls
    return out
