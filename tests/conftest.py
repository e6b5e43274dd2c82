"""Suite-wide set-up: root check, the leak guard, and cgroup fixtures."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
from collections.abc import Iterator

import pytest
from hypothesis import settings

import leakguard
import nsbind
from helpers import SLOWDOWN, child_exit, tree
from nsbind import CgroupFd, CloneFlags, PidFd
from nsbind.callin import start_zygote
from nsbind.cgroups import cgroup_layout, mkdir_cgroup

# CI runs each fuzzer on a fixed set of examples (the same every run); elsewhere they
# explore afresh each time.  Each test sets its own example budget.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TEST_CGROUP_PARENT = f"nsbind-test-{os.getpid()}"  # one per run: runs may overlap


UNPRIVILEGED = os.geteuid() != 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without root, only the tests marked ``unprivileged`` run (the rest create
    namespaces, mounts and cgroups that need root); they are deselected, not skipped.
    In a slow guest every test's time limit (pytest-timeout's) grows by SLOWDOWN."""
    if SLOWDOWN != 1:
        _scale_timeouts(config, items)
    if not UNPRIVILEGED:
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (keep if item.get_closest_marker("unprivileged") else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _scale_timeouts(config: pytest.Config, items: list[pytest.Item]) -> None:
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        kwargs = dict(marker.kwargs) if marker is not None else {}
        limit = (marker.args[0] if marker is not None and marker.args
                 else kwargs.pop("timeout", default))
        if limit:
            item.add_marker(pytest.mark.timeout(float(limit) * SLOWDOWN, **kwargs),
                            append=False)


def pytest_report_header(config: pytest.Config) -> str | None:
    if UNPRIVILEGED:
        return (f"uid {os.geteuid()}: only the tests marked unprivileged run "
                "(the others need root)")
    return None


_FOREIGN = pytest.StashKey[list[tuple[str, str]]]()  # (who saw it, what changed)
_FOREIGN_SHOWN = 20


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FOREIGN] = []
    if os.environ.get("NSBIND_VM_GUEST"):  # each file's outcome, for the kernel matrix
        import vmfiles

        config.pluginmanager.register(vmfiles.FileOutcomes(config), "vmfiles")


def _note_foreign(config: pytest.Config, where: str, foreign: list[str]) -> None:
    config.stash.setdefault(_FOREIGN, []).extend((where, line) for line in foreign)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    """List what other programs changed on the host while the tests ran: the leak
    guard saw it, found it was not this run's, and failed nothing for it."""
    seen = config.stash.get(_FOREIGN, [])
    if not seen:
        return
    distinct = list(dict.fromkeys(line for _where, line in seen))
    terminalreporter.section("leak guard: host changes not made by this run (information)",
                             sep="-")
    terminalreporter.line(f"{len(distinct)} seen during {len({w for w, _ in seen})} "
                          "tests/sessions; not failures (see tests/leakguard.py)")
    for line in distinct[:_FOREIGN_SHOWN]:
        terminalreporter.line(f"  {line}")
    if len(distinct) > _FOREIGN_SHOWN:
        terminalreporter.line(f"  ... and {len(distinct) - _FOREIGN_SHOWN} more")


@contextlib.contextmanager
def _run_tempdir() -> Iterator[str]:
    """A temp dir of this run's own, made tempfile's and $TMPDIR for the session, so
    that what tests and nsbind make in "the" temp dir (RootFS mount points) is
    attributable to this run.  Mode 1777 like /tmp: tests' unprivileged children
    reach and use it as they would /tmp."""
    import tempfile

    outer = tempfile.gettempdir()
    path = os.path.realpath(tempfile.mkdtemp(prefix=f"nsbind-run-{os.getpid()}-", dir=outer))
    os.chmod(path, 0o1777)
    old_env = os.environ.get("TMPDIR")
    old_tempdir = tempfile.tempdir
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path
    try:
        yield path
    finally:
        tempfile.tempdir = old_tempdir
        if old_env is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old_env


def _remove_run_tempdir(path: str) -> None:
    """Remove the run's temp dir unless a mount is left below it (a leak, reported:
    removing the tree would reach into the mounted file system)."""
    import shutil

    points = leakguard.mount_points()
    if not any(p == path or p.startswith(path + "/") for p in points):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def session_leak_guard(request: pytest.FixtureRequest,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fails the run if the whole session left anything behind."""
    start_zygote()  # call_in's zygote lives for the whole session, like in a program
    basetemp = str(tmp_path_factory.getbasetemp())
    with _run_tempdir() as run_tmp:
        leakguard.configure(cgroup_parent=TEST_CGROUP_PARENT, paths=[basetemp, run_tmp])
        before = leakguard.snapshot()
        yield
        found = leakguard.report(before, leakguard.snapshot())
    _note_foreign(request.config, "session", found.foreign)
    _remove_run_tempdir(run_tmp)
    if found.leaks:
        pytest.fail("the test session leaked: " + "; ".join(found.leaks), pytrace=False)


@pytest.fixture(autouse=True)
def leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test (at teardown) if it left a mount, fd, child or cgroup behind;
    what other programs changed on the host meanwhile is noted, not failed."""
    before = leakguard.snapshot()
    yield
    leakguard.wait_for_joined_threads()
    after = leakguard.snapshot()
    found = leakguard.report(before, after)
    leakguard.reap_leaked_children(before, after)
    if found.foreign:
        _note_foreign(request.config, request.node.nodeid, found.foreign)
        request.node.user_properties.append(("leakguard_foreign", "; ".join(found.foreign)))
    if found.leaks:
        pytest.fail(f"{request.node.nodeid} leaked: " + "; ".join(found.leaks), pytrace=False)


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
    if UNPRIVILEGED:
        yield from _delegated_parent()
        return
    layout = cgroup_layout()
    made = []
    for h in layout.hierarchies:
        path = h.path_of(f"/{TEST_CGROUP_PARENT}")
        # named hierarchies too (name=systemd): containers made in parallel would race
        # to make and remove the parent there
        if (h.version == 2 or h.controllers or h.name) and not os.path.isdir(path):
            with CgroupFd.open(h.mountpoint, v1=h.version == 1) as root:
                mkdir_cgroup(h, root, TEST_CGROUP_PARENT, exist_ok=False).close()
            made.append(path)
    yield TEST_CGROUP_PARENT
    for path in made:
        # a runtime that cleaned up in a named hierarchy (name=systemd) may have taken
        # the empty parent already
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)


def _delegated_parent() -> Iterator[str]:
    """The test parent without root: in the cgroup v2 subtree delegated to this user
    ($NSBIND_TEST_CGROUP, else this process's own cgroup, if the user owns it)."""
    from nsbind.cgrouplayout import delegated_subtree

    try:
        v2, parent = delegated_subtree(cgroup_layout(), os.environ.get("NSBIND_TEST_CGROUP"))
    except PermissionError as exc:
        pytest.skip(f"no delegated cgroup v2 subtree: {exc}")
    with CgroupFd.open(v2.path_of(parent)) as where:
        where.mkdir(TEST_CGROUP_PARENT).close()
        yield f"{parent.strip('/')}/{TEST_CGROUP_PARENT}".lstrip("/")
        where.rmdir(TEST_CGROUP_PARENT)


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


@pytest.fixture
def victim(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A directory beside the destination that no layer may touch."""
    v = tmp_path / "victim"
    v.mkdir()
    (v / "passwd").write_text("root:x:0:0\n")
    before = tree(v)
    yield v
    assert tree(v) == before, "a layer touched the victim directory"
