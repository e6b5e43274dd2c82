"""What ``nsbind`` shows without a container: a fresh set of namespaces next to the
caller's (the default command, ``nsbind demo``) and the host's cgroup layout
(``nsbind cgroups``)."""

from __future__ import annotations

import json
import os
import sys

import nsbind
from nsbind import CloneFlags, MountFlags
from nsbind.cgroups import cgroup_layout
from nsbind.errors import NsbindError

__all__ = ["DEMO_FLAGS", "demo", "show_cgroups"]

DEMO_FLAGS = (CloneFlags.NEWPID | CloneFlags.NEWNET | CloneFlags.NEWUTS | CloneFlags.NEWIPC
              | CloneFlags.NEWNS | CloneFlags.NEWCGROUP | CloneFlags.PIDFD)


def _view() -> dict[str, object]:
    """What the calling process sees of the system."""
    with open("/proc/self/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    with open("/proc/self/mountinfo") as f:
        mounts = sum(1 for _ in f)
    return {
        "pid": os.getpid(),
        "hostname": os.uname().nodename,
        "processes visible": sum(1 for name in os.listdir("/proc") if name.isdigit()),
        "network interfaces": ", ".join(interfaces),
        "mounts": mounts,
        **{f"{ns.value} namespace": os.readlink(f"/proc/self/ns/{ns.value}").split(":")[1]
           for ns in nsbind.Namespace if ns is not nsbind.Namespace.TIME},
    }


def _fresh_view(wfd: int) -> int:
    """Child side: make the new mount namespace private, mount a fresh /proc, report."""
    nsbind.mount(None, "/", None, MountFlags.REC | MountFlags.PRIVATE)
    nsbind.mount("proc", "/proc", "proc", MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC)
    nsbind.sethostname("nsbind-demo")
    os.write(wfd, json.dumps(_view()).encode())
    return 0


def demo(as_json: bool = False) -> int:
    """Start a child in new pid, net, uts, ipc, mnt and cgroup namespaces; compare views."""
    host = _view()
    rfd, wfd = os.pipe()
    try:
        pid, pidfd = nsbind.clone3(DEMO_FLAGS)
    except NsbindError as exc:
        print(f"nsbind: {exc}", file=sys.stderr)
        if isinstance(exc, PermissionError):
            print("nsbind: creating namespaces needs root (CAP_SYS_ADMIN)", file=sys.stderr)
        return 1
    if pid == 0:
        code = 1
        try:
            os.close(rfd)
            code = _fresh_view(wfd)
        except BaseException as exc:  # report, never return into the parent's code
            os.write(wfd, json.dumps({"error": str(exc)}).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    assert pidfd is not None
    with pidfd, os.fdopen(rfd, "rb") as reader:
        fresh = json.loads(reader.read() or b"{}")
        pidfd.wait()
    if "error" in fresh:
        print(f"nsbind: in the new namespaces: {fresh['error']}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"this process": host, "fresh namespaces": fresh}, indent=2))
        return 0
    width = max(len(k) for k in host)
    print(f"{'':{width}}  {'this process':<24}  fresh namespaces (nsbind.clone3)")
    for key, value in host.items():
        print(f"{key:{width}}  {value!s:<24}  {fresh.get(key, '')}")
    return 0


def show_cgroups(as_json: bool = False) -> int:
    """Print the cgroup layout: mode, hierarchies, where each controller lives."""
    layout = cgroup_layout()
    if as_json:
        print(json.dumps(layout.to_dict(), indent=2))
        return 0
    print(f"cgroup layout: {layout.mode}")
    for h in layout.hierarchies:
        what = ",".join(sorted(h.controllers)) or (f"name={h.name}" if h.name else "-")
        print(f"  v{h.version}  {h.mountpoint:<28} {what:<24} own: {h.own or '?'}")
    if layout.unmounted:
        print(f"  not mounted: {', '.join(sorted(layout.unmounted))}")
    return 0
