"""The runtime-spec's features document (``nsbind-oci features``): what this runtime and
this host support, for clients that ask before they send a config."""

from __future__ import annotations

from typing import Any

from nsbind.oci.cli import OCI_VERSION

__all__ = ["features_document"]

def _seccomp() -> dict[str, Any]:
    from nsbind.seccomp import SeccompUnavailable, library

    try:
        library()
    except SeccompUnavailable:
        return {"enabled": False}
    from nsbind.seccomp import FLAGS, OCI_ACTIONS, Op

    return {"enabled": True, "actions": sorted(OCI_ACTIONS),
            "operators": sorted(f"SCMP_CMP_{op.name}" for op in Op),
            "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                      "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "knownFlags": sorted(FLAGS), "supportedFlags": sorted(FLAGS)}


def features_document() -> dict[str, Any]:
    """The features JSON: versions, hooks, mount options and the ``linux`` object
    (namespaces, capabilities, cgroup, seccomp, apparmor, selinux)."""
    from nsbind import Capability
    from nsbind.cgroups import cgroup_layout
    from nsbind.oci.mountconv import MOUNT_OPTIONS

    layout = cgroup_layout()
    versions = {h.version for h in layout.hierarchies if h.holds_cgroups}
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(MOUNT_OPTIONS),
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
