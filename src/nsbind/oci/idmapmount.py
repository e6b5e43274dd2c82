"""Idmapped bind mounts of an OCI config (``mounts[].uidMappings`` / ``gidMappings``,
options ``idmap`` or ``ridmap``), as runc makes them.

The kernel idmaps a mount through a user namespace (mount_setattr MOUNT_ATTR_IDMAP with
its fd): :func:`mapping_userns` makes one with the mount's mappings, held by a child
that never runs anything (nsbind.spawn parks it on a start gate after its id maps are
written; it is killed once its namespace is open), and :class:`IdmapBind` is the bind
made with that fd, which the RootFS keeps open until the container is made.
"""

from __future__ import annotations

import errno
import os

from nsbind._sys.ns import NamespaceFd, open_namespace
from nsbind.frozen import frozen, replace_fields
from nsbind.idmap import IdMap
from nsbind.mounts import bind
from nsbind.mountstep import MountStep
from nsbind.namespaces import Namespaces
from nsbind.process import DEVNULL, spawn

__all__ = ["IdmapBind", "mapping_userns"]


def mapping_userns(uid_map: list[IdMap], gid_map: list[IdMap]) -> NamespaceFd:
    """An fd of a new user namespace with these maps (its holder already gone)."""
    import tempfile  # (only idmapped mounts need it: not on every create's path)

    with tempfile.TemporaryDirectory(prefix="nsbind-idmap-") as tmp:
        fifo = os.path.join(tmp, "gate")
        os.mkfifo(fifo)
        os.chmod(fifo, 0o666)  # the holder reopens it as its mapped root (private dir)
        gate = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        try:
            holder = spawn(["/bin/sh"], stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL,
                           namespaces=Namespaces(user=True, uid_map=uid_map,
                                                 gid_map=gid_map),
                           start_gate=gate)
        finally:
            os.close(gate)
    with holder:
        try:
            return open_namespace(holder.pid, "user")
        finally:
            holder.kill()
            holder.wait()


@frozen
class IdmapBind:
    """A bind of ``source`` on ``target`` idmapped by ``uid_map``/``gid_map``
    (container id, host id, count: as a user namespace's maps), with mount attributes
    ``attr``; :meth:`make` gives its step and the user namespace fd to keep."""

    source: str
    target: str
    recursive: bool
    attr: int
    uid_map: tuple[IdMap, ...]
    gid_map: tuple[IdMap, ...]

    def make(self) -> tuple[MountStep, NamespaceFd]:
        """The step and the user namespace fd it uses (the caller keeps it open until
        the spawn is made)."""
        userns = mapping_userns(list(self.uid_map), list(self.gid_map))
        try:
            _check_idmappable(self.source, userns)
            step = bind(self.source, self.target, recursive=self.recursive,
                        idmap=userns.fileno())
        except BaseException:
            userns.close()
            raise
        return replace_fields(step, flags=step.flags | self.attr), userns


def _check_idmappable(source: str, userns: NamespaceFd) -> None:
    """Refuse, naming why, a source whose filesystem this kernel cannot idmap: probed on
    a detached clone of its mount with the mapping namespace (the child would otherwise
    fail with a bare EINVAL).  tmpfs is idmappable from Linux 6.3, ext4, xfs and btrfs
    from 5.12; network and FUSE filesystems mostly not."""
    from nsbind import MountAttr, NsbindError, OpenTreeFlags, open_tree
    from nsbind.errors import Unsupported

    try:
        with open_tree(source, OpenTreeFlags.CLONE) as tree:
            tree.setattr(MountAttr.IDMAP, userns=userns)
    except NsbindError as exc:
        if exc.errno != errno.EINVAL:
            raise
        from nsbind.mounts import filesystem_of

        kind = filesystem_of(source)
        why = (" (idmapped tmpfs mounts: Linux 6.3)" if kind == "tmpfs" else "")
        raise Unsupported(errno.EINVAL, "mount_setattr",
                          what=f"idmapped mount of {source}: its filesystem ({kind}) cannot "
                          f"be idmapped on this kernel{why}") from None
