"""Mount steps: one mount operation each, run by the C code of ``_native/mountsteps.c``.

The same C function runs a list of steps in the spawn child (``spawn(mounts=...)``,
``spawn(rootfs=...)``) and in the calling thread (:func:`run`, used by
:func:`nsbind.mounts.apply`), so a step behaves the same in both places.

Steps marked ``IN_ROOT`` resolve their target inside the root set by the last
``ROOT`` step with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS); the last
component is never followed (a symlink there is refused), missing targets are
created inside the root, and the mount is attached onto the resolved fd.

The root is looked up once: a ``ROOT`` step with ``SELF_BIND`` binds its target
onto itself and keeps the attached mount's fd as the root, one with
``LAST_MOUNT`` takes the mount the step before it attached; a spawn pivots into
that fd.  A ``PINNED`` host target (:meth:`MountStep.pinned`) is resolved without
following any symlink and must still be the directory it was pinned to: a path
swapped since is refused, never followed.
"""

from __future__ import annotations

import errno as _errno
import os
import stat

from nsbind._native import ffi, lib
from nsbind._sys.mount import mount_description
from nsbind.enumtypes import IntEnum, IntFlag
from nsbind.errors import InvalidValue, error_for
from nsbind.flags import MountAttr, flag_names
from nsbind.frozen import fields_of, frozen, replace_fields

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = ["PHASE_WORDS", "MountKind", "MountOpt", "MountPhase", "MountStep", "MountSteps",
           "report_message", "run"]


class MountKind(IntEnum):
    """What a step does (``enum nsb_mount_kind``)."""

    CLASSIC = lib.NSB_MNT_CLASSIC          #: mount(2) with host paths
    FS = lib.NSB_MNT_FS                    #: fsopen + options + fsmount, attached
    BIND = lib.NSB_MNT_BIND                #: open_tree clone (+ mount_setattr), attached
    ROOT = lib.NSB_MNT_ROOT                #: the root of later IN_ROOT steps
    MASK = lib.NSB_MNT_MASK                #: hide a path (empty tmpfs or /dev/null)
    READONLY = lib.NSB_MNT_READONLY        #: bind a path onto itself read-only
    MKDIR = lib.NSB_MNT_MKDIR              #: mkdir -p
    DEVICE = lib.NSB_MNT_DEVICE            #: mknod, or bind the host's node in a user ns
    SYMLINK = lib.NSB_MNT_SYMLINK          #: symlink target -> source
    PROPAGATION = lib.NSB_MNT_PROPAGATION  #: mount_setattr propagation
    SETATTR = lib.NSB_MNT_SETATTR          #: mount_setattr attributes of a mount's root


class MountOpt(IntFlag):
    """How a step treats its target (``enum nsb_mount_opt``)."""

    IN_ROOT = lib.NSB_MNTF_IN_ROOT
    OPTIONAL = lib.NSB_MNTF_OPTIONAL
    CREATE_DIR = lib.NSB_MNTF_CREATE_DIR
    CREATE_FILE = lib.NSB_MNTF_CREATE_FILE
    RECURSIVE = lib.NSB_MNTF_RECURSIVE
    #: BIND: ``fd`` is a detached tree made for this one step: attached, not cloned
    ATTACH_FD = lib.NSB_MNTF_ATTACH_FD
    #: a host target resolved without symlinks that must be ``pin_dev``/``pin_ino``
    PINNED = lib.NSB_MNTF_PINNED
    #: ROOT: bind the target onto itself; the attached mount is the root
    SELF_BIND = lib.NSB_MNTF_SELF_BIND
    #: ROOT: the mount the step before attached is the root (no lookup)
    LAST_MOUNT = lib.NSB_MNTF_LAST_MOUNT


class MountPhase(IntEnum):
    """Where in its step a mount failed (``enum nsb_mount_phase``: a report's ``phase``)."""

    MOUNT = lib.NSB_PH_MOUNT      #: the mount itself (mount, fsmount, move_mount)
    RESOLVE = lib.NSB_PH_RESOLVE  #: resolving the target
    CREATE = lib.NSB_PH_CREATE    #: creating a missing target
    SOURCE = lib.NSB_PH_SOURCE    #: opening the source (open_tree)
    CONFIG = lib.NSB_PH_CONFIG    #: fsopen / fsconfig / fsmount
    SETATTR = lib.NSB_PH_SETATTR  #: mount_setattr
    VERIFY = lib.NSB_PH_VERIFY    #: what got mounted is not what was asked
    ROOT = lib.NSB_PH_ROOT        #: the in-root rule refused: a symlink target, or no root
    PINNED = lib.NSB_PH_PINNED    #: a pinned target was swapped (or a symlink is on the way)
    PROC = lib.NSB_PH_PROC        #: the target in the root lies on procfs (not a proc mount)

    @classmethod
    def of(cls, value: int) -> MountPhase | None:
        """The phase a report's number names, or None for a number C never reports."""
        try:
            return cls(value)
        except ValueError:
            return None


#: What an error message says of each phase (see :func:`_why`): a few words, or
#: None where the error itself says enough (the mount) or the ROOT rule speaks.
PHASE_WORDS: dict[MountPhase, str | None] = {
    MountPhase.MOUNT: None,
    MountPhase.RESOLVE: "resolve the target",
    MountPhase.CREATE: "create the target",
    MountPhase.SOURCE: "open the source",
    MountPhase.CONFIG: "configure the filesystem",
    MountPhase.SETATTR: "set mount attributes",
    MountPhase.VERIFY: "verify what got mounted",
    MountPhase.ROOT: None,
    MountPhase.PINNED: None,
    MountPhase.PROC: ("the target is inside /proc: only proc and a few /proc files runc "
                      "allows may be mounted there (CVE-2019-19921)"),
}

_NO_OPTS = MountOpt(0)


@frozen
class MountStep:
    """One step; build them with the helpers of :mod:`nsbind.mounts`.

    The first five fields are mount(2)'s, so ``MountStep("proc", "/x", "proc")``
    is a classic mount.  ``flags`` are ``MS_*`` for CLASSIC and PROPAGATION, and
    ``MOUNT_ATTR_*`` for FS, BIND, READONLY.
    """

    source: str | None
    target: str
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    kind: MountKind = MountKind.CLASSIC
    opts: MountOpt = _NO_OPTS
    options: tuple[str, ...] = ()
    fd: int = -1
    userns_fd: int = -1
    mode: int = 0
    dev: int = 0
    fs_magic: int = 0
    cwd: str | None = None
    pin_dev: int = 0
    pin_ino: int = 0

    def __hash__(self) -> int:
        # computed once: spawn looks a plan's steps up by value on every call
        try:
            return self.__dict__["_hash"]  # type: ignore[no-any-return]
        except KeyError:
            value = hash(tuple(getattr(self, f.name) for f in fields_of(self)))
            object.__setattr__(self, "_hash", value)
            return value

    def in_root(self) -> MountStep:
        """This step with its target resolved inside the root (see the module doc)."""
        if self.kind == MountKind.CLASSIC:
            raise InvalidValue(f"{self.describe()}: a classic mount(2) step takes host paths "
                             "only; use the nsbind.mounts helpers inside a root")
        if self.opts & MountOpt.IN_ROOT:
            return self  # already: steps are immutable, so the same one serves
        # made once a step: a root built per container reuses the same step objects (and
        # their cached hashes) instead of copying every step again
        try:
            return self.__dict__["_in_root"]  # type: ignore[no-any-return]
        except KeyError:
            step = replace_fields(self, opts=self.opts | MountOpt.IN_ROOT)
            object.__setattr__(self, "_in_root", step)
            return step

    def pinned(self, st: os.stat_result) -> MountStep:
        """This step with its (host) target pinned to the directory ``st`` describes
        (``os.stat`` of it): the target is then resolved without following any symlink
        and must still be that directory (same ``st_dev`` and ``st_ino``), else the step
        is refused (ESTALE; a symlink on the way: ELOOP).  Another directory can take
        that identity only once this one is deleted (its inode number freed)."""
        if self.opts & MountOpt.IN_ROOT:
            raise InvalidValue(f"{self.describe()}: only a host target can be pinned")
        return replace_fields(self, opts=self.opts | MountOpt.PINNED,
                                   pin_dev=st.st_dev, pin_ino=st.st_ino)

    def describe(self) -> str:
        """The step as an error message names it: ``mount proc on /proc``."""
        where = f"{self.target} in the root" if self.opts & MountOpt.IN_ROOT else self.target
        kind = self.kind
        if kind == MountKind.CLASSIC:
            return mount_description(self.source, self.target, self.fstype, self.flags)
        if kind == MountKind.FS:
            return f"mount {self.fstype} on {where}"
        if kind == MountKind.BIND:
            rec = "rbind" if self.opts & MountOpt.RECURSIVE else "bind"
            src = self.source if self.fd < 0 else f"mount fd {self.fd}"
            attrs = self.flags & ~MountAttr.IDMAP
            text = f"{rec} mount {src} on {where}"
            if attrs:
                text += f" ({flag_names(MountAttr, attrs).lower()})"
            if self.flags & MountAttr.IDMAP:
                text += f" idmapped by user namespace fd {self.userns_fd}"
            return text
        if kind == MountKind.ROOT:
            if self.opts & MountOpt.LAST_MOUNT:
                return f"use the mount just made on {where} as the root"
            if self.opts & MountOpt.SELF_BIND:
                return f"bind {where} onto itself as the root"
            return f"use {where} as the root"
        if kind == MountKind.MASK:
            return f"mask {where}"
        if kind == MountKind.READONLY:
            return f"make {where} read-only"
        if kind == MountKind.MKDIR:
            return f"mkdir {where}"
        if kind == MountKind.DEVICE:
            return (f"mknod {where} {'c' if stat.S_ISCHR(self.mode) else 'b'} "
                    f"{os.major(self.dev)}:{os.minor(self.dev)}")
        if kind == MountKind.SYMLINK:
            return f"symlink {where} -> {self.source}"
        if kind == MountKind.SETATTR:
            return f"set {flag_names(MountAttr, self.flags).lower()} on the mount at {where}"
        return f"change propagation of {where}"


def _why(step: MountStep, err: int, phase: int, msg: str) -> str | None:
    """Extra words for an error: the phase, and what the kernel or the rule said."""
    known = MountPhase.of(phase)
    if known is MountPhase.ROOT:
        if err == _errno.ELOOP:
            return f"refused: {step.target} is a symlink in the root (targets are never followed)"
        if step.kind == MountKind.ROOT and step.opts & MountOpt.LAST_MOUNT:
            return "the step before attached no mount to use as the root"
        return "no root set for an in-root step"
    if known is MountPhase.PINNED:
        if err == _errno.ELOOP:
            return (f"refused: a symlink is now on the way to {step.target} (a pinned "
                    "path is never resolved through one)")
        return (f"refused: {step.target} is no longer the directory it was pinned to "
                "(swapped since; never followed to another one)")
    parts = [PHASE_WORDS[known] if known is not None else f"mount phase {phase}"]
    if known is MountPhase.VERIFY:
        if step.kind == MountKind.MASK:
            parts.append("the caller's /dev/null is not the 1:3 character device")
        else:
            parts.append(f"{step.target} does not show the {step.fstype} just mounted")
    if msg:
        parts.append(f"kernel: {msg}")
    return "; ".join(p for p in parts if p) or None


class MountSteps:
    """A ``struct nsb_mount_step[]`` for the C code; it owns every buffer."""

    def __init__(self, steps: Iterable[MountStep]) -> None:
        self.steps = list(steps)
        self._keep: list[Any] = []
        self.c: Any = ffi.NULL
        if not self.steps:
            return
        arr: Any = ffi.new("struct nsb_mount_step[]", len(self.steps))
        for i, step in enumerate(self.steps):
            c = arr[i]
            c.kind = int(step.kind)
            c.opts = int(step.opts)
            c.source = self._str(step.source)
            c.target = self._str(step.target)
            c.fstype = self._str(step.fstype)
            c.flags = int(step.flags)
            c.data = self._str(step.data)
            if step.options:
                opts = [self._str(o) for o in step.options] + [ffi.NULL]
                optv = ffi.new("char *[]", opts)
                self._keep.append(optv)
                c.options = optv
            c.fd = step.fd
            c.userns_fd = step.userns_fd
            c.mode = step.mode
            c.dev = step.dev
            c.fs_magic = step.fs_magic
            c.cwd = self._str(step.cwd)
            c.pin_dev = step.pin_dev
            c.pin_ino = step.pin_ino
        self._keep.append(arr)
        self.c = arr

    def __len__(self) -> int:
        return len(self.steps)

    def _str(self, value: str | None) -> Any:
        if value is None:
            return ffi.NULL
        raw = os.fsencode(value)
        if b"\0" in raw:
            raise InvalidValue(f"mount step string contains a NUL byte: {raw!r}")
        buf = ffi.new("char[]", raw)
        self._keep.append(buf)
        return buf

    def explain(self, index: int, err: int, phase: int, msg: str) -> tuple[str, str | None]:
        """(what, detail) naming the failed step for an error message."""
        step = self.steps[index]
        return step.describe(), _why(step, err, phase, msg)


def report_message(report: Any) -> str:
    """The kernel message a ``struct nsb_mount_report`` or spawn report carries.

    The fs context's line as read (``msg[NSB_REPORT_MSG_SIZE]``), without its
    newline, as :class:`nsbind.FsContext` gives its messages; "" for none.
    """
    raw = ffi.string(report.msg)
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return text.rstrip("\n")


def run(steps: Sequence[MountStep], *, enter_root: bool = False) -> None:
    """Run ``steps`` in the calling thread's mount namespace (use a private one).

    ``enter_root``: then make the root the last ``ROOT`` step set the working
    directory, by its fd (fchdir: the root's path is not looked up again), as the
    spawn child does before ``pivot_root(".", ".")``; ValueError if no step set one.
    """
    plan = MountSteps(steps)
    if not plan.steps and not enter_root:
        return
    ctx: Any = ffi.new("struct nsb_mount_ctx *")
    lib.nsb_mount_ctx_init(ctx)
    report: Any = ffi.new("struct nsb_mount_report *")
    try:
        rc = lib.nsb_mount_steps(plan.c, len(plan), ctx, report) if plan.steps else 0
        if rc == 0 and enter_root:
            if ctx.root < 0:
                raise InvalidValue("enter_root: no ROOT step set a root")
            os.fchdir(ctx.root)
    finally:
        lib.nsb_mount_ctx_close(ctx)
    if rc < 0:
        msg = report_message(report)
        what, detail = plan.explain(report.index, report.err, report.phase, msg)
        raise error_for(report.err, "mount", plan.steps[report.index].target, what=what,
                        detail=detail)
