"""Namespaces: enter and restore, per-thread rules, pid/time for children, joining, persisting."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

import nsbind
from helpers import child_exit, drop_to_nobody, forked, mount_at
from nsbind import CloneFlags, Namespace, NamespaceRuleError, Namespaces, NsbindError, PidFd
from nsbind.namespaces import current, for_children, of, persist, unpersist

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread and return its result."""
    box: list[T] = []
    worker = threading.Thread(target=lambda: box.append(fn()))
    worker.start()
    worker.join()
    return box[0]


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                          check=True).stdout


# ---------------------------------------------------------------- enter and restore


def test_net_and_uts_are_entered_and_restored() -> None:
    before = current()
    hostname = os.uname().nodename
    with Namespaces(net=True, uts=True):
        inside = current()
        assert inside[Namespace.NET] != before[Namespace.NET]
        assert inside[Namespace.UTS] != before[Namespace.UTS]
        assert inside[Namespace.MNT] == before[Namespace.MNT]
        nsbind.sethostname("box")
        assert os.uname().nodename == "box"
        links = _links().splitlines()
        assert len(links) == 1 and links[0].startswith("1: lo: <LOOPBACK,UP,")
    assert current() == before
    assert os.uname().nodename == hostname


def test_loopback_is_up_so_localhost_works() -> None:
    with Namespaces(net=True), socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"


def test_loopback_false_leaves_lo_down() -> None:
    with Namespaces(net=True, loopback=False):
        assert "state DOWN" in _links() or ",UP" not in _links()


def test_restored_after_an_exception() -> None:
    before = current()
    with pytest.raises(KeyError), Namespaces(net=True, ipc=True, cgroup=True, uts=True):
        assert current() != before
        raise KeyError("inside")
    assert current() == before


def test_other_threads_stay_where_they_were() -> None:
    before = current()
    go, done = threading.Event(), threading.Event()
    seen: list[tuple[dict[Namespace, int], str]] = []

    def observe() -> None:  # a thread started before the block
        go.wait()
        seen.append((current(), os.uname().nodename))
        done.set()

    other = threading.Thread(target=observe)
    other.start()
    with Namespaces(net=True, uts=True):
        nsbind.sethostname("only-this-thread")
        go.set()
        done.wait()
    other.join()
    assert seen == [(before, os.uname().nodename)]


def test_two_threads_in_different_net_namespaces_at_once() -> None:
    barrier = threading.Barrier(2)

    def worker() -> int:
        with Namespaces(net=True):
            barrier.wait()  # both threads are inside their own namespace now
            ino = current()[Namespace.NET]
            barrier.wait()
        return ino

    results: list[int] = []
    other = threading.Thread(target=lambda: results.append(worker()))
    other.start()
    mine = worker()
    other.join()
    assert len({mine, results[0], current()[Namespace.NET]}) == 3


def test_mount_namespace_in_a_threaded_process(tmp_path: pathlib.Path) -> None:
    stop = threading.Event()
    idle = threading.Thread(target=stop.wait)
    idle.start()
    cwd = os.getcwd()
    try:
        with Namespaces(mnt=True):
            nsbind.mount("tmpfs", tmp_path, "tmpfs")
            (tmp_path / "inside").write_text("x")
            assert mount_at(str(tmp_path)) is not None
            with open(f"/proc/self/task/{idle.native_id}/mountinfo") as f:
                assert f" {tmp_path} " not in f.read()  # the other thread does not see it
        assert mount_at(str(tmp_path)) is None
        assert not (tmp_path / "inside").exists()
        assert os.getcwd() == cwd
    finally:
        stop.set()
        idle.join()


@forked
def test_new_mount_namespace_is_private_by_default(tmp_path: pathlib.Path) -> None:
    nsbind.mount("tmpfs", tmp_path, "tmpfs")  # the forked test's own view, shared as the host's
    nsbind.mount(None, tmp_path, None, nsbind.MountFlags.SHARED)
    with Namespaces(mnt=True):
        fields = mount_at(str(tmp_path))
        assert fields is not None and not any(f.startswith("shared:") for f in fields[6:])
    with Namespaces(mnt=True, propagation=None):
        fields = mount_at(str(tmp_path))
        assert fields is not None and any(f.startswith("shared:") for f in fields[6:])
    nsbind.umount2(tmp_path)


def test_pid_namespace_applies_to_children() -> None:
    before = current()
    own_children = for_children(Namespace.PID)
    with Namespaces(pid=True):
        assert current() == before  # the thread itself does not move
        assert for_children(Namespace.PID) is None  # a new pid namespace, no process yet
        proc = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True)
        assert proc.stdout.strip() == "1"
        assert for_children(Namespace.PID) not in (None, own_children)
    assert current() == before
    assert for_children(Namespace.PID) == own_children
    proc = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True)
    assert proc.stdout.strip() != "1"


def test_time_namespace_applies_to_children() -> None:
    before = current()
    with Namespaces(time=True):
        assert for_children(Namespace.TIME) != before[Namespace.TIME]
        pid = os.fork()
        if pid == 0:
            child_exit(lambda: 0 if of(os.getpid())[Namespace.TIME] != before[Namespace.TIME]
                       else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert current() == before
    assert for_children(Namespace.TIME) == before[Namespace.TIME]


@forked
def test_time_namespace_restore_with_threads_names_the_rule() -> None:
    stop = threading.Event()
    idle = threading.Thread(target=stop.wait)
    # started before the block: inside it 6.1 and 6.12 refuse a new thread (clone is
    # EINVAL while the time namespace for children is not the process's own)
    idle.start()
    try:
        with pytest.raises(NamespaceRuleError, match="needs a single-threaded process"):
            with Namespaces(time=True):
                pass
    finally:
        stop.set()
        idle.join()


def test_nesting_restores_each_level() -> None:
    before = current()[Namespace.NET]
    with Namespaces(net=True):
        outer = current()[Namespace.NET]
        with Namespaces(net=True):
            inner = current()[Namespace.NET]
        assert current()[Namespace.NET] == outer
    assert current()[Namespace.NET] == before
    assert len({before, outer, inner}) == 3


def test_entering_the_same_object_twice_raises() -> None:
    ns = Namespaces(uts=True)
    with ns, pytest.raises(RuntimeError, match="already entered"):
        with ns:
            pass


# ---------------------------------------------------------------- user namespaces


@pytest.mark.unprivileged
def test_user_namespace_is_not_a_with_block() -> None:
    with pytest.raises(NamespaceRuleError, match="cannot be left again"):
        with Namespaces(user=True):
            pass


@pytest.mark.unprivileged
def test_user_namespace_with_threads_names_the_count() -> None:
    stop = threading.Event()
    idle = threading.Thread(target=stop.wait)
    idle.start()
    try:
        with pytest.raises(NamespaceRuleError, match=r"2 threads are alive.*call_in"):
            Namespaces(user=True).unshare()
    finally:
        stop.set()
        idle.join()


@pytest.mark.unprivileged
@forked
def test_user_namespace_default_map_root_inside_is_caller_outside() -> None:
    uid, gid = os.geteuid(), os.getegid()  # 0 as root; a user's own ids without root
    Namespaces(user=True, uts=True).unshare()
    with open("/proc/self/uid_map") as f:
        assert f.read().split() == ["0", str(uid), "1"]
    with open("/proc/self/gid_map") as f:
        assert f.read().split() == ["0", str(gid), "1"]
    nsbind.sethostname("owned-by-the-new-user-ns")


@forked
def test_user_namespace_with_ranges_written_by_root() -> None:
    Namespaces(user=True, uid_map=[(0, 100000, 65536)], gid_map=[(0, 200000, 1000)]).unshare()
    with open("/proc/self/uid_map") as f:
        assert f.read().split() == ["0", "100000", "65536"]
    with open("/proc/self/gid_map") as f:
        assert f.read().split() == ["0", "200000", "1000"]


@pytest.mark.unprivileged
@forked
def test_user_namespace_unprivileged_self_mapping_denies_setgroups() -> None:
    drop_to_nobody()
    nsbind.set_dumpable(True)  # as a login user is: setuid() from root cleared it
    uid, gid = os.getuid(), os.getgid()  # 65534, or the unprivileged pass's own user
    Namespaces(user=True, net=True).unshare()
    assert os.getuid() == 0
    with open("/proc/self/uid_map") as f:
        assert f.read().split() == ["0", str(uid), "1"]
    with open("/proc/self/gid_map") as f:
        assert f.read().split() == ["0", str(gid), "1"]
    with open("/proc/self/setgroups") as f:
        assert f.read().strip() == "deny"


@pytest.mark.unprivileged
@pytest.mark.parametrize(("uid_map", "message"), [
    ([(0, 1000, 10), (5, 2000, 10)], r"uid_map entries 0 1000 10 and 5 2000 10 overlap inside"),
    ([(0, 1000, 10), (100, 1005, 1)], r"overlap outside"),
    ([(0, 2**32 - 1, 1)], r"uid_map outside id 4294967295 is out of range"),
    ([(0, 2**32, 1)], r"out of range"),
    ([(-1, 0, 1)], r"uid_map inside id -1 is out of range"),
    ([(0, 1000.5, 1)], r"not a uid/gid"),
    ([(0, 1000, 0)], r"count at least 1"),
    ([(0, 2**32 - 10, 20)], r"last id at most 4294967294"),
    ([(0, 1000)], r"not \(inside, outside, count\)"),
    ([(i * 2, 100000 + i * 2, 1) for i in range(341)], r"341 lines .* refused, not truncated"),
], ids=["overlap-inside", "overlap-outside", "uid-t-minus-one", "past-32-bits", "negative",
        "float", "zero-count", "range-past-the-end", "two-fields", "too-many-lines"])
def test_bad_id_maps_are_refused_by_the_call_that_received_them(
        uid_map: list[tuple[int, int, int]], message: str) -> None:
    """The kernel's rules for id maps are checked when the map is given: a ValueError naming
    the map and the entry, before any namespace or process exists."""
    with pytest.raises(ValueError, match=message):
        Namespaces(user=True, uid_map=uid_map)
    with pytest.raises(ValueError, match=message.replace("uid_map", "gid_map")):
        Namespaces(user=True, gid_map=uid_map)


@pytest.mark.unprivileged
@forked
def test_user_namespace_map_the_kernel_refuses_is_a_clear_error() -> None:
    """An unprivileged process may map only its own id: the kernel refuses the write, and
    the error names the file, the map and the pid."""
    drop_to_nobody()
    with pytest.raises(NsbindError, match=r"^write uid_map '0 0 1' of pid \d+: E(PERM|ACCES)"):
        Namespaces(user=True, uid_map=[(0, 0, 1)], gid_map=[(0, os.getegid(), 1)]).unshare()


@pytest.mark.unprivileged
def test_maps_without_user_are_refused() -> None:
    with pytest.raises(ValueError, match="need user=True"):
        Namespaces(net=True, uid_map=[(0, 0, 1)])


# ---------------------------------------------------------------- joining


def test_join_by_pid_and_restore(holder: PidFd) -> None:
    before = current()
    with Namespaces.join(holder.pid, net=True, uts=True):
        assert current()[Namespace.NET] == of(holder.pid)[Namespace.NET]
        assert os.uname().nodename == "nsbind-holder"
        assert current()[Namespace.IPC] == before[Namespace.IPC]
    assert current() == before


def test_join_by_pidfd_defaults_to_every_namespace_that_differs(holder: PidFd) -> None:
    before = current()
    with Namespaces.join(holder) as ns:
        assert ns.types == frozenset()  # nothing named: decided on entry
        now, theirs = current(), of(holder.pid)
        for kind in (Namespace.NET, Namespace.UTS, Namespace.IPC):
            assert now[kind] == theirs[kind]
    assert current() == before


def test_persisted_namespace_survives_its_creator_and_is_joined(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "netns"
    pid, pidfd = nsbind.clone3(CloneFlags.NEWNET | CloneFlags.PIDFD)
    if pid == 0:
        child_exit(signal.pause)
    assert pidfd is not None
    with pidfd:
        inode = of(pid)[Namespace.NET]
        persist(path, pid, Namespace.NET)
        pidfd.send_signal(signal.SIGKILL)
        pidfd.wait()
    try:
        assert os.stat(path).st_ino == inode
        with Namespaces.join(path):
            assert current()[Namespace.NET] == inode
        with pytest.raises(ValueError, match="is a net namespace, not uts"):
            with Namespaces.join(path, uts=True):
                pass
    finally:
        unpersist(path)
    assert not path.exists()


@pytest.mark.unprivileged
def test_join_errors_leave_nothing_behind() -> None:
    before = current()
    with pytest.raises(TypeError, match="cannot join the namespaces of"):
        Namespaces.join(object())
    with pytest.raises(ProcessLookupError):
        with Namespaces.join(2**22 - 7, net=True):
            pass
    assert current() == before


def test_persist_failure_removes_the_file_it_created(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        persist(tmp_path / "x", 2**22 - 7)
    assert not (tmp_path / "x").exists()


def test_nested_new_pid_namespace_explains_the_rule() -> None:
    with Namespaces(pid=True), pytest.raises(NamespaceRuleError,
                                             match=r"no process yet.*call_in or spawn"):
        with Namespaces(pid=True):
            pass


@pytest.mark.unprivileged
@forked
def test_unprivileged_new_namespace_explains_cap_sys_admin() -> None:
    drop_to_nobody()
    with pytest.raises(PermissionError, match=r"^unshare NEWNET: EPERM.*needs CAP_SYS_ADMIN"):
        with Namespaces(net=True):
            pass


@pytest.mark.unprivileged
@forked
def test_user_namespace_limit_names_the_sysctl() -> None:
    # a process that may not create user namespaces: max_user_namespaces=0 in a
    # user namespace of our own (the limit is per user namespace)
    Namespaces(user=True).unshare()
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    with pytest.raises(NsbindError, match=r"^unshare NEWUSER: ENOSPC.*user.max_user_namespaces=0"):
        Namespaces(user=True).unshare()


@pytest.mark.unprivileged
def test_cve_2021_43784_oversized_id_maps_are_refused_not_truncated() -> None:
    big = [(i * 10, 100000 + i * 10, 10) for i in range(5000)]  # > 64 KiB of map text
    with pytest.raises(ValueError, match=r"uid_map of 5000 lines \(\d+ bytes\) is more than "
                                         r"the kernel takes .*refused, not truncated"):
        Namespaces(user=True, uid_map=big)
    with pytest.raises(ValueError, match="gid_map of 341 lines"):
        Namespaces(user=True, uid_map=[(0, 0, 1)], gid_map=big[:341])
    with pytest.raises(ValueError, match="uid_map outside id -5 is out of range"):
        Namespaces(user=True, uid_map=[(0, -5, 1)])
    with pytest.raises(ValueError, match=r"uid_map of 340 lines \(4989 bytes\)"):
        Namespaces(user=True, uid_map=big[:340])  # few enough lines, too many bytes
    most = [(i, i, 1) for i in range(340)]  # the most lines the kernel takes
    assert len(Namespaces(user=True, uid_map=most).uid_map or []) == 340


def test_persist_refuses_a_symlink_and_never_mounts_over_its_target(
        tmp_path: pathlib.Path, holder: PidFd) -> None:
    """persist(path) resolves path once, to an fd: a symlink there (to a file the caller
    did not name) is refused, and the file it points at is neither mounted over nor
    changed; a non-empty file is refused too."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "netns"
    link.symlink_to(victim)
    with open("/proc/self/mountinfo") as f:
        before = f.read()
    with pytest.raises(ValueError, match=r"it is a symlink|not an empty regular file"):
        persist(link, holder.pid)
    with pytest.raises(ValueError, match="not an empty regular file"):
        persist(victim, holder.pid)
    with open("/proc/self/mountinfo") as f:
        assert f.read() == before
    assert victim.read_text() == "precious" and link.is_symlink()
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="it is a symlink"):
        persist(dangling, holder.pid)
    assert not (tmp_path / "nowhere").exists()


def test_persist_then_unpersist_through_a_swapped_symlink_touches_nothing_else(
        tmp_path: pathlib.Path, holder: PidFd) -> None:
    path = tmp_path / "netns"
    persist(path, holder.pid)
    try:
        with Namespaces.join(path):
            assert current()[Namespace.NET] == of(holder.pid)[Namespace.NET]
    finally:
        unpersist(path)
    assert not path.exists()
    other = tmp_path / "other"
    other.touch()
    path.symlink_to(other)
    with pytest.raises(NsbindError):  # a symlink is not followed to unmount elsewhere
        unpersist(path)
    assert other.exists()
