"""spawn(start_gate=fd): the child parks after all its steps but seccomp and the exec,
until someone opens the FIFO for reading (runc's exec.fifo)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
import time
from collections.abc import Iterator

import pytest

from helpers import SLOWDOWN
from nsbind import Namespaces, spawn
from nsbind.spawnplan import SpawnError
from nsbind.spawnstdio import PIPE


@contextlib.contextmanager
def gate(tmp: pathlib.Path) -> Iterator[tuple[str, int]]:
    """A FIFO and this process's O_PATH fd of it."""
    path = str(tmp / "exec.fifo")
    os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        yield path, fd
    finally:
        os.close(fd)


def release(path: str) -> bytes:
    """What start does: open for reading (unblocks the child's open), read the byte."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1)
    finally:
        os.close(fd)


def parked_in_fifo(pid: int) -> bool:
    """Sleeping, not yet exec'd (still this Python), waiting in the FIFO's open."""
    with open(f"/proc/{pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    with open(f"/proc/{pid}/wchan") as f:
        wchan = f.read()
    return (state == "S" and os.readlink(f"/proc/{pid}/exe") == os.readlink("/proc/self/exe")
            and wchan in ("0", "", "wait_for_partner"))  # fifo_open; 0: wchan hidden


@pytest.mark.unprivileged
def test_gated_spawn_returns_parked_and_start_releases_it(tmp_path: pathlib.Path) -> None:
    with gate(tmp_path) as (path, fd):
        started = time.monotonic()
        proc = spawn(["sh", "-c", "exit 7"], start_gate=fd)
        try:
            assert time.monotonic() - started < 5 * SLOWDOWN
            time.sleep(0.1)
            assert proc.poll() is None
            assert parked_in_fifo(proc.pid)
            assert release(path) == b"0"
            assert proc.wait(timeout=10) == 7
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()


@pytest.mark.unprivileged
def test_a_parked_child_can_be_killed(tmp_path: pathlib.Path) -> None:
    with gate(tmp_path) as (_path, fd):
        proc = spawn(["true"], start_gate=fd)
        assert proc.poll() is None
        proc.kill()
        assert proc.wait(timeout=10) == -9


def test_gate_in_new_pid_and_mount_namespaces_parks_after_its_mounts(
        tmp_path: pathlib.Path) -> None:
    from helpers import busybox_root
    from nsbind import RootFS, mounts

    with tempfile.TemporaryDirectory() as top, RootFS(
            busybox_root(os.path.join(top, "root")), defaults=False).add(
            mounts.proc()) as root, gate(pathlib.Path(top)) as (path, fd):
        os.mkdir(os.path.join(top, "root", "proc"))
        proc = spawn(["/bin/sh", "-c", "cat /proc/self/mountinfo | grep -c ' /proc '"],
                     namespaces=Namespaces(pid=True, mnt=True), rootfs=root,
                     env={"PATH": "/bin"}, stdout=PIPE, start_gate=fd)
        try:
            assert proc.poll() is None
            # parked after its mounts: its mount table already has the container's /proc
            with open(f"/proc/{proc.pid}/mountinfo") as f:
                assert any(line.split()[4] == "/proc" for line in f)
            assert os.readlink(f"/proc/{proc.pid}/root") == "/"  # pivoted: its own root
            assert release(path) == b"0"
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0 and out is not None and out.strip() == b"1"
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()


def test_gate_without_proc_in_the_root_names_the_gate_step(tmp_path: pathlib.Path) -> None:
    from helpers import busybox_root
    from nsbind import RootFS

    with tempfile.TemporaryDirectory() as top, RootFS(
            busybox_root(os.path.join(top, "root")), defaults=False) as root, \
            gate(tmp_path) as (_path, fd):
        with pytest.raises(SpawnError, match="wait for start") as info:
            spawn(["/bin/sh", "-c", "true"], namespaces=Namespaces(pid=True, mnt=True),
                  rootfs=root, start_gate=fd)
    assert "procfs" in str(info.value)


@pytest.mark.unprivileged
def test_a_failure_before_the_gate_is_a_spawn_error(tmp_path: pathlib.Path) -> None:
    with gate(tmp_path) as (_path, fd):
        with pytest.raises(SpawnError, match="chdir /nonexistent-nsbind"):
            spawn(["true"], cwd="/nonexistent-nsbind", start_gate=fd)


@pytest.mark.unprivileged
@pytest.mark.parametrize("command, message", [
    (["nsbind-no-such-command"], r"^exec /.*/nsbind-no-such-command: ENOENT"),
    (["{tmp}/plain"], r"^exec /.*/plain: EACCES"),
    (["/etc"], r"^exec /etc: EACCES"),
], ids=["missing", "not-executable", "directory"])
def test_a_program_that_cannot_run_fails_the_gated_spawn_not_the_start(
        tmp_path: pathlib.Path, command: list[str], message: str) -> None:
    # as runc's LookPath before its exec.fifo: create fails, nothing is left parked
    (tmp_path / "plain").write_text("#!/bin/sh\n")
    (tmp_path / "plain").chmod(0o644)
    command = [c.replace("{tmp}", str(tmp_path)) for c in command]
    with gate(tmp_path) as (_path, fd):
        with pytest.raises(SpawnError, match=message) as info:
            spawn(command, start_gate=fd, env={"PATH": "/usr/bin:/bin"})
    assert info.value.step == "exec"


@pytest.mark.unprivileged
def test_a_gate_that_is_not_a_fifo_is_refused(tmp_path: pathlib.Path) -> None:
    fd = os.open(tmp_path, os.O_PATH | os.O_CLOEXEC)
    try:
        with pytest.raises(ValueError, match="not a FIFO"):
            spawn(["true"], start_gate=fd)
    finally:
        os.close(fd)


@pytest.mark.unprivileged
def test_no_fd_reaches_the_released_child_beyond_stdio(tmp_path: pathlib.Path) -> None:
    with gate(tmp_path) as (path, fd):
        proc = spawn(["sh", "-c", "ls /proc/self/fd"], start_gate=fd, stdout=PIPE)
        try:
            assert release(path) == b"0"
            out, _ = proc.communicate(timeout=10)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    assert out is not None  # 0-2 and the fd ls opens to list the directory
    assert len(out.split()) <= 4 and set(out.split()) >= {b"0", b"1", b"2"}
