"""cgroup v2 directory fds: create, attach, CLONE_INTO_CGROUP, freeze, kill; and how a
``Cgroup`` path is resolved to directory fds once (no ``..``, symlink or mount on the
way) and used through them from then on; and what a failed ``Cgroup.create`` leaves
(nothing it made)."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import time

import pytest

import nsbind
from helpers import child_exit, private_mount_ns, require_controllers, run_forked
from nsbind import PIPE, Cgroup, CgroupFd, CloneFlags, MountFlags, spawn
from nsbind.cgrouplayout import cgroup_layout, open_cgroup
from nsbind.errors import Busy, InvalidArgument, NsbindError
from nsbind.frozen import replace_fields


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


@pytest.mark.unprivileged
def test_cgroup2_mountpoint_is_cgroup2(cgroup2_root: str) -> None:
    with CgroupFd.open(cgroup2_root) as root:
        assert "cgroup.procs" in os.listdir(root.fileno())


@pytest.mark.unprivileged
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


@pytest.mark.unprivileged
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


@pytest.mark.unprivileged
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


@pytest.mark.unprivileged
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


@pytest.mark.unprivileged
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


@pytest.mark.unprivileged
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0y"])
def test_invalid_names_are_refused_before_any_syscall(test_cgroup: CgroupFd, name: str) -> None:
    with pytest.raises(ValueError, match="invalid cgroup name"):
        test_cgroup.mkdir(name)


@pytest.mark.unprivileged
def test_write_error_names_file_and_value(test_cgroup: CgroupFd) -> None:
    with pytest.raises(NsbindError, match=r"^set cgroup.freeze=2 on .*: ERANGE"):
        test_cgroup.write("cgroup.freeze", 2)
    with pytest.raises(InvalidArgument, match=r"^set cgroup.procs=notapid on .*: EINVAL"):
        test_cgroup.write("cgroup.procs", "notapid")
    with pytest.raises(FileNotFoundError, match=r"^set nosuch.max=1M on .*: ENOENT"):
        test_cgroup.write("nosuch.max", "1M")  # a controller file this cgroup lacks


@pytest.mark.unprivileged
def test_open_refuses_a_directory_that_is_not_cgroup2(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="is not a cgroup v2 directory"):
        CgroupFd.open(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"^open cgroup /nonexistent: ENOENT"):
        CgroupFd.open("/nonexistent")


@pytest.mark.unprivileged
def test_clone_into_a_non_cgroup_fd_fails_cleanly(tmp_path: object) -> None:
    fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match=r"^clone3 PIDFD\|INTO_CGROUP: E"):
            nsbind.clone3(CloneFlags.PIDFD, cgroup=fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- Cgroup paths to fds


@pytest.mark.unprivileged
def test_cgroup_paths_refuse_dot_dot_empty_components_and_nul(cgroup_parent: str) -> None:
    base = f"/{cgroup_parent}"
    with Cgroup.create("victim", parent=cgroup_parent) as victim, \
            Cgroup.create("mine", parent=cgroup_parent):
        with spawn(["sleep", "30"], cgroup=victim) as proc:
            for path in [f"{base}/mine/../victim", f"{base}/mine/./../victim",
                         f"{base}//victim", f"{base}/victim/", f"{base}/vic\0tim", "", "/",
                         "/.."]:
                with pytest.raises(ValueError, match=rf"^path={re.escape(repr(path))}: "):
                    Cgroup.open(path)
            with pytest.raises(ValueError, match=r"^parent=.*'\.\.' component"):
                Cgroup.create("x", parent=f"{base}/mine/../victim")
            assert victim.procs() == [proc.pid]  # nothing acted on the sibling
            proc.kill()


@pytest.mark.unprivileged
def test_open_cgroup_follows_no_symlink_and_stays_beneath(tmp_path: pathlib.Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    with CgroupFd(fd, str(tmp_path)) as base:
        open_cgroup(base, "real").close()
        with pytest.raises(OSError, match=r"^open cgroup .*/link: ELOOP .*a symlink is on"):
            open_cgroup(base, "link")
        with pytest.raises(OSError, match=r"^open cgroup .*/real/\.\./\.\.: EXDEV"):
            open_cgroup(base, "real/../..")


def _open_through_a_bind_mount(parent: str) -> str:
    private_mount_ns()
    v2 = cgroup_layout().unified
    assert v2 is not None
    nsbind.mount(v2.path_of(f"/{parent}/a"), v2.path_of(f"/{parent}/b"), None,
                 MountFlags.BIND)
    try:
        Cgroup.open(f"/{parent}/b").close()
    except OSError as exc:
        return str(exc)
    return "opened"


def test_a_mount_on_the_cgroup_path_is_refused(cgroup_parent: str) -> None:
    v2 = cgroup_layout().unified
    if v2 is None:
        pytest.skip("this host has no cgroup v2 hierarchy")
    with Cgroup.create("a", parent=cgroup_parent), Cgroup.create("b", parent=cgroup_parent):
        error = run_forked(_open_through_a_bind_mount, cgroup_parent)
    assert error.startswith(f"open cgroup {v2.path_of(f'/{cgroup_parent}/b')}: EXDEV"), error
    assert error.endswith("a mount point is on the path (bind mounts are not followed)")


def test_a_renamed_cgroup_is_still_reached_through_its_fds(cgroup_parent: str) -> None:
    layout = cgroup_layout()
    h = layout.controllers.get("memory")
    if h is None or h.version != 1:
        pytest.skip("needs memory on a v1 hierarchy (cgroup v2 cannot rename a cgroup)")
    cg = Cgroup.create("ren", parent=cgroup_parent, layout=layout)
    here = h.path_of(cg.path)
    moved = f"{here}-moved"
    os.rename(here, moved)
    os.mkdir(here)  # another cgroup where the first one was
    try:
        cg.set_memory_max("64M")
        with open(f"{moved}/memory.limit_in_bytes") as f:
            assert int(f.read()) == 64 << 20
        with open(f"{here}/memory.limit_in_bytes") as f:
            assert int(f.read()) > 64 << 20
        with spawn(["cat", "/proc/self/cgroup"], cgroup=cg, stdout=PIPE) as proc:
            out, _ = proc.communicate(timeout=30)
        assert out is not None
        assert f":memory:{cg.path}-moved" in out.decode()
        with pytest.raises(OSError, match=r"remove cgroup .*/ren: ESTALE .*renamed or replaced"):
            cg.remove()
        assert os.path.isdir(here) and os.path.isdir(moved)
        assert not any(os.path.exists(other.path_of(cg.path))
                       for other in layout.hierarchies if other is not h)
    finally:
        cg.close()
        os.rmdir(here)
        os.rmdir(moved)


def test_a_limit_whose_controller_is_missing_is_refused_before_anything_is_made(
        cgroup_parent: str) -> None:
    layout = cgroup_layout()
    without = replace_fields(layout, controllers={
        c: h for c, h in layout.controllers.items() if c != "pids"})
    with pytest.raises(LookupError, match="no cgroup hierarchy carries the pids controller"):
        Cgroup.create("nopids", parent=f"{cgroup_parent}/made", pids_max=10, layout=without)
    assert not any(os.path.exists(h.path_of(f"/{cgroup_parent}/made"))
                   for h in layout.hierarchies)


def test_a_failed_create_removes_the_parents_it_made(cgroup_parent: str) -> None:
    require_controllers(cgroup_parent, "cpuset")  # the kernel's refusal comes last
    with pytest.raises(OSError, match=r"set cpuset.cpus=999999 on "):
        Cgroup.create("leaf", parent=f"{cgroup_parent}/new/deeper", cpuset_cpus="999999")
    for h in cgroup_layout().hierarchies:
        if h.holds_cgroups:
            assert os.path.isdir(h.path_of(f"/{cgroup_parent}"))
            assert not os.path.exists(h.path_of(f"/{cgroup_parent}/new"))


def test_a_failed_create_keeps_the_directories_it_did_not_make(cgroup_parent: str) -> None:
    holding = [h for h in cgroup_layout().hierarchies if h.holds_cgroups]
    last = holding[-1]  # the others are made, then the leaf exists here
    os.makedirs(last.path_of(f"/{cgroup_parent}/dup/leaf"))
    try:
        with pytest.raises(FileExistsError, match=r"create cgroup .*/dup/leaf: EEXIST"):
            Cgroup.create("leaf", parent=f"{cgroup_parent}/dup")
        for h in holding[:-1]:
            assert not os.path.exists(h.path_of(f"/{cgroup_parent}/dup"))
        assert os.path.isdir(last.path_of(f"/{cgroup_parent}/dup/leaf"))
    finally:
        os.rmdir(last.path_of(f"/{cgroup_parent}/dup/leaf"))
        os.rmdir(last.path_of(f"/{cgroup_parent}/dup"))
