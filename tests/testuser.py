"""An unprivileged user made for a test run, and removed after it without a trace.

``useradd`` and ``usermod`` write /etc/passwd, group, shadow, gshadow, subuid and
subgid (and their ``-`` backups): each of those files is restored byte for byte
afterwards, or removed if it was not there.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import subprocess
from collections.abc import Iterator

ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid",
                 "/etc/subgid")
SUBID_COUNT = 65536


@contextlib.contextmanager
def kept(*paths: str) -> Iterator[None]:
    """Restore ``paths`` afterwards exactly as they were (or remove them)."""
    saved = {p: pathlib.Path(p).read_bytes() if os.path.exists(p) else None for p in paths}
    try:
        yield
    finally:
        for path, data in saved.items():
            if data is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                pathlib.Path(path).write_bytes(data)


def free_subid_base(name_hint: int) -> int:
    """A subordinate id range start that no line of /etc/subuid or /etc/subgid overlaps."""
    taken: list[tuple[int, int]] = []
    for path in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(FileNotFoundError):
            for line in pathlib.Path(path).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    taken.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    base = 300000 + (name_hint % 1000) * SUBID_COUNT
    while any(start < base + SUBID_COUNT and base < end for start, end in taken):
        base += SUBID_COUNT
    return base


@contextlib.contextmanager
def made_user(name: str, home: pathlib.Path, *, subids: bool) -> Iterator[pwd.struct_passwd]:
    """A user ``name`` with ``home`` (made, owned by it) and, with ``subids``, one range of
    65,536 subordinate uids and gids; gone afterwards, its files with it."""
    with kept(*ACCOUNT_FILES, *(f + "-" for f in ACCOUNT_FILES)):  # and useradd's backups
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh",
                        "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name],
                       check=True, capture_output=True)
        try:
            if subids:
                for path in ("/etc/subuid", "/etc/subgid"):  # usermod needs them
                    pathlib.Path(path).touch(mode=0o644)
                base = free_subid_base(os.getpid())
                for flag in ("--add-subuids", "--add-subgids"):
                    subprocess.run(["usermod", flag, f"{base}-{base + SUBID_COUNT - 1}", name],
                                   check=True, capture_output=True)
            entry = pwd.getpwnam(name)
            home.mkdir(mode=0o755, exist_ok=True)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            yield entry
        finally:
            subprocess.run(["userdel", name], check=False, capture_output=True)
