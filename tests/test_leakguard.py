"""The leak guard itself: it must see what a careless test leaves behind."""

from __future__ import annotations

import os
import pathlib
import signal

import leakguard
import nsbind
from helpers import child_exit
from nsbind import CgroupFd, CloneFlags, UmountFlags


def test_leak_guard_catches_a_leaked_mount_and_fd(tmp_path: pathlib.Path) -> None:
    before = leakguard.snapshot()
    nsbind.mount("tmpfs", tmp_path, "tmpfs")  # in the test process's own namespace
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        leaks = leakguard.diff(before, leakguard.snapshot())
        assert f"mount {tmp_path}" in " ".join(leaks)
        assert f"fd {fd} -> /dev/null" in leaks
    finally:
        os.close(fd)
        nsbind.umount2(tmp_path, UmountFlags.DETACH)
    assert leakguard.diff(before, leakguard.snapshot()) == []


def test_leak_guard_catches_a_leaked_child_and_cgroup(cgroup2_root: str) -> None:
    before = leakguard.snapshot()
    pid, pidfd = nsbind.clone3(CloneFlags.PIDFD)
    if pid == 0:
        child_exit(signal.pause)
    assert pidfd is not None
    with CgroupFd.open(cgroup2_root) as root:
        root.mkdir("nsbind-leakguard-probe").close()
        try:
            after = leakguard.snapshot()
            leaks = leakguard.diff(before, after)
            assert f"child process {pid}" in leaks
            assert f"cgroup {cgroup2_root}/nsbind-leakguard-probe" in leaks
            assert any(leak.startswith("fd ") and "pidfd" in leak for leak in leaks)
            leakguard.reap_leaked_children(before, after)
            assert not os.path.exists(f"/proc/{pid}")
        finally:
            root.rmdir("nsbind-leakguard-probe")
            pidfd.close()
    assert leakguard.diff(before, leakguard.snapshot()) == []


def test_leak_guard_catches_a_changed_hostname() -> None:
    before = leakguard.snapshot()
    with nsbind.Namespaces(uts=True):  # what the guard reads is the thread's UTS namespace
        nsbind.sethostname("nsbind-leak-probe")
        leaks = leakguard.diff(before, leakguard.snapshot())
    assert any("hostname" in leak and "nsbind-leak-probe" in leak for leak in leaks)
