"""User namespace id maps: the kernel's rules for them, checked up front, and the writer.

A map is a list of :data:`IdMap` lines ``(first id inside, first id outside, count)``,
as in ``/proc/<pid>/uid_map`` (user_namespaces(7)).  The kernel takes a map in one
write of at most 340 lines and 4095 bytes (Linux 4.15+), once per namespace; the
ranges may not overlap, inside nor outside; an id is 0..4294967294 (4294967295 is
``(uid_t)-1``, "no id").  :func:`check_map` applies those rules before anything is
written, so a bad map is refused whole, naming it, and never truncated
(CVE-2021-43784: runc truncated oversized maps).
"""

from __future__ import annotations

import errno
import itertools
import os
from _operator import index  # operator's, without the operator module

from nsbind.errors import InvalidValue, NamespaceRuleError, NsbindError, error_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["MAX_ID", "MAX_MAP_BYTES", "MAX_MAP_LINES", "IdMap", "MapWriter", "check_id",
           "check_map",
           "map_text", "write_maps"]

#: one line of a uid/gid map: (first id inside, first id outside, count)
IdMap = tuple[int, int, int]

#: what the kernel takes in one uid_map/gid_map write (Linux 4.15+: 340 lines, < a page)
MAX_MAP_LINES = 340
MAX_MAP_BYTES = 4095
#: the largest valid uid or gid: 2**32 - 1 is (uid_t)-1, which means "unchanged" or "none"
MAX_ID = 2**32 - 2


def check_id(name: str, value: object) -> int:
    """``value`` as a uid or gid, or ValueError naming ``name``: an int (not a bool or a
    float) in 0..4294967294.  Nothing is ever truncated to 32 bits."""
    if isinstance(value, bool):
        raise InvalidValue(f"{name} {value!r} is not a uid/gid (a bool)")
    try:
        number = index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidValue(f"{name} {value!r} is not a uid/gid (an integer)") from None
    if not 0 <= number <= MAX_ID:
        raise InvalidValue(f"{name} {number} is out of range: a uid/gid is 0..{MAX_ID} "
                           "(the kernel would truncate it or read it as 'unchanged')")
    return number


def map_text(lines: Iterable[IdMap]) -> str:
    """The map as the kernel reads it: one ``inside outside count`` line per entry."""
    return "".join(f"{i} {o} {c}\n" for i, o, c in lines)


def check_map(name: str, entries: Iterable[Sequence[int]]) -> list[IdMap]:
    """``entries`` as a list of :data:`IdMap`, or ValueError naming ``name`` and the entry:
    ids in range, counts positive, no overlap inside or outside, and no more than the
    kernel takes in one write (refused, never truncated)."""
    lines: list[IdMap] = []
    for entry in entries:
        if len(entry) != 3:
            raise InvalidValue(f"{name} entry {entry!r} is not (inside, outside, count)")
        inside = check_id(f"{name} inside id", entry[0])
        outside = check_id(f"{name} outside id", entry[1])
        count = check_id(f"{name} count", entry[2])
        if count == 0 or max(inside, outside) + count - 1 > MAX_ID:
            raise InvalidValue(f"{name} entry {inside} {outside} {count} is out of range "
                               f"(count at least 1, last id at most {MAX_ID})")
        lines.append((inside, outside, count))
    for side, label in ((0, "inside"), (1, "outside")):
        ranges = sorted((line[side], line[side] + line[2], line) for line in lines)
        for (_, end, first), (start, _, second) in itertools.pairwise(ranges):
            if start < end:
                raise InvalidValue(f"{name} entries {' '.join(map(str, first))} and "
                                   f"{' '.join(map(str, second))} overlap {label} the namespace "
                                   "(the kernel refuses overlapping ranges)")
    size = len(map_text(lines))
    if len(lines) > MAX_MAP_LINES or size > MAX_MAP_BYTES:
        raise InvalidValue(f"{name} of {len(lines)} lines ({size} bytes) is more than the "
                           f"kernel takes ({MAX_MAP_LINES} lines, {MAX_MAP_BYTES} bytes): "
                           "refused, not truncated")
    return lines


def write_maps(pid: int, uid_map: Iterable[Sequence[int]], gid_map: Iterable[Sequence[int]],
               *, deny_setgroups: bool, checked: bool = False) -> None:
    """Write ``/proc/<pid>/uid_map``, then ``setgroups`` ("deny", needed before an
    unprivileged gid_map) when asked, then ``gid_map``, each in one write.

    Both maps are checked first (:func:`check_map`), unless ``checked`` says they are
    lists check_map returned.  A failed write raises the
    :class:`~nsbind.errors.NsbindError` for its errno, naming the file and the map.
    """
    if not checked:
        uid_map, gid_map = check_map("uid_map", uid_map), check_map("gid_map", gid_map)
    uid_text = map_text(uid_map)  # type: ignore[arg-type]
    gid_text = map_text(gid_map)  # type: ignore[arg-type]

    def put(name: str, text: str) -> None:
        data = text.encode()
        path = f"/proc/{pid}/{name}"
        what = f"write {name} {text.strip()!r} of pid {pid}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise error_for(exc.errno or errno.EIO, "open", path, what=what) from None
        try:
            try:
                written = os.write(fd, data)
            except OSError as exc:
                raise error_for(exc.errno or errno.EIO, "write", path, what=what) from None
            if written != len(data):  # one write: the kernel takes no second one
                raise error_for(errno.EINVAL, "write", path, what=what,
                                detail=f"short write ({written} of {len(data)} bytes)")
        finally:
            os.close(fd)

    put("uid_map", uid_text)
    if deny_setgroups:
        put("setgroups", "deny")
    put("gid_map", gid_text)


class MapWriter:
    """A helper process in the parent user namespace that writes this process's id maps.

    A process cannot map more than its own id from inside a new user namespace, so
    :meth:`Namespaces.unshare` forks this writer first (``with MapWriter(maps)``, before
    unshare(CLONE_NEWUSER)) and calls :meth:`write` once the namespace exists.  A
    failed write raises the writer's error here, with its errno.
    """

    def __init__(self, maps: tuple[list[IdMap], list[IdMap]]) -> None:
        self.uid_map = check_map("uid_map", maps[0])
        self.gid_map = check_map("gid_map", maps[1])
        self.pid = 0

    def __enter__(self) -> MapWriter:
        self.go_r, self.go_w = os.pipe2(os.O_CLOEXEC)
        self.err_r, self.err_w = os.pipe2(os.O_CLOEXEC)
        target = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(self.go_w)
                os.close(self.err_r)
                if os.read(self.go_r, 1) == b"w":
                    write_maps(target, self.uid_map, self.gid_map,
                                deny_setgroups=os.geteuid() != 0)
                    code = 0
            except NsbindError as exc:  # the errno and the operation travel back
                os.write(self.err_w, f"{exc.errno or 0}\n{exc.what}".encode())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(self.go_r)
        os.close(self.err_w)
        return self

    def write(self) -> None:
        """Tell the writer to write the maps now; raise what it failed with."""
        os.write(self.go_w, b"w")
        os.close(self.go_w)
        self.go_w = -1
        message = os.read(self.err_r, 4096).decode()
        pid, self.pid = self.pid, 0
        _, status = os.waitpid(pid, 0)
        if message:
            err, what = message.split("\n", 1)
            raise error_for(int(err), "write", None, what=what)
        if status != 0:
            raise NamespaceRuleError(f"the id map writer (pid {pid}) failed: status "
                                     f"{status}")

    def __exit__(self, *exc: object) -> None:
        if self.go_w >= 0:
            os.close(self.go_w)
        os.close(self.err_r)
        if self.pid:
            os.waitpid(self.pid, 0)
