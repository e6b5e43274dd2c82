"""The spec ``runc spec`` writes (runc 1.1, as Debian 12 ships it), and its ``--rootless``
variant: a starting point for hand-written bundles and the tests' reference."""

from __future__ import annotations

import copy
import os
from typing import Any

from nsbind.oci.spec import Spec, parse_spec

__all__ = ["default_spec", "default_spec_json"]

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]

_DEFAULT: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"],
        "cwd": "/",
        "capabilities": {name: list(_CAPS)
                         for name in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": [*_NOSUID_NOEXEC_NODEV, "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                        "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                          "/proc/sysrq-trigger"],
    },
}


def default_spec_json(rootless: bool = False) -> dict[str, Any]:
    """The JSON object ``runc spec`` (``--rootless``: ``runc spec --rootless``) writes;
    the rootless one maps the caller's euid and egid to root in a user namespace.  As
    runc's, it depends on the host: where /sys/fs/cgroup is cgroup2 (pure v2), the
    namespaces include a cgroup namespace after the mount one."""
    spec = copy.deepcopy(_DEFAULT)
    if _unified():
        spec["linux"]["namespaces"].append({"type": "cgroup"})
    if rootless:
        linux = spec["linux"]
        del linux["resources"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        linux["namespaces"] = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount",
                                                           *["cgroup"] * _unified(), "user")]
        mounts = spec["mounts"]
        mounts[2]["options"].remove("gid=5")
        mounts[5] = {"destination": "/sys", "type": "none", "source": "/sys",
                     "options": ["rbind", *_NOSUID_NOEXEC_NODEV, "ro"]}
        # runc keeps linux's keys in this order: mappings first
        spec["linux"] = {key: linux[key] for key in ("uidMappings", "gidMappings",
                                                     "namespaces", "maskedPaths",
                                                     "readonlyPaths")}
    return spec


def default_spec(rootless: bool = False) -> Spec:
    """:func:`default_spec_json` parsed: what ``runc spec`` writes, as a :class:`Spec`."""
    return parse_spec(default_spec_json(rootless))


def _unified() -> bool:
    """Whether /sys/fs/cgroup is the cgroup2 filesystem (runc's cgroups.IsCgroup2UnifiedMode)."""
    from nsbind.mounts import filesystem_of

    return filesystem_of("/sys/fs/cgroup") == "cgroup2"
