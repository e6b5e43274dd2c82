"""An image's ``User`` ("app", "1000", "app:staff", "1000:50") as uid, gid and groups.

The rules are Docker's and runc's: a name is looked up in the rootfs's
/etc/passwd (its gid and, from /etc/group, its supplementary groups); a number
is that uid, never a name (CVE-2016-3697: runc ran user "1000" as root because a
passwd line read ``1000:x:0:0``), with the gid of the passwd entry that has that
uid, else 0.  The files are read inside the root filesystem with
openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): an /etc/passwd that is a symlink
to a host path resolves inside the rootfs, never to the host's.

An unknown name raises :class:`~nsbind.errors.LookupFailed` (a LookupError), a
malformed spec or an oversized file :class:`~nsbind.errors.InvalidValue` (a
ValueError); both are NsbindErrors.
"""

from __future__ import annotations

import dataclasses
import errno
import os

from nsbind._sys.fd import PathLike, fsbytes
from nsbind._sys.mount import openat2
from nsbind.errors import InvalidValue, LookupFailed
from nsbind.flags import ResolveFlags

__all__ = ["User", "resolve_user"]

_IN_ROOT = ResolveFlags.IN_ROOT | ResolveFlags.NO_MAGICLINKS
_MAX = 1 << 20  # a passwd or group file larger than this is refused


@dataclasses.dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups (the primary one not repeated)
    home: str = "/"


def _read_in_root(root_fd: int, path: str) -> list[list[str]]:
    """The colon-separated lines of ``path`` inside the root; [] if it is missing."""
    try:
        fd = openat2(root_fd, path, os.O_RDONLY, resolve=_IN_ROOT)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise
    with fd, os.fdopen(fd.fileno(), "rb", closefd=False) as f:
        data = f.read(_MAX + 1)
    if len(data) > _MAX:
        raise InvalidValue(f"{path} in the rootfs is larger than {_MAX} bytes")
    return [line.split(":") for line in data.decode(errors="replace").splitlines()
            if line and not line.startswith("#")]


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def resolve_user(root: PathLike, spec: str) -> User:
    """uid, gid and supplementary groups of ``spec`` in the root filesystem ``root``.

    ``spec`` is ``user`` or ``user:group``, each a name or a number.  An unknown
    name is an error naming it; an unknown number is used as is.
    """
    user_part, _, group_part = spec.partition(":")
    if not user_part:
        raise InvalidValue(f"user {spec!r}: no user")
    root_fd = os.open(fsbytes(root), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        passwd = [f for f in _read_in_root(root_fd, "/etc/passwd") if len(f) >= 4]
        group = [f for f in _read_in_root(root_fd, "/etc/group") if len(f) >= 3]
    finally:
        os.close(root_fd)
    number = _number(user_part)
    if number is not None:  # a number is a uid: never looked up as a name
        entry = next((f for f in passwd if _number(f[2]) == number), None)
    else:
        entry = next((f for f in passwd if f[0] == user_part), None)
        if entry is None:
            raise LookupFailed(f"user {user_part!r} is not in the rootfs's /etc/passwd")
    uid = number if number is not None else int(entry[2]) if entry else 0
    gid = (_number(entry[3]) or 0) if entry is not None else 0
    home = entry[5] if entry is not None and len(entry) > 5 and entry[5] else "/"
    if group_part:
        g = _number(group_part)
        if g is None:
            found = next((f for f in group if f[0] == group_part), None)
            if found is None or _number(found[2]) is None:
                raise LookupFailed(f"group {group_part!r} is not in the rootfs's /etc/group")
            g = int(found[2])
        gid = g
    extra: set[int] = set()
    if entry is not None:  # the groups that list the user's name as a member
        for f in group:
            if len(f) > 3 and f[2].isdigit() and entry[0] in f[3].split(","):
                extra.add(int(f[2]))
    extra.discard(gid)
    return User(uid, gid, tuple(sorted(extra)), home)
