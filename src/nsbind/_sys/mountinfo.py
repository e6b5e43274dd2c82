"""/proc/<pid>/mountinfo, parsed (proc(5)): one MountInfo per line."""

from __future__ import annotations

from nsbind.frozen import frozen

__all__ = ["MountInfo", "parse_mountinfo", "read_mountinfo"]


@frozen
class MountInfo:
    mount_id: int
    parent_id: int
    dev: str  # "major:minor" of the superblock
    root: str  # the path inside the filesystem that is mounted here
    mountpoint: str
    options: str  # per-mount options (ro, nosuid, ...)
    fstype: str
    source: str
    superopts: str  # per-superblock options


def _unescape(field: str) -> str:
    # the kernel octal-escapes space, tab, newline and backslash
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_mountinfo(text: str) -> list[MountInfo]:
    entries = []
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split()
        sep = fields.index("-")  # optional fields end at "-"
        entries.append(MountInfo(int(fields[0]), int(fields[1]), fields[2], _unescape(fields[3]),
                                 _unescape(fields[4]), fields[5], fields[sep + 1],
                                 _unescape(fields[sep + 2]), fields[sep + 3]))
    return entries


def read_mountinfo(pid: int | str = "self") -> list[MountInfo]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return parse_mountinfo(f.read())
