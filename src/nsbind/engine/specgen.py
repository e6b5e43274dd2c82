"""``nsbind run``'s options and an image config turned into an OCI runtime spec (the
``config.json`` object), as podman's pkg/specgen does it, with Docker's defaults (moby's
``oci/defaults.go`` and ``daemon/oci_linux.go``), not runc's.

The rules of :func:`build_spec`:

- namespaces: pid, ipc, uts, mount, cgroup, and network unless ``--net host``
  (``none`` and ``loopback`` both get a new one).
- capabilities: Docker's 14 defaults, then ``--cap-drop``/``--cap-add`` as moby's
  TweakCapabilities (``--cap-add ALL``: every capability this kernel has but the
  dropped ones; ``--cap-drop ALL``: only the added ones), in bounding, effective and
  permitted (not inheritable, not ambient); for a non-root user effective and
  permitted are empty, as execve would leave them.
- mounts: Docker's proc, /dev, /dev/pts, /sys (ro), /sys/fs/cgroup (ro), /dev/mqueue,
  /dev/shm (64 MiB), then the ``etc_files`` (rbind, read-write even with
  ``--read-only``, as Docker's), then the requested ones sorted by destination depth
  (parents first); a requested mount replaces a default or an etc file at the same
  destination.  Binds are rprivate, tmpfs mounts get nosuid,nodev,noexec first (an
  ``exec`` option overrides).
- process: args are Docker's: a non-empty ``--entrypoint`` replaces the image's
  Entrypoint and drops its Cmd, ``--entrypoint ""`` clears the Entrypoint only; a
  command replaces Cmd; args = entrypoint + cmd, and none at all is an error.  env is
  the image's Env, PATH (Docker's default) if absent, HOSTNAME, TERM=xterm with ``-t``,
  then ``-e``/``--env-file`` replacing by name.  cwd: ``-w``, the image's WorkingDir,
  or /.  The user (``-u`` or the image's User, root by default) is resolved in
  ``rootfs``'s /etc/passwd and /etc/group with its supplementary groups.
- seccomp: none with ``seccomp=unconfined``, a profile file converted
  (:func:`~nsbind.engine.seccompprofile.convert_profile`), else the default profile
  (:func:`~nsbind.engine.seccompprofile.default_profile`), both for the container's
  bounding set.
- resources: memory limit and swap (memory plus swap; twice the memory when only
  ``-m`` is given, as Docker; -1 unlimited), CFS quota and period, cpuset, pids, and
  the device cgroup's deny-all rule (the runtime adds the default devices).
- annotations: the caller's, ``nsbind.init`` with ``--init``, ``nsbind.stop-signal``
  (a number) and ``nsbind.stop-timeout`` (seconds) when given.
"""

from __future__ import annotations

import types

# collections.abc's class, without importing the collections package
from _collections_abc import Mapping

from nsbind.engine.errors import EngineError
from nsbind.engine.runopts import MountRequest, RunOptions

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from typing import Any

    from nsbind.image import ImageConfig

__all__ = ["DEFAULT_CAPABILITIES", "DEFAULT_PATH", "MASKED_PATHS", "READONLY_PATHS",
           "bind_host_sys", "build_spec", "capabilities", "drop_tty_group", "process_args"]

#: Docker's default capabilities (moby oci/caps)
DEFAULT_CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
                        "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
                        "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]
_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_UNLIMITED = (1 << 64) - 1


def _default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": [*_NOSUID_NOEXEC_NODEV, "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*_NOSUID_NOEXEC_NODEV, "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"]},
    ]


def _all_capabilities() -> list[str]:
    """Every capability the headers know, up to this kernel's last one."""
    from nsbind import Capability

    try:
        with open("/proc/sys/kernel/cap_last_cap") as file:
            last = int(file.read())
    except (OSError, ValueError):
        last = max(int(c) for c in Capability)
    return [f"CAP_{c.name}" for c in sorted(Capability, key=int) if int(c) <= last]


def capabilities(cap_add: tuple[str, ...], cap_drop: tuple[str, ...]) -> list[str]:
    """Docker's defaults adjusted by ``--cap-add``/``--cap-drop`` (moby's
    TweakCapabilities, see the module doc), without repeats, in order."""
    if "ALL" in cap_add:
        caps = [c for c in _all_capabilities() if c not in cap_drop]
    elif "ALL" in cap_drop:
        caps = list(cap_add)
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in cap_drop] + list(cap_add)
    return list(dict.fromkeys(caps))


def process_args(opts: RunOptions, config: ImageConfig | None) -> list[str]:
    """The container's argv by Docker's rule (see the module doc); EngineError when
    there is none."""
    entrypoint = list(config.entrypoint) if config is not None else []
    cmd = list(config.cmd) if config is not None else []
    if opts.entrypoint is not None:
        if opts.entrypoint:
            entrypoint, cmd = [opts.entrypoint], []
        else:
            entrypoint = []
    if opts.command:
        cmd = list(opts.command)
    args = entrypoint + cmd
    if not args:
        raise EngineError("no command specified")
    return args


def _set_env(env: list[str], entry: str) -> None:
    """Replace the variable of ``entry`` in ``env``, or append it."""
    name = entry.partition("=")[0]
    for i, item in enumerate(env):
        if item.partition("=")[0] == name:
            env[i] = entry
            return
    env.append(entry)


def _env(opts: RunOptions, config: ImageConfig | None, hostname: str) -> list[str]:
    env: list[str] = []
    for entry in config.env if config is not None else ():
        if "=" in entry:
            _set_env(env, entry)
    if not any(item.startswith("PATH=") for item in env):
        env.append(f"PATH={DEFAULT_PATH}")
    _set_env(env, f"HOSTNAME={hostname}")
    if opts.tty:
        _set_env(env, "TERM=xterm")
    for entry in opts.env:
        _set_env(env, entry)
    return env


def _cwd(opts: RunOptions, config: ImageConfig | None) -> str:
    if opts.workdir:
        return opts.workdir
    workdir = config.working_dir if config is not None else ""
    if not workdir:
        return "/"
    return "/" + "/".join(p for p in workdir.split("/") if p not in ("", "."))


def _user(rootfs: str, spec: str) -> dict[str, Any]:
    from nsbind.errors import LookupFailed, NsbindError
    from nsbind.users import resolve_user

    try:
        user = resolve_user(rootfs, spec)
    except LookupFailed as exc:
        if str(exc.what).startswith("group "):
            group = spec.partition(":")[2]
            raise EngineError(f"unable to find group {group}: no matching entries in "
                              "group file") from None
        raise EngineError(f"unable to find user {spec.partition(':')[0]}: no matching "
                          "entries in passwd file") from None
    except (NsbindError, OSError) as exc:
        raise EngineError(f"unable to resolve user {spec[:80]!r}: {exc}") from None
    out: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    if user.groups:
        out["additionalGids"] = list(user.groups)
    return out


def _request_mount(m: MountRequest) -> dict[str, Any]:
    if m.kind == "bind":
        return {"destination": m.destination, "type": "bind", "source": m.source,
                "options": [*m.options[:1], "rprivate", *m.options[1:]]}
    return {"destination": m.destination, "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", *m.options]}


def _mounts(opts: RunOptions, etc_files: Mapping[str, str]) -> list[dict[str, Any]]:
    requested = sorted(opts.mounts, key=lambda m: m.destination.count("/"))
    taken = {m.destination for m in requested}
    out = [m for m in _default_mounts() if m["destination"] not in taken]
    out += [{"destination": dest, "type": "bind", "source": src,
             "options": ["rbind", "rprivate"]}
            for dest, src in etc_files.items() if dest not in taken]
    return out + [_request_mount(m) for m in requested]


def _resources(opts: RunOptions) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if opts.memory is not None:
        swap = opts.memory_swap if opts.memory_swap is not None else 2 * opts.memory
        res["memory"] = {"limit": opts.memory, "swap": swap}
    cpu: dict[str, Any] = {}
    if opts.cpus is not None:
        cpu["quota"], cpu["period"] = opts.cpus
    if opts.cpuset_cpus:
        cpu["cpus"] = opts.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if opts.pids_limit is not None:
        res["pids"] = {"limit": opts.pids_limit}
    return res


def _seccomp(opts: RunOptions, caps: list[str]) -> dict[str, Any] | None:
    from nsbind.engine.seccompprofile import convert_profile, default_profile

    if opts.seccomp == "unconfined":
        return None
    if isinstance(opts.seccomp, Mapping):
        return convert_profile(opts.seccomp, caps)
    return default_profile(caps)


def build_spec(opts: RunOptions, config: ImageConfig | None, *, rootfs: str,
               container_id: str, hostname: str, etc_files: Mapping[str, str] = _EMPTY,
               annotations: Mapping[str, str] = _EMPTY) -> dict[str, Any]:
    """The ``config.json`` object for ``opts`` over ``config`` (None with ``--rootfs``):
    ``rootfs`` is the container's assembled root directory (absolute; users are
    resolved in it), ``container_id`` its id, ``hostname`` its host name, ``etc_files``
    maps /etc/hostname, /etc/hosts and /etc/resolv.conf to the host files bound there.
    See the module doc for the rules; EngineError (125) for what cannot be run."""
    if not rootfs.startswith("/"):
        raise EngineError(f"the root filesystem {rootfs!r} is not an absolute path")
    if not container_id:
        raise EngineError("a container needs an id")
    user = _user(rootfs, opts.user or (config.user if config is not None else "") or "0")
    caps = capabilities(opts.cap_add, opts.cap_drop)
    owned = caps if user["uid"] == 0 else []
    process: dict[str, Any] = {
        "terminal": opts.tty, "user": user, "args": process_args(opts, config),
        "env": _env(opts, config, hostname), "cwd": _cwd(opts, config),
        "capabilities": {"bounding": caps, "effective": list(owned),
                         "permitted": list(owned)},
    }
    if opts.ulimits:
        process["rlimits"] = [{"type": u.name, "soft": u.soft, "hard": u.hard}
                              for u in opts.ulimits]
    if opts.no_new_privileges:
        process["noNewPrivileges"] = True
    kinds = ["pid", "ipc", "uts", "mount", "cgroup"]
    if opts.network != "host":
        kinds.insert(1, "network")
    linux: dict[str, Any] = {
        "namespaces": [{"type": kind} for kind in kinds],
        "resources": _resources(opts),
        "maskedPaths": list(MASKED_PATHS), "readonlyPaths": list(READONLY_PATHS),
    }
    seccomp = _seccomp(opts, caps)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    notes = dict(annotations)
    if opts.init:
        notes["nsbind.init"] = "true"
    if opts.stop_signal is not None:
        notes["nsbind.stop-signal"] = str(opts.stop_signal)
    if opts.stop_timeout is not None:
        notes["nsbind.stop-timeout"] = str(opts.stop_timeout)
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2-dev", "process": process,
        "root": {"path": rootfs, "readonly": opts.read_only}, "hostname": hostname,
        "mounts": _mounts(opts, etc_files), "linux": linux,
    }
    if notes:
        spec["annotations"] = notes
    return spec


def bind_host_sys(spec: dict[str, Any]) -> None:
    """Bind the host's /sys, read-only, where ``spec`` mounts a sysfs: a sysfs needs a
    network namespace owned by the container's user namespace (runc's rootless spec)."""
    spec["mounts"] = [{"destination": m["destination"], "type": "bind", "source": "/sys",
                       "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
                      if m.get("type") == "sysfs" else m for m in spec.get("mounts", [])]


def drop_tty_group(spec: dict[str, Any]) -> None:
    """devpts without ``gid=5``, for a user namespace that does not map gid 5 (tty)."""
    spec["mounts"] = [{**m, "options": [o for o in m.get("options", []) if o != "gid=5"]}
                      if m.get("type") == "devpts" else m for m in spec.get("mounts", [])]
