"""Typed mount helpers: each returns MountSteps usable in a spawn plan or applied here.

A step runs either in the C child of :func:`nsbind.spawn` (``mounts=[...]`` or a
:class:`~nsbind.rootfs.RootFS`, in order, before pivot_root) or in the calling
thread's mount namespace with :func:`apply` (use a private mount namespace:
``with Namespaces(mnt=True)``) - the same C code in both places
(``_native/mountsteps.c``).  Filesystems are made with the new mount API
(fsopen + fsconfig + fsmount + move_mount), so the kernel's own message of a
refused option reaches the error, and bind mounts with open_tree + mount_setattr,
so read-only covers every submount.

Targets are host paths; inside a :class:`~nsbind.rootfs.RootFS` the same steps
resolve their targets inside the root (``step.in_root()``).
"""

from __future__ import annotations

import os
import stat

from nsbind import features
from nsbind._native import lib
from nsbind._sys.fd import FdLike, PathLike, fdnum, fsbytes
from nsbind._sys.mount import MountFd, fsopen
from nsbind.charsets import ALNUM, Word
from nsbind.errors import InvalidValue, NsbindError, raise_errno
from nsbind.flags import MountAttr, MountFlags, Propagation
from nsbind.frozen import replace_fields
from nsbind.mountstep import MountKind, MountOpt, MountStep, run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["MASKED_PATHS", "READONLY_PATHS", "apply", "bind", "cgroup", "cgroup2", "dev",
           "device", "devpts", "filesystem_of", "mask", "mkdir", "mount_points", "mqueue",
           "overlay",
           "overlay_step", "proc",
           "propagation", "readonly", "symlink", "sysfs", "tmpfs"]

_SAFE = MountAttr.NOSUID | MountAttr.NODEV | MountAttr.NOEXEC

#: what the OCI runtime spec's default config masks (runc, crun, Docker)
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
#: and makes read-only
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_MS_TO_ATTR = {MountFlags.RDONLY: MountAttr.RDONLY, MountFlags.NOSUID: MountAttr.NOSUID,
               MountFlags.NODEV: MountAttr.NODEV, MountFlags.NOEXEC: MountAttr.NOEXEC,
               MountFlags.NOATIME: MountAttr.NOATIME, MountFlags.NODIRATIME: MountAttr.NODIRATIME,
               MountFlags.STRICTATIME: MountAttr.STRICTATIME,
               MountFlags.NOSYMFOLLOW: MountAttr.NOSYMFOLLOW}


def _s(path: PathLike) -> str:
    return os.fsdecode(fsbytes(path))


def _attr(flags: int) -> MountAttr:
    """MS_* flags as MOUNT_ATTR_* (the ones that have a per-mount attribute)."""
    attr = MountAttr(0)
    for ms, at in _MS_TO_ATTR.items():
        if flags & ms:
            attr |= at
    rest = flags & ~sum(_MS_TO_ATTR)
    if rest & ~MountFlags.RELATIME:
        raise InvalidValue(f"mount flags {MountFlags(rest)!r} are not per-mount attributes")
    return attr


#: an option name as filesystems declare them (``size``, ``lowerdir+``, ``ptmxmode``)
_OPTION_NAME = Word(ALNUM + "_", ALNUM + "_.+-")  # [A-Za-z0-9_][A-Za-z0-9_.+-]*


def check_option(fstype: str, option: str) -> str:
    """``option`` (``name`` or ``name=value``) if a filesystem can only read it as meant,
    else ValueError naming it: a plain name, and a value with no ``,`` (the separator of
    the legacy option string the kernel builds for filesystems without fs_context), no
    NUL, no newline.  Paths in overlay options are checked by :func:`overlay_step`."""
    name, _, value = option.partition("=")
    if not _OPTION_NAME.matches(name):
        raise InvalidValue(f"{fstype} option {option!r}: {name!r} is not an option name")
    for bad, what in ((",", "a comma"), ("\0", "a NUL byte"), ("\n", "a newline")):
        if bad in value:
            raise InvalidValue(f"{fstype} option {option!r} contains {what}, which the kernel "
                               "would read as the end of the value")
    return option


def _fs(fstype: str, target: PathLike, attr: int, options: Sequence[str] = (),
        source: str | None = None, magic: int = 0) -> MountStep:
    for opt in options:
        check_option(fstype, opt)
    return MountStep(source if source is not None else fstype, _s(target), fstype, int(attr),
                     kind=MountKind.FS, opts=MountOpt.CREATE_DIR, options=tuple(options),
                     fs_magic=magic)


def bind(source: PathLike | MountFd, target: PathLike, *, recursive: bool = True,
         readonly: bool = False, flags: int = 0, idmap: FdLike | None = None) -> MountStep:
    """A bind mount of ``source`` (a path, or a detached :class:`MountFd`) on ``target``.

    Recursive by default; ``readonly`` applies with mount_setattr to the whole
    tree (submounts too); ``flags`` adds MS_NOSUID-style attributes.  ``idmap``
    (a user namespace fd) makes it an idmapped mount: file owners are shown
    through that namespace's uid/gid maps (Linux 5.12; the filesystem must
    support it - tmpfs from 6.3, ext4, xfs, btrfs, overlayfs).  A missing target
    inside a root is created as a directory, or a file for a file source.
    """
    attr = _attr(flags) | (MountAttr.RDONLY if readonly else 0)
    opts = MountOpt.CREATE_DIR | (MountOpt.RECURSIVE if recursive else 0)
    userns = -1
    if idmap is not None:
        attr |= MountAttr.IDMAP
        userns = fdnum(idmap)
    if isinstance(source, MountFd):
        return MountStep(None, _s(target), None, int(attr), kind=MountKind.BIND, opts=opts,
                         fd=source.fileno(), userns_fd=userns)
    return MountStep(_s(source), _s(target), None, int(attr), kind=MountKind.BIND, opts=opts,
                     userns_fd=userns)


def tmpfs(target: PathLike, *, size: str | int | None = None, mode: int | None = None,
          flags: int = MountFlags.NOSUID | MountFlags.NODEV) -> MountStep:
    """A tmpfs (``size`` like "64m", ``mode`` like 0o755); ``flags`` are MS_* attributes."""
    opts = []
    if size is not None:
        opts.append(f"size={size}")
    if mode is not None:
        opts.append(f"mode={mode:o}")
    return _fs("tmpfs", target, _attr(flags), opts, magic=lib.TMPFS_MAGIC)


def proc(target: PathLike = "/proc", *, options: Sequence[str] = ()) -> MountStep:
    """A procfs for the mounter's pid namespace (nosuid, nodev, noexec).

    After the mount the target must show procfs (checked on an fd): a rootfs
    cannot fake /proc (CVE-2019-16884, CVE-2019-19921).
    """
    return _fs("proc", target, _SAFE, options, magic=lib.PROC_SUPER_MAGIC)


def sysfs(target: PathLike = "/sys", *, readonly: bool = True) -> MountStep:
    """A sysfs (read-only by default); it shows the mounter's network namespace."""
    return _fs("sysfs", target, _SAFE | (MountAttr.RDONLY if readonly else 0),
               magic=lib.SYSFS_MAGIC)


def devpts(target: PathLike = "/dev/pts", *, ptmxmode: int = 0o666, mode: int = 0o620,
           gid: int | None = 5) -> MountStep:
    """A new devpts instance (its own pty numbering); ``gid`` must be mapped in a user ns."""
    opts = ["newinstance", f"ptmxmode={ptmxmode:04o}", f"mode={mode:04o}"]
    if gid is not None:
        opts.append(f"gid={gid}")
    return _fs("devpts", target, MountAttr.NOSUID | MountAttr.NOEXEC, opts,
               magic=lib.DEVPTS_SUPER_MAGIC)


def mqueue(target: PathLike = "/dev/mqueue") -> MountStep:
    """POSIX message queues of the mounter's IPC namespace."""
    return _fs("mqueue", target, _SAFE)


def cgroup2(target: PathLike = "/sys/fs/cgroup", *, readonly: bool = False) -> MountStep:
    """The cgroup v2 hierarchy (seen from the mounter's cgroup namespace)."""
    return _fs("cgroup2", target, _SAFE | (MountAttr.RDONLY if readonly else 0),
               magic=lib.CGROUP2_SUPER_MAGIC)


def cgroup(controllers: Sequence[str], target: PathLike, *, readonly: bool = True) -> MountStep:
    """A cgroup v1 hierarchy of ``controllers`` (e.g. ``["net_cls", "net_prio"]``).

    Only controller names this kernel lists in /proc/cgroups (and ``none`` or
    ``name=NAME``) are taken: ``release_agent=`` and the other options of the cgroup
    filesystem are refused (CVE-2022-0492 used release_agent)."""
    known = _v1_controllers()
    for name in controllers:
        plain = name == "none" or name in known
        named = name.startswith("name=") and _CGROUP_NAME.matches(name[5:])
        if not (plain or named):
            raise InvalidValue(f"cgroup v1 mount option {name!r} is not a controller of this "
                               f"kernel ({', '.join(sorted(known))}), none or name=NAME")
    return _fs("cgroup", target, _SAFE | (MountAttr.RDONLY if readonly else 0),
               list(controllers), magic=lib.CGROUP_SUPER_MAGIC)


_CGROUP_NAME = Word(ALNUM + "_", ALNUM + "_.-", max_len=64)  # [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}


def _v1_controllers() -> frozenset[str]:
    with open("/proc/cgroups") as f:
        return frozenset(line.split()[0] for line in f if line.strip() and line[0] != "#")


def propagation(target: PathLike, kind: Propagation, *, recursive: bool = True) -> MountStep:
    """Change mount propagation (private, slave, shared, unbindable)."""
    return MountStep(None, _s(target), None, int(kind) | (MountFlags.REC if recursive else 0))


def mask(path: PathLike) -> MountStep:
    """Hide ``path``: a directory gets an empty read-only tmpfs, anything else the
    caller's /dev/null (checked to be the 1:3 character device; a rootfs's own
    /dev/null is never used - CVE-2025-31133).  A missing path is skipped."""
    return MountStep(None, _s(path), kind=MountKind.MASK, opts=MountOpt.OPTIONAL)


def readonly(path: PathLike) -> MountStep:
    """Bind ``path`` onto itself read-only (nosuid, nodev, noexec kept as they were);
    a missing path is skipped."""
    return MountStep(None, _s(path), kind=MountKind.READONLY, opts=MountOpt.OPTIONAL)


def mkdir(path: PathLike, mode: int = 0o755) -> MountStep:
    """Create a directory (and its parents) inside the root."""
    return MountStep(None, _s(path), kind=MountKind.MKDIR, mode=mode)


def device(path: PathLike, major: int, minor: int, *, mode: int = 0o666, char: bool = True,
           host: PathLike | None = None) -> MountStep:
    """mknod ``path`` inside the root; where mknod is refused (a user namespace), the
    caller's node ``host`` is bind-mounted instead."""
    kind = stat.S_IFCHR if char else stat.S_IFBLK
    return MountStep(None if host is None else _s(host), _s(path), kind=MountKind.DEVICE,
                     mode=kind | mode, dev=os.makedev(major, minor))


def symlink(path: PathLike, to: str) -> MountStep:
    """Create the symlink ``path`` -> ``to`` inside the root."""
    return MountStep(to, _s(path), kind=MountKind.SYMLINK)


_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
              ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))


def dev(target: PathLike = "/dev", *, pts_gid: int | None = 5,
        shm_size: str = "64m") -> list[MountStep]:
    """A minimal /dev, as runc and crun make it: a tmpfs with null, zero, full,
    random, urandom and tty (mknod, or the host's nodes bound in a user
    namespace), a new devpts at pts (``pts_gid`` must be mapped in a user
    namespace: pass None there), a tmpfs at shm, and the symlinks fd, stdin,
    stdout, stderr, ptmx and core."""
    base = _s(target).rstrip("/") or "/"
    steps = [tmpfs(base, mode=0o755, size="65536k",
                   flags=MountFlags.NOSUID | MountFlags.NOEXEC | MountFlags.STRICTATIME)]
    steps += [device(f"{base}/{name}", major, minor, host=f"/dev/{name}")
              for name, major, minor in _DEVICES]
    steps += [mkdir(f"{base}/pts"), mkdir(f"{base}/shm", 0o1777),
              devpts(f"{base}/pts", gid=pts_gid),
              tmpfs(f"{base}/shm", mode=0o1777, size=shm_size,
                    flags=MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC)]
    steps += [symlink(f"{base}/{name}", to) for name, to in _DEV_LINKS]
    return steps


def apply(steps: Iterable[MountStep | Sequence[MountStep]]) -> None:
    """Run mount steps in the calling thread's mount namespace, in order (the same
    C code as the spawn child).  Errors name the step: ``mount proc on /x: ENOENT``."""
    run(_flatten(steps))


def _flatten(steps: Iterable[MountStep | Sequence[MountStep]]) -> list[MountStep]:
    out: list[MountStep] = []
    for item in steps:
        out.extend([item] if isinstance(item, MountStep) else item)
    return out


def _layers(lower: Sequence[PathLike], upper: PathLike | None,
            work: PathLike | None) -> list[str]:
    if not lower:
        raise InvalidValue("an overlay needs at least one lower layer")
    if (upper is None) != (work is None):
        raise InvalidValue("upper and work go together")
    if upper is None and len(lower) < 2:
        raise InvalidValue("a read-only overlay (no upper) needs at least two lower layers "
                           "(the kernel's rule); bind-mount a single layer instead")
    layers = [_s(p) for p in lower]
    for p in layers + [_s(d) for d in (upper, work) if d is not None]:
        # ':' and ',' separate layers and options in the classic string; overlayfs
        # unescapes '\\' in its paths ("/x/u\\p" would be /x/up) and '=' separates a
        # name from its value: refused in both code paths alike
        bad = sorted({c for c in p if c in _OVERLAY_SPECIAL})
        if bad or not p:
            what = " ".join(repr(c) for c in bad) if bad else "nothing"
            raise InvalidValue(f"overlay layer path {p!r} contains {what}: "
                               "overlayfs would parse it as option syntax; use another path")
    return layers


_OVERLAY_SPECIAL = frozenset(":,=\\\n\0")


_FSCONFIG_STRING_MAX = 255  # fsconfig(FSCONFIG_SET_STRING) copies at most 256 bytes with NUL


def _lowerdir(layers: list[str]) -> tuple[str, str | None]:
    """Before Linux 6.8: the one "lowerdir=a:b:c" string, and the directory its paths are
    relative to when the absolute ones would not fit fsconfig's 255 bytes (layers that
    share a parent are named relative to it, from that working directory)."""
    joined = ":".join(layers)
    parent = os.path.commonpath(layers) if all(p.startswith("/") for p in layers) else ""
    if len(joined) > _FSCONFIG_STRING_MAX and parent not in ("", "/"):
        return ":".join(os.path.relpath(p, parent) for p in layers), parent
    return joined, None


def _overlay_options(layers: list[str], upper: PathLike | None, work: PathLike | None,
                     volatile: bool) -> tuple[list[str], str | None]:
    """The fsconfig options of an overlay, and the directory relative paths start from."""
    cwd = None
    if features.lowerdir_plus():
        opts = [f"lowerdir+={layer}" for layer in layers]
    else:
        joined, cwd = _lowerdir(layers)
        if len(joined) > _FSCONFIG_STRING_MAX:
            raise InvalidValue(f"{len(layers)} overlay layers need a {len(joined)}-byte lowerdir "
                               f"option; this kernel (no lowerdir+, before Linux 6.8) takes "
                               f"{_FSCONFIG_STRING_MAX}: use shorter layer paths")
        opts = [f"lowerdir={joined}"]
    if upper is not None and work is not None:
        opts += [f"upperdir={_s(upper)}", f"workdir={_s(work)}"]
    if volatile:
        opts.append("volatile")
    return opts, cwd


def overlay_step(target: PathLike, lower: Sequence[PathLike], upper: PathLike | None = None,
                 work: PathLike | None = None, *, volatile: bool = False) -> MountStep:
    """An overlayfs of ``lower`` (top layer first) mounted on ``target``, made where the
    step runs (in the spawn child: each spawn its own overlay).  Read-only without
    ``upper``.  One ``lowerdir+`` per layer on Linux 6.8+, so the layer count is not
    bounded by the page-sized mount data string."""
    layers = _layers(lower, upper, work)
    attr = MountAttr.RDONLY if upper is None else 0
    opts, cwd = _overlay_options(layers, upper, work, volatile)
    step = _fs("overlay", target, attr, opts, magic=lib.OVERLAYFS_SUPER_MAGIC)
    return replace_fields(step, cwd=cwd)


def overlay(lower: Sequence[PathLike], upper: PathLike | None = None,
            work: PathLike | None = None, *, volatile: bool = False,
            readonly: bool = False) -> MountFd:
    """A detached overlayfs mount of ``lower`` (top layer first), attach it with
    ``.attach(target)`` or :func:`bind` it.  Without ``upper`` it is read-only.

    Uses fsopen("overlay") with one ``lowerdir+`` per layer (Linux 6.8), so the
    layer count is not bounded by the page-sized mount data string; on older
    kernels falls back to ``lowerdir=l1:l2:...``: through fsconfig up to 255 bytes,
    beyond that through mount(2), up to a page, with paths relative to the layers'
    common parent (:func:`nsbind.mountclone.classic_detached`).  Errors carry the
    kernel's own message where it gives one, e.g. ``overlay: failed to resolve '/x': -2``.
    """
    layers = _layers(lower, upper, work)
    if not features.lowerdir_plus():
        joined, cwd = _lowerdir(layers)
        if cwd is not None or len(joined) > _FSCONFIG_STRING_MAX:
            return _classic_overlay(layers, joined, cwd, upper, work, volatile, readonly)
    opts, _ = _overlay_options(layers, upper, work, volatile)
    with fsopen("overlay") as ctx:
        ctx.set_options(opts)
        try:
            ctx.create()
        except NsbindError as exc:
            if features.lowerdir_plus() or exc.errno is None:
                raise
            # a legacy context (before 6.5) says nothing of which option failed
            raise_errno(exc.errno, "fsconfig", "overlay", detail=exc.detail,
                        what=f"create overlay {opts[0]}")
        return ctx.mount(MountAttr.RDONLY if readonly or upper is None else 0)


_PAGE_DATA_MAX = 4095  # mount(2) copies one page of option data, NUL included


def _classic_overlay(layers: list[str], joined: str, cwd: str | None, upper: PathLike | None,
                     work: PathLike | None, volatile: bool, readonly: bool) -> MountFd:
    """:func:`overlay` before Linux 6.8 when ``lowerdir=`` exceeds fsconfig's 255 bytes."""
    from nsbind.mountclone import classic_detached

    data = [f"lowerdir={joined}"]
    if upper is not None and work is not None:
        data += [f"upperdir={_s(upper)}", f"workdir={_s(work)}"]
    if volatile:
        data.append("volatile")
    text = ",".join(data)
    if len(text) > _PAGE_DATA_MAX:
        raise InvalidValue(f"{len(layers)} overlay layers need {len(text)} bytes of mount "
                           f"options; this kernel (no lowerdir+, before Linux 6.8) takes "
                           f"{_PAGE_DATA_MAX}: use shorter layer paths")
    flags = int(MountFlags.RDONLY) if readonly or upper is None else 0
    return classic_detached("overlay", text, flags=flags, cwd=cwd,
                            label=f"overlay of {len(layers)} layers")


def mount_points(pid: int | str = "self") -> list[str]:
    """The mount points of ``pid``'s mount namespace, as its /proc/PID/mountinfo lists
    them (oldest first; a path mounted on twice appears twice), unescaped."""
    from nsbind._sys.mountinfo import read_mountinfo

    return [entry.mountpoint for entry in read_mountinfo(pid)]


def filesystem_of(path: PathLike) -> str:
    """The filesystem type (``tmpfs``, ``ext4`` ...) of the mount that holds ``path`` in
    this process's mount namespace: the deepest mount point above its real path in
    /proc/self/mountinfo (the last of those stacked there); "unknown" if none."""
    from nsbind._sys.mountinfo import read_mountinfo

    real = os.path.realpath(_s(path))
    best, kind = -1, "unknown"
    for entry in read_mountinfo():
        point = entry.mountpoint.rstrip("/")
        if (real == point or real.startswith(point + "/") or point == "") and len(
                point) >= best:
            best, kind = len(point), entry.fstype
    return kind
