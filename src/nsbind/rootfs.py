"""RootFS: a container's root filesystem, assembled in the child's mount namespace.

A RootFS is a list of mount steps (:mod:`nsbind.mounts`) that the C child of
:func:`nsbind.spawn` runs after making its mount namespace private::

    root = RootFS.overlay(lower=[l3, l2, l1], upper=upper, work=work)
    root.add(mounts.proc(), *mounts.dev(), mounts.bind("/data", "/data", readonly=True))
    root.mask("/proc/kcore"); root.readonly("/proc/sys")
    spawn(cmd, namespaces=Namespaces(pid=True, mnt=True), rootfs=root)

The order: the root itself (the directory bound onto itself, or a fresh
overlayfs on the mount point), then the added steps, then the masked and
read-only paths (the OCI defaults unless ``defaults=False``), then
``pivot_root(".", ".")`` into the root's fd and a lazy unmount of the old root
(no directory for it is needed), then ``chdir("/")``.

The root's path is resolved once.  ``RootFS(path)`` opens ``path`` when it is
made (O_PATH|O_DIRECTORY, following the symlinks the caller named at that
moment: a symlink as the last component is the caller's choice, resolved now
and never again) and records the directory's identity (st_dev, st_ino) and its
real path (``RootFS.path``, without symlinks).  Each spawn's child opens that
real path once, in its own mount namespace, without following any symlink,
checks that it is still that directory (a swapped root or parent directory is
refused with a SpawnError naming the root, never followed to a decoy), binds
that fd's mount onto the same fd, and uses the attached mount's fd for the
in-root steps and for the pivot: no path is looked up again, so a spawn never
mixes two roots.  (The identity is not held open: another directory can only
take the recorded inode number once the root directory is deleted, which takes
the power to empty it - to change the root anyway.)  An overlay root's mount
point is pinned the same way, and the root is the overlay mount its step
attached, by fd.  A prepared root does all this once, in :meth:`RootFS.prepare`,
and pivots into that fd.

Every target is resolved inside the root with openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS); a symlink as the last component is refused (so a
rootfs whose /proc is a symlink is refused), missing targets are created
inside the root, and each mount is attached onto the resolved fd.

:meth:`RootFS.prepare` makes the part every spawn shares once: the root mount
and the steps before the first one that must be per container (proc, sysfs,
tmpfs, devpts, mqueue, cgroup filesystems), pivoted into in a mount namespace
nsbind keeps.  A spawn then joins that namespace and unshares a copy of it
(a few mounts, not the host's table) and runs only the remaining steps: no
bind of the root, no pivot_root, and no unmount of the old root (whose RCU
grace period is the slowest part of a plain rootfs spawn).
"""

from __future__ import annotations

import errno
import os

from nsbind._sys.fd import OwnedFd, PathLike, fsbytes
from nsbind._sys.mount import AT_FDCWD, MountFd, open_tree, openat2, pivot_root, umount2
from nsbind._sys.ns import NamespaceFd, open_namespace
from nsbind.errors import InvalidValue, error_for
from nsbind.flags import (
    AtFlags,
    MountAttr,
    Namespace,
    OpenTreeFlags,
    Propagation,
    ResolveFlags,
    UmountFlags,
)
from nsbind.fnlite import lru_cache
from nsbind.frozen import frozen, replace_fields
from nsbind.mounts import MASKED_PATHS, READONLY_PATHS, mask, overlay_step, readonly
from nsbind.mountstep import MountKind, MountOpt, MountStep, run
from nsbind.namespaces import Namespaces

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

__all__ = ["RootFS", "RootPlan"]

#: filesystems a spawn must make for itself: per pid/net/ipc/cgroup namespace, or
#: writable and private to the container
_PER_SPAWN_FS = frozenset({"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2"})

#: the first step a spawn of a prepared root runs: its root is the namespace's
_ROOT_HERE = MountStep(None, "/", kind=MountKind.ROOT)


@frozen
class RootPlan:
    """How a spawn enters a :class:`RootFS` (from :meth:`RootFS.plan_for`).

    Plain: run ``steps`` in the child's new mount namespace, then pivot_root into
    ``pivot_root``.  Prepared: the child joins ``namespace`` (whose root is the RootFS
    already), unshares a private copy of it and runs ``steps`` there; ``masks`` says
    some step masks a path, for which the child needs a /dev/null it cannot reach
    itself (hand it a detached bind of the caller's).
    """

    steps: tuple[MountStep, ...]
    pivot_root: str | None = None
    namespace: NamespaceFd | None = None
    masks: bool = False
    #: indices of bind steps whose source is a host path: in a prepared root the child
    #: runs inside the container's root, where that path names the image's file, so
    #: the spawning process opens them first (:meth:`open_host_sources`)
    host_sources: tuple[int, ...] = ()

    def open_host_sources(self) -> tuple[tuple[MountStep, ...], list[MountFd]]:
        """The steps with every host source opened here, on the host, as a detached
        mount the child clones and attaches (as a plain spawn would have bound it), and
        the mount fds, which the caller closes once the child has exec'd."""
        if not self.host_sources:
            return self.steps, []
        steps = list(self.steps)
        opened: list[MountFd] = []
        try:
            for i in self.host_sources:
                step = steps[i]
                assert step.source is not None
                flags = int(OpenTreeFlags.CLONE)
                if step.opts & MountOpt.RECURSIVE:
                    flags |= AtFlags.RECURSIVE
                opened.append(open_tree(step.source, flags))
                steps[i] = replace_fields(step, source=None, fd=opened[-1].fileno(),
                                               opts=step.opts | MountOpt.ATTACH_FD)
        except BaseException:
            for mnt in opened:
                mnt.close()
            raise
        return tuple(steps), opened


def _per_spawn(step: MountStep) -> bool:
    return step.kind == MountKind.FS and step.fstype in _PER_SPAWN_FS


def _host_path(step: MountStep) -> bool:
    """Whether a step reads a host path other than a bind source: an overlay's layers, a
    block device, a device node to bind when mknod is refused."""
    if step.kind == MountKind.FS:
        return step.fstype == "overlay" or (step.source or "").startswith("/")
    return step.kind == MountKind.CLASSIC


@lru_cache(maxsize=512)
def _in_root(make: Callable[[PathLike], MountStep], path: PathLike) -> MountStep:
    """``make(path).in_root()``, one step object a path: a root built per container
    masks the same paths every time (steps are immutable values)."""
    return make(path).in_root()


def _pin(path: PathLike, what: str) -> tuple[str, os.stat_result]:
    """The directory ``path`` names now (symlinks followed, as the caller named them):
    its real path and its stat.  The real path must lead to that very directory
    without any symlink."""
    try:
        fd = os.open(fsbytes(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise error_for(exc.errno or errno.EINVAL, "open", os.fsdecode(fsbytes(path)),
                        what=f"open {what} {os.fsdecode(fsbytes(path))}") from None
    try:
        st = os.fstat(fd)
        real = os.readlink(f"/proc/self/fd/{fd}")
        flags = os.O_PATH | os.O_DIRECTORY
        with openat2(AT_FDCWD, real, flags, resolve=ResolveFlags.NO_SYMLINKS
                     | ResolveFlags.NO_MAGICLINKS) as again:
            same = os.path.samestat(os.fstat(again.fileno()), st)
        if not same:
            raise error_for(errno.ESTALE, "open", real, what=f"open {what} {real}",
                            detail="its real path leads to another directory (moved "
                                   "while it was opened)")
    finally:
        os.close(fd)
    return real, st


def _make_template(shared: Sequence[MountStep]) -> NamespaceFd:
    """Run ``shared`` and pivot into the root they set, by its fd, in a new mount
    namespace (in a helper thread: a pivot_root moves the thread's root), and return
    an fd that keeps it."""
    made: list[NamespaceFd] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            with Namespaces(mnt=True):  # private propagation
                nsfd = open_namespace("/proc/thread-self/ns/mnt")
                try:
                    run(shared, enter_root=True)  # into the root's fd: no path again
                    pivot_root(".", ".")
                    umount2(".", UmountFlags.DETACH)
                    os.chdir("/")
                except BaseException:
                    nsfd.close()
                    raise
                made.append(nsfd)
        except BaseException as exc:
            failed.append(exc)

    import threading  # here: a container's spawn does not prepare a root

    thread = threading.Thread(target=work, name="nsbind-rootfs-prepare")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


class RootFS:
    """A root filesystem for :func:`nsbind.spawn` (``rootfs=``); see the module doc.

    ``RootFS(path)`` uses an existing directory (bound onto itself; with
    ``readonly=True`` its mount is made read-only after the other steps have
    made their mount points); :meth:`overlay` stacks image layers.  Each spawn
    assembles its own mounts in its own mount namespace (needs
    ``Namespaces(mnt=True)``); nothing is mounted in the caller's namespace.
    ``defaults`` adds the OCI default masked and read-only paths
    (:data:`~nsbind.mounts.MASKED_PATHS`, :data:`~nsbind.mounts.READONLY_PATHS`).

    The directory is opened here (symlinks in ``path`` followed now, never later:
    ``self.path`` is its real path) and its identity recorded; a spawn whose child
    finds another directory at that path refuses to start (see the module doc).
    """

    def __init__(self, path: PathLike, *, readonly: bool = False, defaults: bool = True) -> None:
        self._init(defaults)
        self._pin_dir(path, "the root directory")
        self._base: list[MountStep] = []
        self._root = MountStep(None, self.path, kind=MountKind.ROOT,
                               opts=MountOpt.SELF_BIND | MountOpt.RECURSIVE).pinned(self._stat)
        if readonly:  # last: mount points are made first (the root mount only)
            self._final.append(MountStep(None, "/", None, int(MountAttr.RDONLY),
                                         kind=MountKind.SETATTR, opts=MountOpt.IN_ROOT))

    def _pin_dir(self, path: PathLike, what: str) -> None:
        """Resolve the root's directory, once (see the class doc)."""
        self.path, self._stat = _pin(path, what)

    def _init(self, defaults: bool) -> None:
        self._own_mountpoint = False
        self._cached: tuple[MountStep, ...] | None = None  # steps(), until the next change
        self._plain: RootPlan | None = None  # plan_for() without a prepared root, likewise
        self._prepared = False
        self._template: RootPlan | None = None
        self._steps: list[MountStep] = []
        self._masked: list[str] = list(MASKED_PATHS) if defaults else []
        self._readonly: list[str] = list(READONLY_PATHS) if defaults else []
        self._final: list[MountStep] = []
        self._kept: list[OwnedFd] = []

    @classmethod
    def overlay(cls, lower: Sequence[PathLike], upper: PathLike | None = None,
                work: PathLike | None = None, *, volatile: bool = False,
                mountpoint: PathLike | None = None, defaults: bool = True) -> RootFS:
        """An overlayfs root of ``lower`` (top layer first) with an optional ``upper`` and
        ``work`` (read-only without them), made afresh by each spawn, on ``mountpoint``
        (default: an empty directory this RootFS makes and :meth:`close` removes).

        Two spawns cannot share one ``upper`` at once (the kernel refuses a
        second overlay on an upperdir in use: EBUSY)."""
        self = cls.__new__(cls)
        self._init(defaults)  # first: close() below needs a whole RootFS
        self._own_mountpoint = mountpoint is None
        import tempfile  # (an overlay's mount point only: not on every spawn's path)

        self.path = tempfile.mkdtemp(prefix="nsbind-rootfs-") if mountpoint is None \
            else os.fsdecode(fsbytes(mountpoint))
        try:
            self._pin_dir(self.path, "the overlay's mount point")
            step = overlay_step(self.path, lower, upper, work, volatile=volatile)
        except BaseException:
            self.close()  # removes the mount point made above; the step's error stands
            raise
        # the root is the overlay this step attaches, taken by its fd (LAST_MOUNT):
        # nothing looks the mount point up again, to use it or to check it
        self._base = [replace_fields(step, fs_magic=0).pinned(self._stat)]
        self._root = MountStep(None, self.path, kind=MountKind.ROOT,
                               opts=MountOpt.LAST_MOUNT)
        return self

    @classmethod
    def from_layers(cls, layers: Sequence[PathLike], upper: PathLike | None = None,
                    work: PathLike | None = None, *, volatile: bool = False,
                    mountpoint: PathLike | None = None, defaults: bool = True) -> RootFS:
        """A root of image layers given **lowest first**, as an image lists them and
        :meth:`nsbind.image.Store.unpack` returns them (overlayfs wants them top first:
        this reverses them).  Without ``upper``/``work`` one layer is bound read-only
        (the kernel wants two lower layers for an overlay without an upper)."""
        if not layers:
            raise InvalidValue("a root needs at least one layer")
        if upper is None and work is None and len(layers) == 1:
            return cls(layers[0], readonly=True, defaults=defaults)
        return cls.overlay(list(reversed(layers)), upper, work, volatile=volatile,
                           mountpoint=mountpoint, defaults=defaults)

    def add(self, *steps: MountStep | Sequence[MountStep]) -> RootFS:
        """Add mount steps (``mounts.proc()``, ``mounts.dev()``, ``mounts.bind(...)``),
        their targets inside the root, in order."""
        for item in steps:
            for step in ([item] if isinstance(item, MountStep) else item):
                self._steps.append(step.in_root())
        self._changed()
        return self

    def mask(self, *paths: str) -> RootFS:
        """Hide paths inside the root (after every added step); missing ones are skipped."""
        self._masked += paths
        self._changed()
        return self

    def keep(self, *fds: OwnedFd) -> RootFS:
        """Hold fds that added steps use by number until :meth:`close`: detached mounts
        they attach (``MountOpt.ATTACH_FD``: one spawn's, moved into its namespace), the
        user namespace of an idmapped bind."""
        self._kept += fds
        return self

    def readonly(self, *paths: str) -> RootFS:
        """Make paths inside the root read-only (after every added step)."""
        self._readonly += paths
        self._changed()
        return self

    def _changed(self) -> None:
        self._cached = self._plain = None
        self._drop_template()

    def _drop_template(self) -> None:
        template, self._template = self._template, None
        if template is not None and template.namespace is not None:
            template.namespace.close()

    def prepare(self) -> RootFS:
        """Make the shared part of this root once (see the module doc); later spawns
        that can use it start faster.  Needs root (CAP_SYS_ADMIN and CAP_SYS_CHROOT).

        The mounts made here are shared by every spawn (one overlay for all of
        them, so concurrent spawns of an overlay root write the same upper
        layer).  A spawn with a new user namespace, ``mounts=`` host steps, or a
        propagation other than private assembles the root itself as without
        prepare().  A change (:meth:`add`, :meth:`mask`, :meth:`readonly`)
        prepares again at the next spawn; :meth:`close` releases the namespace.
        """
        self._prepared = True
        self._prepared_template()
        return self

    def _prepared_template(self) -> RootPlan:
        if self._template is None:
            steps = self._all_steps()
            first = next(i for i, s in enumerate(steps) if s.kind == MountKind.ROOT) + 1
            while first < len(steps) and not _per_spawn(steps[first]):
                first += 1
            # what runs after the pivot runs inside the container's root: a host path
            # there would name the image's file.  Bind sources are opened by the
            # spawning process; a device node is made, never bound from the host; a
            # step that reads other host paths keeps the root unprepared.
            rest = tuple(replace_fields(s, source=None)
                         if s.kind == MountKind.DEVICE else s for s in steps[first:])
            if any(_host_path(s) for s in rest):
                self._template = self._plain_plan()  # (kept: no namespace to release)
                return self._template
            ns = _make_template(steps[:first])
            self._template = RootPlan(
                (_ROOT_HERE, *rest), namespace=ns,
                masks=any(s.kind == MountKind.MASK for s in rest),
                host_sources=tuple(i + 1 for i, s in enumerate(rest)
                                   if s.kind == MountKind.BIND and s.fd < 0 and s.source))
        return self._template

    def plan_for(self, namespaces: Namespaces, has_mounts: bool = False) -> RootPlan:
        """How a spawn with ``namespaces`` (and host ``mounts=`` steps if ``has_mounts``)
        enters this root: the prepared namespace when :meth:`prepare` was called and the
        spawn can use it (no new user namespace, no host steps, private propagation),
        else every step and a pivot_root.  The RootFS owns what the plan holds."""
        if (self._prepared and not has_mounts and Namespace.USER not in namespaces.types
                and namespaces.propagation in (None, Propagation.PRIVATE)):
            return self._prepared_template()
        return self._plain_plan()

    def _plain_plan(self) -> RootPlan:
        if self._plain is None:  # kept until the next change, as the steps are
            self._plain = RootPlan(self._all_steps(), pivot_root=self.path)
        return self._plain

    def steps(self) -> list[MountStep]:
        """Every step, in order: the root, ``ROOT``, the added steps, masks, read-only
        paths, and a read-only root last."""
        return list(self._all_steps())

    def _all_steps(self) -> tuple[MountStep, ...]:
        # built once per change: spawn reuses the same step objects (and so the
        # C array compiled from them) every time
        if self._cached is None:
            tail = [_in_root(mask, p) for p in self._masked]
            tail += [_in_root(readonly, p) for p in self._readonly]
            self._cached = (*self._base, self._root, *self._steps, *tail, *self._final)
        return self._cached

    def close(self) -> None:
        """Release a prepared root and remove the mount point this RootFS made (it is
        only mounted in children and prepared namespaces)."""
        self._prepared = False
        self._drop_template()
        kept, self._kept = self._kept, []
        for mnt in kept:
            mnt.close()
        if self._own_mountpoint:
            self._own_mountpoint = False
            import shutil  # here: it imports bz2 and lzma

            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> RootFS:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "overlay" if self._base else "bind"
        return f"<RootFS {kind} at {self.path} with {len(self._steps)} steps>"
