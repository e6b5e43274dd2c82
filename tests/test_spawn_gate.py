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
from nsbind import Namespaces, Process, sharedchild, spawn, sysctl
from nsbind._native import ffi, lib
from nsbind._sys.proc import Capability, capget, get_dumpable
from nsbind.errors import Forbidden
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


@contextlib.contextmanager
def reaped(proc: Process) -> Iterator[Process]:
    """``proc``, killed and reaped at the end if it still runs."""
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


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
        with reaped(spawn(["sh", "-c", "exit 7"], start_gate=fd)) as proc:
            assert time.monotonic() - started < 5 * SLOWDOWN
            time.sleep(0.1)
            assert proc.poll() is None
            assert parked_in_fifo(proc.pid)
            assert release(path) == b"0"
            assert proc.wait(timeout=10) == 7


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
        with reaped(spawn(["/bin/sh", "-c", "cat /proc/self/mountinfo | grep -c ' /proc '"],
                          namespaces=Namespaces(pid=True, mnt=True), rootfs=root,
                          env={"PATH": "/bin"}, stdout=PIPE, start_gate=fd)) as proc:
            assert proc.poll() is None
            # parked after its mounts: its mount table already has the container's /proc
            with open(f"/proc/{proc.pid}/mountinfo") as f:
                assert any(line.split()[4] == "/proc" for line in f)
            assert os.readlink(f"/proc/{proc.pid}/root") == "/"  # pivoted: its own root
            assert release(path) == b"0"
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0 and out is not None and out.strip() == b"1"


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
        with reaped(spawn(["sh", "-c", "ls /proc/self/fd"], start_gate=fd, stdout=PIPE)) as proc:
            assert release(path) == b"0"
            out, _ = proc.communicate(timeout=10)
    assert out is not None  # 0-2 and the fd ls opens to list the directory
    assert len(out.split()) <= 4 and set(out.split()) >= {b"0", b"1", b"2"}


def shares_memory_with_us(pid: int) -> bool:
    """kcmp(2) KCMP_VM: whether ``pid`` runs in this process's memory."""
    rc = lib.nsb_kcmp_vm(os.getpid(), pid)
    assert rc >= 0, f"kcmp {pid}: {os.strerror(ffi.errno)}"
    return rc == 0


def test_a_parked_child_shares_this_process_memory_until_its_exec(
        tmp_path: pathlib.Path) -> None:
    """No copy of this process for the parked child (no copy-on-write faults after the
    clone); meanwhile the process is non-dumpable (a container process could otherwise
    ptrace the parked child into our memory), and the child's stack and plan are kept
    until it has exec'd - not until it exits."""
    if not lib.nsb_spawn_has_vm_clone():
        pytest.skip("clone3 cannot run a child on a stack of its own on this architecture")
    assert sharedchild.holds() == 0  # (sweeps the children earlier tests let go)
    dumpable = get_dumpable()  # (a change of credentials clears it: the kernel's rule)
    with gate(tmp_path) as (path, fd):
        with reaped(spawn(["sleep", "60"], start_gate=fd)) as proc:
            assert shares_memory_with_us(proc.pid)
            assert not get_dumpable()
            assert sharedchild.holds() == 1
            assert release(path) == b"0"
            deadline = time.monotonic() + 10 * SLOWDOWN
            while shares_memory_with_us(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.001)
            assert sharedchild.holds() == 0  # exec'd: swept, its stack unmapped
            assert get_dumpable() is dumpable
            assert proc.poll() is None  # still running sleep


def test_a_released_child_leaves_this_threads_errno_alone(tmp_path: pathlib.Path) -> None:
    """The released child searches a long PATH (an ENOENT per directory) in this
    process's memory while this thread runs on: were its errno writes ours, a failing
    read here would now and then raise another error than EAGAIN."""
    env = {"PATH": ":".join(f"/nonexistent{i}" for i in range(64)) + ":/usr/bin:/bin"}
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    wrong: list[OSError] = []
    try:
        with gate(tmp_path) as (path, fd):
            for _ in range(100):
                proc = spawn(["true"], start_gate=fd, env=env)
                opened = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # start
                for _ in range(100_000):
                    if proc.poll() is not None:
                        break
                    try:
                        os.read(r, 1)
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        wrong.append(exc)
                os.close(opened)
                assert proc.wait(timeout=10) == 0
    finally:
        os.close(r)
        os.close(w)
    assert not wrong


@pytest.mark.unprivileged
def test_without_root_and_cap_sys_ptrace_a_parked_child_gets_a_copy(
        tmp_path: pathlib.Path) -> None:
    """Memory is shared only where kcmp and the helpers that open the parked child's
    /proc files may look at it, and the process can still open its own /proc files:
    as root with CAP_SYS_PTRACE in the initial user namespace."""
    allowed = (os.geteuid() == 0 and Capability.SYS_PTRACE in capget().effective
               and os.stat("/proc/self/ns/user").st_ino == 0xEFFFFFFD)  # the initial one
    assert sharedchild.may_share() is allowed
    may_share = allowed and bool(lib.nsb_spawn_has_vm_clone())
    sharedchild.sweep()
    dumpable = get_dumpable()
    with gate(tmp_path) as (path, fd):
        with reaped(spawn(["true"], start_gate=fd)) as proc:
            assert shares_memory_with_us(proc.pid) is may_share
            assert get_dumpable() is (dumpable and not may_share)
            assert release(path) == b"0"
            assert proc.wait(timeout=10) == 0
    assert sharedchild.holds() == 0 and get_dumpable() is dumpable


def test_a_parked_child_in_copies_is_a_copy_and_its_oom_score_adj_is_its_own(
        tmp_path: pathlib.Path) -> None:
    """oom_score_adj is per memory: the kernel sets it for every process sharing the
    target's.  Setting it on a parked child that shares ours is refused; under
    ``sharedchild.copies()`` the child is a copy and gets its own."""
    own = pathlib.Path("/proc/self/oom_score_adj").read_text()
    with gate(tmp_path) as (path, fd):
        for copy in (False, True):
            with sharedchild.copies(copy):
                proc = spawn(["true"], start_gate=fd)
            try:
                shared = shares_memory_with_us(proc.pid)
                assert shared is (not copy and sharedchild.may_share()
                                  and bool(lib.nsb_spawn_has_vm_clone()))
                if shared:
                    with pytest.raises(Forbidden, match="shares this process's memory"):
                        sysctl.set_oom_score_adj(proc.pid, 500)
                else:
                    sysctl.set_oom_score_adj(proc.pid, 500)
                    assert pathlib.Path(f"/proc/{proc.pid}/oom_score_adj").read_text() == "500\n"
                assert pathlib.Path("/proc/self/oom_score_adj").read_text() == own
                assert release(path) == b"0"
                assert proc.wait(timeout=10) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    proc.wait()
