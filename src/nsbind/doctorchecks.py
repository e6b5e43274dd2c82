"""The checks behind ``nsbind doctor`` (:mod:`nsbind.doctor` runs and prints them).

Each function returns a :class:`Check`; those that need to try what would change the
caller read a :class:`~nsbind.doctorprobe.Probe` (a forked child's findings).
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
import tempfile

from nsbind.doctorprobe import Probe
from nsbind.frozen import frozen

__all__ = ["Check", "Probe", "cgroup_controllers", "cgroup_layout_check", "clone3",
           "feature_checks", "id_map_tools", "kernel", "libseccomp", "mount_api", "overlay",
           "overlay_userns", "root_propagation", "rootless_network", "seccomp",
           "subordinate_ids", "user", "user_namespaces"]

MIN_KERNEL = (5, 6)  # openat2 (safe paths in a rootfs and a cgroup hierarchy), clone3, pidfd
CAP_SYS_ADMIN = 21
SECCOMP_FIX = ("run it without that seccomp filter (docker/podman: --security-opt "
               "seccomp=unconfined) or with a profile that allows the call")


@frozen
class Check:
    """One line of the report: ``ok`` True (fine), False (missing: ``fix`` says how to get
    it) or None (not applicable, or informational)."""

    name: str
    ok: bool | None
    detail: str
    fix: str | None = None


# ---------------------------------------------------------------- small readers


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _sysctl(name: str) -> str | None:
    return _read("/proc/sys/" + name.replace(".", "/"))


def _status(field: str) -> str | None:
    for line in (_read("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return value.strip()
    return None


def _has_sys_admin() -> bool:
    return bool(int(_status("CapEff") or "0", 16) >> CAP_SYS_ADMIN & 1)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _filtered() -> bool:
    return _status("Seccomp") == "2"


def _chrooted() -> bool:
    """This process's root is not pid 1's (False when that cannot be told)."""
    try:
        mine, init = os.stat("/"), os.stat("/proc/1/root/")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) != (init.st_dev, init.st_ino)


def _errno_name(err: int | None) -> str:
    return errno.errorcode.get(err or 0, f"errno {err}")


# ---------------------------------------------------------------- the checks


def user() -> Check:
    """Root or not, and CAP_SYS_ADMIN."""
    uid = os.geteuid()
    who = f"uid {uid} ({_user_name(uid)})"
    if uid == 0 and _has_sys_admin():
        return Check("user", True, f"{who}, root with CAP_SYS_ADMIN")
    if uid == 0:
        return Check("user", False, f"{who}, root but without CAP_SYS_ADMIN (a confined "
                     "container?)", "run with CAP_SYS_ADMIN (docker/podman: --privileged "
                     "or --cap-add SYS_ADMIN)")
    caps = " but with CAP_SYS_ADMIN" if _has_sys_admin() else ""
    return Check("user", None, f"{who}, not root{caps}: rootless use only (user namespaces, "
                 "a delegated cgroup)")


def _kernel_version() -> tuple[int, ...]:
    return tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])


def kernel() -> Check:
    """The kernel version against the oldest one nsbind works on."""
    release = os.uname().release
    try:
        version = _kernel_version()
    except ValueError:
        return Check("kernel", None, f"Linux {release} (version not understood)")
    need = ".".join(map(str, MIN_KERNEL))
    if version >= MIN_KERNEL:
        return Check("kernel", True, f"Linux {release} (nsbind needs {need} or later)")
    return Check("kernel", False, f"Linux {release}: older than {need} (openat2, clone3, "
                 "pidfd)", f"boot Linux {need} or later")


def _blocked(probe: Probe) -> list[str]:
    """The calls the probes found refused as a seccomp filter refuses (ENOSYS, EPERM
    where the caller has the privilege)."""
    out = []
    if probe.clone3_errno in (errno.ENOSYS, errno.EPERM):
        out.append("clone3")
    if probe.errno_of("userns") == errno.ENOSYS:
        out.append("unshare")
    try:
        _fsopen_probe()
    except OSError as exc:
        if exc.errno == errno.ENOSYS or (exc.errno == errno.EPERM and _has_sys_admin()):
            out.append("fsopen")
    return out


def seccomp(probe: Probe) -> Check:
    """The Seccomp field of /proc/self/status, and which probed calls it blocks."""
    mode = _status("Seccomp")
    filters = _status("Seccomp_filters")
    if mode is None:
        return Check("seccomp", None, "no Seccomp field in /proc/self/status (kernel "
                     "without CONFIG_SECCOMP)")
    if mode == "0":
        return Check("seccomp", True, "no seccomp filter around this process (Seccomp: 0)")
    if mode == "1":
        return Check("seccomp", False, "strict seccomp mode (Seccomp: 1): almost every "
                     "call is refused", "run nsbind outside strict seccomp mode")
    blocked = _blocked(probe)
    what = f"a seccomp filter around this process (Seccomp: 2, {filters or '?'} filters)"
    if blocked:
        return Check("seccomp", False, f"{what} blocks {', '.join(blocked)}", SECCOMP_FIX)
    return Check("seccomp", None, f"{what}; the probed calls got through")


def user_namespaces(probe: Probe) -> Check:
    """A user namespace made in the child, and the sysctls that decide it."""
    name = "user namespaces"
    values = {k: _sysctl(k) for k in ("user.max_user_namespaces",
                                      "kernel.unprivileged_userns_clone",
                                      "kernel.apparmor_restrict_unprivileged_userns")}
    shown = ", ".join(f"{k}={'not in this kernel' if v is None else v}"
                      for k, v in values.items())
    root = os.geteuid() == 0
    aa = values["kernel.apparmor_restrict_unprivileged_userns"] == "1" and not root
    if probe.ok("userns"):
        extra = ("; AppArmor confines it (no capabilities inside unless a profile allows "
                 "this program)" if aa else "")
        return Check(name, True, f"a user namespace was made ({shown}){extra}")
    why = probe.message("userns")
    if values["user.max_user_namespaces"] == "0":
        fix = "sysctl -w user.max_user_namespaces=15000"
    elif values["kernel.unprivileged_userns_clone"] == "0" and not root:
        fix = "sysctl -w kernel.unprivileged_userns_clone=1"
    elif aa:
        fix = ("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor "
               "profile with 'userns,' for this program")
    elif _chrooted() and probe.errno_of("userns") == errno.EPERM:
        fix = ("run it outside the chroot: the kernel refuses user namespaces to a chrooted "
               "process (pivot_root in a mount namespace instead)")
    elif _filtered() and probe.errno_of("userns") in (errno.ENOSYS, errno.EPERM):
        fix = SECCOMP_FIX + " (unshare with CLONE_NEWUSER)"
    else:
        fix = "a kernel with CONFIG_USER_NS, and a process that may create user namespaces"
    return Check(name, False, f"cannot make one: {why} ({shown})", fix)


def _ranges(path: str, name: str, uid: int) -> list[tuple[int, int]] | None:
    text = _read(path)
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (name, str(uid)) and all(
                p.isdigit() for p in parts[1:]):
            out.append((int(parts[1]), int(parts[2])))
    return out


def _free_start() -> int:
    end = 100000
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in (_read(path) or "").splitlines():
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return end


def subordinate_ids() -> Check:
    """The caller's ranges in /etc/subuid and /etc/subgid (root's: those of the user
    ``containers``, which ``nsbind run --userns auto`` takes ids from)."""
    uid = os.geteuid()
    name = "containers" if uid == 0 else _user_name(uid)
    parts, missing = [], []
    for path in ("/etc/subuid", "/etc/subgid"):
        found = _ranges(path, name, uid if uid else -1)
        if found:
            parts.append(f"{path}: " + ", ".join(f"{s}+{n}" for s, n in found))
        else:
            missing.append(path)
            parts.append(f"{path}: {'no such file' if found is None else 'none'}")
    detail = ("for containers (nsbind run --userns auto): " if uid == 0
              else f"for {name} (uid {uid}): ") + "; ".join(parts)
    if not missing:
        return Check("subordinate ids", True, detail)
    start = _free_start()
    if uid == 0:  # no such user is needed: only the name is looked up in the files
        return Check("subordinate ids", None, f"{detail}: --userns auto is refused",
                     f"add the line containers:{start}:65536 to /etc/subuid and /etc/subgid")
    return Check("subordinate ids", False, f"{detail}: a user namespace maps only uid {uid}",
                 f"as root: usermod --add-subuids {start}-{start + 65535} --add-subgids "
                 f"{start}-{start + 65535} {name}")


def id_map_tools() -> Check:
    """newuidmap and newgidmap: present, and setuid root or with file capabilities."""
    name = "newuidmap/newgidmap"
    found, bad = [], []
    for tool in ("newuidmap", "newgidmap"):
        path = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin")
        if path is None:
            bad.append(f"{tool} missing")
            continue
        st = os.stat(path)
        try:
            caps = bool(os.getxattr(path, "security.capability"))
        except OSError:
            caps = False
        if st.st_mode & stat.S_ISUID and st.st_uid == 0:
            found.append(f"{path} (setuid root)")
        elif caps:
            found.append(f"{path} (file capabilities)")
        else:
            bad.append(f"{path} is neither setuid root nor has file capabilities")
    detail = "; ".join(found + bad)
    if not bad:
        return Check(name, True, detail)
    if os.geteuid() == 0:
        return Check(name, None, f"{detail} (root writes id maps itself: not needed)")
    return Check(name, False, f"{detail}: only the caller's own id can be mapped",
                 "apt-get install uidmap (or chmod u+s /usr/bin/newuidmap /usr/bin/newgidmap)")


def rootless_network() -> Check:
    """What rootless networking (slirp4netns) needs: the program, and a /dev/net/tun
    the caller may open."""
    name = "rootless network"
    tool = shutil.which("slirp4netns", path=os.environ.get("PATH", "") + ":/usr/bin")
    tun = os.access("/dev/net/tun", os.R_OK | os.W_OK)
    detail = (f"slirp4netns {'at ' + tool if tool else 'missing'}; /dev/net/tun "
              f"{'usable' if tun else 'not usable by this user'}")
    if tool and tun:
        return Check(name, True, detail)
    if os.geteuid() == 0:
        return Check(name, None, f"{detail} (root uses bridge networks: not needed)")
    fixes = ([] if tool else ["apt-get install slirp4netns"]) + (
        [] if tun else ["chmod 0666 /dev/net/tun (Debian's mode)"])
    return Check(name, False, f"{detail}: rootless containers get --network none or "
                 "loopback only", "; ".join(fixes))


def cgroup_layout_check() -> Check:
    """unified, hybrid or legacy, and where the hierarchies are."""
    from nsbind.cgroups import cgroup_layout

    layout = cgroup_layout()
    parts = []
    for h in layout.hierarchies:
        if h.holds_cgroups:
            what = ",".join(sorted(h.controllers)) or "no controllers"
            parts.append(f"v{h.version} {h.mountpoint} ({what})")
    if layout.unmounted:
        parts.append("not mounted: " + ",".join(sorted(layout.unmounted)))
    detail = f"{layout.mode}: " + "; ".join(parts)
    if layout.mode == "none":
        return Check("cgroup layout", False, "no cgroup hierarchy is mounted",
                     "mount -t cgroup2 none /sys/fs/cgroup")
    return Check("cgroup layout", True, detail)


def cgroup_controllers() -> Check:
    """Which controllers the caller may use: root, where the hierarchy is writable; others,
    in the v2 subtree delegated to them (the highest cgroup above their own that they
    own and may write, where rootless containers get theirs), else their own cgroup."""
    from nsbind.cgrouplayout import delegation_root
    from nsbind.cgroups import cgroup_layout

    layout = cgroup_layout()
    uid = os.geteuid()
    delegated = None if uid == 0 else delegation_root(layout)
    may, may_not, why = set(), set(), []
    for h in layout.hierarchies:
        if not h.holds_cgroups:
            continue
        mine = delegated if h.version == 2 and delegated is not None else h.own
        where = h.mountpoint if uid == 0 else h.path_of(mine or "/")
        ctrls = set(h.controllers)
        if h.version == 2 and uid != 0:
            ctrls = set((_read(os.path.join(where, "cgroup.controllers")) or "").split())
        try:
            owner = os.stat(where).st_uid
        except OSError as exc:
            may_not |= set(h.controllers)
            why.append(f"{where}: {exc.strerror}")
            continue
        if os.access(where, os.W_OK) and (uid == 0 or owner == uid):
            may |= ctrls
            may_not |= set(h.controllers) - ctrls
        else:
            may_not |= set(h.controllers)
            why.append(f"{where} (uid {owner})" if owner != uid
                       else f"{where} (not writable)")
    detail = (f"may use: {', '.join(sorted(may)) or 'none'}; may not use: "
              f"{', '.join(sorted(may_not)) or 'none'}")
    if why:
        detail += f" (not delegated to uid {uid}: {', '.join(why)})"
    if not may_not:
        return Check("cgroup controllers", True, detail)
    fix = ("run as root, or in a delegated cgroup v2 subtree (systemd-run --user --scope "
           "-p Delegate=yes ...); v1 controllers are never delegated") if uid else (
           "remount the cgroup hierarchies read-write (a container: give it its own "
           "writable cgroup namespace)")
    return Check("cgroup controllers", False if uid == 0 or not may else None, detail, fix)


def overlay(probe: Probe) -> Check:
    """An overlay mounted (detached) by the child, in the caller's own namespaces."""
    if probe.ok("overlay"):
        return Check("overlayfs", True, "an overlay was mounted (detached, then dropped)")
    err = probe.errno_of("overlay")
    if err == errno.EPERM and not _has_sys_admin():
        return Check("overlayfs", None, "not outside a user namespace: mounting needs "
                     "CAP_SYS_ADMIN (see the next line)")
    fix = ("modprobe overlay (a kernel with CONFIG_OVERLAY_FS)" if err == errno.ENODEV
           else "a kernel with CONFIG_OVERLAY_FS, and a filesystem under "
           f"{tempfile.gettempdir()} that overlayfs takes as upper layer")
    return Check("overlayfs", False, f"cannot mount one: {probe.message('overlay')}", fix)


def overlay_userns(probe: Probe) -> Check:
    """An overlay mounted inside the child's user namespace (Linux 5.11)."""
    name = "overlayfs in a user namespace"
    if probe.ok("userns overlay"):
        return Check(name, True, "an overlay was mounted in a new user namespace")
    if not probe.ok("userns"):
        return Check(name, False, "not tried: no user namespace (see user namespaces)",
                     "make user namespaces work first")
    return Check(name, False, f"cannot mount one: {probe.message('userns overlay')}",
                 "Linux 5.11 or later mounts overlayfs in a user namespace (or use "
                 "fuse-overlayfs)")


def _fsopen_probe() -> None:
    import nsbind

    with nsbind.fsopen("tmpfs"):
        pass


def mount_api(probe: Probe) -> Check:
    """fsopen in the caller's namespaces, and inside the child's user namespace."""
    try:
        _fsopen_probe()
    except OSError as exc:
        err = exc.errno
    else:
        return Check("mount API", True, "fsopen, fsconfig, fsmount, move_mount, open_tree")
    if err == errno.EPERM and not _has_sys_admin():
        inside = probe.userns_features.get("mount_api")
        if inside:
            return Check("mount API", True, "fsopen works in a user namespace (EPERM "
                         "outside one: no CAP_SYS_ADMIN)")
        return Check("mount API", None, "fsopen: EPERM (no CAP_SYS_ADMIN), and no user "
                     "namespace to try it in")
    if _filtered() and err in (errno.ENOSYS, errno.EPERM):
        return Check("mount API", False, f"fsopen: {_errno_name(err)} under a seccomp "
                     "filter", SECCOMP_FIX + " (fsopen, fsconfig, fsmount, move_mount, "
                     "open_tree, mount_setattr)")
    return Check("mount API", False, f"fsopen: {_errno_name(err)}", "Linux 5.2 or later")


def clone3(probe: Probe) -> Check:
    """The probing child was forked with nsbind.clone3, or why not."""
    from nsbind import features

    into = "yes" if features.clone_into_cgroup.__wrapped__() else "no"
    if probe.clone3_error is None:
        return Check("clone3", True, f"a child was forked with clone3 (CLONE_INTO_CGROUP: "
                     f"{into})")
    err = probe.clone3_errno
    if err in (errno.ENOSYS, errno.EPERM):
        filtered = _filtered()
        return Check("clone3", False, f"{probe.clone3_error}" + (" under a seccomp filter"
                     if filtered else ""), SECCOMP_FIX if filtered else "Linux 5.3 or later")
    return Check("clone3", None, f"not tried: {probe.clone3_error} (CLONE_INTO_CGROUP: "
                 f"{into})")


def libseccomp() -> Check:
    """libseccomp opened as nsbind opens it, and the file it came from."""
    from nsbind import seccomp as sc

    try:
        sc.library()
    except sc.SeccompUnavailable as exc:
        return Check("libseccomp", False, str(exc), f"apt-get install {sc.PACKAGE}")
    path = next((line.split()[-1] for line in (_read("/proc/self/maps") or "").splitlines()
                 if "libseccomp" in line), sc.LIBRARY)
    return Check("libseccomp", True, f"{path} loaded")


def root_propagation() -> Check:
    """The propagation of the mount at ``/`` (shared, slave, private)."""
    mine = None
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            mine = fields[6:fields.index("-")]
    if mine is None:
        return Check("propagation of /", None, "/ not found in /proc/self/mountinfo")
    kinds = [f.replace(":", " peer group ") for f in mine if f.startswith(("shared:",
                                                                           "master:"))]
    kind = ", ".join(k.replace("master", "slave of") for k in kinds) or "private"
    return Check("propagation of /", True, f"{kind} (nsbind makes a container's mounts "
                 "private in its own mount namespace)")


#: feature -> (the kernel that has it, what nsbind does without it)
FEATURES = {
    "lowerdir_plus": ("6.8", "overlays take one lowerdir= string (255 bytes via fsconfig)"),
    "mount_api": ("5.2", "see the mount API line"),
    "idmapped_mounts": ("5.12", "no idmapped mounts"),
    "clone_detached_mounts": ("", "a detached mount is copied through a throwaway mount "
                              "namespace"),
    "clone_into_cgroup": ("5.7", "a child joins its cgroup after clone3"),
    "time_namespaces": ("5.6", "no time namespaces"),
    "pidfd_setns": ("5.8", "setns joins one namespace fd at a time"),
    "cgroup_kill": ("5.14", "a cgroup is frozen, signalled and thawed instead"),
    "cgroup2_delegated": ("", "see the cgroup controllers line"),
}

#: why a probe says no on a kernel that is new enough
WHY_NOT = {
    "cgroup_kill": "no cgroup.kill in this process's v2 cgroup or in a child of the v2 "
                   "root; a root cgroup has none",
    "idmapped_mounts": "the probe needs CAP_SYS_ADMIN over the mount of /",
    "clone_detached_mounts": "the probe needs CAP_SYS_ADMIN over the mount of /",
    "lowerdir_plus": "no overlay context for this process",
}


def feature_checks(probe: Probe) -> list[Check]:
    """Each :mod:`nsbind.features` probe, fresh, and in a user namespace where it differs."""
    from nsbind import features

    out = []
    for name in features.__all__:
        if name == "probe_all":
            continue
        try:
            here = bool(getattr(features, name).__wrapped__())
        except Exception as exc:
            out.append(Check(f"feature {name}", False, f"the probe failed: {exc}"))
            continue
        need, without = FEATURES.get(name, ("", "nsbind takes a slower path"))
        if here:
            out.append(Check(f"feature {name}", True, "yes"))
        elif probe.userns_features.get(name):
            out.append(Check(f"feature {name}", None, "not for this process (needs "
                             "CAP_SYS_ADMIN); yes in a user namespace"))
        else:
            if not need:
                note = ""
            elif _kernel_version() < tuple(int(p) for p in need.split(".")):
                note = f"; Linux {need} has it"
            else:
                note = f" ({WHY_NOT.get(name, 'this kernel is new enough; not usable here')})"
            out.append(Check(f"feature {name}", None, f"no: {without}{note}"))
    return out
