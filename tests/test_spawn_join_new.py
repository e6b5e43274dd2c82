"""One spawn that joins some namespaces and creates others (OCI linux.namespaces entries
with and without a path): Namespaces(...).joining(kind=nsfs path or fd)."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

import pytest

import nsbind
from nsbind import Namespaces, spawn
from nsbind.errors import NamespaceRuleError, UsageError
from nsbind.flags import Namespace
from nsbind.process import Process
from nsbind.spawnstdio import PIPE

KINDS = ("user", "net", "uts", "ipc", "pid", "mnt")


@contextlib.contextmanager
def holder(ns: Namespaces) -> Iterator[Process]:
    """A process that sits in ``ns`` until the test is done, then is killed and reaped."""
    proc = spawn(["sleep", "1000"], namespaces=ns)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def run(ns: Namespaces, script: str = "", **kwargs: object) -> tuple[dict[str, int], str]:
    """Run a shell in ``ns``: its namespace inodes (as it saw them) and what ``script``
    printed after them."""
    show = "; ".join(f"stat -L -c {kind}:%i /proc/self/ns/{kind}" for kind in KINDS)
    with spawn(["sh", "-c", f"{show}; {script}"], namespaces=ns, stdout=PIPE,
               **kwargs) as proc:  # type: ignore[arg-type]
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert out is not None
    lines = out.decode().splitlines()
    seen = dict(line.split(":") for line in lines[:len(KINDS)])
    return {k: int(v) for k, v in seen.items()}, "\n".join(lines[len(KINDS):])


def open_fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


def test_join_a_holders_net_namespace_with_new_uts_and_mnt() -> None:
    mine = {kind: inode("self", kind) for kind in KINDS}
    with holder(Namespaces(net=True)) as box:
        seen, out = run(Namespaces(uts=True, mnt=True).joining(net=f"/proc/{box.pid}/ns/net"),
                        "hostname", hostname="joined-and-new")
        assert seen["net"] == inode(box.pid, "net") != mine["net"]  # joined
    assert seen["uts"] != mine["uts"] and seen["mnt"] != mine["mnt"]  # new
    assert seen["ipc"] == mine["ipc"] and seen["pid"] == mine["pid"]  # untouched
    assert out == "joined-and-new"
    assert {kind: inode("thread-self", kind) for kind in KINDS} == mine  # this thread too


def test_join_a_bind_mounted_nsfs_path_and_an_fd(tmp_path: pathlib.Path) -> None:
    pinned = tmp_path / "netns"
    with holder(Namespaces(net=True, ipc=True)) as box:
        nsbind.persist(pinned, box.pid, Namespace.NET)  # as `ip netns add`
        ipc = os.open(f"/proc/{box.pid}/ns/ipc", os.O_RDONLY | os.O_CLOEXEC)
        try:
            before = open_fds()
            seen, _ = run(Namespaces(uts=True).joining(net=pinned).joining(ipc=ipc))
            assert open_fds() == before  # the fds spawn opened are closed again
            assert seen["net"] == inode(box.pid, "net") == os.stat(pinned).st_ino
            assert seen["ipc"] == inode(box.pid, "ipc")
            assert seen["uts"] != inode("self", "uts")
            os.fstat(ipc)  # still the caller's: spawn used a copy
        finally:
            os.close(ipc)
            nsbind.unpersist(pinned)


def test_a_joined_pid_namespace_takes_the_child_itself() -> None:
    with holder(Namespaces(pid=True)) as box:
        seen, out = run(Namespaces(mnt=True).joining(pid=f"/proc/{box.pid}/ns/pid"),
                        "grep NSpid /proc/self/status")
        assert seen["pid"] == inode(box.pid, "pid")
    assert seen["mnt"] != inode("self", "mnt")
    assert len(out.split()) == 3  # NSpid: a pid here and one in the joined namespace
    assert os.path.exists("/proc/thread-self/ns/pid_for_children")
    assert inode("thread-self", "pid_for_children") == inode("self", "pid")  # came back


def test_new_user_namespace_beside_a_joined_net_namespace() -> None:
    mine = {kind: inode("thread-self", kind) for kind in KINDS}
    with holder(Namespaces(net=True)) as box:
        seen, out = run(Namespaces(user=True, mnt=True, uts=True).joining(
            net=f"/proc/{box.pid}/ns/net"), "id -u")
        assert seen["net"] == inode(box.pid, "net")
    assert seen["user"] != mine["user"] and seen["mnt"] != mine["mnt"]
    assert out == "0"  # root of its new user namespace (its maps written by spawn)
    assert {kind: inode("thread-self", kind) for kind in KINDS} == mine


def test_a_joined_user_namespace_owns_the_new_ones() -> None:
    userns = Namespaces(user=True, net=True, uid_map=[(0, 200000, 65536)],
                        gid_map=[(0, 200000, 65536)])
    with holder(userns) as box:
        # sethostname needs CAP_SYS_ADMIN over the owner of the uts namespace: it works
        # only because the new uts namespace was made inside the joined user namespace
        seen, out = run(Namespaces(uts=True, mnt=True, ipc=True).joining(
            user=f"/proc/{box.pid}/ns/user", net=f"/proc/{box.pid}/ns/net"),
                        "id -u; hostname", hostname="in-joined-userns")
        assert seen["user"] == inode(box.pid, "user")
        assert seen["net"] == inode(box.pid, "net")
        assert seen["uts"] != inode(box.pid, "uts") and seen["ipc"] != inode(box.pid, "ipc")
    assert out.split() == ["0", "in-joined-userns"]


@pytest.mark.parametrize(("ns", "error", "message"), [
    (lambda p: Namespaces(net=True).joining(net=f"/proc/{p}/ns/net"), ValueError,
     r"the net namespace is both new \(net=True\) and joined"),
    (lambda p: Namespaces().joining(ipc=f"/proc/{p}/ns/net"), ValueError,
     "is a net namespace, not ipc"),
    (lambda p: Namespaces().joining(net="/etc/hostname"), ValueError,
     "not a namespace file"),
    (lambda p: Namespaces().joining(net="/nonexistent-nsbind"), FileNotFoundError,
     "open namespace /nonexistent-nsbind: ENOENT"),
    (lambda p: Namespaces().joining(nett=f"/proc/{p}/ns/net"), ValueError,
     "'nett' is not a namespace type"),
    (lambda p: Namespaces().joining(net=1.5),  # type: ignore[arg-type]
     TypeError, "give an nsfs path or fd"),
    (lambda p: Namespaces(pid=True).joining(user=f"/proc/{p}/ns/user"), NamespaceRuleError,
     "new pid or time namespace is made by the clone"),
    (lambda p: Namespaces(user=True).joining(mnt=f"/proc/{p}/ns/mnt"), NamespaceRuleError,
     "no privilege over a joined mount namespace"),
])
def test_refused_combinations(ns: object, error: type[Exception], message: str) -> None:
    with holder(Namespaces(net=True)) as box:
        before = open_fds()
        with pytest.raises(error, match=message):
            spawn(["true"], namespaces=ns(box.pid))  # type: ignore[operator]
        assert open_fds() == before


@pytest.mark.unprivileged
def test_an_fd_of_the_wrong_type_is_refused() -> None:
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        before = open_fds()
        with pytest.raises(ValueError, match=f"fd {fd} is a uts namespace, not net"):
            spawn(["true"], namespaces=Namespaces().joining(net=fd))
        assert open_fds() == before
    finally:
        os.close(fd)


@pytest.mark.unprivileged
def test_join_is_for_spawn_not_a_with_block() -> None:
    base = Namespaces(uts=True)
    ns = base.joining(net="/proc/self/ns/net")
    with pytest.raises(UsageError, match=r"for nsbind\.spawn"):
        with ns:
            pass
    with pytest.raises(UsageError, match=r"for nsbind\.spawn"):
        ns.unshare()
    from nsbind import call_in

    with pytest.raises(UsageError, match=r"call_in takes .*for nsbind\.spawn"):
        call_in(ns, os.getpid)  # refused, not run with the joins silently dropped
    assert base.joined == {} and ns.joined == {"net": "/proc/self/ns/net"}  # a copy
    assert ns.types == base.types
    assert Namespaces().joining(net="/x") == Namespaces().joining(net="/x")
    assert Namespaces().joining(net="/x") != Namespaces().joining(net="/y")
