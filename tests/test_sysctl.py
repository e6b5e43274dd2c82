"""nsbind.sysctl: namespaced sysctls written through a fresh procfs made inside the
container's namespaces by a helper thread (CVE-2025-52881), and oom_score_adj."""

from __future__ import annotations

import errno
import os
import pathlib
import threading
from collections.abc import Iterator

import pytest

import nsbind
from nsbind import PIPE, Namespaces, Process, mounts, spawn, sysctl
from nsbind.errors import Forbidden, InvalidArgument, InvalidValue, NotFound, NsbindError

KEYS = ("net/ipv4/ip_forward", "kernel/shmmax", "kernel/domainname", "fs/mqueue/msg_max",
        "net/ipv4/conf/lo/forwarding")


def host_values() -> dict[str, str]:
    out = {}
    for key in (*KEYS, "kernel/panic"):
        with open(f"/proc/sys/{key}") as f:
            out[key] = f.read()
    return out


def read_inside(proc: Process, *keys: str) -> list[str]:
    """The values of ``keys`` (slash form) as a process joining ``proc``'s net, ipc and uts
    namespaces reads them from its /proc/sys."""
    reader = spawn(["sh", "-c", 'for k; do cat "/proc/sys/$k"; done', "sh", *keys],
                   namespaces=Namespaces.join(proc.pid, net=True, ipc=True, uts=True),
                   stdout=PIPE)
    out, _ = reader.communicate(timeout=10)
    assert reader.returncode == 0
    assert out is not None
    return out.decode().splitlines()


@pytest.fixture
def box() -> Iterator[Process]:
    """``sleep 30`` alone in new net, ipc and uts namespaces; killed and reaped at the end."""
    proc = spawn(["sleep", "30"], namespaces=Namespaces(net=True, ipc=True, uts=True))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def ipc_only() -> Iterator[Process]:
    """``sleep 30`` in a new ipc namespace only: it shares the host's network namespace."""
    proc = spawn(["sleep", "30"], namespaces=Namespaces(ipc=True))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_apply_writes_in_the_containers_namespaces_and_not_the_hosts(box: Process) -> None:
    before = host_values()
    assert read_inside(box, "net/ipv4/ip_forward") == ["0"]
    sysctl.apply(box.pid, {"net.ipv4.ip_forward": "1", "kernel.shmmax": "4096",
                           "kernel.domainname": "x", "fs.mqueue.msg_max": "20\n"},
                 namespaces=["net", "ipc", "uts"])
    assert read_inside(box, "net/ipv4/ip_forward", "kernel/shmmax", "kernel/domainname",
                       "fs/mqueue/msg_max") == ["1", "4096", "x", "20"]
    assert host_values() == before


def test_cve_2025_52881_a_fake_proc_sys_in_the_container_is_not_written_through(
        tmp_path: pathlib.Path) -> None:
    """The container's own mount namespace has a tmpfs over /proc/sys holding a decoy
    ip_forward and a symlink to a host file: the write reaches the real sysctl of its
    network namespace, and neither decoy nor host file changes."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    plant = ("mkdir -p /proc/sys/net/ipv4 /proc/sys/kernel && "
             "echo 0 > /proc/sys/net/ipv4/ip_forward && "
             f"ln -s {victim} /proc/sys/kernel/shmmax && echo ready && exec sleep 30")
    proc = spawn(["sh", "-c", plant], namespaces=Namespaces(net=True, ipc=True, mnt=True),
                 mounts=[mounts.tmpfs("/proc/sys")], stdout=PIPE)
    with proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            before = host_values()
            sysctl.apply(proc.pid, {"net.ipv4.ip_forward": "1", "kernel.shmmax": "8192"},
                         namespaces=["net", "ipc", "mnt"])
            assert read_inside(proc, "net/ipv4/ip_forward", "kernel/shmmax") == ["1", "8192"]
            decoy = spawn(["cat", "/proc/sys/net/ipv4/ip_forward"], stdout=PIPE,
                          namespaces=Namespaces.join(proc.pid, mnt=True))
            assert decoy.communicate(timeout=10)[0] == b"0\n"
            assert victim.read_text() == "untouched\n"
            assert host_values() == before
        finally:
            proc.kill()


def test_the_helper_thread_leaves_the_caller_where_it_was(box: Process) -> None:
    """Only the short-lived helper thread joins the container's namespaces."""
    mine = {ns: os.stat(f"/proc/thread-self/ns/{ns}").st_ino for ns in ("net", "ipc", "uts")}
    threads = threading.active_count()
    sysctl.apply(box.pid, {"kernel.shmmni": "100"}, namespaces=[nsbind.Namespace.IPC])
    assert {ns: os.stat(f"/proc/thread-self/ns/{ns}").st_ino for ns in mine} == mine
    assert threading.active_count() == threads
    assert read_inside(box, "kernel/shmmni") == ["100"]


def test_slash_keys_are_normalised_as_runc_does(box: Process) -> None:
    assert sysctl.normalize("net/ipv4/conf/eno2.100/rp_filter") == \
        "net.ipv4.conf.eno2/100.rp_filter"
    assert sysctl.normalize("net.ipv4.conf.eno2/100.rp_filter") == \
        "net.ipv4.conf.eno2/100.rp_filter"
    before = host_values()
    sysctl.apply(box.pid, {"net/ipv4/conf/lo/forwarding": "1"}, namespaces=["network"])
    assert read_inside(box, "net/ipv4/conf/lo/forwarding") == ["1"]
    assert host_values() == before


@pytest.mark.unprivileged
def test_check_names_the_namespace_each_key_needs() -> None:
    assert sysctl.namespace_of("kernel.sem") is nsbind.Namespace.IPC
    assert sysctl.namespace_of("fs.mqueue.queues_max") is nsbind.Namespace.IPC
    assert sysctl.namespace_of("net.core.somaxconn") is nsbind.Namespace.NET
    assert sysctl.namespace_of("kernel.hostname") is nsbind.Namespace.UTS
    assert sysctl.check("net/core/somaxconn", ["network"]) == "net.core.somaxconn"


def test_a_key_that_is_not_namespaced_is_refused(box: Process) -> None:
    before = host_values()
    with pytest.raises(Forbidden) as info:
        sysctl.apply(box.pid, {"kernel.panic": "5"}, namespaces=["net", "ipc", "uts"])
    assert str(info.value) == \
        "sysctl kernel.panic: not namespaced; refused (it would change the host)"
    for key in ("fs.file-max", "vm.swappiness", "kernel.core_pattern"):
        with pytest.raises(Forbidden, match=f"sysctl {key}: not namespaced"):
            sysctl.check(key, ["net", "ipc", "uts"])
    assert host_values() == before


def test_a_key_without_its_namespace_is_refused_and_nothing_is_written(box: Process) -> None:
    with pytest.raises(Forbidden) as info:
        sysctl.apply(box.pid, {"kernel.shmmax": "4096", "net.ipv4.ip_forward": "1"},
                     namespaces=["ipc"])
    assert str(info.value).startswith(
        "sysctl net.ipv4.ip_forward: needs the container's own network namespace")
    with pytest.raises(Forbidden, match=r"sysctl kernel\.domainname: needs the container's own "
                                        r"uts namespace"):
        sysctl.apply(box.pid, {"kernel.domainname": "x"}, namespaces=["net"])
    assert read_inside(box, "kernel/shmmax", "kernel/domainname") == \
        [host_values()["kernel/shmmax"].strip(), "(none)"]


def test_a_process_sharing_the_hosts_netns_is_refused(ipc_only: Process) -> None:
    """Declared ``net`` but in fact in the caller's network namespace: refused, as runc
    refuses net.* in the host's netns; the ipc key before it is not written either."""
    before = host_values()
    with pytest.raises(Forbidden) as info:
        sysctl.apply(ipc_only.pid, {"kernel.shmmax": "4096", "net.ipv4.ip_forward": "1"},
                     namespaces=["net", "ipc"])
    assert str(info.value) == (
        f"sysctl net.ipv4.ip_forward: process {ipc_only.pid} shares this process's network "
        "namespace (writing would change the host's); refused")
    assert host_values() == before
    assert read_inside(ipc_only, "kernel/shmmax") == [before["kernel/shmmax"].strip()]


@pytest.mark.parametrize("key", ["net..ipv4.ip_forward", ".net.ipv4.ip_forward",
                                 "net.ipv4.ip_forward.", "net/ipv4/../../kernel/panic",
                                 "net.ipv4.conf.//.x", "net.ipv4 .x", "", "net.ip\0v4",
                                 "net." + "a" * 300])
def test_malformed_keys_are_refused(box: Process, key: str) -> None:
    with pytest.raises(InvalidValue, match=r"^sysctl .*refused"):
        sysctl.apply(box.pid, {key: "1"}, namespaces=["net", "ipc", "uts"])
    assert read_inside(box, "net/ipv4/ip_forward") == ["0"]


@pytest.mark.parametrize("value", ["1\n2", "1\0", "\n\n", "1" * 5000])
def test_bad_values_are_refused_before_anything_is_written(box: Process, value: str) -> None:
    with pytest.raises(InvalidValue) as info:
        sysctl.apply(box.pid, {"net.ipv4.ip_forward": "1", "kernel.shmmax": value},
                     namespaces=["net", "ipc"])
    assert str(info.value).startswith("sysctl kernel.shmmax: value ")
    assert str(info.value).endswith("; refused")
    assert read_inside(box, "net/ipv4/ip_forward") == ["0"]


def test_the_kernels_refusals_name_the_key(box: Process) -> None:
    with pytest.raises(NotFound) as missing:
        sysctl.apply(box.pid, {"net.ipv4.no_such_thing": "1"}, namespaces=["net"])
    assert str(missing.value) == ("open sysctl net.ipv4.no_such_thing: ENOENT (No such file or "
                                  "directory): no such file in this kernel")
    with pytest.raises(InvalidArgument) as bad:
        sysctl.apply(box.pid, {"net.ipv4.ip_forward": "abc"}, namespaces=["net"])
    assert str(bad.value).startswith("write sysctl net.ipv4.ip_forward: EINVAL")
    assert read_inside(box, "net/ipv4/ip_forward") == ["0"]


def test_an_exited_process_is_refused_naming_it() -> None:
    proc = spawn(["true"], namespaces=Namespaces(net=True))
    pid = proc.pid
    proc.wait()
    with pytest.raises(NsbindError) as info:
        sysctl.apply(pid, {"net.ipv4.ip_forward": "1"}, namespaces=["net"])
    assert info.value.errno == errno.ESRCH
    assert str(info.value).startswith(f"sysctl: no process {pid}")


# ---------------------------------------------------------------- oom_score_adj


def oom_of(proc: Process) -> int:
    with open(f"/proc/{proc.pid}/oom_score_adj") as f:
        return int(f.read())


def test_oom_score_adj_is_raised(box: Process) -> None:
    assert oom_of(box) == 0
    sysctl.set_oom_score_adj(box.pid, 500)
    assert oom_of(box) == 500
    sysctl.set_oom_score_adj(box.pid, 1000)
    assert oom_of(box) == 1000
    sysctl.set_oom_score_adj(box.pid, 0)  # back down to the minimum: allowed
    assert oom_of(box) == 0


def test_lowering_oom_score_adj_below_the_minimum_is_refused_saying_why(box: Process) -> None:
    if nsbind.capbset_read(nsbind.Capability.SYS_RESOURCE) and \
            nsbind.Capability.SYS_RESOURCE in nsbind.capget().effective:
        pytest.skip("this process has CAP_SYS_RESOURCE: lowering is allowed")
    with pytest.raises(PermissionError) as info:
        sysctl.set_oom_score_adj(box.pid, -500)
    assert str(info.value) == (
        f"write oom_score_adj of pid {box.pid}: EACCES (Permission denied): lowering it "
        "(now 0) below the lowest value a privileged writer set needs CAP_SYS_RESOURCE, "
        "which this process lacks")
    assert oom_of(box) == 0


@pytest.mark.parametrize("value", [1001, -1001, 2**16, True, 1.5])
def test_oom_score_adj_out_of_range_is_refused_not_clamped(box: Process, value: object) -> None:
    with pytest.raises(ValueError if isinstance(value, int) and not isinstance(value, bool)
                       else TypeError) as info:
        sysctl.set_oom_score_adj(box.pid, value)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"oom_score_adj of pid {box.pid}: {value}")
    assert oom_of(box) == 0


@pytest.mark.unprivileged
def test_oom_score_adj_of_an_exited_process_names_it() -> None:
    proc = spawn(["true"])
    pid = proc.pid
    proc.wait()
    with pytest.raises(ProcessLookupError) as info:
        sysctl.set_oom_score_adj(pid, 100)
    assert str(info.value).startswith(f"oom_score_adj of pid {pid}: no process {pid}")
