"""Typed mount helpers: each returns MountSteps usable in a spawn plan or applied here.

A step runs either in the C child of :func:`nsbind.spawn` (``mounts=[...]``, in
order, before pivot_root) or in the calling thread's mount namespace with
:func:`apply` (use a private mount namespace: ``with Namespaces(mnt=True)``).
:func:`overlay` builds an overlayfs with the new mount API, one ``lowerdir+``
per layer (Linux 6.8), so any number of layers fits; older kernels get the
classic ``lowerdir=a:b:c`` string.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence

from nsbind._sys.fd import PathLike, fsbytes
from nsbind._sys.mount import MountFd, fsopen, mount
from nsbind.errors import NsbindError
from nsbind.flags import MountAttr, MountFlags, Propagation
from nsbind.spawnplan import MountStep

__all__ = ["apply", "bind", "cgroup2", "devpts", "mqueue", "overlay", "proc", "propagation",
           "sysfs", "tmpfs"]

_SAFE = MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC


def _s(path: PathLike) -> str:
    return os.fsdecode(fsbytes(path))


def bind(source: PathLike, target: PathLike, *, recursive: bool = True,
         readonly: bool = False) -> list[MountStep]:
    """A bind mount (recursive by default); ``readonly`` adds the read-only remount.

    (The classic remount makes only the top mount read-only; submounts of a
    recursive bind stay as they were - use open_tree + mount_setattr with
    AT_RECURSIVE for a whole read-only tree.)
    """
    flags = MountFlags.BIND | (MountFlags.REC if recursive else 0)
    steps = [MountStep(_s(source), _s(target), None, flags)]
    if readonly:
        steps.append(MountStep(None, _s(target), None,
                               MountFlags.BIND | MountFlags.REMOUNT | MountFlags.RDONLY))
    return steps


def tmpfs(target: PathLike, *, size: str | int | None = None, mode: int | None = None,
          flags: int = MountFlags.NOSUID | MountFlags.NODEV) -> MountStep:
    """A tmpfs (``size`` like "64m", ``mode`` like 0o755)."""
    opts = []
    if size is not None:
        opts.append(f"size={size}")
    if mode is not None:
        opts.append(f"mode={mode:o}")
    return MountStep("tmpfs", _s(target), "tmpfs", flags, ",".join(opts) or None)


def proc(target: PathLike = "/proc") -> MountStep:
    """A procfs for the current pid namespace (nosuid, nodev, noexec)."""
    return MountStep("proc", _s(target), "proc", _SAFE)


def sysfs(target: PathLike = "/sys", *, readonly: bool = True) -> MountStep:
    """A sysfs (read-only by default); it shows the mounter's network namespace."""
    return MountStep("sysfs", _s(target), "sysfs", _SAFE | (MountFlags.RDONLY if readonly else 0))


def devpts(target: PathLike = "/dev/pts", *, ptmxmode: int = 0o666, mode: int = 0o620,
           gid: int | None = 5) -> MountStep:
    """A new devpts instance (its own pty numbering)."""
    opts = f"newinstance,ptmxmode={ptmxmode:04o},mode={mode:04o}"
    if gid is not None:
        opts += f",gid={gid}"
    return MountStep("devpts", _s(target), "devpts", MountFlags.NOSUID | MountFlags.NOEXEC, opts)


def mqueue(target: PathLike = "/dev/mqueue") -> MountStep:
    """POSIX message queues of the current IPC namespace."""
    return MountStep("mqueue", _s(target), "mqueue", _SAFE)


def cgroup2(target: PathLike = "/sys/fs/cgroup", *, readonly: bool = False) -> MountStep:
    """The cgroup v2 hierarchy (seen from the current cgroup namespace)."""
    return MountStep("cgroup2", _s(target), "cgroup2",
                     _SAFE | (MountFlags.RDONLY if readonly else 0))


def propagation(target: PathLike, kind: Propagation, *, recursive: bool = True) -> MountStep:
    """Change mount propagation (private, slave, shared, unbindable)."""
    return MountStep(None, _s(target), None, int(kind) | (MountFlags.REC if recursive else 0))


def apply(steps: Iterable[MountStep | Sequence[MountStep]]) -> None:
    """Run mount steps in the calling thread's mount namespace, in order."""
    for item in steps:
        for step in ([item] if isinstance(item, MountStep) else item):
            mount(step.source, step.target, step.fstype, step.flags, step.data)


def overlay(lower: Sequence[PathLike], upper: PathLike | None = None,
            work: PathLike | None = None, *, volatile: bool = False,
            readonly: bool = False) -> MountFd:
    """A detached overlayfs mount of ``lower`` (top layer first), attach it with
    ``.attach(target)``.  Without ``upper`` it is read-only.

    Uses fsopen("overlay") with one ``lowerdir+`` per layer (Linux 6.8), so the
    layer count is not bounded by the page-sized mount data string; on older
    kernels falls back to ``lowerdir=l1:l2:...``.  Errors carry the kernel's own
    message, e.g. ``overlay: failed to resolve '/x': -2``.
    """
    if not lower:
        raise ValueError("an overlay needs at least one lower layer")
    if (upper is None) != (work is None):
        raise ValueError("upper and work go together")
    if upper is None and len(lower) < 2:
        raise ValueError("a read-only overlay (no upper) needs at least two lower layers "
                         "(the kernel's rule); bind-mount a single layer instead")
    layers = [_s(p) for p in lower]
    for p in layers:
        if ":" in p or "," in p:
            # the separators of the classic option string; lowerdir+ would take them,
            # but refusing keeps both code paths equal
            raise ValueError(f"overlay layer path contains ':' or ',': {p!r}")
    with fsopen("overlay") as ctx:
        try:
            for layer in layers:
                ctx.set_string("lowerdir+", layer)
        except NsbindError as exc:
            if exc.errno != errno.EINVAL or "lowerdir+" not in (exc.what or ""):
                raise
            ctx.set_string("lowerdir", ":".join(layers))  # pre-6.8 kernel
        if upper is not None and work is not None:
            ctx.set_string("upperdir", _s(upper))
            ctx.set_string("workdir", _s(work))
        if volatile:
            ctx.set_flag("volatile")
        ctx.create()
        return ctx.mount(MountAttr.RDONLY if readonly or upper is None else 0)
