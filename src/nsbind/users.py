"""An image's ``User`` ("app", "1000", "app:staff", "1000:50") as uid, gid and groups.

The rules are Docker's and runc's: a name is looked up in the rootfs's
/etc/passwd (its gid and, from /etc/group, its supplementary groups); a number
is that uid, never a name (CVE-2016-3697: runc ran user "1000" as root because a
passwd line read ``1000:x:0:0``), with the gid of the passwd entry that has that
uid, else 0.

Numbers: a uid or gid, in ``spec`` and in the files, is plain ASCII decimal
digits (leading zeros are decimal, never octal) in 0..4294967294 (4294967295 is
``(uid_t)-1``, "no id"); a larger value is refused, never truncated to 32 bits.
Text that some parser would read as a number but is not plain digits ("+5",
" 5", "-1", "1_000", "³", Arabic-Indic or fullwidth digits) is refused in ``spec``
as neither a number nor a name; "0x5" is a name (never the number 5).

The files are the image's, so they are treated as hostile: each is opened inside
the root filesystem with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) (an
/etc/passwd that is a symlink to a host path resolves inside the rootfs, never
to the host's) as O_PATH, and must be a regular file (fstat): a FIFO, a device,
a socket or a directory is refused without ever being opened for reading.  The
file is then opened read-only and non-blocking through /proc/self/fd (the same
inode) and read up to :data:`MAX_FILE_BYTES` (4 MiB).

Lines are read as glibc's files backend reads them: split at ``\\n``; a passwd
line has 7 colon-separated fields (name:password:uid:gid:gecos:home:shell, the
shell takes the rest), a group line 3 or 4 (name:password:gid:members, members
separated by commas, empty ones ignored); blank and ``#`` lines are skipped, and
so are malformed lines that do not concern the lookup.  The lines that do (the
one naming the user or carrying its uid, the group named in ``spec``, every
group listing the user as a member) must be well formed, or the lookup is
refused naming the file, the line and the field; so is a line whose id would
match only when read loosely (uid ``+1000`` for user 1000), and more than
NGROUPS_MAX supplementary groups.

Errors: an unknown name raises :class:`~nsbind.errors.LookupFailed` (a
LookupError); a malformed spec, an id out of range, a malformed line that
matters, a file that is not a regular file or is larger than MAX_FILE_BYTES
raise :class:`~nsbind.errors.InvalidValue` (a ValueError); both are NsbindErrors.
A root that cannot be opened, or a file that cannot be read, raises the OSError.
"""

from __future__ import annotations

import errno
import os

from nsbind._sys.fd import PathLike, fsbytes
from nsbind._sys.mount import open_regular, read_capped
from nsbind.errors import InvalidValue, LookupFailed
from nsbind.flags import ResolveFlags
from nsbind.frozen import frozen
from nsbind.idmap import MAX_ID, check_id

__all__ = ["MAX_FILE_BYTES", "User", "resolve_user"]

_IN_ROOT = ResolveFlags.IN_ROOT | ResolveFlags.NO_MAGICLINKS
#: a passwd or group file larger than this is refused
MAX_FILE_BYTES = 4 << 20
_MAX_NAME = 256  # LOGIN_NAME_MAX
_ID_DIGITS = 10  # significant digits of the largest id
Lines = list[tuple[int, list[str]]]  # (line number, fields)


@frozen
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups (the primary one not repeated)
    home: str = "/"


def _read_in_root(root_fd: int, path: str) -> bytes | None:
    """The bytes of the regular file ``path`` inside the root; None if it is missing."""
    what = f"{path} in the rootfs"
    try:
        fd = open_regular(root_fd, path, _IN_ROOT, what=what)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and not isinstance(exc, InvalidValue):
            return None
        raise
    with fd:
        return read_capped(fd, MAX_FILE_BYTES, what=what)


def _lines(data: bytes | None, fields: int) -> Lines:
    """Numbered lines split into at most ``fields`` fields (the last takes the rest)."""
    if data is None:
        return []
    text = data.decode("utf-8", "surrogateescape")  # names compare as the bytes do
    return [(number, line.split(":", fields - 1))
            for number, line in enumerate(text.split("\n"), 1)
            if line and not line.startswith("#")]


def _strict(text: str) -> int | None:
    """``text`` as a number if it is plain ASCII decimal digits, else None; a number
    with more digits than any id has is returned as MAX_ID + 1 (out of range)."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= _ID_DIGITS else MAX_ID + 1


def _loose(text: str) -> int | None:
    """``text`` as a number the way a lenient parser would read it (sign, spaces,
    Unicode digits, underscores), or None."""
    if len(text) > 64:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _checked(text: str, what: str) -> int:
    """The id ``text`` (ASCII digits) in range, or InvalidValue naming ``what``."""
    number = _strict(text)
    if number is None:
        raise InvalidValue(f"{what} {text[:40]!r} is not a number (ASCII decimal digits)")
    if number > MAX_ID and len(text.lstrip("0")) > _ID_DIGITS:
        raise InvalidValue(f"{what} {text[:40]!r} is out of range: a uid/gid is 0..{MAX_ID}")
    try:
        return check_id(what, number)
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None


def _spec_part(text: str, what: str) -> int | str:
    """A part of ``spec``: an id (ASCII digits) or a name."""
    if text.isascii() and text.isdigit():
        return _checked(text, what)
    if _loose(text) is not None or any(not c.isascii() and c.isnumeric() for c in text):
        raise InvalidValue(f"{what} {text[:64]!r} is not a valid number: a uid/gid is plain "
                           f"ASCII decimal digits, 0..{MAX_ID}")
    if len(text) > _MAX_NAME or text[0] in "+-" or any(
            c.isspace() or not c.isprintable() or c in ":," for c in text):
        raise InvalidValue(f"{what} {text[:64]!r} is not a valid name (at most {_MAX_NAME} "
                           "characters, no spaces, control characters, ':' or ',', not "
                           "starting with '+' or '-')")
    return text


@frozen
class _Entry:
    name: str
    uid: int
    gid: int
    home: str


def _entry(fields: list[str], where: str) -> _Entry:
    if len(fields) < 7:
        raise InvalidValue(f"{where} ({fields[0][:40]!r}) has {len(fields)} fields; a passwd "
                           "line has 7 (name:password:uid:gid:gecos:home:shell)")
    if "\0" in ":".join(fields):
        raise InvalidValue(f"{where} ({fields[0][:40]!r}) contains a NUL byte")
    return _Entry(fields[0], _checked(fields[2], f"{where}: uid"),
                  _checked(fields[3], f"{where}: gid"), fields[5] or "/")


def _find_user(passwd: Lines, want: int | str) -> _Entry | None:
    """The first passwd entry named ``want`` (a str) or with uid ``want`` (an int)."""
    for number, fields in passwd:
        where = f"/etc/passwd line {number}"
        if isinstance(want, str):
            if fields[0] != want:
                continue
        elif len(fields) < 3:
            continue
        elif _strict(fields[2]) != want:
            if _strict(fields[2]) is None and _loose(fields[2]) == want:
                raise InvalidValue(f"{where}: uid {fields[2]!r} is not plain ASCII digits "
                                   f"(uid {want} read loosely): refused")
            continue
        return _entry(fields, where)
    return None


def _find_group(group: Lines, name: str) -> int:
    for number, fields in group:
        if fields[0] == name:
            where = f"/etc/group line {number}"
            if len(fields) < 3:
                raise InvalidValue(f"{where} ({name[:40]!r}) has {len(fields)} fields; a group "
                                   "line has 4 (name:password:gid:members)")
            return _checked(fields[2], f"{where}: gid")
    raise LookupFailed(f"group {name!r} is not in the rootfs's /etc/group")


def _member_of(group: Lines, user: str) -> set[int]:
    """The gids of the groups that list ``user`` as a member."""
    found: set[int] = set()
    for number, fields in group:
        if len(fields) < 4:
            continue
        where = f"/etc/group line {number}"
        members = fields[3].split(",")
        if user in members:
            found.add(_checked(fields[2], f"{where}: gid"))
        elif any(m != user and m.strip() == user for m in members):
            raise InvalidValue(f"{where}: a member is {user!r} with spaces around it: refused")
    limit = os.sysconf("SC_NGROUPS_MAX")
    if len(found) > limit:
        raise InvalidValue(f"user {user!r} is a member of {len(found)} groups in /etc/group; "
                           f"the kernel takes at most {limit}")
    return found


def resolve_user(root: PathLike, spec: str) -> User:
    """uid, gid and supplementary groups of ``spec`` in the root filesystem ``root``.

    ``spec`` is ``user`` or ``user:group``, each a name or a number (ASCII decimal
    digits, 0..4294967294).  An unknown name is an error naming it; an unknown
    number is used as is.  See the module doc for what is refused and why.
    """
    if not isinstance(spec, str):
        raise InvalidValue(f"user {spec!r}: not a string")
    user_part, _, group_part = spec.partition(":")
    if not user_part:
        raise InvalidValue(f"user {spec!r}: no user")
    want = _spec_part(user_part, "user")
    group_want = _spec_part(group_part, "group") if group_part else None
    root_fd = os.open(fsbytes(root), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        passwd = _lines(_read_in_root(root_fd, "/etc/passwd"), 7)
        group = _lines(_read_in_root(root_fd, "/etc/group"), 4)
    finally:
        os.close(root_fd)
    entry = _find_user(passwd, want)
    if entry is None and isinstance(want, str):
        raise LookupFailed(f"user {want!r} is not in the rootfs's /etc/passwd")
    uid = want if isinstance(want, int) else entry.uid if entry is not None else 0
    gid = entry.gid if entry is not None else 0
    if group_want is not None:
        gid = group_want if isinstance(group_want, int) else _find_group(group, group_want)
    extra = _member_of(group, entry.name) if entry is not None else set()
    extra.discard(gid)
    return User(uid, gid, tuple(sorted(extra)), entry.home if entry is not None else "/")
