"""Kernel-matrix results kept for one state of the code.

The four guests of ``make test-kernels`` take longer than a working session on a
two-core machine.  A whole-suite guest run that passed is recorded under the runner's
cache, keyed by what the guest runs (the git trees of ``src`` and ``tests`` and the
packaging files: CODE), the kernel release and the cgroup layout.  The matrix reports
such a record, marked as one, instead of booting that combination again, so the four
can be completed in two sittings on unchanged code.  A checkout with changes there
(tracked or untracked files) has no key: it is always run.  ``tests/vm.py --matrix
--fresh`` runs every combination whatever is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import stat
import subprocess
import time

__all__ = ["Record", "code_key", "load", "save"]

_MAX_BYTES = 1 << 20  # a record is a few lines of pytest's summary


@dataclasses.dataclass(frozen=True)
class Record:
    """A passing whole-suite run: its line, pytest's summary, when it ended (UTC)."""

    head: str
    summary: str
    ended: str


#: what a guest runs: the package, the tests and how the package is built (the README,
#: the notes and the CI scripts are not part of a result)
CODE = ("src", "tests", "pyproject.toml", "setup.py")


def code_key(checkout: pathlib.Path) -> str | None:
    """A key of what ``checkout``'s HEAD holds in CODE, when the checkout has nothing
    there that differs from HEAD (no change to a tracked file, no untracked file outside
    .gitignore); else None."""
    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True,
                              text=True, timeout=60, check=False)
        return proc.stdout if proc.returncode == 0 else None

    changes = git("status", "--porcelain", "--untracked-files=normal", "--", *CODE)
    if changes is None or changes.strip():
        return None
    listing = git("ls-tree", "HEAD", "--", *CODE)  # "<mode> <type> <id>\t<name>" lines
    if not listing:
        return None
    return hashlib.sha256(listing.encode()).hexdigest()[:40]


def _path(cache: pathlib.Path, key: str, release: str, layout: str) -> pathlib.Path:
    for part in (key, release, layout):
        if not part or "/" in part or part.startswith("."):
            raise ValueError(f"record key part {part!r}: not a file name")
    return cache / "results" / f"{key}-{release}-{layout}.json"


def load(cache: pathlib.Path, key: str, release: str, layout: str) -> Record | None:
    """The record of a passing run of ``release`` with ``layout`` on the code of ``key``, or None
    (none, or not a small regular file of the expected shape)."""
    path = _path(cache, key, release, layout)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BYTES:
            return None
        try:
            data = json.loads(f.read(_MAX_BYTES))
            return Record(str(data["head"]), str(data["summary"]), str(data["ended"]))
        except (ValueError, KeyError, TypeError):
            return None


def save(cache: pathlib.Path, key: str, release: str, layout: str, head: str,
         summary: str) -> Record:
    """Record a passing run (written whole: a temporary file renamed over the record)."""
    path = _path(cache, key, release, layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = Record(head, summary, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(dataclasses.asdict(record)))
    os.replace(tmp, path)
    return record
