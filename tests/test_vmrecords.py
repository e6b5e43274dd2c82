"""The kernel matrix's records (tests/vmrecords.py): a pass is reused only for the same
code, and a changed or unreadable record is not."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

import vmrecords

pytestmark = pytest.mark.unprivileged


def _git(repo: pathlib.Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: pathlib.Path) -> pathlib.Path:
    if shutil.which("git") is None:
        pytest.skip("git is missing")
    root = tmp_path / "checkout"
    for name in ("src/pkg/mod.py", "tests/test_x.py", "pyproject.toml", "setup.py",
                 "README.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "one")
    return root


def test_the_key_follows_the_code_not_the_readme(repo: pathlib.Path) -> None:
    key = vmrecords.code_key(repo)
    assert key is not None and len(key) == 40
    (repo / "README.md").write_text("a note\n")  # not code: same key, changed or committed
    assert vmrecords.code_key(repo) == key
    _git(repo, "commit", "-q", "-am", "readme")
    assert vmrecords.code_key(repo) == key
    (repo / "src" / "pkg" / "__pycache__").mkdir()  # ignored files change nothing
    (repo / "src" / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"x")
    assert vmrecords.code_key(repo) == key
    (repo / "tests" / "test_new.py").write_text("")  # an untracked test: no key
    assert vmrecords.code_key(repo) is None
    _git(repo, "add", ".")
    assert vmrecords.code_key(repo) is None  # staged, not committed: still no key
    _git(repo, "commit", "-q", "-m", "test")
    assert vmrecords.code_key(repo) not in (None, key)
    (repo / "src" / "pkg" / "mod.py").write_text("changed\n")
    assert vmrecords.code_key(repo) is None
    assert vmrecords.code_key(repo / "nowhere") is None


def test_a_record_is_found_for_its_key_only(tmp_path: pathlib.Path) -> None:
    saved = vmrecords.save(tmp_path, "k" * 40, "6.1.0-57-amd64", "v2",
                           "kernel 6.1.0-57-amd64 cgroups v2: 9 passed, 0 failed, 1 skipped",
                           "9 passed, 1 skipped in 12.00s")
    assert vmrecords.load(tmp_path, "k" * 40, "6.1.0-57-amd64", "v2") == saved
    assert saved.ended.endswith(" UTC")
    for key in (("j" * 40, "6.1.0-57-amd64", "v2"), ("k" * 40, "6.1.0-58-amd64", "v2"),
                ("k" * 40, "6.1.0-57-amd64", "hybrid")):
        assert vmrecords.load(tmp_path, *key) is None
    with pytest.raises(ValueError):
        vmrecords.save(tmp_path, "../x", "r", "v2", "h", "s")
    assert os.listdir(tmp_path / "results") == [f"{'k' * 40}-6.1.0-57-amd64-v2.json"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "garbage", "big"])
def test_a_record_that_is_not_one_is_ignored(tmp_path: pathlib.Path, kind: str) -> None:
    """Not a small regular file of the expected shape: run again (a FIFO does not hang)."""
    path = tmp_path / "results" / f"{'k' * 40}-r-v2.json"
    path.parent.mkdir()
    real = tmp_path / "real.json"
    real.write_text('{"head": "h", "summary": "s", "ended": "e"}')
    if kind == "symlink":
        path.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "garbage":
        path.write_text('{"head": "h"}')
    else:
        path.write_text(" " * (2 << 20) + real.read_text())
    assert vmrecords.load(tmp_path, "k" * 40, "r", "v2") is None
