"""Suite-wide set-up: root check, the leak guard, and cgroup fixtures."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

import leakguard
import nsbind
from helpers import child_exit
from nsbind import CgroupFd, CloneFlags, PidFd
from nsbind.callin import start_zygote
from nsbind.cgroups import _mkdir, cgroup_layout

TEST_CGROUP_PARENT = f"nsbind-test-{os.getpid()}"  # one per run: runs may overlap


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("nsbind's tests create namespaces, mounts and cgroups: run as root")


@pytest.fixture(scope="session", autouse=True)
def session_leak_guard() -> Iterator[None]:
    """Fails the run if the whole session left anything behind."""
    start_zygote()  # call_in's zygote lives for the whole session, like in a program
    before = leakguard.snapshot()
    yield
    leaks = leakguard.diff(before, leakguard.snapshot())
    if leaks:
        pytest.fail("the test session leaked: " + "; ".join(leaks), pytrace=False)


@pytest.fixture(autouse=True)
def leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test (at teardown) if it left a mount, fd, child or cgroup behind."""
    before = leakguard.snapshot()
    yield
    leakguard.wait_for_joined_threads()
    after = leakguard.snapshot()
    leaks = leakguard.diff(before, after)
    leakguard.reap_leaked_children(before, after)
    if leaks:
        pytest.fail(f"{request.node.nodeid} leaked: " + "; ".join(leaks), pytrace=False)


@pytest.fixture
def holder() -> Iterator[PidFd]:
    """A child alone in new net, uts and ipc namespaces (hostname nsbind-holder),
    ready when yielded, killed and reaped at the end."""
    rfd, wfd = os.pipe()
    pid, pidfd = nsbind.clone3(CloneFlags.NEWNET | CloneFlags.NEWUTS | CloneFlags.NEWIPC
                               | CloneFlags.PIDFD)
    if pid == 0:

        def hold() -> None:
            nsbind.sethostname("nsbind-holder")
            os.write(wfd, b"r")
            signal.pause()

        child_exit(hold)
    os.close(wfd)
    assert pidfd is not None
    ready = os.read(rfd, 1)
    os.close(rfd)
    assert ready == b"r"
    with pidfd:
        yield pidfd
        pidfd.send_signal(signal.SIGKILL)
        pidfd.wait()


@pytest.fixture(scope="session")
def cgroup2_root() -> str:
    try:
        return nsbind.cgroup2_mountpoint()
    except FileNotFoundError:
        pytest.skip("this host has no cgroup v2 hierarchy mounted")


@pytest.fixture(scope="session")
def cgroup_parent() -> Iterator[str]:
    """A test-owned parent at the root of every hierarchy (v2 and v1), removed at the end.

    Never inside the caller's own cgroup, which belongs to the machine; named
    per run so that two runs on one machine do not share it.
    """
    layout = cgroup_layout()
    made = []
    for h in layout.hierarchies:
        path = h.path_of(f"/{TEST_CGROUP_PARENT}")
        if (h.version == 2 or h.controllers) and not os.path.isdir(path):
            with CgroupFd.open(h.mountpoint, v1=h.version == 1) as root:
                _mkdir(h, root, TEST_CGROUP_PARENT, exist_ok=False).close()
            made.append(path)
    yield TEST_CGROUP_PARENT
    for path in made:
        os.rmdir(path)


@pytest.fixture(scope="session")
def _cgroup_test_parent(cgroup2_root: str, cgroup_parent: str) -> str:
    """The test parent's directory in the cgroup v2 hierarchy."""
    return f"{cgroup2_root}/{cgroup_parent}"


@pytest.fixture
def test_cgroup(_cgroup_test_parent: str, request: pytest.FixtureRequest) -> Iterator[CgroupFd]:
    """A fresh cgroup v2 directory for this test; its members are killed and it is removed."""
    name = f"test-{os.getpid()}-{request.node.name}"[:200].replace("/", "_").replace("[", "_")
    with CgroupFd.open(_cgroup_test_parent) as parent:
        cg = parent.mkdir(name)
        try:
            yield cg
        finally:
            remove_cgroup(parent, name, cg)


def remove_cgroup(parent: CgroupFd, name: str, cg: CgroupFd) -> None:
    """Kill the members of ``cg``, wait until it is empty, close it and remove it."""
    import time

    if cg.procs():
        cg.kill()
        deadline = time.monotonic() + 10
        while cg.events()["populated"] and time.monotonic() < deadline:
            time.sleep(0.005)
    cg.close()
    parent.rmdir(name)
