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

A file's key hashes its own git blob, the git entries of everything else the guest runs:
``src``, the other files under ``tests``, the launcher template and the packaging files
(CODE), but for the runner's host-side bookkeeping (this module, HOST_SIDE), which is part
of its own tests' keys only, and the host's environment (the interpreter, its installed
distributions and the Debian packages of the peers: :func:`environment`), for the guest
runs on the host's root.  A change to the package, to a support module of the tests, to
how the guest boots or to the host's tools changes every file's key; records of older
code are dropped as new ones are saved.  A checkout with changes in CODE (tracked or
untracked files) has no keys: it is always run whole.  ``tests/vm.py --fresh`` runs every
file whatever is recorded.

In the guest, :mod:`vmfiles` prints a line per file as its last test ends (FILE_MARKER);
:func:`file_line` and :func:`file_outcomes` read them back from the console.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable

from vmfiles import FAILED_MARKER, FILE_MARKER, OUTCOMES

__all__ = ["CODE", "FILE_MARKER", "HOST_SIDE", "LEDGER", "OUTCOMES", "PACKAGES", "Record",
           "Recorder", "counts_line", "environment", "file_keys", "file_line", "file_outcomes",
           "load", "passed", "pytest_counts", "save", "summarize", "summary_counts",
           "test_file"]

#: what a guest runs: the package, the tests and how the package and its launchers are
#: built (the README, the notes and the CI scripts are not part of a result)
CODE = ("src", "tests", "scripts/launcher.py.in", "pyproject.toml", "setup.py")
#: the Debian packages of this host that a guest uses (it runs on the host's root): the
#: peers the tests drive, what builds the extension, and the emulator
PACKAGES = ("busybox-static", "conmon", "containerd", "crun", "docker-registry", "gcc",
            "libc6", "libseccomp2", "nftables", "podman", "qemu-system-x86", "runc",
            "skopeo", "slirp4netns", "umoci", "uidmap")
#: files under CODE that no guest imports but through their own tests (the runner's
#: bookkeeping): each is part of those tests' keys only
HOST_SIDE = {"tests/vmrecords.py": ("tests/test_vmrecords.py",)}
#: the ledger of recorded files, relative to the checkout
LEDGER = "kernel-matrix.json"
_MAX_BYTES = 1 << 20  # a record is a file's counts: 71 files x 4 combinations is ~70 KiB
_TEST_FILE = re.compile(r"tests/test_[A-Za-z0-9_]+\.py")
_ECHO_PREFIX = r"(?:\[[^\]\n]{1,40}\] )?"  # vm.py's "[6.1 v2] " before an echoed line
_FILE_LINE = re.compile(rf"{_ECHO_PREFIX}{FILE_MARKER} ({_TEST_FILE.pattern})"
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


def environment() -> str:
    """What of this host a guest's results depend on besides the code and the kernel: the
    interpreter, the Python distributions installed for it and the versions of PACKAGES
    (a test that needs a missing peer skips, and a skip is a pass)."""
    import importlib.metadata  # only when the runner keys a run

    dists = sorted({f"{d.metadata['Name']}=={d.version}".lower()
                    for d in importlib.metadata.distributions() if d.metadata["Name"]})
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *PACKAGES],
                          capture_output=True, text=True, timeout=60, check=False)
    return "\n".join([sys.version, *dists, *sorted(proc.stdout.splitlines())])


def file_keys(checkout: pathlib.Path, environment: str = "") -> dict[str, str] | None:
    """Each test file of ``checkout``'s HEAD with its key: a hash of the file's git
    entry, of every other entry of CODE (HOST_SIDE entries only in their own tests' keys)
    and of ``environment`` (:func:`environment`), when the checkout has nothing there
    that differs from HEAD (no change to a tracked file, no untracked file outside
    .gitignore); else None."""
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
    base = hashlib.sha256("\n".join([environment, *shared]).encode()).hexdigest()
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
    """Whether a file with these counts passed: something ran, nothing failed (and no
    count is negative)."""
    return (counts.get("failed", 0) == 0 and counts.get("errors", 0) == 0
            and all(counts.get(what, 0) >= 0 for what in OUTCOMES)
            and any(counts.get(what, 0) for what in OUTCOMES))


def _combination(release: str, layout: str) -> str:
    for part in (release, layout):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,99}", part):
            raise ValueError(f"record: kernel release or layout {part!r}: not a name")
    return f"{release} {layout}"


def _record(name: str, entry: object) -> Record | None:
    """The record of one ledger entry, if it is one of a file that passed."""
    if not test_file(name) or not isinstance(entry, dict):
        return None
    counts, key, ended = entry.get("counts"), entry.get("key"), entry.get("ended")
    if (not isinstance(counts, dict) or not isinstance(key, str) or not isinstance(ended, str)
            or not all(type(counts.get(what)) is int for what in OUTCOMES)):
        return None
    record = Record(name, key, {what: counts[what] for what in OUTCOMES}, ended)
    return record if passed(record.counts) else None


def _read(ledger: pathlib.Path) -> dict[str, dict[str, Record]] | None:
    """The ledger's records by combination and file ({} when there is no ledger), the
    entries that are not of a file that passed left out; None for a ledger that is not a
    small regular file of JSON (a FIFO does not hang)."""
    try:
        fd = os.open(ledger, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BYTES:
            return None
        try:
            data = json.loads(f.read(_MAX_BYTES))
        except (ValueError, RecursionError):
            return None
    if not isinstance(data, dict):
        return None
    found: dict[str, dict[str, Record]] = {}
    for combination, files in data.items():
        for name, entry in (files.items() if isinstance(files, dict) else ()):
            record = _record(name, entry)
            if record is not None:
                found.setdefault(combination, {})[name] = record
    return found


def load(ledger: pathlib.Path, release: str, layout: str,
         keys: dict[str, str]) -> dict[str, Record]:
    """The records of ``ledger`` for ``release`` and ``layout`` whose file and key are
    among ``keys`` (a test file's pass on this code); none from a ledger that is not
    one."""
    recorded = (_read(ledger) or {}).get(_combination(release, layout), {})
    return {name: record for name, record in recorded.items()
            if keys.get(name) == record.key}


def _dump(recorded: dict[str, dict[str, Record]]) -> str:
    """The ledger's text: a line per file, sorted (a small diff for each sitting)."""
    blocks = []
    for combination, files in sorted(recorded.items()):
        lines = [f"  {json.dumps(name)}: " + json.dumps(
            {"counts": r.counts, "ended": r.ended, "key": r.key}) for name, r in
            sorted(files.items())]
        blocks.append(f" {json.dumps(combination)}: {{\n" + ",\n".join(lines) + "\n }")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def save(ledger: pathlib.Path, key: str, release: str, layout: str, file: str,
         counts: dict[str, int], current: dict[str, str] | None = None) -> Record:
    """Record a file that passed, in place of its earlier record for this kernel and
    layout, and drop every record whose key is not the file's in ``current`` (the keys
    of the code now: records of older code are of no use).  The ledger is written whole
    (a new file renamed over it) under a lock on its directory (flock: runners at once
    lose no record); a ledger that is not one is left as it is (ValueError)."""
    if not test_file(file) or not passed(counts) or not re.fullmatch(r"[0-9a-f]{40}", key):
        raise ValueError(f"{file}: not a test file that passed ({counts}), key {key!r}")
    combination = _combination(release, layout)
    record = Record(file, key, {what: int(counts.get(what, 0)) for what in OUTCOMES},
                    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    directory = os.open(ledger.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with _SAVING:
            fcntl.flock(directory, fcntl.LOCK_EX)
            recorded = _read(ledger)
            if recorded is None:
                raise ValueError(f"{ledger}: not a ledger of records (left as it is)")
            if current is not None:
                recorded = {c: {n: r for n, r in files.items() if current.get(n) == r.key}
                            for c, files in recorded.items()}
            recorded.setdefault(combination, {})[file] = record
            recorded = {c: files for c, files in recorded.items() if files}
            fd, tmp = tempfile.mkstemp(prefix=f".{ledger.name}.", dir=ledger.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    os.fchmod(f.fileno(), 0o644)
                    f.write(_dump(recorded))
                os.replace(tmp, ledger)
            except BaseException:
                os.unlink(tmp)
                raise
    finally:
        os.close(directory)  # and its lock
    return record


class Recorder:
    """Records each test file of ``todo`` that passes, from a guest's console line by
    line (``recorder(line)``), while the file's key (``checkout``'s code and the
    ``environment``) is still the one in ``keys`` (a guest stopped hours in keeps what it
    finished; a change to the shared code in the meantime records nothing more, a change
    to one test file nothing more of that file).  A record
    that cannot be written (the ledger is not one, git fails) is said once, on stderr,
    and recording stops: the guest runs on."""

    def __init__(self, ledger: pathlib.Path, checkout: pathlib.Path, keys: dict[str, str],
                 release: str, layout: str, todo: Iterable[str], environment: str = "",
                 prefix: str = "") -> None:
        self._ledger, self._checkout, self._keys = ledger, checkout, keys
        self._release, self._layout = release, layout
        self._environment, self._prefix = environment, prefix
        self._todo = set(todo)
        self.saved: list[Record] = []
        self.broken: str | None = None

    def __call__(self, line: str) -> None:
        parsed = file_line(line)
        if (self.broken is not None or parsed is None or parsed[0] not in self._todo
                or not passed(parsed[1])):
            return
        name, counts = parsed
        try:
            now = file_keys(self._checkout, self._environment) or {}
            if now.get(name) == self._keys[name]:  # this file's code, unchanged
                self.saved.append(save(self._ledger, self._keys[name], self._release,
                                       self._layout, name, counts, self._keys))
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            self.broken = f"{self._prefix}recording {name}: {e}; no more records this run"
            print(self.broken, file=sys.stderr, flush=True)


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


def _failures_unfinished(console: str, finished: Iterable[str]) -> int:
    """The failures (FAILED_MARKER lines) in files that did not finish."""
    done = set(finished)
    return sum(1 for m in re.finditer(rf"^{_ECHO_PREFIX}{FAILED_MARKER} "
                                      rf"({_TEST_FILE.pattern})::", console, re.MULTILINE)
               if m.group(1) not in done)


def summarize(kernel: str, layout: str, code: int, console: str,
              recorded: Iterable[Record] = (), files: int = 0) -> tuple[str, str]:
    """(``kernel R cgroups L: N passed, M failed, K skipped``, pytest's summary line) of a
    guest run (``console``, "" when no guest ran; ``kernel``, a release or version, names
    the kernel when the console does not) and of the ``recorded`` files (of ``files`` in
    all) that it did not run.  A guest that printed no pytest summary (stopped, or hung)
    is counted from the files it finished and the failures it printed, and said so; a
    run with files to run and no console was not run (stopped before its guest)."""
    recorded = list(recorded)
    release = re.search(r"guest kernel (\S+)", console)
    counts = dict.fromkeys(OUTCOMES, 0)
    _add(counts, (record.counts for record in recorded))
    summary = _summary_line(console) if console else None
    finished = file_outcomes(console) if console else {}
    cut = 0
    if summary is not None:
        _add(counts, [summary_counts(summary)])
    else:
        _add(counts, finished.values())
        cut = _failures_unfinished(console, finished)
        counts["failed"] += cut
    head = f"kernel {release.group(1) if release else kernel} cgroups {layout}: "
    head += counts_line(counts)
    complete = not console and recorded and len(recorded) == files
    if recorded:
        ended = sorted(record.ended for record in recorded)
        which = f"all {len(recorded)} files" if complete else f"{len(recorded)} of {files} files"
        head += f" ({which} from records of this code, {ended[0]} to {ended[-1]})"
    if complete:
        return head, f"all {len(recorded)} files recorded: {counts_line(counts)}"
    if not console:
        left = f"{files - len(recorded)} files" if files else "the tests"
        return head + f" (not run: stopped before its guest; {left} to run)", ""
    if summary is None:
        of = f" of the {files - len(recorded)} it was to run" if files else ""
        head += (f" (no pytest summary: guest status {code}; counted from the "
                 f"{len(finished)} files it finished{of}"
                 + (f", and {cut} failures printed in a file it did not finish" if cut else "")
                 + ")")
        summary = "\n".join(console.splitlines()[-30:])
    return head, summary
