"""An OCI spec's ``mounts``, ``linux.devices`` and the implicit /dev as nsbind mount steps.

Each ``mounts[i]`` becomes one step (a ``cgroup`` mount a few) of :mod:`nsbind.mounts`,
its ``options`` split into mount attributes (``ro``, ``nosuid``, ``noatime``, ...),
propagation (``private``/``rprivate`` only: what such a bind is anyway; the others are
refused for now), the bind/rbind choice, and filesystem data (``size=``, ``mode=``,
``gid=`` ...) that the filesystem type is known to take.  Anything else is a SpecError naming
``mounts[i].options[j]``: an option is never dropped.

As runc does: a filesystem's attributes are exactly those its options name (the
default OCI config mounts /proc without nosuid, and so does runc), sysfs is read-only
unless ``rw`` is given, a tmpfs on /dev gets the default devices (null, zero, full,
random, urandom, tty: mknod, or the host's nodes bound where mknod is refused) and the
symlinks fd, stdin, stdout, stderr and ptmx after the last configured mount, and a
``cgroup`` mount is a tmpfs with the container's own cgroup directory of every v1
hierarchy bound read-only (or read-write with ``rw``) below it; on a host with only
cgroup v2 it is a cgroup2 mount.
"""

from __future__ import annotations

import dataclasses
import os

from nsbind import mounts
from nsbind.cgroups import cgroup_layout
from nsbind.flags import MountAttr
from nsbind.mountstep import MountStep
from nsbind.oci.schema import SpecError
from nsbind.oci.spec import Device, Mount

__all__ = ["CgroupMount", "MountItem", "convert_devices", "convert_mounts", "dev_defaults"]

#: option -> (attributes set, attributes cleared)
_ATTRS: dict[str, tuple[int, int]] = {
    "ro": (MountAttr.RDONLY, 0), "rw": (0, MountAttr.RDONLY),
    "nosuid": (MountAttr.NOSUID, 0), "suid": (0, MountAttr.NOSUID),
    "nodev": (MountAttr.NODEV, 0), "dev": (0, MountAttr.NODEV),
    "noexec": (MountAttr.NOEXEC, 0), "exec": (0, MountAttr.NOEXEC),
    "noatime": (MountAttr.NOATIME, MountAttr.STRICTATIME),
    "strictatime": (MountAttr.STRICTATIME, MountAttr.NOATIME),
    "relatime": (0, MountAttr.NOATIME | MountAttr.STRICTATIME),
    "atime": (0, MountAttr.NOATIME), "norelatime": (0, 0),
    "nostrictatime": (0, MountAttr.STRICTATIME),
    "nodiratime": (MountAttr.NODIRATIME, 0), "diratime": (0, MountAttr.NODIRATIME),
    "nosymfollow": (MountAttr.NOSYMFOLLOW, 0), "symfollow": (0, MountAttr.NOSYMFOLLOW),
    "defaults": (0, 0),
}
#: propagation options: private ones are what a bind mount made with open_tree (a new,
#: unshared clone) is anyway; the others need a propagation step inside the root, which
#: nsbind.mounts lacks (mounts.propagation is a host-path step): refused for now
_PRIVATE = frozenset({"private", "rprivate"})
_SHARING = frozenset({"slave", "rslave", "shared", "rshared", "unbindable", "runbindable"})
#: filesystem data options each type takes (name before any "=")
_DATA = {
    "proc": frozenset({"hidepid", "subset", "gid"}),
    "sysfs": frozenset(),
    "tmpfs": frozenset({"size", "mode", "nr_inodes", "nr_blocks", "uid", "gid", "huge",
                        "inode64", "inode32", "mpol"}),
    "devpts": frozenset({"newinstance", "ptmxmode", "mode", "gid", "uid", "max"}),
    "mqueue": frozenset(),
    "cgroup": frozenset(),
    "cgroup2": frozenset({"nsdelegate", "memory_recursiveprot", "favordynmods"}),
    "bind": frozenset(),
}

#: the devices runc and crun make in a tmpfs /dev
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
DEFAULT_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                 ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                 ("ptmx", "pts/ptmx"))


@dataclasses.dataclass(frozen=True)
class CgroupMount:
    """A ``cgroup`` mount, made once the container's cgroup path is known:
    :meth:`steps` binds that cgroup's directory of every v1 hierarchy."""

    target: str
    attr: int
    readonly: bool

    def steps(self, cgroup_path: str) -> list[MountStep]:
        """The steps for a container in ``cgroup_path`` (a path inside each hierarchy)."""
        layout = cgroup_layout()
        v1 = [h for h in layout.hierarchies if h.version == 1 and h.controllers]
        if not v1:
            return [dataclasses.replace(mounts.cgroup2(self.target), flags=self.attr)]
        steps = [dataclasses.replace(mounts.tmpfs(self.target, mode=0o755),
                                     flags=self.attr & ~MountAttr.RDONLY)]
        for h in v1:
            where = f"{self.target.rstrip('/')}/{os.path.basename(h.mountpoint)}"
            step = mounts.bind(h.path_of(cgroup_path), where, recursive=False)
            steps.append(dataclasses.replace(step, flags=self.attr))
        return steps


MountItem = MountStep | CgroupMount


def _options(m: Mount, i: int, fstype: str) -> tuple[int, list[str], bool]:
    """(attributes, data options, rbind) of ``mounts[i]``."""
    attr = 0
    data: list[str] = []
    rbind = False
    for j, opt in enumerate(m.options or ()):
        where = f"mounts[{i}].options[{j}]"
        name = opt.partition("=")[0]
        if opt in _ATTRS:
            on, off = _ATTRS[opt]
            attr = (attr & ~off) | on
        elif opt in _PRIVATE:
            pass
        elif opt in _SHARING:
            raise SpecError(f"{where} {opt!r}: propagation other than private inside the "
                            "root is not supported yet")
        elif opt in ("bind", "rbind"):
            rbind = rbind or opt == "rbind"
        elif name in _DATA.get(fstype, frozenset()):
            if any(c in opt for c in ",\0\n"):
                raise SpecError(f"{where} {opt[:80]!r} contains a comma, NUL or newline")
            data.append(opt)
        else:
            raise SpecError(f"{where} {opt[:80]!r} is not an option nsbind supports for a "
                            f"{fstype} mount")
    return attr, data, rbind


def _fs_step(m: Mount, i: int, fstype: str, attr: int, data: list[str]) -> MountItem:
    dest = m.destination
    if fstype == "proc":
        step = mounts.proc(dest)
    elif fstype == "sysfs":
        if not attr & MountAttr.RDONLY and "rw" not in (m.options or ()):
            attr |= MountAttr.RDONLY
        step = mounts.sysfs(dest)
    elif fstype == "tmpfs":
        step = mounts.tmpfs(dest)
    elif fstype == "devpts":
        step = mounts.devpts(dest)
    elif fstype == "mqueue":
        step = mounts.mqueue(dest)
    elif fstype == "cgroup2":
        step = mounts.cgroup2(dest)
    elif fstype == "cgroup":
        return CgroupMount(dest, attr, bool(attr & MountAttr.RDONLY))
    else:
        raise SpecError(f"mounts[{i}].type {fstype[:80]!r}: not supported yet (proc, sysfs, "
                        "tmpfs, devpts, mqueue, cgroup, cgroup2, bind)")
    return dataclasses.replace(step, flags=attr, options=tuple(data))


def _bind_source(m: Mount, i: int, bundle: str | None) -> str:
    if not m.source:
        raise SpecError(f"mounts[{i}].source: a bind mount needs a source")
    if os.path.isabs(m.source):
        return m.source
    if bundle is None:
        raise SpecError(f"mounts[{i}].source {m.source[:80]!r} is relative and no bundle "
                        "directory is known")
    return os.path.join(bundle, m.source)


def convert_mounts(spec_mounts: tuple[Mount, ...], bundle: str | None) -> list[MountItem]:
    """``mounts`` as steps, in order (see the module doc)."""
    items: list[MountItem] = []
    dev_tmpfs = False
    for i, m in enumerate(spec_mounts):
        if m.uid_mappings or m.gid_mappings:
            raise SpecError(f"mounts[{i}].uidMappings: idmapped mounts are not supported yet")
        binding = m.type == "bind" or any(o in ("bind", "rbind") for o in m.options or ())
        fstype = "bind" if binding else (m.type or "")
        if not fstype:
            raise SpecError(f"mounts[{i}].type: missing (and no bind or rbind option)")
        attr, data, rbind = _options(m, i, fstype)
        if binding:
            step = mounts.bind(_bind_source(m, i, bundle), m.destination, recursive=rbind)
            items.append(dataclasses.replace(step, flags=attr))
        else:
            items.append(_fs_step(m, i, fstype, attr, data))
            dev_tmpfs = dev_tmpfs or (fstype == "tmpfs"
                                      and os.path.normpath(m.destination) == "/dev")
    if dev_tmpfs:
        items += dev_defaults()
    return items


def dev_defaults(target: str = "/dev") -> list[MountStep]:
    """The devices and symlinks runc makes in a tmpfs /dev (see the module doc)."""
    steps = [mounts.device(f"{target}/{name}", major, minor, host=f"/dev/{name}")
             for name, major, minor in DEFAULT_DEVICES]
    steps += [mounts.symlink(f"{target}/{name}", to) for name, to in DEFAULT_LINKS]
    return steps


def convert_devices(devices: tuple[Device, ...]) -> list[MountStep]:
    """``linux.devices`` as device steps (character, unbuffered or block)."""
    steps = []
    for i, d in enumerate(devices):
        where = f"linux.devices[{i}]"
        if d.type not in ("c", "u", "b"):
            raise SpecError(f"{where}.type {d.type!r}: only c, u and b devices are supported "
                            "yet (no fifos)")
        if d.major is None or d.minor is None:
            raise SpecError(f"{where}: a device needs major and minor")
        if d.uid or d.gid:
            raise SpecError(f"{where}.uid: device owners other than 0 are not supported yet")
        mode = 0o666 if d.file_mode is None else d.file_mode & 0o7777
        steps.append(mounts.device(d.path, d.major, d.minor, mode=mode, char=d.type != "b"))
    return steps
