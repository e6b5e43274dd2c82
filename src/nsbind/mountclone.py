"""A fresh detached copy of a mount tree, on every kernel.

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
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import tempfile
import threading
from collections.abc import Sequence

from nsbind import features
from nsbind._native import lib
from nsbind._sys.fd import FdLike, fdnum
from nsbind._sys.mount import MountFd, mount, move_mount, open_tree
from nsbind._sys.ns import unshare
from nsbind.flags import AtFlags, CloneFlags, MountFlags, MoveMountFlags, OpenTreeFlags
from nsbind.mountstep import MountKind, MountOpt, MountStep

__all__ = ["clone_tree", "detached_copies"]


def clone_tree(tree: FdLike, *, recursive: bool = True, label: str = "mount") -> MountFd:
    """A new detached copy of the mount tree ``tree`` (an fd: attached or detached; its
    submounts too with ``recursive``).  Where the kernel cannot clone a detached tree
    (:func:`nsbind.features.clone_detached_mounts`), ``tree``'s fd is replaced in place
    by another detached copy (see the module doc).  Needs CAP_SYS_ADMIN."""
    flags = int(OpenTreeFlags.CLONE | AtFlags.EMPTY_PATH)
    if recursive:
        flags |= int(AtFlags.RECURSIVE)
    if features.clone_detached_mounts():
        clone = open_tree("", flags, dirfd=tree)
        clone.label = label
        return clone
    try:  # an attached tree clones on every kernel
        clone = open_tree("", flags, dirfd=tree)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    else:
        clone.label = label
        return clone
    return _through_a_namespace(fdnum(tree), recursive, label)


def _through_a_namespace(fd: int, recursive: bool, label: str) -> MountFd:
    result: list[MountFd] = []
    failure: list[BaseException] = []
    place = tempfile.mkdtemp(prefix="nsbind-clone-")

    def work() -> None:
        try:
            unshare(int(CloneFlags.NEWNS))  # this thread only (it unshares CLONE_FS too)
            _private_root()
            move_mount(fd, "", lib.AT_FDCWD, place, int(MoveMountFlags.F_EMPTY_PATH),
                       what=f"attach {label} on {place} (to copy it)")
            flags = int(OpenTreeFlags.CLONE) | (int(AtFlags.RECURSIVE) if recursive else 0)
            result.append(open_tree(place, flags))
            result.append(open_tree(place, flags))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    try:
        thread = threading.Thread(target=work, name="nsbind-clone-tree")
        thread.start()
        thread.join()
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(place)
    if failure:
        for mnt in result:
            mnt.close()
        raise failure[0]
    copy, spare = result
    os.dup2(spare.fileno(), fd, inheritable=False)  # the original's fd: a detached copy
    spare.close()
    copy.label = label
    return copy


def _private_root() -> None:
    """Make every mount of this thread's (new) namespace private: an attach here must
    not propagate to a peer in the host's namespace."""
    mount(None, "/", None, int(MountFlags.REC | MountFlags.PRIVATE))


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
                step = dataclasses.replace(step, fd=copies[-1].fileno(),
                                           opts=step.opts | MountOpt.ATTACH_FD)
            out.append(step)
    except BaseException:
        for mnt in copies:
            mnt.close()
        raise
    return tuple(out), copies
