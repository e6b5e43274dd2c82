"""Each test file's outcome, printed in a kernel-matrix guest as the file's last test
ends: the runner (tests/vm.py) records the files that passed (tests/vmrecords.py), so a
guest stopped hours into the suite keeps what it finished.

A pytest plugin, registered by conftest.py inside a guest only.  The line is
``NSBIND-VM-FILE tests/test_x.py passed=N failed=N errors=N skipped=N xfailed=N
xpassed=N``, counted as pytest's own summary counts: a failure in a test's set-up or
tear-down (the leak guards') is an error; the session's own tear-down (the session leak
guard) runs within the last test's, so it counts for the last file.  A failed test also
gets a line as it fails (FAILED_MARKER): pytest -q names failures only at the end, which
a stopped guest never reaches.
"""

from __future__ import annotations

import pytest

__all__ = ["FAILED_MARKER", "FILE_MARKER", "OUTCOMES", "FileOutcomes"]

#: pytest's outcomes, in the order of a file's line
OUTCOMES = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")
#: a test file's line, printed as its last test ends: ``NSBIND-VM-FILE tests/test_x.py
#: passed=3 failed=0 ...`` (every outcome of OUTCOMES, in that order)
FILE_MARKER = "NSBIND-VM-FILE"

#: a failed test's line, printed as it fails: ``NSBIND-VM-FAILED <node id> (<phase>):
#: <the last line of its report>``
FAILED_MARKER = "NSBIND-VM-FAILED"


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def outcome(report: pytest.TestReport) -> str | None:
    """Which of OUTCOMES ``report`` (one phase of one test) adds to, if any."""
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xfailed" if report.skipped else "xpassed"
        return report.outcome
    if report.failed:
        return "errors"
    if report.skipped:  # in set-up: a skip mark, a fixture's skip, an xfail(run=False)
        return "xfailed" if xfail else "skipped"
    return None


def _reason(report: pytest.TestReport, root: str) -> str:
    """Where (relative to ``root`` when below it) and why a test failed, in one line, as
    pytest's short summary says it."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        message = " ".join(str(crash.message).split())
        path = str(crash.path)
        path = path[len(root) + 1:] if path.startswith(root + "/") else path
        return f"{path}:{crash.lineno}: {message}"
    return next((ln for ln in reversed(report.longreprtext.splitlines()) if ln.strip()), "")


class FileOutcomes:
    """Counts each test file's outcomes and prints its line when its last test has been
    torn down."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._left: dict[str, int] = {}  # tests of each file not torn down yet
        self._counts: dict[str, dict[str, int]] = {}

    @pytest.hookimpl(trylast=True)  # after deselection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            name = _file(item.nodeid)
            self._left[name] = self._left.get(name, 0) + 1
            self._counts.setdefault(name, dict.fromkeys(OUTCOMES, 0))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = _file(report.nodeid)
        counts = self._counts.get(name)
        if counts is None:
            return
        what = outcome(report)
        if what is not None:
            counts[what] += 1
        if report.failed:  # at once: pytest -q shows failures only once all have run
            self._write(f"{FAILED_MARKER} {report.nodeid} ({report.when}): "
                        f"{_reason(report, str(self._config.rootpath))[:300]}")
        if report.when != "teardown":
            return
        self._left[name] -= 1
        if self._left[name] == 0:
            self._write(FILE_MARKER + f" {name}"
                        + "".join(f" {w}={counts[w]}" for w in OUTCOMES))

    def _write(self, line: str) -> None:
        terminal = self._config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:  # on a line of its own, after -q's dots
            terminal.write("\n")
            terminal.write_line(line)
        else:
            print(line, flush=True)
