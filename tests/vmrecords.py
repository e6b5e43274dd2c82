"""Kernel-matrix results kept per test file for one state of the code, and the report.

The four guests of ``make test-kernels`` take longer than a working session on a
two-core machine, and a guest can be stopped, or one test can fail, hours into a run.
So each test file's outcome in a guest is kept: a file whose tests all passed (or
skipped, or failed as expected) is recorded, as the guest prints its line, in the
checkout's ledger (LEDGER, committed with the code: the matrix is completed across
sittings and machines), keyed by what its result depends on, the kernel release and the
cgroup layout.  A whole-suite run then boots the guest for the files that have no record
only, and reports the combination from the records once each file has one; a fix to one
test file runs that file again, not the suite.

A file's key hashes its own git blob and the git entries of everything else the guest
runs: ``src``, the other files under ``tests`` and the packaging files (CODE), but for
the runner's host-side bookkeeping (this module, HOST_SIDE), which is part of its own
tests' keys only.  A change to the package, to a support module of the tests or to how
the guest boots changes every file's key.  A checkout with changes in CODE (tracked or
untracked files) has no keys: it is always run whole.  ``tests/vm.py --fresh`` runs every
file whatever is recorded.

In the guest, :mod:`vmfiles` prints a line per file as its last test ends (FILE_MARKER);
:func:`file_line` and :func:`file_outcomes` read them back from the console.
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
import threading
import time
from collections.abc import Iterable

from vmfiles import FILE_MARKER, OUTCOMES

__all__ = ["CODE", "FILE_MARKER", "HOST_SIDE", "LEDGER", "OUTCOMES", "Record", "Recorder",
           "counts_line", "file_keys", "file_line", "file_outcomes", "load", "passed",
           "pytest_counts", "save", "summarize", "summary_counts", "test_file"]

#: what a guest runs: the package, the tests and how the package is built (the README,
#: the notes and the CI scripts are not part of a result)
CODE = ("src", "tests", "pyproject.toml", "setup.py")
#: files under CODE that no guest imports but through their own tests (the runner's
#: bookkeeping): each is part of those tests' keys only
HOST_SIDE = {"tests/vmrecords.py": ("tests/test_vmrecords.py",)}
#: the ledger of recorded files, relative to the checkout
LEDGER = "kernel-matrix.json"
_MAX_BYTES = 1 << 20  # a record is a file's counts: 71 files x 4 combinations is ~70 KiB
_TEST_FILE = re.compile(r"tests/test_[A-Za-z0-9_]+\.py")
_FILE_LINE = re.compile(rf"(?:\[[^\]]{{1,40}}\] )?{FILE_MARKER} ({_TEST_FILE.pattern})"
                        + "".join(rf" {what}=(\d{{1,9}})" for what in OUTCOMES) + r"\s*")
_SAVING = threading.Lock()  # guests run at once record into one ledger


def test_file(name: str) -> bool:
    """Whether ``name`` (relative to the checkout) is one of the suite's test files."""
    return _TEST_FILE.fullmatch(name) is not None


@dataclasses.dataclass(frozen=True)
class Record:
    """A test file that passed in a guest: its key, its counts (OUTCOMES) and when
    (UTC)."""

    file: str
    key: str
    counts: dict[str, int]
    ended: str


def file_keys(checkout: pathlib.Path) -> dict[str, str] | None:
    """Each test file of ``checkout``'s HEAD with its key: a hash of the file's git
    entry and of every other entry of CODE (HOST_SIDE entries only in their own tests'
    keys), when the checkout has nothing there that differs from HEAD (no change to a
    tracked file, no untracked file outside .gitignore); else None."""
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
    host: dict[str, str] = {}
    shared: list[str] = []
    for line in listing.splitlines():
        name = line.split("\t", 1)[-1]
        if test_file(name):
            tests[name] = line
        elif name in HOST_SIDE:
            host[name] = line
        else:
            shared.append(line)
    base = hashlib.sha256("\n".join(shared).encode()).hexdigest()
    keys = {}
    for name, line in sorted(tests.items()):
        own = [line] + [host[h] for h, users in sorted(HOST_SIDE.items())
                        if name in users and h in host]
        keys[name] = hashlib.sha256("\n".join([base, *own]).encode()).hexdigest()[:40]
    return keys


def file_line(line: str) -> tuple[str, dict[str, int]] | None:
    """(test file, outcome counts) of one console line that is a file's line: FILE_MARKER
    at its start (or after the runner's ``[kernel layout]`` echo prefix), and nothing but
    the counts after it."""
    match = _FILE_LINE.fullmatch(line)
    if match is None:
        return None
    return match.group(1), dict(zip(OUTCOMES, map(int, match.groups()[1:]), strict=True))


def file_outcomes(console: str) -> dict[str, dict[str, int]]:
    """The outcome counts of each test file whose line (FILE_MARKER) is on a guest's
    ``console`` (a file the guest did not finish has none)."""
    found: dict[str, dict[str, int]] = {}
    for line in console.splitlines():
        parsed = file_line(line)
        if parsed is not None:
            found[parsed[0]] = parsed[1]
    return found


def passed(counts: dict[str, int]) -> bool:
    """Whether a file with these counts passed: something ran, nothing failed."""
    return counts.get("failed", 0) == 0 and counts.get("errors", 0) == 0 and any(
        counts.get(what, 0) for what in OUTCOMES)


def _combination(release: str, layout: str) -> str:
    for part in (release, layout):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,99}", part):
            raise ValueError(f"record: kernel release or layout {part!r}: not a name")
    return f"{release} {layout}"


def _read(ledger: pathlib.Path) -> dict[str, dict[str, Record]]:
    """The ledger's records by combination and file; the records that are not of the
    expected shape, or not a pass, are left out (a ledger that is not a small regular
    file is empty)."""
    try:
        fd = os.open(ledger, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BYTES:
            return {}
        try:
            data = json.loads(f.read(_MAX_BYTES))
        except ValueError:
            return {}
    found: dict[str, dict[str, Record]] = {}
    for combination, files in (data.items() if isinstance(data, dict) else ()):
        for name, entry in (files.items() if isinstance(files, dict) else ()):
            try:
                counts = {what: int(entry["counts"][what]) for what in OUTCOMES}
                record = Record(name, str(entry["key"]), counts, str(entry["ended"]))
            except (ValueError, KeyError, TypeError):
                continue
            if test_file(name) and passed(counts) and all(
                    n >= 0 for n in counts.values()):
                found.setdefault(str(combination), {})[name] = record
    return found


def load(ledger: pathlib.Path, release: str, layout: str,
         keys: dict[str, str]) -> dict[str, Record]:
    """The records of ``ledger`` for ``release`` and ``layout`` whose file and key are
    among ``keys`` (a test file's pass on this code)."""
    recorded = _read(ledger).get(_combination(release, layout), {})
    return {name: record for name, record in recorded.items()
            if keys.get(name) == record.key}


def save(ledger: pathlib.Path, key: str, release: str, layout: str, file: str,
         counts: dict[str, int]) -> Record:
    """Record a file that passed, in place of its earlier record for this kernel and
    layout (the ledger is written whole: a temporary file renamed over it)."""
    if not test_file(file) or not passed(counts) or not re.fullmatch(r"[0-9a-f]{40}", key):
        raise ValueError(f"{file}: not a test file that passed ({counts}), key {key!r}")
    combination = _combination(release, layout)
    record = Record(file, key, {what: int(counts.get(what, 0)) for what in OUTCOMES},
                    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    with _SAVING:
        recorded = _read(ledger)
        recorded.setdefault(combination, {})[file] = record
        data = {c: {name: {k: v for k, v in dataclasses.asdict(r).items() if k != "file"}
                    for name, r in sorted(files.items())}
                for c, files in sorted(recorded.items())}
        tmp = ledger.with_name(f".{ledger.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, ledger)
    return record


class Recorder:
    """Records each test file of ``todo`` that passes, from a guest's console line by
    line (``recorder(line)``), while ``checkout``'s code is still the one ``keys`` were
    made for (a guest stopped hours in keeps what it finished; a change to the code in
    the meantime records nothing more)."""

    def __init__(self, ledger: pathlib.Path, checkout: pathlib.Path, keys: dict[str, str],
                 release: str, layout: str, todo: Iterable[str]) -> None:
        self._ledger, self._checkout, self._keys = ledger, checkout, keys
        self._release, self._layout = release, layout
        self._todo = set(todo)
        self.saved: list[Record] = []

    def __call__(self, line: str) -> None:
        parsed = file_line(line)
        if parsed is None or parsed[0] not in self._todo or not passed(parsed[1]):
            return
        name, counts = parsed
        if file_keys(self._checkout) == self._keys:
            self.saved.append(save(self._ledger, self._keys[name], self._release,
                                   self._layout, name, counts))


_SUMMARY = re.compile(r"^=* ?(?:\d+ (?:passed|failed|skipped|errors?|xfailed|xpassed|warnings?|"
                      r"deselected)(?:, )?)+ in [\d.]+s.*$|^=* ?no tests ran.*$")


def summary_counts(summary: str) -> dict[str, int]:
    """The counts (OUTCOMES) of pytest's summary line."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for n, what in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", summary):
        counts["errors" if what.startswith("error") else what] += int(n)
    return counts


def counts_line(counts: dict[str, int]) -> str:
    """``N passed, M failed, K skipped`` (failed counts errors too)."""
    return (f"{counts['passed']} passed, {counts['failed'] + counts['errors']} failed, "
            f"{counts['skipped']} skipped")


def _summary_line(output: str) -> str | None:
    return next((m.group(0) for m in map(_SUMMARY.match, reversed(output.splitlines())) if m),
                None)


def pytest_counts(output: str) -> tuple[str, str]:
    """("N passed, M failed, K skipped", pytest's summary line) of a pytest run's output
    (failed counts errors too); the summary is the output's tail if it has none."""
    summary = _summary_line(output)
    return (counts_line(summary_counts(summary or "")),
            summary if summary is not None else "\n".join(output.splitlines()[-30:]))


def _add(total: dict[str, int], counts: Iterable[dict[str, int]]) -> None:
    for one in counts:
        for what in OUTCOMES:
            total[what] += one.get(what, 0)


def summarize(kernel: str, layout: str, code: int, console: str,
              recorded: Iterable[Record] = (), files: int = 0) -> tuple[str, str]:
    """(``kernel R cgroups L: N passed, M failed, K skipped``, pytest's summary line) of a
    guest run (``console``: "" when every file was ``recorded``; ``kernel``, a release or
    version, names the kernel when the console does not) and of the ``recorded`` files
    (of ``files`` in all) that it did not run.  A guest that printed no pytest summary
    (stopped, or hung) is counted from the files it finished, and said so."""
    recorded = list(recorded)
    release = re.search(r"guest kernel (\S+)", console)
    counts = dict.fromkeys(OUTCOMES, 0)
    _add(counts, (record.counts for record in recorded))
    summary = _summary_line(console) if console else None
    finished = file_outcomes(console) if console else {}
    if summary is not None:
        _add(counts, [summary_counts(summary)])
    else:
        _add(counts, finished.values())
    head = f"kernel {release.group(1) if release else kernel} cgroups {layout}: "
    head += counts_line(counts)
    if recorded:
        ended = sorted(record.ended for record in recorded)
        which = (f"all {len(recorded)} files" if not console
                 else f"{len(recorded)} of {files} files")
        head += f" ({which} from records of this code, {ended[0]} to {ended[-1]})"
    if not console:
        return head, f"all {len(recorded)} files recorded: {counts_line(counts)}"
    if summary is None:
        head += (f" (no pytest summary: guest status {code}; counted from the "
                 f"{len(finished)} files it finished)")
        summary = "\n".join(console.splitlines()[-30:])
    return head, summary
