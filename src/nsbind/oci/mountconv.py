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
symlinks fd, stdin, stdout, stderr and ptmx after the last configured mount.  A bind
with ``uidMappings``/``gidMappings`` (``idmap``, ``ridmap``) is idmapped through a user
namespace with those maps (:mod:`nsbind.oci.idmapmount`).  A ``cgroup`` mount is a tmpfs
with the container's own cgroup directory of every v1 hierarchy, named ones
(``name=systemd``, :mod:`nsbind.oci.namedcg`) included, bound read-only (or read-write
with ``rw``) below it; on a host with only cgroup v2 it is a cgroup2 mount.  A
filesystem mount with ``ro`` is read-only in its superblock too (as runc's mount(2)
with MS_RDONLY), except a tmpfs, which runc fills read-write and then makes a read-only
mount of (so does nsbind).  ``tmpcopyup`` (tmpfs only): see :class:`CopyUpTmpfs`.

Where nsbind differs from runc 1.1, on purpose or for now:

- masked directories (:meth:`nsbind.RootFS.mask`, the C MASK step) are clones of one
  empty read-only tmpfs where runc mounts one tmpfs each (only their device numbers
  tell them apart); a masked file binds the container's /dev/null only when it is the
  null device itself, else the caller's (CVE-2025-31133);
- a tmpcopyup tmpfs copies what the root directory holds at its destination, not
  mounts made there by earlier entries, and a FIFO or device node in it is made again
  (runc 1.1 fails on them).
"""

from __future__ import annotations

import errno
import os
import stat

from nsbind import mounts
from nsbind._sys.mount import AT_FDCWD, MountFd, fsopen, open_regular, openat2
from nsbind.cgroups import cgroup_layout
from nsbind.errors import NsbindError, error_for
from nsbind.flags import MountAttr, ResolveFlags
from nsbind.frozen import field, frozen, replace_fields
from nsbind.mountstep import MountOpt, MountStep
from nsbind.oci.idmapmount import IdmapBind
from nsbind.oci.schema import SpecError
from nsbind.oci.spec import Device, Mount

__all__ = ["COPYUP_MAX_BYTES", "COPYUP_MAX_DEPTH", "COPYUP_MAX_ENTRIES", "MOUNT_OPTIONS",
           "CgroupMount", "CopyUpTmpfs", "MountItem", "convert_devices", "convert_mounts",
           "copy_up", "dev_defaults"]

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
#: every option word a mount may carry (filesystem data options like size= aside):
#: what ``nsbind-oci features`` reports
MOUNT_OPTIONS = frozenset({*_ATTRS, *_PRIVATE, "bind", "rbind", "tmpcopyup", "idmap",
                           "ridmap"})
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


@frozen
class CgroupMount:
    """A ``cgroup`` mount, made once the container's cgroup path is known:
    :meth:`steps` binds that cgroup's directory of every v1 hierarchy."""

    target: str
    attr: int
    readonly: bool
    #: steps made so far, by cgroup path (one converted spec may start many containers)
    _made: dict[str, tuple[MountStep, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def steps(self, cgroup_path: str) -> list[MountStep]:
        """The steps for a container in ``cgroup_path`` (a path inside each hierarchy),
        for the cgroup layout of the first call with that path."""
        made = self._made.get(cgroup_path)
        if made is None:
            if len(self._made) >= 64:
                self._made.clear()
            made = self._made[cgroup_path] = tuple(self._steps(cgroup_path))
        return list(made)

    def _steps(self, cgroup_path: str) -> list[MountStep]:
        layout = cgroup_layout()
        v1 = [h for h in layout.hierarchies if h.version == 1 and (h.controllers or h.name)]
        if not v1:
            return [replace_fields(mounts.cgroup2(self.target), flags=self.attr)]
        steps = [replace_fields(mounts.tmpfs(self.target, mode=0o755),
                                     flags=self.attr & ~MountAttr.RDONLY)]
        top = self.target.rstrip("/")
        for h in v1:
            base = os.path.basename(h.mountpoint)
            step = mounts.bind(h.path_of(cgroup_path), f"{top}/{base}", recursive=False)
            steps.append(replace_fields(step, flags=self.attr))
            if "," in base:  # co-mounted controllers (cpu,cpuacct): a link a name, as runc's
                steps += [mounts.symlink(f"{top}/{name}", base) for name in base.split(",")
                          if name]
        return steps


@frozen
class CopyUpTmpfs:
    """A ``tmpcopyup`` tmpfs: :meth:`make` mounts it here, detached, with a copy of what
    the root holds at ``target``, and returns the step that attaches it (see
    :func:`copy_up`)."""

    target: str
    attr: int
    options: tuple[str, ...]

    def make(self, root: str) -> tuple[MountStep, MountFd]:
        """The attaching step and the detached mount (the caller closes it once the
        child has attached it: one spawn)."""
        ctx = fsopen("tmpfs")
        try:
            ctx.set_string("source", "tmpfs")
            ctx.set_options(self.options)
            ctx.create()
            mnt = ctx.mount(self.attr & ~MountAttr.RDONLY)  # read-only once filled
        finally:
            ctx.close()
        try:
            copy_up(root, self.target, mnt)
        except BaseException:
            mnt.close()
            raise
        step = mounts.bind(mnt, self.target, recursive=False,
                           readonly=bool(self.attr & MountAttr.RDONLY))
        return replace_fields(step, opts=step.opts | MountOpt.ATTACH_FD), mnt


MountItem = MountStep | CgroupMount | CopyUpTmpfs | IdmapBind

#: what a tmpcopyup copies at most: bytes of file content, and entries
COPYUP_MAX_BYTES = 1 << 30
COPYUP_MAX_ENTRIES = 100_000
COPYUP_MAX_DEPTH = 128
_IN = ResolveFlags.BENEATH | ResolveFlags.NO_SYMLINKS | ResolveFlags.NO_MAGICLINKS
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def copy_up(root: str, target: str, mnt: MountFd) -> None:
    """Copy what the root directory ``root`` holds at ``target`` into the detached mount
    ``mnt``, as runc's tmpcopyup does: directories, regular files, symlinks (as links,
    never followed), FIFOs, sockets and device nodes (made again, never opened) with
    their modes, owners and times; the mount's root gets the directory's.  ``target``
    is resolved inside the root (RESOLVE_IN_ROOT) and must be a directory there, else
    nothing is copied (a missing one is made by the step); every entry below it is
    opened beneath its parent's fd, without following symlinks.  At most
    COPYUP_MAX_BYTES, COPYUP_MAX_ENTRIES and COPYUP_MAX_DEPTH levels, else an error
    naming the target."""
    with openat2(AT_FDCWD, root, os.O_PATH | os.O_DIRECTORY) as top:
        try:
            src = openat2(top, target, _DIR, resolve=ResolveFlags.IN_ROOT
                          | ResolveFlags.NO_MAGICLINKS)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return  # missing (made by the step), or not a directory (refused there)
            raise
    with src, openat2(mnt, ".", _DIR) as dst:
        _Copier(target).tree(src.fileno(), dst.fileno())


class _Copier:
    def __init__(self, target: str) -> None:
        self.target = target
        self.bytes = self.entries = 0
        self.at = ""  # the entry being copied, relative to the target

    def _fail(self, err: int, rel: str, detail: str | None = None) -> NsbindError:
        where = f"{self.target}/{rel}".rstrip("/.") or "/"
        return error_for(err, "copy", where, detail=detail,
                         what=f"tmpcopyup: copy {where} into the tmpfs on {self.target}")

    def tree(self, src: int, dst: int) -> None:
        """Copy the directory ``src`` into ``dst``, depth first, one open pair per level."""
        stack = [(src, dst, "", sorted(os.listdir(src)), os.fstat(src))]
        try:
            while stack:
                sfd, dfd, rel, names, st = stack[-1]
                if not names:
                    stack.pop()
                    self.at = rel
                    _meta(st, dfd, None)  # last: entries made in it changed its times
                    if sfd != src:
                        os.close(sfd)
                        os.close(dfd)
                    continue
                name = names.pop()
                path = self.at = f"{rel}/{name}" if rel else name
                child = self._entry(sfd, dfd, name, path)
                if child is not None:
                    if len(stack) >= COPYUP_MAX_DEPTH:
                        os.close(child[0])
                        os.close(child[1])
                        raise self._fail(errno.ELOOP, path, f"deeper than "
                                         f"{COPYUP_MAX_DEPTH} levels")
                    stack.append((*child, path, sorted(os.listdir(child[0])),
                                  os.fstat(child[0])))
        except NsbindError:
            raise
        except OSError as exc:
            raise self._fail(exc.errno or errno.EIO, self.at, exc.strerror) from None
        finally:
            for sfd, dfd, *_ in stack:
                if sfd != src:
                    os.close(sfd)
                    os.close(dfd)

    def _entry(self, sfd: int, dfd: int, name: str, path: str) -> tuple[int, int] | None:
        """Copy one entry; for a directory, its (source, copy) fds to descend into."""
        self.entries += 1
        if self.entries > COPYUP_MAX_ENTRIES:
            raise self._fail(errno.EFBIG, path, f"more than {COPYUP_MAX_ENTRIES} entries")
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dfd)
            sub = openat2(sfd, name, _DIR, resolve=_IN).detach()
            if not os.path.samestat(os.fstat(sub), st):
                os.close(sub)
                raise self._fail(errno.ESTALE, path, "changed while it was copied")
            return sub, os.open(name, _DIR | os.O_CLOEXEC, dir_fd=dfd)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd,
                     follow_symlinks=False)
        elif stat.S_ISREG(st.st_mode):
            self._file(sfd, dfd, name, path, st)
        else:  # FIFO, socket, device: made again, never opened
            os.mknod(name, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev, dir_fd=dfd)
            with openat2(dfd, name, os.O_PATH | os.O_NOFOLLOW) as made:
                _meta(st, None, f"/proc/self/fd/{made.fileno()}")
        return None

    def _file(self, sfd: int, dfd: int, name: str, path: str, st: os.stat_result) -> None:
        with open_regular(sfd, name, _IN, what=f"{self.target}/{path}") as src:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                while chunk := os.read(src.fileno(), 1 << 20):
                    self.bytes += len(chunk)
                    if self.bytes > COPYUP_MAX_BYTES:
                        raise self._fail(errno.EFBIG, path, f"more than "
                                         f"{COPYUP_MAX_BYTES} bytes in all")
                    os.write(out, chunk)  # a tmpfs writes whole chunks
                _meta(st, out, None)
            finally:
                os.close(out)


def _meta(st: os.stat_result, fd: int | None, path: str | None) -> None:
    """Owner, mode (after the owner: chown clears setuid) and times of ``st`` on ``fd``
    or the magic link ``path`` (a FIFO or device node, which is never opened)."""
    where: int | str = fd if fd is not None else path  # type: ignore[assignment]
    os.chown(where, st.st_uid, st.st_gid)
    os.chmod(where, stat.S_IMODE(st.st_mode))
    os.utime(where, ns=(st.st_atime_ns, st.st_mtime_ns))


def _options(m: Mount, i: int, fstype: str) -> tuple[int, list[str], bool, bool]:
    """(attributes, data options, rbind, tmpcopyup) of ``mounts[i]``."""
    attr = 0
    data: list[str] = []
    rbind = copyup = False
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
        elif opt in ("idmap", "ridmap") and (m.uid_mappings or m.gid_mappings):
            pass  # the mappings make it idmapped (ridmap: recursively)
        elif opt == "tmpcopyup" and fstype == "tmpfs":
            copyup = True
        elif name in _DATA.get(fstype, frozenset()):
            if any(c in opt for c in ",\0\n"):
                raise SpecError(f"{where} {opt[:80]!r} contains a comma, NUL or newline")
            data.append(opt)
        else:
            raise SpecError(f"{where} {opt[:80]!r} is not an option nsbind supports for a "
                            f"{fstype} mount")
    return attr, data, rbind, copyup


def _fs_step(m: Mount, i: int, fstype: str, attr: int, data: list[str],
             copyup: bool = False) -> MountItem:
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
    if copyup:
        return CopyUpTmpfs(dest, attr, tuple(data))
    if attr & MountAttr.RDONLY and fstype != "tmpfs":
        # the superblock read-only too, as runc's mount(2) with MS_RDONLY; runc mounts a
        # tmpfs read-write (to fill it) and makes only the mount read-only after
        data = [*data, "ro"]
    return replace_fields(step, flags=attr, options=tuple(data))


def _bind_source(m: Mount, i: int, bundle: str | None) -> str:
    if not m.source:
        raise SpecError(f"mounts[{i}].source: a bind mount needs a source")
    if os.path.isabs(m.source):
        return m.source
    if bundle is None:
        raise SpecError(f"mounts[{i}].source {m.source[:80]!r} is relative and no bundle "
                        "directory is known")
    return os.path.join(bundle, m.source)


def _idmap_bind(m: Mount, i: int, binding: bool, attr: int, rbind: bool,
                bundle: str | None) -> IdmapBind:
    """An idmapped bind (both maps given: the spec's validation sees to it;
    ``idmap``/``ridmap``)."""
    if not binding:
        raise SpecError(f"mounts[{i}].uidMappings: only a bind mount can be idmapped")
    opts = m.options or ()
    return IdmapBind(_bind_source(m, i, bundle), m.destination,
                     rbind or "ridmap" in opts, attr,
                     tuple((x.container_id, x.host_id, x.size) for x in m.uid_mappings or ()),
                     tuple((x.container_id, x.host_id, x.size) for x in m.gid_mappings or ()))


def convert_mounts(spec_mounts: tuple[Mount, ...], bundle: str | None) -> list[MountItem]:
    """``mounts`` as steps, in order (see the module doc)."""
    items: list[MountItem] = []
    dev_tmpfs = False
    for i, m in enumerate(spec_mounts):
        binding = m.type == "bind" or any(o in ("bind", "rbind") for o in m.options or ())
        fstype = "bind" if binding else (m.type or "")
        if not fstype:
            raise SpecError(f"mounts[{i}].type: missing (and no bind or rbind option)")
        if os.path.normpath(m.destination) == "/proc" and fstype != "proc":
            raise SpecError(f"mounts[{i}]: /proc takes a proc mount only, not {fstype} "
                            "(as runc: anything else there would stand in for the "
                            "kernel's view; CVE-2019-19921)")
        attr, data, rbind, copyup = _options(m, i, fstype)
        if m.uid_mappings or m.gid_mappings:
            items.append(_idmap_bind(m, i, binding, attr, rbind, bundle))
        elif binding:
            step = mounts.bind(_bind_source(m, i, bundle), m.destination, recursive=rbind)
            items.append(replace_fields(step, flags=attr))
        else:
            items.append(_fs_step(m, i, fstype, attr, data, copyup))
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
    if os.path.exists("/proc/kcore"):  # as runc: only where the kernel has one
        steps.append(mounts.symlink(f"{target}/core", "/proc/kcore"))  # (CONFIG_PROC_KCORE)
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
