"""call_in: results, exceptions, timeouts, signals, threads, joins — on the real kernel."""

from __future__ import annotations

import dataclasses
import errno
import fractions
import inspect
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import nsbind
from helpers import SLOWDOWN
from nsbind import Namespace, Namespaces, PidFd
from nsbind._sys.proc import thread_count
from nsbind.callin import MAX_ANSWER_BYTES, CallInError, RemoteError, RemoteTraceback, call_in
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
    timeout = 1.0 * SLOWDOWN  # long enough for the child to record its pid
    started = time.monotonic()
    with pytest.raises(CallInError, match=rf"timed out after {re.escape(str(timeout))} s"):
        call_in(Namespaces(pid=True), sleep_forever, str(record), timeout=timeout)
    assert time.monotonic() - started < 10 * SLOWDOWN
    inner = int(record.read_text())
    deadline = time.monotonic() + 5 * SLOWDOWN
    while os.path.exists(f"/proc/{inner}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{inner}")


# (Not with pid=True: PID 1 of a pid namespace is immune to its own SIGKILL.)
@pytest.mark.parametrize("ns", [
    pytest.param(Namespaces(), id="plain", marks=pytest.mark.unprivileged),
    pytest.param(Namespaces(net=True), id="net")])
def test_child_killed_by_a_signal_is_a_clear_error(ns: Namespaces) -> None:
    with pytest.raises(CallInError, match="killed by SIGKILL"):
        call_in(ns, kill_myself)


@pytest.mark.unprivileged
def test_child_exiting_without_an_answer_is_a_clear_error() -> None:
    with pytest.raises(CallInError, match=r"exited \(status 3\) without answering"):
        call_in(Namespaces(), exit_silently)


@pytest.mark.unprivileged
def test_works_from_a_parent_with_live_threads() -> None:
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        assert thread_count() >= 5
        result = call_in(Namespaces(user=True, net=True), identity)
        # root inside; outside, the caller (0 as root, its own uid without root)
        assert result["uid"] == 0 and result["uid_map"] == ["0", str(os.geteuid()), "1"]
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


@pytest.mark.unprivileged
def test_unpicklable_callable_is_refused_clearly() -> None:
    with pytest.raises(CallInError, match="needs a picklable callable"):
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


# ---------------------------------------------------------------- the child is not trusted


class Exploit:
    """What a compromised child sends: unpickling it runs ``touch marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class ExploitError(Exception):
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.args[0]}",))


def return_exploit(marker: str) -> object:
    return {"fine": [1, 2], "bad": Exploit(marker)}


def raise_exploit(marker: str) -> None:
    raise ExploitError(marker)


def send_raw_pickle(marker: str) -> None:
    """Write a hand-made pickle (GLOBAL os.system, REDUCE) on the answer pipe itself."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    conn = frame.f_back.f_locals["conn"]  # the connection of the code that called us
    conn.send_bytes(b"cos\nsystem\n(S'touch " + marker.encode() + b"'\ntR.")
    os._exit(0)


@pytest.mark.unprivileged
@pytest.mark.parametrize("fn", [return_exploit, raise_exploit, send_raw_pickle],
                         ids=["result", "exception", "raw-pickle"])
def test_a_malicious_pickle_from_the_child_runs_nothing_here(
        tmp_path: pathlib.Path, fn: Any) -> None:
    marker = tmp_path / "pwned"
    if fn is raise_exploit:  # the exception is named, not unpickled
        with pytest.raises(RemoteError, match=r"raised .*ExploitError: .*pwned") as info:
            call_in(Namespaces(), fn, str(marker))
        assert info.value.type_name.endswith("test_callin.ExploitError")
        assert "raise ExploitError(marker)" in info.value.remote_traceback
    else:
        with pytest.raises(CallInError, match=r"refused the child's answer: it names "
                                              r"(posix|os)\.system.*trusted=True") as refused:
            call_in(Namespaces(), fn, str(marker))
        assert refused.value.errno == errno.EBADMSG
    time.sleep(0.1)  # (os.system would have run synchronously; belt and braces)
    assert not marker.exists()


def plain_values() -> object:
    return [0, -1, 2**100, 1.5, float("inf"), 1 + 2j, "text", "ünïcode", b"\x00bytes",
            bytearray(b"ba"), None, True, False, (1, (2, 3)), {"k": {"n": [1, {2, 3}]}},
            {4, 5}, frozenset({6}), range(3, 9, 2), slice(1, 5), [], {}, ()]


@pytest.mark.unprivileged
def test_plain_values_come_back() -> None:
    assert call_in(Namespaces(), plain_values) == plain_values()


def shared_object() -> object:
    inner = [1, 2]
    return [inner, inner]


@pytest.mark.unprivileged
def test_shared_references_come_back_shared() -> None:
    back = call_in(Namespaces(), shared_object)
    assert back == [[1, 2], [1, 2]] and back[0] is back[1]


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def rich_values() -> object:
    return Point(1, 2), fractions.Fraction(1, 3), pathlib.PurePosixPath("/etc")


def test_other_objects_are_refused_by_default_and_come_back_when_trusted() -> None:
    with pytest.raises(CallInError, match=r"it names .*test_callin\.Point, which is not plain "
                                          r"data"):
        call_in(Namespaces(), rich_values)
    assert call_in(Namespaces(net=True), rich_values, trusted=True) == rich_values()


class CustomError(Exception):
    pass


def raise_custom(message: str) -> None:
    raise CustomError(message)


def raise_builtin_with_an_object() -> None:
    raise KeyError(Point(3, 4))


def exit_child() -> None:
    sys.exit(7)


@pytest.mark.unprivileged
def test_exceptions_come_back_as_builtin_or_named() -> None:
    with pytest.raises(RemoteError) as info:
        call_in(Namespaces(), raise_custom, "custom boom")
    exc = info.value
    assert exc.type_name.endswith("test_callin.CustomError")
    assert exc.remote_message == "custom boom"
    assert str(exc) == f"the call_in child raised {exc.type_name}: custom boom"
    assert isinstance(exc, CallInError) and isinstance(exc, nsbind.NsbindError)
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "CustomError: custom boom" in exc.__cause__.text
    # a builtin type whose arguments are not plain: the type, with the message
    with pytest.raises(KeyError, match="Point") as key:
        call_in(Namespaces(), raise_builtin_with_an_object)
    assert type(key.value) is KeyError
    # the child's SystemExit does not end this process
    with pytest.raises(RemoteError, match=r"raised builtins\.SystemExit: 7"):
        call_in(Namespaces(), exit_child)


@pytest.mark.unprivileged
def test_trusted_exceptions_come_back_as_themselves() -> None:
    with pytest.raises(CustomError, match=r"^custom boom$") as info:
        call_in(Namespaces(), raise_custom, "custom boom", trusted=True)
    assert isinstance(info.value.__cause__, RemoteTraceback)


# ---------------------------------------------------------------- scripts (__main__)

SCRIPT = """\
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import sys

from nsbind import Namespaces
from nsbind.callin import CallInError, call_in

with open(sys.argv[1], "a") as runs:  # one line per run of this top level
    runs.write(f"{{__name__}} {{os.getpid()}}\\n")

GREETING = "hello from"


def helper(name):
    return f"{{GREETING}} {{name}}"


def hostname():
    return helper(os.uname().nodename)


def countdown(n):
    return 0 if n == 0 else n + countdown(n - 1)


def apply(fn, value):
    return fn(value)


square = lambda x: x * x  # noqa: E731


class Job:
    pass


def take(job):
    return 1


def main():
    print(call_in(Namespaces(uts=True), hostname))
    print(call_in(Namespaces(), countdown, 10))
    print(call_in(Namespaces(), apply, square, 7))
    try:
        call_in(Namespaces(), take, Job())
    except CallInError as exc:
        print("refused:", exc)
    print("pids", multiprocessing.forkserver._forkserver._forkserver_pid,
          multiprocessing.resource_tracker._resource_tracker._pid)


{main}
"""


def _run_script(tmp_path: pathlib.Path, main: str) -> tuple[list[str], list[str]]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(main=main))
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, str(script), str(runs)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    for pid in lines[-1].split()[1:]:  # the script's zygote and resource tracker end with it
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.01)
    return lines, runs.read_text().splitlines()


@pytest.mark.parametrize("main", ["main()", 'if __name__ == "__main__":\n    main()'],
                         ids=["without-guard", "with-guard"])
def test_a_script_runs_its_top_level_once(tmp_path: pathlib.Path, main: str) -> None:
    """The zygote's children get the script's functions by value (with the globals they
    use) and never import the script: its top level runs once, guard or not."""
    lines, runs = _run_script(tmp_path, main)
    assert runs == [f"__main__ {runs[0].split()[1]}"]
    assert lines[0] == f"hello from {os.uname().nodename}"
    assert lines[1:3] == ["55", "49"]
    assert lines[3].startswith("refused: call_in needs a picklable callable")
    assert "Job is a class defined in the script" in lines[3]


def send_partial_answer_then_stall() -> None:
    """Start an answer on the answer pipe (a length header and a few bytes), then stall."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    conn = frame.f_back.f_locals["conn"]
    os.write(conn.fileno(), struct.pack("!i", 1000) + b"0123456789")
    time.sleep(60)


def claim_a_huge_answer() -> None:
    """Announce an answer far larger than call_in reads (it must not wait for it)."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    conn = frame.f_back.f_locals["conn"]
    os.write(conn.fileno(), struct.pack("!i", -1) + struct.pack("!Q", 1 << 40) + b"x")
    time.sleep(60)


@pytest.mark.unprivileged
def test_the_timeout_covers_an_answer_that_stalls_half_way() -> None:
    """A child that starts its answer and stops is killed at the deadline: the timeout
    bounds the whole answer, not only its first byte."""
    timeout = round(SLOWDOWN)  # long enough for the child to start its answer
    started = time.monotonic()
    with pytest.raises(CallInError, match=f"timed out after {timeout} s in the middle of "
                                          "the child's answer") as info:
        call_in(Namespaces(), send_partial_answer_then_stall, timeout=timeout)
    assert info.value.errno == errno.ETIMEDOUT
    assert time.monotonic() - started < 10 * SLOWDOWN


@pytest.mark.unprivileged
def test_an_answer_longer_than_the_cap_is_refused_unread() -> None:
    started = time.monotonic()
    with pytest.raises(CallInError, match=r"refused the child's answer: .*at most "
                                          rf"{MAX_ANSWER_BYTES} bytes") as info:
        call_in(Namespaces(), claim_a_huge_answer, timeout=30)
    assert info.value.errno == errno.EBADMSG
    assert time.monotonic() - started < 10 * SLOWDOWN
