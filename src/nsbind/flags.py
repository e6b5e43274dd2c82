"""Typed flag sets and the namespace types, with values taken from the kernel headers.

Every value comes from the compiled core (``lib``), which took it from the system
headers at build time: nothing here is retyped by hand.
"""

from __future__ import annotations

from nsbind._native import lib
from nsbind.enumtypes import Enum, IntEnum, IntFlag
from nsbind.errors import InvalidValue

__all__ = [
    "NAMESPACE_ORDER",
    "AtFlags",
    "CloneFlags",
    "CloseRangeFlags",
    "FsconfigCmd",
    "MountAttr",
    "MountFlags",
    "MoveMountFlags",
    "Namespace",
    "OpenTreeFlags",
    "Propagation",
    "ResolveFlags",
    "UmountFlags",
    "WaitFlags",
    "flag_names",
]


class CloneFlags(IntFlag):
    """Flags for clone3(2) and unshare(2)."""

    #: share the address space (spawn engine only; never for a Python child)
    VM = lib.CLONE_VM
    #: share root, cwd and umask; unshare(FS) gives the thread its own
    FS = lib.CLONE_FS
    #: share the fd table
    FILES = lib.CLONE_FILES
    #: share signal handlers (needs VM)
    SIGHAND = lib.CLONE_SIGHAND
    #: return a pidfd for the child (clone3's ``pidfd`` field)
    PIDFD = lib.CLONE_PIDFD
    PTRACE = lib.CLONE_PTRACE
    #: suspend the parent until the child execs or exits
    VFORK = lib.CLONE_VFORK
    PARENT = lib.CLONE_PARENT
    THREAD = lib.CLONE_THREAD
    #: new mount namespace
    NEWNS = lib.CLONE_NEWNS
    SYSVSEM = lib.CLONE_SYSVSEM
    SETTLS = lib.CLONE_SETTLS
    PARENT_SETTID = lib.CLONE_PARENT_SETTID
    CHILD_CLEARTID = lib.CLONE_CHILD_CLEARTID
    UNTRACED = lib.CLONE_UNTRACED
    CHILD_SETTID = lib.CLONE_CHILD_SETTID
    #: new cgroup namespace (Linux 4.6)
    NEWCGROUP = lib.CLONE_NEWCGROUP
    #: new UTS namespace (hostname, domainname)
    NEWUTS = lib.CLONE_NEWUTS
    #: new IPC namespace (System V IPC, POSIX message queues)
    NEWIPC = lib.CLONE_NEWIPC
    #: new user namespace (unshare: single-threaded callers only)
    NEWUSER = lib.CLONE_NEWUSER
    #: new PID namespace: for children only (unshare) or the child itself (clone)
    NEWPID = lib.CLONE_NEWPID
    #: new network namespace
    NEWNET = lib.CLONE_NEWNET
    IO = lib.CLONE_IO
    #: new time namespace (Linux 5.6): for children only
    NEWTIME = lib.CLONE_NEWTIME
    #: reset all signal handlers to default in the child (clone3, Linux 5.5)
    CLEAR_SIGHAND = lib.CLONE_CLEAR_SIGHAND
    #: start the child in the cgroup v2 given by clone3's ``cgroup`` fd (Linux 5.7)
    INTO_CGROUP = lib.CLONE_INTO_CGROUP


class Namespace(Enum):
    """The eight namespace types, by their name under ``/proc/<pid>/ns``."""

    CGROUP = "cgroup"
    IPC = "ipc"
    MNT = "mnt"
    NET = "net"
    PID = "pid"
    TIME = "time"
    USER = "user"
    UTS = "uts"

    @property
    def flag(self) -> CloneFlags:
        """The CLONE_NEW* flag that creates (or, for setns, selects) this type."""
        return _NS_FLAGS[self]

    @property
    def proc_name(self) -> str:
        """The file under ``/proc/<pid>/ns`` for this namespace."""
        return self.value

    @classmethod
    def from_flag(cls, flag: int) -> Namespace:
        """The namespace type whose CLONE_NEW* flag is ``flag``."""
        for ns, f in _NS_FLAGS.items():
            if f == flag:
                return ns
        raise InvalidValue(f"{flag:#x} is not a CLONE_NEW* flag")


#: The order in which nsbind joins namespaces, in a spawned child, in call_in and when
#: a ``with`` block restores them: user first (its capabilities then allow joining
#: the rest), mnt last (paths used while joining the others still resolve in the
#: mount namespace they were opened in).
NAMESPACE_ORDER: tuple[Namespace, ...] = (
    Namespace.USER, Namespace.NET, Namespace.UTS, Namespace.IPC, Namespace.CGROUP,
    Namespace.PID, Namespace.TIME, Namespace.MNT)

_NS_FLAGS: dict[Namespace, CloneFlags] = {
    Namespace.CGROUP: CloneFlags.NEWCGROUP,
    Namespace.IPC: CloneFlags.NEWIPC,
    Namespace.MNT: CloneFlags.NEWNS,
    Namespace.NET: CloneFlags.NEWNET,
    Namespace.PID: CloneFlags.NEWPID,
    Namespace.TIME: CloneFlags.NEWTIME,
    Namespace.USER: CloneFlags.NEWUSER,
    Namespace.UTS: CloneFlags.NEWUTS,
}


class MountFlags(IntFlag):
    """Flags for mount(2)."""

    RDONLY = lib.MS_RDONLY
    NOSUID = lib.MS_NOSUID
    NODEV = lib.MS_NODEV
    NOEXEC = lib.MS_NOEXEC
    SYNCHRONOUS = lib.MS_SYNCHRONOUS
    #: change the flags of an existing mount
    REMOUNT = lib.MS_REMOUNT
    MANDLOCK = lib.MS_MANDLOCK
    DIRSYNC = lib.MS_DIRSYNC
    #: do not follow symlinks when resolving paths on this mount (Linux 5.10)
    NOSYMFOLLOW = lib.MS_NOSYMFOLLOW
    NOATIME = lib.MS_NOATIME
    NODIRATIME = lib.MS_NODIRATIME
    #: bind mount: make a file or tree visible at another place
    BIND = lib.MS_BIND
    #: move a mount
    MOVE = lib.MS_MOVE
    #: with BIND or a propagation flag: apply to the whole subtree
    REC = lib.MS_REC
    SILENT = lib.MS_SILENT
    POSIXACL = lib.MS_POSIXACL
    UNBINDABLE = lib.MS_UNBINDABLE
    PRIVATE = lib.MS_PRIVATE
    SLAVE = lib.MS_SLAVE
    SHARED = lib.MS_SHARED
    RELATIME = lib.MS_RELATIME
    STRICTATIME = lib.MS_STRICTATIME
    LAZYTIME = lib.MS_LAZYTIME


class UmountFlags(IntFlag):
    """Flags for umount2(2)."""

    FORCE = lib.MNT_FORCE
    #: lazy unmount: detach now, clean up when no longer busy
    DETACH = lib.MNT_DETACH
    EXPIRE = lib.MNT_EXPIRE
    #: do not follow a symlink as the target
    NOFOLLOW = lib.UMOUNT_NOFOLLOW


class MountAttr(IntFlag):
    """MOUNT_ATTR_* for fsmount(2) and mount_setattr(2) (Linux 5.2 / 5.12)."""

    RDONLY = lib.MOUNT_ATTR_RDONLY
    NOSUID = lib.MOUNT_ATTR_NOSUID
    NODEV = lib.MOUNT_ATTR_NODEV
    NOEXEC = lib.MOUNT_ATTR_NOEXEC
    #: the mask of the atime setting (RELATIME is 0 within it)
    ATIME_MASK = lib.MOUNT_ATTR__ATIME
    NOATIME = lib.MOUNT_ATTR_NOATIME
    STRICTATIME = lib.MOUNT_ATTR_STRICTATIME
    NODIRATIME = lib.MOUNT_ATTR_NODIRATIME
    #: idmapped mount through a user namespace fd (Linux 5.12)
    IDMAP = lib.MOUNT_ATTR_IDMAP
    NOSYMFOLLOW = lib.MOUNT_ATTR_NOSYMFOLLOW


class Propagation(IntEnum):
    """Mount propagation types, for mount(2) and mount_setattr(2)."""

    PRIVATE = lib.MS_PRIVATE
    SLAVE = lib.MS_SLAVE
    SHARED = lib.MS_SHARED
    UNBINDABLE = lib.MS_UNBINDABLE


class FsconfigCmd(IntEnum):
    """The command of an fsconfig(2) call."""

    SET_FLAG = lib.FSCONFIG_SET_FLAG
    SET_STRING = lib.FSCONFIG_SET_STRING
    SET_BINARY = lib.FSCONFIG_SET_BINARY
    SET_PATH = lib.FSCONFIG_SET_PATH
    SET_PATH_EMPTY = lib.FSCONFIG_SET_PATH_EMPTY
    SET_FD = lib.FSCONFIG_SET_FD
    CMD_CREATE = lib.FSCONFIG_CMD_CREATE
    CMD_RECONFIGURE = lib.FSCONFIG_CMD_RECONFIGURE


class OpenTreeFlags(IntFlag):
    """Flags for open_tree(2) (besides the AT_* ones)."""

    #: detached copy of the mount (tree) instead of an O_PATH fd on it
    CLONE = lib.OPEN_TREE_CLONE
    CLOEXEC = lib.OPEN_TREE_CLOEXEC


class MoveMountFlags(IntFlag):
    """Flags for move_mount(2)."""

    F_SYMLINKS = lib.MOVE_MOUNT_F_SYMLINKS
    F_AUTOMOUNTS = lib.MOVE_MOUNT_F_AUTOMOUNTS
    #: the source is the fd itself (path "")
    F_EMPTY_PATH = lib.MOVE_MOUNT_F_EMPTY_PATH
    T_SYMLINKS = lib.MOVE_MOUNT_T_SYMLINKS
    T_AUTOMOUNTS = lib.MOVE_MOUNT_T_AUTOMOUNTS
    #: the target is the fd itself (path "")
    T_EMPTY_PATH = lib.MOVE_MOUNT_T_EMPTY_PATH
    SET_GROUP = lib.MOVE_MOUNT_SET_GROUP


class ResolveFlags(IntFlag):
    """RESOLVE_* for openat2(2) (Linux 5.6)."""

    NO_XDEV = lib.RESOLVE_NO_XDEV
    #: refuse /proc/<pid>/fd-style magic links
    NO_MAGICLINKS = lib.RESOLVE_NO_MAGICLINKS
    NO_SYMLINKS = lib.RESOLVE_NO_SYMLINKS
    #: fail with EXDEV if resolution would leave the directory
    BENEATH = lib.RESOLVE_BENEATH
    #: treat the directory as the root: "..", "/" and absolute symlinks stay inside
    IN_ROOT = lib.RESOLVE_IN_ROOT
    CACHED = lib.RESOLVE_CACHED


class AtFlags(IntFlag):
    """AT_* flags of the *at() calls."""

    SYMLINK_NOFOLLOW = lib.AT_SYMLINK_NOFOLLOW
    SYMLINK_FOLLOW = lib.AT_SYMLINK_FOLLOW
    REMOVEDIR = lib.AT_REMOVEDIR
    NO_AUTOMOUNT = lib.AT_NO_AUTOMOUNT
    EMPTY_PATH = lib.AT_EMPTY_PATH
    #: whole subtree (open_tree, mount_setattr)
    RECURSIVE = lib.AT_RECURSIVE


class CloseRangeFlags(IntFlag):
    """Flags for close_range(2) (Linux 5.9)."""

    #: unshare the fd table first
    UNSHARE = lib.CLOSE_RANGE_UNSHARE
    #: set close-on-exec instead of closing (Linux 5.11)
    CLOEXEC = lib.CLOSE_RANGE_CLOEXEC


class WaitFlags(IntFlag):
    """Options for waitid(2)."""

    EXITED = lib.WEXITED
    STOPPED = lib.WSTOPPED
    CONTINUED = lib.WCONTINUED
    NOHANG = lib.WNOHANG
    #: leave the child waitable
    NOWAIT = lib.WNOWAIT


def flag_names(flagtype: type[IntFlag], value: int) -> str:
    """``"A|B"`` for the members of ``flagtype`` set in ``value`` (hex for unknown bits)."""
    names = []
    rest = int(value)
    for member in flagtype:
        bit = int(member)
        if bit and bit & (bit - 1) == 0 and rest & bit:
            names.append(str(member.name))
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return "|".join(names) if names else "0"
