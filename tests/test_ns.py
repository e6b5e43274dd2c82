"""unshare, setns, nsfs fds, sethostname and setdomainname on the real kernel."""

from __future__ import annotations

import os

import pytest

import nsbind
from helpers import drop_to_nobody, forked, run_forked
from nsbind import CloneFlags, Namespace, PidFd
from nsbind.errors import InvalidArgument, NsbindError


def _inode(path: str) -> int:
    return os.stat(path).st_ino


def _rename_in_new_uts() -> str:
    nsbind.unshare(CloneFlags.NEWUTS)
    nsbind.sethostname("nsbind-unshare")
    nsbind.setdomainname("nsbind.example")
    assert os.uname().nodename == "nsbind-unshare"
    with open("/proc/sys/kernel/domainname") as f:
        assert f.read().strip() == "nsbind.example"
    return os.uname().nodename


def test_unshare_uts_then_sethostname_is_invisible_to_the_parent() -> None:
    before = os.uname().nodename
    assert run_forked(_rename_in_new_uts) == "nsbind-unshare"
    assert os.uname().nodename == before


@forked
def test_unshare_net_gives_a_namespace_with_only_loopback() -> None:
    before = _inode("/proc/self/ns/net")
    nsbind.unshare(CloneFlags.NEWNET)
    assert _inode("/proc/self/ns/net") != before
    with open("/proc/self/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    assert interfaces == ["lo"]


@pytest.mark.unprivileged
def test_unshare_invalid_flag_is_einval_naming_the_flags() -> None:
    with pytest.raises(InvalidArgument, match=r"^unshare PIDFD: EINVAL"):
        nsbind.unshare(CloneFlags.PIDFD)


@pytest.mark.unprivileged
@forked
def test_unshare_unprivileged_is_permission_error() -> None:
    drop_to_nobody()
    with pytest.raises(PermissionError, match=r"^unshare NEWUTS\|NEWNET: EPERM"):
        nsbind.unshare(CloneFlags.NEWNET | CloneFlags.NEWUTS)


def test_open_namespace_by_pid_reports_type_and_inode(holder: PidFd) -> None:
    with nsbind.open_namespace(holder.pid, Namespace.NET) as ns:
        assert ns.type is Namespace.NET
        assert ns.inode == _inode(f"/proc/{holder.pid}/ns/net")
        assert ns.inode != _inode("/proc/self/ns/net")
        assert ns.label == f"/proc/{holder.pid}/ns/net"


def test_setns_by_nsfs_fd_joins_the_namespace(holder: PidFd) -> None:
    target = _inode(f"/proc/{holder.pid}/ns/net")

    @forked
    def join() -> int:
        with nsbind.open_namespace(f"/proc/{holder.pid}/ns/net", Namespace.NET) as ns:
            ns.setns()
        return _inode("/proc/self/ns/net")

    assert join() == target


def test_setns_by_pidfd_joins_several_namespaces_at_once(holder: PidFd) -> None:
    pid = holder.pid
    want = (_inode(f"/proc/{pid}/ns/net"), _inode(f"/proc/{pid}/ns/uts"))

    @forked
    def join() -> tuple[int, int, str]:
        nsbind.setns(holder, CloneFlags.NEWNET | CloneFlags.NEWUTS)
        return (_inode("/proc/self/ns/net"), _inode("/proc/self/ns/uts"), os.uname().nodename)

    net, uts, hostname = join()
    assert (net, uts) == want
    assert hostname == "nsbind-holder"


def test_setns_wrong_type_is_einval_naming_the_namespace_file(holder: PidFd) -> None:
    with nsbind.open_namespace(holder.pid, "net") as ns, pytest.raises(
        InvalidArgument, match=rf"^setns uts /proc/{holder.pid}/ns/net: EINVAL"
    ):
        nsbind.setns(ns, Namespace.UTS)


@pytest.mark.unprivileged
def test_setns_on_a_file_that_is_not_a_namespace_is_einval() -> None:
    with open("/dev/null") as f, pytest.raises(InvalidArgument, match=r"^setns fd \d+: EINVAL"):
        nsbind.setns(f.fileno())


@pytest.mark.unprivileged
def test_setns_bad_fd_is_ebadf() -> None:
    with pytest.raises(NsbindError, match=r"^setns fd 999: EBADF"):
        nsbind.setns(999)


def test_open_namespace_refuses_non_nsfs_and_wrong_type(holder: PidFd) -> None:
    with pytest.raises(ValueError, match="is not a namespace file"):
        nsbind.open_namespace("/dev/null")
    with pytest.raises(ValueError, match="is a net namespace, not uts"):
        nsbind.open_namespace(f"/proc/{holder.pid}/ns/net", Namespace.UTS)
    with pytest.raises(FileNotFoundError, match=r"^open namespace /nonexistent: ENOENT"):
        nsbind.open_namespace("/nonexistent")


@pytest.mark.unprivileged
def test_namespace_enum_matches_proc_and_clone_flags() -> None:
    assert sorted(ns.proc_name for ns in Namespace) == sorted(
        n for n in os.listdir("/proc/self/ns") if not n.endswith("_for_children"))
    assert Namespace.MNT.flag is CloneFlags.NEWNS
    assert Namespace.from_flag(CloneFlags.NEWTIME) is Namespace.TIME


@forked
def test_sethostname_too_long_is_einval() -> None:
    nsbind.unshare(CloneFlags.NEWUTS)
    with pytest.raises(InvalidArgument, match=r"^sethostname 'xxxx"):
        nsbind.sethostname("x" * 65)
    with pytest.raises(InvalidArgument, match=r"^setdomainname 'yyyy"):
        nsbind.setdomainname("y" * 65)


@pytest.mark.unprivileged
@forked
def test_sethostname_unprivileged_is_eperm() -> None:
    drop_to_nobody()
    with pytest.raises(PermissionError, match=r"^sethostname 'box': EPERM"):
        nsbind.sethostname("box")
