"""The kernel matrix's records (tests/vmrecords.py, tests/vmfiles.py): each test file's
pass is reused only for the same code, kernel and layout, a change to one test file
runs that file again, and a changed or unreadable record is not used."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import vmrecords

pytestmark = pytest.mark.unprivileged

TESTS = pathlib.Path(__file__).resolve().parent
COUNTS = {"passed": 9, "failed": 0, "errors": 0, "skipped": 1, "xfailed": 2, "xpassed": 0}


def _git(repo: pathlib.Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: pathlib.Path) -> pathlib.Path:
    if shutil.which("git") is None:
        pytest.skip("git is missing")
    root = tmp_path / "checkout"
    for name in ("src/pkg/mod.py", "tests/test_x.py", "tests/test_y.py", "tests/helpers.py",
                 "pyproject.toml", "setup.py", "README.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    return root


def test_each_file_is_keyed_by_itself_and_the_rest_of_the_code(repo: pathlib.Path) -> None:
    keys = vmrecords.file_keys(repo)
    assert keys is not None and sorted(keys) == ["tests/test_x.py", "tests/test_y.py"]
    assert all(len(k) == 40 for k in keys.values()) and len(set(keys.values())) == 2
    (repo / "README.md").write_text("a note\n")  # not code: same keys, changed or committed
    assert vmrecords.file_keys(repo) == keys
    _git(repo, "commit", "-q", "-am", "readme")
    assert vmrecords.file_keys(repo) == keys
    (repo / "src" / "pkg" / "__pycache__").mkdir()  # ignored files change nothing
    (repo / "src" / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"x")
    assert vmrecords.file_keys(repo) == keys
    (repo / "tests" / "test_x.py").write_text("changed\n")  # uncommitted: no keys
    assert vmrecords.file_keys(repo) is None
    _git(repo, "commit", "-q", "-am", "x")  # one test file: its key only
    after = vmrecords.file_keys(repo)
    assert after is not None and after["tests/test_y.py"] == keys["tests/test_y.py"]
    assert after["tests/test_x.py"] != keys["tests/test_x.py"]
    for changed in ("tests/helpers.py", "src/pkg/mod.py"):  # shared code: every key
        (repo / changed).write_text("changed\n")
        _git(repo, "commit", "-q", "-am", changed)
        now = vmrecords.file_keys(repo)
        assert now is not None and not set(now.values()) & set(after.values())
        after = now
    for outside in ("scripts/test.sh", "README.md"):  # not code
        (repo / outside).parent.mkdir(exist_ok=True)
        (repo / outside).write_text("changed\n")
    (repo / "scripts" / "launcher.py.in").write_text("# launchers\n")  # code
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "scripts")
    now = vmrecords.file_keys(repo)
    assert now is not None and not set(now.values()) & set(after.values())
    # the host's interpreter, distributions and peers: every key
    assert not set((vmrecords.file_keys(repo, "podman 4.3.1") or {}).values()) & set(
        now.values())
    assert vmrecords.file_keys(repo, "podman 4.3.1") == vmrecords.file_keys(repo, "podman 4.3.1")
    (repo / "tests" / "test_new.py").write_text("")  # an untracked test: no keys
    assert vmrecords.file_keys(repo) is None
    _git(repo, "add", ".")
    assert vmrecords.file_keys(repo) is None  # staged, not committed: still none
    _git(repo, "commit", "-q", "-m", "test")
    assert sorted(vmrecords.file_keys(repo) or ()) == [
        "tests/test_new.py", "tests/test_x.py", "tests/test_y.py"]
    assert vmrecords.file_keys(repo / "nowhere") is None


def test_the_runners_bookkeeping_is_part_of_its_own_tests_keys_only(
        repo: pathlib.Path) -> None:
    """tests/vmrecords.py runs on the host only: a fix to it runs its own tests again, not
    the suite (the files that the guest imports, vmfiles.py among them, re-key all)."""
    (repo / "tests" / "vmrecords.py").write_text("# one\n")
    (repo / "tests" / "test_vmrecords.py").write_text("# its tests\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "runner")
    keys = vmrecords.file_keys(repo)
    (repo / "tests" / "vmrecords.py").write_text("# two\n")
    _git(repo, "commit", "-q", "-am", "runner fix")
    after = vmrecords.file_keys(repo)
    assert keys is not None and after is not None
    assert {n for n in keys if keys[n] != after[n]} == {"tests/test_vmrecords.py"}
    (repo / "tests" / "vmfiles.py").write_text("# the guest's plugin\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "plugin")
    now = vmrecords.file_keys(repo)
    assert now is not None and not set(now.values()) & set(after.values())


KEY = "a" * 40


def test_files_are_recorded_as_the_guest_prints_them_while_the_code_is_unchanged(
        repo: pathlib.Path) -> None:
    keys = vmrecords.file_keys(repo)
    assert keys is not None
    ledger = repo / vmrecords.LEDGER  # outside the code: saving changes no key
    recorder = vmrecords.Recorder(ledger, repo, keys, "6.1.0-57-amd64", "v2",
                                  ["tests/test_x.py"])
    line = "NSBIND-VM-FILE {} passed=2 failed={} errors=0 skipped=0 xfailed=0 xpassed=0"
    recorder(line.format("tests/test_y.py", 0))  # recorded already: not in todo
    recorder(line.format("tests/test_x.py", 1))  # failed
    recorder("tests/test_x.py ..")
    assert not ledger.exists() and recorder.saved == []
    recorder(line.format("tests/test_x.py", 0))
    assert [r.file for r in recorder.saved] == ["tests/test_x.py"]
    assert vmrecords.file_keys(repo) == keys
    assert list(vmrecords.load(ledger, "6.1.0-57-amd64", "v2", keys)) == ["tests/test_x.py"]
    recorder = vmrecords.Recorder(ledger, repo, keys, "6.1.0-57-amd64", "v2", keys)
    (repo / "tests" / "test_x.py").write_text("changed while the guest ran\n")
    _git(repo, "commit", "-q", "-am", "x")  # that file only: the others still record
    recorder(line.format("tests/test_x.py", 0))
    recorder(line.format("tests/test_y.py", 0))
    assert [r.file for r in recorder.saved] == ["tests/test_y.py"]
    (repo / "src" / "pkg" / "mod.py").write_text("changed while the guest ran\n")
    ledger.unlink()
    recorder(line.format("tests/test_y.py", 0))
    assert not ledger.exists() and len(recorder.saved) == 1


def test_a_record_is_found_for_its_key_kernel_and_layout_only(tmp_path: pathlib.Path) -> None:
    ledger = tmp_path / "kernel-matrix.json"
    saved = vmrecords.save(ledger, KEY, "6.1.0-57-amd64", "v2", "tests/test_x.py", COUNTS)
    assert vmrecords.load(ledger, "6.1.0-57-amd64", "v2", {"tests/test_x.py": KEY}) == {
        "tests/test_x.py": saved}
    assert saved.counts == COUNTS and saved.ended.endswith(" UTC") and saved.key == KEY
    for release, layout, keys in (("6.1.0-57-amd64", "v2", {"tests/test_x.py": "b" * 40}),
                                  ("6.1.0-57-amd64", "v2", {"tests/test_y.py": KEY}),
                                  ("6.1.0-58-amd64", "v2", {"tests/test_x.py": KEY}),
                                  ("6.1.0-57-amd64", "hybrid", {"tests/test_x.py": KEY})):
        assert vmrecords.load(ledger, release, layout, keys) == {}
    with pytest.raises(ValueError):
        vmrecords.save(ledger, "../x", "r", "v2", "tests/test_x.py", COUNTS)
    with pytest.raises(ValueError):
        vmrecords.save(ledger, KEY, "../r", "v2", "tests/test_x.py", COUNTS)
    with pytest.raises(ValueError):  # a failure, or nothing run, is not a pass
        vmrecords.save(ledger, KEY, "r", "v2", "tests/test_x.py", {**COUNTS, "errors": 1})
    with pytest.raises(ValueError):
        vmrecords.save(ledger, KEY, "r", "v2", "tests/test_x.py", {})
    with pytest.raises(ValueError):
        vmrecords.save(ledger, KEY, "r", "v2", "../x.py", COUNTS)
    assert os.listdir(tmp_path) == ["kernel-matrix.json"]
    # a new pass of the file on the same kernel and layout replaces its record; the
    # others stay
    vmrecords.save(ledger, KEY, "6.1.0-57-amd64", "hybrid", "tests/test_x.py", COUNTS)
    vmrecords.save(ledger, "b" * 40, "6.1.0-57-amd64", "v2", "tests/test_x.py", COUNTS)
    data = json.loads(ledger.read_text())
    assert {c: {f: e["key"] for f, e in files.items()} for c, files in data.items()} == {
        "6.1.0-57-amd64 v2": {"tests/test_x.py": "b" * 40},
        "6.1.0-57-amd64 hybrid": {"tests/test_x.py": KEY}}
    assert vmrecords.load(ledger, "6.1.0-57-amd64", "v2", {"tests/test_x.py": KEY}) == {}


@pytest.mark.parametrize("kind", ["symlink", "fifo", "big", "deep", "conflict", "garbage",
                                  "failed", "negative", "huge", "float", "text"])
def test_a_record_that_is_not_one_is_ignored(tmp_path: pathlib.Path, kind: str) -> None:
    """A ledger that is not a small regular file of JSON has no records, and is not
    written over (a merge conflict's markers in it are for a person to resolve); an entry
    not of the expected shape, or not a pass, is none (its file runs again).  A FIFO
    does not hang, and nothing raises but the refused save."""
    ledger = tmp_path / "kernel-matrix.json"
    real = tmp_path / "real.json"
    entry = {"key": KEY, "ended": "e", "counts": COUNTS}
    good = {"r v2": {"tests/test_ok.py": entry}}
    keys = {"tests/test_x.py": KEY, "tests/test_ok.py": KEY}
    real.write_text(json.dumps({"r v2": {**good["r v2"], "tests/test_x.py": entry}}))
    unusable = {"symlink", "fifo", "big", "deep", "conflict"}
    if kind == "symlink":
        ledger.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(ledger)
    elif kind == "big":
        ledger.write_text(" " * (1 << 20) + real.read_text())
    elif kind == "deep":
        ledger.write_text("[" * 200_000)
    elif kind == "conflict":
        ledger.write_text("<<<<<<< HEAD\n" + real.read_text() + "\n=======\n{}\n>>>>>>> x\n")
    else:
        counts = {"garbage": {"passed": 1}, "failed": {**COUNTS, "failed": 1},
                  "negative": {**COUNTS, "skipped": -1}, "float": {**COUNTS, "passed": 1.5},
                  "text": {**COUNTS, "passed": "9"}}.get(kind)
        text = json.dumps({"r v2": {**good["r v2"], "tests/test_x.py": {**entry,
                                                                        "counts": counts}}})
        ledger.write_text(text.replace("null", '{"passed": 1e999}'))  # huge: inf
    before = None if kind == "fifo" else ledger.read_bytes()
    found = vmrecords.load(ledger, "r", "v2", keys)
    assert sorted(found) == ([] if kind in unusable else ["tests/test_ok.py"])
    if kind in unusable:
        with pytest.raises(ValueError, match="not a ledger of records"):
            vmrecords.save(ledger, KEY, "r", "v2", "tests/test_y.py", COUNTS)
        assert before is None or ledger.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == ["kernel-matrix.json", "real.json"]
    ledger.unlink()
    os.rename(real, ledger)  # the same content, as a regular file: found
    assert sorted(vmrecords.load(ledger, "r", "v2", keys)) == [
        "tests/test_ok.py", "tests/test_x.py"]


def test_saving_drops_the_records_of_older_code(tmp_path: pathlib.Path) -> None:
    ledger = tmp_path / "kernel-matrix.json"
    old = {"tests/test_x.py": "b" * 40, "tests/test_y.py": "c" * 40}
    for name, key in old.items():
        vmrecords.save(ledger, key, "6.1.0-57-amd64", "hybrid", name, COUNTS)
    vmrecords.save(ledger, "c" * 40, "6.1.0-56-amd64", "v2", "tests/test_y.py", COUNTS)
    now = {"tests/test_x.py": KEY, "tests/test_y.py": "c" * 40}  # test_x.py changed
    vmrecords.save(ledger, KEY, "6.12.1", "v2", "tests/test_x.py", COUNTS, now)
    data = json.loads(ledger.read_text())
    assert {c: sorted(files) for c, files in data.items()} == {
        "6.1.0-56-amd64 v2": ["tests/test_y.py"], "6.1.0-57-amd64 hybrid": ["tests/test_y.py"],
        "6.12.1 v2": ["tests/test_x.py"]}
    assert len(ledger.read_text().splitlines()) == 3 * 3 + 2  # a line a file
    assert oct(ledger.stat().st_mode & 0o777) == oct(0o644)


def test_a_record_that_cannot_be_written_stops_recording_not_the_guest(
        repo: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = vmrecords.file_keys(repo)
    assert keys is not None
    ledger = repo / vmrecords.LEDGER
    ledger.write_text("<<<<<<< HEAD\n")
    recorder = vmrecords.Recorder(ledger, repo, keys, "6.1.0-57-amd64", "v2", keys,
                                  prefix="[6.1 v2] ")
    line = "NSBIND-VM-FILE {} passed=2 failed=0 errors=0 skipped=0 xfailed=0 xpassed=0"
    recorder(line.format("tests/test_x.py"))
    recorder(line.format("tests/test_y.py"))
    assert recorder.saved == [] and ledger.read_text() == "<<<<<<< HEAD\n"
    err = capsys.readouterr().err.splitlines()
    assert err == [f"[6.1 v2] recording tests/test_x.py: {ledger}: not a ledger of records "
                   "(left as it is); no more records this run"]


def test_only_the_host_side_imports_the_bookkeeping() -> None:
    """HOST_SIDE is sound only while no module that a guest imports (conftest, the
    plugin, a support module, a test file but its own) imports vmrecords."""
    importers = sorted(
        str(path.relative_to(TESTS.parent)) for path in
        [*TESTS.glob("*.py"), *(TESTS.parent / "src").rglob("*.py")]
        if re.search(r"^\s*(?:import vmrecords|from vmrecords import)", path.read_text(),
                     re.MULTILINE))
    runners = ["tests/unprivileged.py", "tests/vm.py"]  # run on the host, by no test
    users = [u for us in vmrecords.HOST_SIDE.values() for u in us]
    assert importers == sorted(runners + users)
    for runner in runners:
        name = pathlib.Path(runner).stem
        assert not [p for p in TESTS.glob("*.py")
                    if f"tests/{p.name}" not in (*runners, *users)
                    and re.search(rf"^\s*(?:import {name}|from {name} import)\b",
                                  p.read_text(), re.MULTILINE)], runner


def test_the_guest_prints_each_file_as_it_ends(tmp_path: pathlib.Path) -> None:
    """The plugin, in a real pytest run: each file's line comes after its last test, with
    pytest's own counts (an error in a fixture's tear-down is one), each failure's line as
    it fails, and the runner reads the files' lines back from the console (after a
    guest's line prefix or firmware noise)."""
    suite = tmp_path / "tests"
    suite.mkdir()
    (suite / "conftest.py").write_text(
        "import pytest, vmfiles\n"
        "def pytest_configure(config):\n"
        "    config.pluginmanager.register(vmfiles.FileOutcomes(config), 'vmfiles')\n"
        "@pytest.fixture\n"
        "def broken():\n"
        "    yield\n"
        "    raise RuntimeError('left something')\n")
    (suite / "test_a.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_two(n): pass\n"
        "@pytest.mark.skip(reason='no')\n"
        "def test_skip(): pass\n"
        "@pytest.mark.xfail(reason='known')\n"
        "def test_xfail(): assert False\n")
    (suite / "test_b.py").write_text(
        "def test_fails(): assert False\n"
        "def test_teardown(broken): pass\n")
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PY_COLORS": "0"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", "tests"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("NSBIND-VM-")]
    assert lines == [
        "NSBIND-VM-FILE tests/test_a.py passed=3 failed=0 errors=0 skipped=1 xfailed=1 "
        "xpassed=0",
        "NSBIND-VM-FAILED tests/test_b.py::test_fails (call): tests/test_b.py:1: assert False",
        "NSBIND-VM-FAILED tests/test_b.py::test_teardown (teardown): tests/conftest.py:7: "
        "RuntimeError: left something",
        "NSBIND-VM-FILE tests/test_b.py passed=1 failed=1 errors=1 skipped=0 xfailed=0 "
        "xpassed=0"], proc.stdout
    console = "\x1bc[?7l" + proc.stdout.replace("NSBIND-VM-FILE tests/test_a",
                                                 "[6.1 v2] NSBIND-VM-FILE tests/test_a")
    console += ("\nNSBIND-VM-FILE tests/test_c.py passed=1"  # cut short
                "\nsaid NSBIND-VM-FILE tests/test_d.py passed=1 failed=0 errors=0 skipped=0 "
                "xfailed=0 xpassed=0")  # not at the start of its line
    outcomes = vmrecords.file_outcomes(console)
    assert outcomes == {
        "tests/test_a.py": {"passed": 3, "failed": 0, "errors": 0, "skipped": 1,
                            "xfailed": 1, "xpassed": 0},
        "tests/test_b.py": {"passed": 1, "failed": 1, "errors": 1, "skipped": 0,
                            "xfailed": 0, "xpassed": 0}}  # a cut line, or inside one: none
    assert [vmrecords.passed(c) for c in outcomes.values()] == [True, False]


def test_a_combination_is_reported_from_its_records_and_its_run() -> None:
    records = [vmrecords.Record(f"tests/test_{n}.py", KEY, {**COUNTS, "passed": n}, ended)
               for n, ended in ((1, "2026-12-02 01:00 UTC"), (2, "2026-12-01 03:00 UTC"))]
    head, summary = vmrecords.summarize("6.1.0-57-amd64", "v2", 0, "", records, 2)
    assert head == ("kernel 6.1.0-57-amd64 cgroups v2: 3 passed, 0 failed, 2 skipped (all 2 "
                    "files from records of this code, 2026-12-01 03:00 UTC to 2026-12-02 "
                    "01:00 UTC)")
    assert summary == "all 2 files recorded: 3 passed, 0 failed, 2 skipped"
    console = ("guest kernel 6.1.0-57-amd64 cgroups v2: 0::/\n.F\n"
               "NSBIND-VM-FILE tests/test_z.py passed=4 failed=1 errors=1 skipped=0 "
               "xfailed=0 xpassed=0\n"
               "=== 1 failed, 4 passed, 1 error in 9.00s ===\nNSBIND-VM-RESULT 1")
    head, summary = vmrecords.summarize("6.1", "v2", 1, console, records[:1], 3)
    assert head == ("kernel 6.1.0-57-amd64 cgroups v2: 5 passed, 2 failed, 1 skipped (1 of 3 "
                    "files from records of this code, 2026-12-02 01:00 UTC to 2026-12-02 "
                    "01:00 UTC)")
    assert summary == "=== 1 failed, 4 passed, 1 error in 9.00s ==="
    # a guest stopped before pytest's summary: the files it finished and the failures
    # printed in the one it did not finish, not the console's other lines
    stopped = ("guest kernel 6.1.0-57-amd64 cgroups v2\n..F.\n"
               "NSBIND-VM-FAILED tests/test_z.py::test_a (call): x.py:1: 3 failed\n"
               "NSBIND-VM-FILE tests/test_z.py passed=3 failed=1 errors=0 skipped=2 "
               "xfailed=0 xpassed=0\n...F\n"
               "NSBIND-VM-FAILED tests/test_zz.py::test_b[1] (teardown): x.py:2: boom\n"
               "SIGTERM: stopping the guests")
    head, summary = vmrecords.summarize("6.1", "v2", 99, stopped, records[:1], 4)
    assert head == ("kernel 6.1.0-57-amd64 cgroups v2: 4 passed, 2 failed, 3 skipped (1 of 4 "
                    "files from records of this code, 2026-12-02 01:00 UTC to 2026-12-02 "
                    "01:00 UTC) (no pytest summary: guest status 99; counted from the 1 files "
                    "it finished of the 3 it was to run, and 1 failures printed in a file it "
                    "did not finish)")
    assert summary == stopped
    head, _ = vmrecords.summarize("6.12", "hybrid", 99, "SeaBIOS\n(hung)")
    assert head == ("kernel 6.12 cgroups hybrid: 0 passed, 0 failed, 0 skipped (no pytest "
                    "summary: guest status 99; counted from the 0 files it finished)")
    # stopped before its guest booted: not run, whatever was recorded
    head, summary = vmrecords.summarize("6.12.117", "v2", 99, "", records[:1], 71)
    assert head == ("kernel 6.12.117 cgroups v2: 1 passed, 0 failed, 1 skipped (1 of 71 files "
                    "from records of this code, 2026-12-02 01:00 UTC to 2026-12-02 01:00 UTC) "
                    "(not run: stopped before its guest; 70 files to run)") and summary == ""
    head, _ = vmrecords.summarize("6.1", "v2", 99, "")
    assert head == ("kernel 6.1 cgroups v2: 0 passed, 0 failed, 0 skipped (not run: stopped "
                    "before its guest; the tests to run)")


def test_the_environment_names_the_interpreter_its_distributions_and_the_peers() -> None:
    env = vmrecords.environment()
    assert env.splitlines()[0] == sys.version.splitlines()[0]
    assert re.search(r"^pytest==\d", env, re.MULTILINE)
    if shutil.which("dpkg-query") and shutil.which("runc"):
        assert re.search(r"^runc \S+$", env, re.MULTILINE)
    assert vmrecords.environment() == env
