"""Rootless ``nsbind run``: the same commands as an unprivileged user the tests make,
with subordinate id ranges (newuidmap/newgidmap) and without (a single-id map).  The
user, its /etc/subuid and /etc/subgid lines and its files are removed afterwards
(the two files are restored byte for byte, or removed if they were not there)."""

from __future__ import annotations

import json
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from clients import build_rootfs, oci_archive, tar_rootfs
from testuser import made_user

SRC = str(pathlib.Path(__file__).resolve().parent.parent / "src")
PYTHON = "/usr/bin/python3"  # Debian's: the user cannot reach a python under /root
IMG = "localhost/busybox:test"

pytestmark = [
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is missing (passwd)"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is missing"),
    pytest.mark.skipif(not os.path.exists(PYTHON), reason=f"{PYTHON} is missing (python3)"),
]


class User:
    """An unprivileged user running ``nsbind`` (Debian's python3, this checkout)."""

    def __init__(self, name: str, home: pathlib.Path) -> None:
        self.name, self.home = name, home
        self.uid = pwd.getpwnam(name).pw_uid

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.home),
               "PYTHONPATH": SRC, "XDG_DATA_HOME": str(self.home / "data"),
               "XDG_RUNTIME_DIR": str(self.home / "run")}
        proc = subprocess.run(["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}",
                               "--clear-groups", PYTHON, "-m", "nsbind", *args],
                              capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.home)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args}: exit {proc.returncode}: {proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[pathlib.Path]:
    """A directory the test user can reach (pytest's own are root's, mode 0700)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="nsbind-rootless-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def archive(shared_dir: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("rootless-image")
    root = build_rootfs(base / "rootfs")
    out = oci_archive(tar_rootfs(root, str(base / "layer.tar")), str(shared_dir / "bb.tar"),
                      IMG)
    os.chmod(out, 0o644)
    return out


@pytest.fixture(params=["subids", "single"])
def user(request: pytest.FixtureRequest, shared_dir: pathlib.Path) -> Iterator[User]:
    name = f"nsbt{os.getpid() % 100000}"
    home = shared_dir / f"home-{request.param}-{len(list(shared_dir.iterdir()))}"
    with made_user(name, home, subids=request.param == "subids"):
        test_user = User(name, home)
        try:
            yield test_user
        finally:
            for record in _containers(test_user):  # what a failed test left, by nsbind
                test_user("rm", "-f", record["Id"], check=False)
    if home.exists():  # owned by the user's subordinate ids: removed as root
        shutil.rmtree(home)


def _containers(user: User) -> list[dict[str, Any]]:
    return list(json.loads(user("ps", "-a", "--format", "json").stdout))


def test_rootless_run_exec_logs_stop_rm(user: User, archive: str) -> None:
    out = user("run", "--rm", archive, "sh", "-c",
               "echo $$; id -u; touch /made && echo rw; stat -c %u /home/tester").stdout.split("\n")
    assert out[0] == "1" and out[1] == "0" and out[2] == "rw"
    subuid = pathlib.Path("/etc/subuid")
    if subuid.exists() and user.name in subuid.read_text():  # a range: owners kept
        assert out[3] == "1000"
    cid = user("run", "-d", "--name", "rl", IMG, "sh", "-c",
               "echo hello; exec sleep 60").stdout.strip()
    assert [r["State"] for r in _containers(user)] == ["running"]
    # the container's processes are the user's, in its own user namespace
    pid = json.loads(user("inspect", "rl").stdout)[0]["State"]["Pid"]
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{user.uid}" in status
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    assert user("exec", "rl", "sh", "-c", "id -u; exit 3", check=False).returncode == 3
    assert user("logs", "rl").stdout == "hello\n"
    user("stop", "-t", "1", "rl")
    assert _containers(user)[0]["Status"] == "Exited (137)"
    assert user("rm", "rl").stdout.strip() == "rl"
    assert _containers(user) == []
    storage = user.home / "data" / "nsbind" / "containers"
    assert not (storage / cid).exists()


def test_rootless_limits_are_refused_without_a_delegated_cgroup(user: User,
                                                                archive: str) -> None:
    proc = user("run", "--rm", "-m", "64m", archive, "true", check=False)
    assert proc.returncode == 125 and "delegated cgroup" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert _containers(user) == []
    assert list((user.home / "data" / "nsbind" / "containers").iterdir()) == []


def test_rootless_host_root(user: User) -> None:
    out = user("run", "--rm", "--rootfs", "/", "--", "sh", "-c",
               "echo $$; id -u; touch /usr/x 2>/dev/null || echo ro").stdout.split()
    assert out == ["1", "0", "ro"]
