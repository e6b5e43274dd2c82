"""The runtime-spec's features document (``nsbind-oci features``): what this runtime and
this host support, for clients that ask before they send a config."""

from __future__ import annotations

from typing import Any

from nsbind.oci.cli import OCI_VERSION

__all__ = ["features_document"]

_MOUNT_OPTIONS = ("async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
                  "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime",
                  "noexec", "noiversion", "nolazytime", "nomand", "norelatime",
                  "nostrictatime", "nosuid", "nosymfollow", "private", "ratime", "rbind",
                  "rdev", "rdiratime", "relatime", "remount", "rexec", "rnoatime",
                  "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime",
                  "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro", "rrw",
                  "rshared", "rslave", "rstrictatime", "rsuid", "rsymfollow",
                  "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid",
                  "symfollow", "sync", "unbindable", "idmap", "ridmap")


def _seccomp() -> dict[str, Any]:
    from nsbind.seccomp import SeccompUnavailable, library

    try:
        library()
    except SeccompUnavailable:
        return {"enabled": False}
    return {"enabled": True,
            "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                        "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                        "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
            "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                          "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
            "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                      "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}


def features_document() -> dict[str, Any]:
    """The features JSON: versions, hooks, mount options and the ``linux`` object
    (namespaces, capabilities, cgroup, seccomp, apparmor, selinux)."""
    from nsbind import Capability
    from nsbind.cgroups import cgroup_layout

    layout = cgroup_layout()
    versions = {h.version for h in layout.hierarchies if h.holds_cgroups}
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": list(_MOUNT_OPTIONS),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts",
                           "time"],
            "capabilities": [f"CAP_{c.name}" for c in Capability],
            "cgroup": {"v1": 1 in versions, "v2": 2 in versions, "systemd": False,
                       "systemdUser": False, "rdma": False},
            "seccomp": _seccomp(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {"org.opencontainers.runc.version": "nsbind-oci",
                        "io.github.nsbind.version": "0.1.0"},
    }
