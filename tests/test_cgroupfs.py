"""cgroup v2 directory fds: create, attach, CLONE_INTO_CGROUP, freeze, kill."""

from __future__ import annotations

import os
import signal
import time

import pytest

import nsbind
from helpers import child_exit
from nsbind import CgroupFd, CloneFlags
from nsbind.errors import Busy, InvalidArgument, NsbindError


def _own_v2_path(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line.rstrip("\n")[3:]
    raise AssertionError(f"pid {pid} has no cgroup v2 line")


def _relative(cg: CgroupFd) -> str:
    return "/" + os.path.relpath(cg.path, nsbind.cgroup2_mountpoint())


def _wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def test_cgroup2_mountpoint_is_cgroup2(cgroup2_root: str) -> None:
    with CgroupFd.open(cgroup2_root) as root:
        assert "cgroup.procs" in os.listdir(root.fileno())


def test_clone_into_cgroup_starts_the_child_there(test_cgroup: CgroupFd) -> None:
    pid, pidfd = nsbind.clone3(CloneFlags.PIDFD, cgroup=test_cgroup)
    if pid == 0:
        child_exit(signal.pause)
    assert pidfd is not None
    with pidfd:
        assert _own_v2_path(pid) == _relative(test_cgroup)
        assert test_cgroup.procs() == [pid]
        pidfd.send_signal(signal.SIGKILL)
        pidfd.wait()
    assert test_cgroup.procs() == []


def test_attach_moves_a_running_process(test_cgroup: CgroupFd) -> None:
    pid, pidfd = nsbind.clone3(CloneFlags.PIDFD)
    if pid == 0:
        child_exit(signal.pause)
    assert pidfd is not None
    with pidfd:
        assert _own_v2_path(pid) != _relative(test_cgroup)
        test_cgroup.attach(pid)
        assert _own_v2_path(pid) == _relative(test_cgroup)
        pidfd.send_signal(signal.SIGKILL)
        pidfd.wait()


def test_freeze_stops_progress_and_thaw_resumes(test_cgroup: CgroupFd) -> None:
    rfd, wfd = os.pipe()
    pid, pidfd = nsbind.clone3(CloneFlags.PIDFD, cgroup=test_cgroup)
    if pid == 0:

        def tick() -> None:
            while True:
                os.write(wfd, b".")
                time.sleep(0.001)

        child_exit(tick)
    os.close(wfd)
    assert pidfd is not None
    os.set_blocking(rfd, False)
    try:
        with pidfd:
            test_cgroup.freeze()
            _wait_until(lambda: test_cgroup.events()["frozen"] == 1)
            _drain(rfd)
            time.sleep(0.05)
            assert _drain(rfd) == 0, "a frozen process made progress"
            test_cgroup.thaw()
            _wait_until(lambda: test_cgroup.events()["frozen"] == 0)
            _wait_until(lambda: _drain(rfd) > 0)
            pidfd.send_signal(signal.SIGKILL)
            pidfd.wait()
    finally:
        os.close(rfd)


def _drain(fd: int) -> int:
    total = 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return total
        if not chunk:
            return total
        total += len(chunk)


def test_kill_ends_every_member(test_cgroup: CgroupFd) -> None:
    kids = []
    for _ in range(3):
        pid, pidfd = nsbind.clone3(CloneFlags.PIDFD, cgroup=test_cgroup)
        if pid == 0:
            child_exit(signal.pause)
        assert pidfd is not None
        kids.append(pidfd)
    assert sorted(test_cgroup.procs()) == sorted(k.pid for k in kids)
    test_cgroup.kill()
    for kid in kids:
        with kid:
            assert kid.wait().returncode == -signal.SIGKILL
    _wait_until(lambda: test_cgroup.events()["populated"] == 0)


def test_mkdir_rmdir_and_their_errors(test_cgroup: CgroupFd) -> None:
    with test_cgroup.mkdir("child") as child:
        assert child.path == f"{test_cgroup.path}/child"
        with pytest.raises(FileExistsError, match=r"^create cgroup .*/child: EEXIST"):
            test_cgroup.mkdir("child")
        test_cgroup.mkdir("child", exist_ok=True).close()
        pid, pidfd = nsbind.clone3(CloneFlags.PIDFD, cgroup=child)
        if pid == 0:
            child_exit(signal.pause)
        assert pidfd is not None
        with pidfd:
            with pytest.raises(Busy, match=r"^remove cgroup .*/child: EBUSY"):
                test_cgroup.rmdir("child")
            pidfd.send_signal(signal.SIGKILL)
            pidfd.wait()
    test_cgroup.rmdir("child")
    with pytest.raises(FileNotFoundError, match=r"^remove cgroup .*/child: ENOENT"):
        test_cgroup.rmdir("child")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0y"])
def test_invalid_names_are_refused_before_any_syscall(test_cgroup: CgroupFd, name: str) -> None:
    with pytest.raises(ValueError, match="invalid cgroup name"):
        test_cgroup.mkdir(name)


def test_write_error_names_file_and_value(test_cgroup: CgroupFd) -> None:
    with pytest.raises(NsbindError, match=r"^set cgroup.freeze=2 on .*: ERANGE"):
        test_cgroup.write("cgroup.freeze", 2)
    with pytest.raises(InvalidArgument, match=r"^set cgroup.procs=notapid on .*: EINVAL"):
        test_cgroup.write("cgroup.procs", "notapid")
    with pytest.raises(FileNotFoundError, match=r"^set nosuch.max=1M on .*: ENOENT"):
        test_cgroup.write("nosuch.max", "1M")  # a controller file this cgroup lacks


def test_open_refuses_a_directory_that_is_not_cgroup2(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="is not a cgroup v2 directory"):
        CgroupFd.open(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"^open cgroup /nonexistent: ENOENT"):
        CgroupFd.open("/nonexistent")


def test_clone_into_a_non_cgroup_fd_fails_cleanly(tmp_path: object) -> None:
    fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match=r"^clone3 PIDFD\|INTO_CGROUP: E"):
            nsbind.clone3(CloneFlags.PIDFD, cgroup=fd)
    finally:
        os.close(fd)
