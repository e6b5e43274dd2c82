"""call_in: results, exceptions, timeouts, signals, threads, joins — on the real kernel."""

from __future__ import annotations

import os
import pathlib
import signal
import threading
import time

import pytest

import nsbind
from nsbind import Namespace, Namespaces, PidFd
from nsbind._sys.proc import thread_count
from nsbind.callin import CallInError, RemoteTraceback, call_in
from nsbind.namespaces import current, of

# The callables run in the zygote's children: module-level, so they pickle.


def rename(name: str) -> str:
    nsbind.sethostname(name)
    return os.uname().nodename


def identity() -> dict[str, object]:
    with open("/proc/self/uid_map") as f:
        uid_map = f.read().split()
    return {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "uid_map": uid_map,
            "net": current()[Namespace.NET], "hostname": os.uname().nodename}


def fail(message: str) -> None:
    raise ValueError(message)


def sleep_forever(record: str) -> None:
    pathlib.Path(record).write_text(os.readlink("/proc/self"))  # our pid on the host
    time.sleep(600)


def kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exit_silently() -> None:
    os._exit(3)


def test_returns_the_value_and_leaves_the_caller_alone() -> None:
    before = current()
    assert call_in(Namespaces(uts=True), rename, "inside-call") == "inside-call"
    assert os.uname().nodename != "inside-call"
    assert current() == before


def test_user_and_pid_namespaces_root_inside_pid_1() -> None:
    result = call_in(Namespaces(user=True, pid=True, net=True, uid_map=[(0, 100000, 65536)],
                                gid_map=[(0, 100000, 65536)]), identity)
    assert result["pid"] == 1
    assert (result["uid"], result["gid"]) == (0, 0)
    assert result["uid_map"] == ["0", "100000", "65536"]
    assert result["net"] != current()[Namespace.NET]


def test_exception_is_reraised_with_the_childs_traceback() -> None:
    with pytest.raises(ValueError, match="boom inside") as info:
        call_in(Namespaces(net=True), fail, "boom inside")
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail" in cause.text and "ValueError: boom inside" in cause.text


def mount_nowhere() -> None:
    nsbind.mount("tmpfs", "/nonexistent/nsbind", "tmpfs")


def test_nsbind_errors_travel_back_typed() -> None:
    with pytest.raises(FileNotFoundError, match=r"^mount tmpfs on /nonexistent/nsbind: ENOENT"):
        call_in(Namespaces(mnt=True), mount_nowhere)


def test_timeout_kills_the_child_and_its_pid_namespace(tmp_path: pathlib.Path) -> None:
    record = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(CallInError, match=r"timed out after 1\.0 s"):
        call_in(Namespaces(pid=True), sleep_forever, str(record), timeout=1.0)
    assert time.monotonic() - started < 10
    inner = int(record.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{inner}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{inner}")


# (Not with pid=True: PID 1 of a pid namespace is immune to its own SIGKILL.)
@pytest.mark.parametrize("ns", [Namespaces(), Namespaces(net=True)], ids=["plain", "net"])
def test_child_killed_by_a_signal_is_a_clear_error(ns: Namespaces) -> None:
    with pytest.raises(CallInError, match="killed by SIGKILL"):
        call_in(ns, kill_myself)


def test_child_exiting_without_an_answer_is_a_clear_error() -> None:
    with pytest.raises(CallInError, match=r"exited \(status 3\) without answering"):
        call_in(Namespaces(), exit_silently)


def test_works_from_a_parent_with_live_threads() -> None:
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        assert thread_count() >= 5
        result = call_in(Namespaces(user=True, net=True), identity)
        assert result["uid"] == 0 and result["uid_map"] == ["0", "0", "1"]
    finally:
        stop.set()
        for w in workers:
            w.join()


def test_join_another_process(holder: PidFd) -> None:
    result = call_in(Namespaces.join(holder.pid, net=True), identity)
    assert result["net"] == of(holder.pid)[Namespace.NET]


def test_child_starts_from_the_callers_current_namespaces() -> None:
    with Namespaces(uts=True):
        nsbind.sethostname("outer-block")
        assert call_in(Namespaces(net=True), identity)["hostname"] == "outer-block"


def test_unpicklable_callable_is_refused_clearly() -> None:
    with pytest.raises(CallInError, match="picklable, module-level callable"):
        call_in(Namespaces(), lambda: 1)


def dumpable_and_directory_fds() -> tuple[bool, list[str]]:
    """In the joined process: is it dumpable, and which fds are directories?"""
    from nsbind._sys.proc import get_dumpable

    dirs = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.path.isdir(f"/proc/self/fd/{name}") and int(name) > 2:
                dirs.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            pass  # the listing's own fd, closed meanwhile
    return get_dumpable(), dirs


def test_cve_2016_9962_a_joining_process_is_not_dumpable_and_holds_no_directory(
        holder: PidFd) -> None:
    dumpable, dirs = call_in(Namespaces.join(holder.pid, net=True, uts=True),
                             dumpable_and_directory_fds)
    assert dumpable is False
    assert dirs == []
    assert call_in(Namespaces(net=True), dumpable_and_directory_fds)[0] is True
