"""Detached mount trees where the kernel offers no direct way: a copy of a detached tree
(:func:`clone_tree`), and a mount whose options do not fit the new mount API
(:func:`classic_detached`).

A spawn child binds a detached :class:`~nsbind.MountFd` (an overlay from
:func:`nsbind.mounts.overlay`, an ``open_tree`` clone) by cloning it, so the same fd
serves any number of children.  Older kernels (6.1 among them) refuse to clone a
detached tree: open_tree(OPEN_TREE_CLONE) answers EINVAL for a mount that is in no
mount namespace.  :func:`clone_tree` then does what systemd does there: a helper
thread enters a throwaway mount namespace of its own (everything in it private, so
nothing propagates to the host's), attaches the tree on a temporary directory, clones
it twice and leaves; one copy is returned, the other takes the place of the original in
its fd (the same fd number, still detached), and the namespace dies with the thread,
taking the attached original with it.  Nothing is ever mounted in the caller's
namespace; the temporary directory is removed.

Before Linux 6.8 an overlay names its layers in one ``lowerdir=`` string, which
fsconfig(2) takes up to 255 bytes; mount(2) takes a page.
:func:`classic_detached` makes such a mount with mount(2) the same way: in a helper
thread's throwaway namespace, from a working directory of the thread's own (relative
layer paths), then cloned out as a detached tree.
"""

from __future__ import annotations

import errno
import os

from nsbind import features
from nsbind._native import lib
from nsbind._sys.fd import FdLike, fdnum
from nsbind._sys.mount import MountFd, mount, move_mount, open_tree
from nsbind._sys.ns import unshare
from nsbind.ctxlite import suppress
from nsbind.errors import NsbindError, raise_errno
from nsbind.flags import AtFlags, CloneFlags, MountFlags, MoveMountFlags, OpenTreeFlags
from nsbind.frozen import replace_fields
from nsbind.mountstep import MountKind, MountOpt, MountStep

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["classic_detached", "clone_tree", "detached_copies"]


def clone_tree(tree: FdLike, *, recursive: bool = True, label: str = "mount") -> MountFd:
    """A new detached copy of the mount tree ``tree`` (an fd: attached or detached; its
    submounts too with ``recursive``).  Where the kernel cannot clone a detached tree
    (:func:`nsbind.features.clone_detached_mounts`), ``tree``'s fd is replaced in place
    by another detached copy (see the module doc).  Needs CAP_SYS_ADMIN."""
    flags = int(OpenTreeFlags.CLONE | AtFlags.EMPTY_PATH)
    if recursive:
        flags |= int(AtFlags.RECURSIVE)
    try:  # an attached tree clones on every kernel, a detached one on recent ones
        clone = open_tree("", flags, dirfd=tree)
    except OSError as exc:
        if exc.errno != errno.EINVAL or features.clone_detached_mounts():
            raise
        return _through_a_namespace(fdnum(tree), recursive, label)
    clone.label = label
    return clone


def _in_a_throwaway_namespace(work: Callable[[str], list[MountFd]]) -> list[MountFd]:
    """``work(place)``'s mount fds, run in a helper thread that entered a mount namespace
    of its own (every mount private) with an empty directory ``place`` to mount on."""
    result: list[MountFd] = []
    failure: list[BaseException] = []
    import tempfile  # (old kernels only: not on every spawn's import path)

    place = tempfile.mkdtemp(prefix="nsbind-clone-")

    def run() -> None:
        try:
            unshare(int(CloneFlags.NEWNS))  # this thread only (it unshares CLONE_FS too)
            mount(None, "/", None, int(MountFlags.REC | MountFlags.PRIVATE))
            result.extend(work(place))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    try:
        import threading  # here: only a clone of layers needs the helper thread

        thread = threading.Thread(target=run, name="nsbind-mount-helper")
        thread.start()
        thread.join()
    finally:
        with suppress(OSError):
            os.rmdir(place)
    if failure:
        for mnt in result:
            mnt.close()
        raise failure[0]
    return result


def _through_a_namespace(fd: int, recursive: bool, label: str) -> MountFd:
    def work(place: str) -> list[MountFd]:
        move_mount(fd, "", lib.AT_FDCWD, place, int(MoveMountFlags.F_EMPTY_PATH),
                   what=f"attach {label} on {place} (to copy it)")
        flags = int(OpenTreeFlags.CLONE) | (int(AtFlags.RECURSIVE) if recursive else 0)
        return [open_tree(place, flags), open_tree(place, flags)]

    copy, spare = _in_a_throwaway_namespace(work)
    os.dup2(spare.fileno(), fd, inheritable=False)  # the original's fd: a detached copy
    spare.close()
    copy.label = label
    return copy


def classic_detached(fstype: str, data: str, *, flags: int = 0, cwd: str | None = None,
                     label: str | None = None) -> MountFd:
    """A detached mount of ``fstype`` made by mount(2) with the option string ``data``
    (up to a page), relative paths in it resolved from ``cwd``; ``flags`` are MS_*
    (``MS_RDONLY``).  For what fsconfig(2) cannot take (see the module doc).  Errors
    name ``label`` (default: the fstype) and the working directory."""
    what = f"create {label or fstype}" + (f" (paths relative to {cwd})" if cwd else "")

    def work(place: str) -> list[MountFd]:
        if cwd is not None:
            os.chdir(cwd)  # this thread's own working directory
        try:
            mount(fstype, place, fstype, flags, data)
        except NsbindError as exc:
            raise_errno(exc.errno or errno.EINVAL, "mount", fstype, what=what)
        return [open_tree(place, int(OpenTreeFlags.CLONE))]

    (mnt,) = _in_a_throwaway_namespace(work)
    mnt.label = label or fstype
    return mnt



def detached_copies(steps: Sequence[MountStep]) -> tuple[tuple[MountStep, ...], list[MountFd]]:
    """``steps`` with each bind of a mount fd made a bind of a fresh copy of that tree
    (:func:`clone_tree`), to be attached as it is (``MountOpt.ATTACH_FD``), and the
    copies, which the caller closes once the child has exec'd: for kernels on which
    the child could not clone a detached tree itself."""
    out: list[MountStep] = []
    copies: list[MountFd] = []
    try:
        for step in steps:
            if (step.kind == MountKind.BIND and step.fd >= 0
                    and not step.opts & MountOpt.ATTACH_FD):
                copies.append(clone_tree(step.fd, label=step.describe(),
                                         recursive=bool(step.opts & MountOpt.RECURSIVE)))
                step = replace_fields(step, fd=copies[-1].fileno(),
                                           opts=step.opts | MountOpt.ATTACH_FD)
            out.append(step)
    except BaseException:
        for mnt in copies:
            mnt.close()
        raise
    return tuple(out), copies
