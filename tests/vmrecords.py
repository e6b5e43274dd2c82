"""Kernel-matrix results kept per test file for one state of the code.

The four guests of ``make test-kernels`` take longer than a working session on a
two-core machine, and a guest can be stopped, or one test can fail, hours into a run.
So each test file's outcome in a guest is kept: a file whose tests all passed (or
skipped, or failed as expected) is recorded under the runner's cache, keyed by what its
result depends on (its own git blob and the git trees of everything else the guest runs:
``src``, the other files under ``tests`` and the packaging files, CODE), the kernel
release and the cgroup layout.  A whole-suite run then boots the guest for the files
that have no record only, and reports the combination from the records once each file
has one: the matrix is completed across sittings, and a fix to one test file runs that
file again, not the suite.  A change to the package, to a support module of the tests
or to the runner changes every file's key.  A checkout with changes in CODE (tracked or
untracked files) has no keys: it is always run whole.  ``tests/vm.py --fresh`` runs
every file whatever is recorded.

In the guest, :mod:`vmfiles` prints a line per file as its last test ends (FILE_MARKER);
:func:`file_outcomes` reads them back from the console.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import stat
import subprocess
import time

__all__ = ["FILE_MARKER", "OUTCOMES", "Record", "file_keys", "file_outcomes", "load",
           "passed", "save", "test_file"]

_MAX_BYTES = 1 << 16  # a record is one file's counts

#: what a guest runs: the package, the tests and how the package is built (the README,
#: the notes and the CI scripts are not part of a result)
CODE = ("src", "tests", "pyproject.toml", "setup.py")
#: a test file's line on the guest's console: ``NSBIND-VM-FILE tests/test_x.py passed=3
#: failed=0 ...`` (every outcome of OUTCOMES, in that order)
FILE_MARKER = "NSBIND-VM-FILE"
OUTCOMES = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")
_TEST_FILE = re.compile(r"tests/test_[A-Za-z0-9_]+\.py")
_FILE_LINE = re.compile(rf"{FILE_MARKER} ({_TEST_FILE.pattern})"
                        + "".join(rf" {what}=(\d{{1,9}})" for what in OUTCOMES) + r"\s*$")


def test_file(name: str) -> bool:
    """Whether ``name`` (relative to the checkout) is one of the suite's test files."""
    return _TEST_FILE.fullmatch(name) is not None


@dataclasses.dataclass(frozen=True)
class Record:
    """A test file that passed in a guest: its counts (OUTCOMES) and when (UTC)."""

    file: str
    counts: dict[str, int]
    ended: str


def file_keys(checkout: pathlib.Path) -> dict[str, str] | None:
    """Each test file of ``checkout``'s HEAD with its key: a hash of the file's git blob
    and of every other entry of CODE, when the checkout has nothing there that differs
    from HEAD (no change to a tracked file, no untracked file outside .gitignore); else
    None."""
    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True,
                              text=True, timeout=60, check=False)
        return proc.stdout if proc.returncode == 0 else None

    changes = git("status", "--porcelain", "--untracked-files=normal", "--", *CODE)
    if changes is None or changes.strip():
        return None
    listing = git("ls-tree", "-r", "HEAD", "--", *CODE)  # "<mode> <type> <id>\t<name>"
    if not listing:
        return None
    tests: dict[str, str] = {}
    shared: list[str] = []
    for line in listing.splitlines():
        name = line.split("\t", 1)[-1]
        if test_file(name):
            tests[name] = line
        else:
            shared.append(line)
    base = hashlib.sha256("\n".join(shared).encode()).hexdigest()
    return {name: hashlib.sha256(f"{base}\n{line}".encode()).hexdigest()[:40]
            for name, line in sorted(tests.items())}


def file_outcomes(console: str) -> dict[str, dict[str, int]]:
    """The outcome counts of each test file whose line (FILE_MARKER) is on a guest's
    ``console`` (a file the guest did not finish has none)."""
    found: dict[str, dict[str, int]] = {}
    for line in console.splitlines():
        match = _FILE_LINE.search(line)
        if match:
            found[match.group(1)] = dict(zip(OUTCOMES, map(int, match.groups()[1:]), strict=True))
    return found


def passed(counts: dict[str, int]) -> bool:
    """Whether a file with these counts passed: something ran, nothing failed."""
    return counts.get("failed", 0) == 0 and counts.get("errors", 0) == 0 and any(
        counts.get(what, 0) for what in OUTCOMES)


def _path(cache: pathlib.Path, key: str, release: str, layout: str) -> pathlib.Path:
    for part in (key, release, layout):
        if not part or "/" in part or part.startswith("."):
            raise ValueError(f"record key part {part!r}: not a file name")
    return cache / "results" / f"{key}-{release}-{layout}.json"


def load(cache: pathlib.Path, key: str, release: str, layout: str) -> Record | None:
    """The record of a file that passed on ``release`` with ``layout``, on the code of
    ``key``, or None (none, or not a small regular file of the expected shape)."""
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
            counts = {what: int(data["counts"][what]) for what in OUTCOMES}
            record = Record(str(data["file"]), counts, str(data["ended"]))
        except (ValueError, KeyError, TypeError):
            return None
    return record if test_file(record.file) and passed(record.counts) else None


def save(cache: pathlib.Path, key: str, release: str, layout: str, file: str,
         counts: dict[str, int]) -> Record:
    """Record a file that passed (written whole: a temporary file renamed over the
    record)."""
    if not test_file(file) or not passed(counts):
        raise ValueError(f"{file}: not a test file that passed ({counts})")
    path = _path(cache, key, release, layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = Record(file, {what: int(counts.get(what, 0)) for what in OUTCOMES},
                    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(dataclasses.asdict(record)))
    os.replace(tmp, path)
    return record
