"""clone3, pidfds, waitid, prctl, capabilities and close_range on the real kernel."""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import threading

import pytest

import nsbind
from helpers import child_exit, drop_to_nobody, forked, free_pid, run_forked
from nsbind import Capability, CloneFlags, PidFd
from nsbind.errors import NsbindError
from nsbind.flags import CloseRangeFlags


def _child(flags: int = 0, **kwargs: object) -> tuple[int, PidFd]:
    """clone3 a child that blocks until killed (the test reaps it)."""
    pid, pidfd = nsbind.clone3(flags | CloneFlags.PIDFD, **kwargs)  # type: ignore[arg-type]
    if pid == 0:
        child_exit(signal.pause)
    assert pidfd is not None
    return pid, pidfd


# ---------------------------------------------------------------- clone3


def test_clone3_new_pid_namespace_child_is_pid_1_and_pidfd_reaps_it() -> None:
    rfd, wfd = os.pipe()
    pid, pidfd = nsbind.clone3(CloneFlags.NEWPID | CloneFlags.PIDFD)
    if pid == 0:
        child_exit(lambda: os.write(wfd, str(os.getpid()).encode()) and 7)
    os.close(wfd)
    assert pidfd is not None
    with pidfd, os.fdopen(rfd) as r:
        assert r.read() == "1"
        result = pidfd.wait()
    assert (result.pid, result.exited, result.status, result.returncode) == (pid, True, 7, 7)


def test_clone3_new_uts_namespace_hostname_invisible_to_parent() -> None:
    before = os.uname().nodename
    pid, pidfd = nsbind.clone3(CloneFlags.NEWUTS | CloneFlags.PIDFD)
    if pid == 0:

        def rename() -> int:
            nsbind.sethostname("nsbind-clone3")
            return 0 if os.uname().nodename == "nsbind-clone3" else 1

        child_exit(rename)
    assert pidfd is not None
    with pidfd:
        assert pidfd.wait().returncode == 0
    assert os.uname().nodename == before


def test_clone3_set_tid_chooses_the_pid() -> None:
    want = free_pid()
    pid, pidfd = nsbind.clone3(CloneFlags.PIDFD, set_tid=[want])
    if pid == 0:
        child_exit(lambda: 0 if os.getpid() == want else 1)
    assert pidfd is not None
    with pidfd:
        assert pid == want
        assert pidfd.wait().returncode == 0


@pytest.mark.unprivileged
def test_clone3_without_pidfd_returns_pid_only() -> None:
    pid, pidfd = nsbind.clone3()
    if pid == 0:
        child_exit(lambda: 3)
    assert pidfd is None
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3


@pytest.mark.unprivileged
def test_clone3_refuses_flags_a_python_child_cannot_survive() -> None:
    for flag in (CloneFlags.VM, CloneFlags.THREAD, CloneFlags.FILES, CloneFlags.VFORK):
        with pytest.raises(ValueError, match="clone3 into Python cannot use"):
            nsbind.clone3(flag)


@pytest.mark.unprivileged
def test_clone3_refuses_a_threaded_process() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        with pytest.raises(RuntimeError, match="single-threaded process, but 2 threads"):
            nsbind.clone3(CloneFlags.NEWPID)
    finally:
        stop.set()
        worker.join()


@pytest.mark.unprivileged
def test_clone3_error_names_the_call_and_flags() -> None:
    # set_tid without the privilege of choosing pids in a foreign pid namespace:
    # more entries than nested pid namespaces is EINVAL.
    with pytest.raises(NsbindError) as info:
        nsbind.clone3(CloneFlags.PIDFD, set_tid=[free_pid(), free_pid(), 7])
    assert info.value.errno == errno.EINVAL
    assert str(info.value).startswith("clone3 PIDFD: EINVAL")


@pytest.mark.unprivileged
@forked
def test_clone3_as_unprivileged_into_new_namespace_is_permission_error() -> None:
    drop_to_nobody()
    with pytest.raises(PermissionError, match=r"^clone3 NEWNET: EPERM"):
        nsbind.clone3(CloneFlags.NEWNET)


# ---------------------------------------------------------------- pidfds


@pytest.mark.unprivileged
def test_pidfd_open_send_signal_and_readable_on_exit() -> None:
    pid, own = _child()
    with own, nsbind.pidfd_open(pid) as other:
        assert not other.readable()
        nsbind.pidfd_send_signal(other, signal.SIGTERM)
        assert other.readable(timeout=10)
        result = own.wait()
    assert result.signaled and result.returncode == -signal.SIGTERM


@pytest.mark.unprivileged
def test_pidfd_open_missing_process_is_process_lookup_error() -> None:
    with pytest.raises(ProcessLookupError, match=r"^pidfd_open pid \d+: ESRCH"):
        nsbind.pidfd_open(free_pid())


@pytest.mark.unprivileged
def test_pidfd_send_signal_after_reap_is_esrch_not_a_recycled_pid() -> None:
    _pid, pidfd = _child()
    with pidfd:
        pidfd.send_signal(signal.SIGKILL)
        pidfd.wait()
        with pytest.raises(ProcessLookupError, match=r"^pidfd_send_signal SIGTERM to pidfd"):
            pidfd.send_signal(signal.SIGTERM)


@pytest.mark.unprivileged
def test_pidfd_getfd_copies_an_fd_of_another_process() -> None:
    rfd, wfd = os.pipe()
    with tempfile.TemporaryFile() as tmp:
        tmp.write(b"seen through pidfd_getfd")
        tmp.flush()
        pid, pidfd = nsbind.clone3(CloneFlags.PIDFD)
        if pid == 0:

            def hold_fd() -> None:
                fd = os.open(f"/proc/self/fd/{tmp.fileno()}", os.O_RDONLY)
                os.write(wfd, str(fd).encode())
                signal.pause()

            child_exit(hold_fd)
    os.close(wfd)
    assert pidfd is not None
    with pidfd:
        target = int(os.read(rfd, 16))
        os.close(rfd)
        fd = pidfd.getfd(target)
        try:
            assert os.get_inheritable(fd) is False
            assert os.pread(fd, 100, 0) == b"seen through pidfd_getfd"
        finally:
            os.close(fd)
            pidfd.send_signal(signal.SIGKILL)
            pidfd.wait()


@pytest.mark.unprivileged
def test_pidfd_getfd_bad_target_fd_is_ebadf() -> None:
    _pid, pidfd = _child()
    with pidfd:
        try:
            with pytest.raises(NsbindError, match=r"^pidfd_getfd fd 999 of pidfd \d+: EBADF"):
                pidfd.getfd(999)
        finally:
            pidfd.send_signal(signal.SIGKILL)
            pidfd.wait()


@pytest.mark.unprivileged
def test_waitid_poll_returns_none_while_running() -> None:
    _pid, pidfd = _child()
    with pidfd:
        assert pidfd.poll() is None
        pidfd.send_signal(signal.SIGKILL)
        result = pidfd.wait()
        assert result.returncode == -signal.SIGKILL


@pytest.mark.unprivileged
def test_waitid_on_a_process_that_is_not_our_child_is_echild() -> None:
    with nsbind.pidfd_open(os.getpid()) as me, pytest.raises(ChildProcessError,
                                                              match=r"^waitid pidfd \d+: ECHILD"):
        me.poll()


@pytest.mark.unprivileged
def test_waitid_bad_fd_is_ebadf() -> None:
    with pytest.raises(NsbindError, match=r"^waitid pidfd 999: EBADF"):
        nsbind.waitid(999)


# ---------------------------------------------------------------- close_range


@pytest.mark.unprivileged
def test_close_range_closes_and_marks_cloexec() -> None:
    lo = 900  # a block of fds no one else uses
    with open("/dev/null") as f:
        for fd in range(lo, lo + 4):
            os.dup2(f.fileno(), fd, inheritable=True)
    nsbind.close_range(lo, lo + 1, CloseRangeFlags.CLOEXEC)
    assert not os.get_inheritable(lo) and not os.get_inheritable(lo + 1)
    assert os.get_inheritable(lo + 2)
    nsbind.close_range(lo, lo + 3)
    for fd in range(lo, lo + 4):
        with pytest.raises(OSError) as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF


@pytest.mark.unprivileged
def test_close_range_first_above_last_is_einval() -> None:
    with pytest.raises(NsbindError, match=r"^close_range 10\.\.5: EINVAL"):
        nsbind.close_range(10, 5)


# ---------------------------------------------------------------- prctl


@pytest.mark.unprivileged
@forked
def test_prctl_no_new_privs_and_dumpable() -> None:
    assert not nsbind.get_no_new_privs()
    nsbind.set_no_new_privs()
    assert nsbind.get_no_new_privs()
    with open("/proc/self/status") as f:
        assert "NoNewPrivs:\t1" in f.read()
    nsbind.set_dumpable(False)
    assert not nsbind.get_dumpable()
    nsbind.set_pdeathsig(signal.SIGKILL)
    with open("/proc/self/status") as f:
        assert "NoNewPrivs:\t1" in f.read()


@pytest.mark.unprivileged
def test_prctl_unknown_option_is_einval() -> None:
    with pytest.raises(NsbindError, match=r"^prctl option 99999: EINVAL"):
        nsbind.prctl(99999)


# ---------------------------------------------------------------- capabilities


def test_capget_of_root_has_sys_admin() -> None:
    caps = nsbind.capget()
    assert Capability.SYS_ADMIN in caps.effective
    assert caps.permitted >= caps.effective


@forked
def test_capset_dropping_chown_makes_chown_fail() -> None:
    with tempfile.NamedTemporaryFile() as f:
        os.chown(f.name, 1234, 1234)
        caps = nsbind.capget()
        nsbind.capset(nsbind.Capabilities(caps.effective - {Capability.CHOWN},
                                          caps.permitted, caps.inheritable))
        assert Capability.CHOWN not in nsbind.capget().effective
        assert Capability.CHOWN in nsbind.capget().permitted
        with pytest.raises(PermissionError):
            os.chown(f.name, 4321, 4321)


@forked
def test_capset_raising_beyond_permitted_is_eperm() -> None:
    caps = nsbind.capget()
    nsbind.capset(nsbind.Capabilities(frozenset(), frozenset(), frozenset()))
    with pytest.raises(PermissionError, match=r"^capset: EPERM"):
        nsbind.capset(caps)


@pytest.mark.unprivileged
def test_capget_missing_process_is_esrch() -> None:
    with pytest.raises(ProcessLookupError, match=r"^capget pid \d+: ESRCH"):
        nsbind.capget(free_pid())


@forked
def test_capbset_drop_removes_from_bounding_set() -> None:
    assert nsbind.capbset_read(Capability.MKNOD)
    nsbind.capbset_drop(Capability.MKNOD)
    assert not nsbind.capbset_read(Capability.MKNOD)
    drop_to_nobody()
    with pytest.raises(PermissionError, match=r"^prctl PR_CAPBSET_DROP CAP_CHOWN: EPERM"):
        nsbind.capbset_drop(Capability.CHOWN)


@pytest.mark.unprivileged
def test_run_forked_reports_child_failures() -> None:
    def boom() -> None:
        raise KeyError("inside")

    with pytest.raises(AssertionError, match="KeyError: 'inside'"):
        run_forked(boom)
