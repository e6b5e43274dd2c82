"""nsbind.net: bridges, veth pairs into network namespaces, addresses, routes, MTU, IPAM,
attach/detach with undo — on the real kernel, traffic only inside namespaces made here."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

import nsbind
from nsbind import Namespace, Namespaces, Process
from nsbind.errors import InvalidType, InvalidValue, NsbindError
from nsbind.namespaces import current, persist, unpersist
from nsbind.net import (
    AddressesExhausted,
    Bridge,
    Ipam,
    IpamError,
    NetnsTarget,
    Route,
    attach,
    check_ifname,
    check_mtu,
    configure,
    detach,
    host_name_for,
    link_info,
    link_names,
    open_netns,
    run_in,
    veth_pair,
)

PREFIX = f"nsbt{os.getpid() % 10000}"  # every link this module makes starts with it


@pytest.fixture
def tag(request: pytest.FixtureRequest) -> Iterator[str]:
    """A link name stem of this test's own (≤ 11 chars, so stem + 4 fits IFNAMSIZ); no
    link with the module's prefix may remain in the host namespace afterwards."""
    yield f"{PREFIX}x"
    left = [name for name in link_names() if name.startswith(PREFIX)]
    for name in left:
        nsbind.net.delete_link(name, missing_ok=True)
    assert left == [], f"links left behind: {left}"


@pytest.fixture
def netns() -> Iterator[Callable[[], Process]]:
    """Make sleeping processes, each in a new network namespace; killed and reaped after."""
    made: list[Process] = []

    def make() -> Process:
        proc = nsbind.spawn(["sleep", "300"], namespaces=Namespaces(net=True))
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def udp_round_trip(client: NetnsTarget | None, server: NetnsTarget | None, server_ip: str,
                   family: int) -> bytes:
    """A datagram from ``client``'s namespace to ``server``'s and back; each socket is
    made inside its namespace (a helper thread), then used from here."""
    srv = run_in(server, socket.socket, family, socket.SOCK_DGRAM)
    cli = run_in(client, socket.socket, family, socket.SOCK_DGRAM)
    with srv, cli:
        srv.bind((server_ip, 0))
        srv.settimeout(5)
        cli.settimeout(5)
        cli.sendto(b"ping", srv.getsockname()[:2])
        data, peer = srv.recvfrom(100)
        srv.sendto(data + b"-pong", peer)
        return cli.recvfrom(100)[0]


# ------------------------------------------------------------------ hostile input

@pytest.mark.unprivileged
@pytest.mark.parametrize("name", ["", "a" * 16, "a/b", "a b", "a\tb", "a\nb", ".", "..",
                                  "a:b", "é" * 8, "a\0b"])
def test_interface_names_the_kernel_would_refuse_are_refused(name: str) -> None:
    with pytest.raises(InvalidValue, match="interface name"):
        check_ifname(name)
    with pytest.raises(InvalidValue):
        veth_pair(name, "eth0")


@pytest.mark.unprivileged
def test_interface_name_limits() -> None:
    assert check_ifname("a" * 15) == "a" * 15
    with pytest.raises(InvalidType):
        check_ifname(b"eth0")  # type: ignore[arg-type]


@pytest.mark.unprivileged
@pytest.mark.parametrize("mtu", [0, 67, 65536, -1])
def test_mtu_out_of_range_is_refused(mtu: int) -> None:
    with pytest.raises(InvalidValue, match="68 to 65535"):
        check_mtu(mtu)
    assert check_mtu(68) == 68 and check_mtu(65535) == 65535
    with pytest.raises(InvalidType):
        check_mtu(True)


@pytest.mark.unprivileged
@pytest.mark.parametrize("subnet", ["10.0.0.1/24", "10.0.0.0/31", "10.0.0.0/7", "fd00::/127",
                                    "fd00::/48", "banana", "10.0.0.0/33", "300.0.0.0/8"])
def test_bad_subnets_are_refused(tmp_path: pathlib.Path, subnet: str) -> None:
    with pytest.raises(InvalidValue, match="subnet"):
        Ipam(tmp_path, subnet)


@pytest.mark.unprivileged
def test_gateway_must_be_a_host_of_the_subnet(tmp_path: pathlib.Path) -> None:
    for gateway in ["10.0.0.0", "10.0.0.255", "10.0.1.1", "fd00::1"]:
        with pytest.raises(InvalidValue, match="gateway"):
            Ipam(tmp_path, "10.0.0.0/24", gateway)


# ------------------------------------------------------------------ IPAM

@pytest.mark.unprivileged
def test_ipam_hands_out_distinct_addresses_never_network_broadcast_or_gateway(
        tmp_path: pathlib.Path) -> None:
    ipam = Ipam(tmp_path / "st", "10.9.0.0/29", "10.9.0.3")
    got = [ipam.allocate(f"c{i}") for i in range(5)]  # .1 .2 .4 .5 .6
    assert sorted(map(str, got)) == ["10.9.0.1", "10.9.0.2", "10.9.0.4", "10.9.0.5",
                                     "10.9.0.6"]
    with pytest.raises(AddressesExhausted, match=r"10\.9\.0\.0/29"):
        ipam.allocate("one-too-many")
    assert ipam.allocate("c2") == got[2]  # an owner gets its own back
    assert ipam.allocated() == {a: f"c{i}" for i, a in enumerate(got)}
    assert (tmp_path / "st" / "10.9.0.4").read_text() == "c2"


@pytest.mark.unprivileged
def test_ipam_release_frees_and_does_not_reuse_at_once(tmp_path: pathlib.Path) -> None:
    ipam = Ipam(tmp_path, "10.9.0.0/24")
    a, b = ipam.allocate("a"), ipam.allocate("b")
    assert str(ipam.gateway) == "10.9.0.1" and str(a) == "10.9.0.2"
    assert ipam.release("a") == [a]
    assert ipam.release("a") == []
    assert ipam.owner_of(a) is None and ipam.owner_of(b) == "b"
    assert ipam.allocate("c") == ipaddress.ip_address("10.9.0.4")  # round robin, as host-local


@pytest.mark.unprivileged
def test_ipam_gives_an_address_asked_for_once(tmp_path: pathlib.Path) -> None:
    ipam = Ipam(tmp_path, "10.9.0.0/24")
    assert str(ipam.allocate("a", "10.9.0.77")) == "10.9.0.77"
    assert str(ipam.allocate("a", "10.9.0.77")) == "10.9.0.77"  # idempotent for its owner
    assert ipam.allocate("a") == ipaddress.ip_address("10.9.0.77")
    for bad in ("10.9.0.77", "10.9.0.1", "10.9.0.0", "10.9.0.255", "10.8.0.5", "::1", "x"):
        with pytest.raises(IpamError):
            ipam.allocate("b", bad)
    assert ipam.allocated() == {ipaddress.ip_address("10.9.0.77"): "a"}


@pytest.mark.unprivileged
def test_ipam_release_makes_room_in_a_full_range(tmp_path: pathlib.Path) -> None:
    ipam = Ipam(tmp_path, "10.9.0.0/30")  # .1 gateway, .2 the only address
    assert str(ipam.allocate("a")) == "10.9.0.2"
    with pytest.raises(AddressesExhausted):
        ipam.allocate("b")
    ipam.release("a")
    assert str(ipam.allocate("b")) == "10.9.0.2"


@pytest.mark.unprivileged
def test_ipam_ipv6(tmp_path: pathlib.Path) -> None:
    ipam = Ipam(tmp_path, "fd00:9::/64")
    got = {ipam.allocate(f"c{i}") for i in range(20)}
    assert len(got) == 20 and ipaddress.ip_address("fd00:9::") not in got
    assert ipam.gateway not in got and all(a in ipam.subnet for a in got)
    assert (tmp_path / "fd00:9::2").read_text() == "c0"


_RACER = """
import sys
from nsbind.net import Ipam
ipam = Ipam(sys.argv[1], "10.10.0.0/24")
print("\\n".join(str(ipam.allocate(f"{sys.argv[2]}-{i}")) for i in range(50)))
"""


@pytest.mark.unprivileged
def test_ipam_never_gives_an_address_twice_across_processes(tmp_path: pathlib.Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path), f"p{n}"],
                              stdout=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    every = [a for out in outputs for a in out]
    assert len(every) == 200 and len(set(every)) == 200
    assert len(Ipam(tmp_path, "10.10.0.0/24").allocated()) == 200


@pytest.mark.unprivileged
def test_ipam_never_gives_an_address_twice_across_threads(tmp_path: pathlib.Path) -> None:
    ipam = Ipam(tmp_path, "10.10.0.0/24")
    got: list[str] = []

    def run(n: int) -> None:
        got.extend(str(Ipam(tmp_path, "10.10.0.0/24").allocate(f"t{n}-{i}")) for i in range(25))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 100 and len(set(got)) == 100 == len(ipam.allocated())


@pytest.mark.unprivileged
def test_ipam_refuses_hostile_state_files(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("do not read")
    state = tmp_path / "st"
    ipam = Ipam(state, "10.11.0.0/24")
    ipam.allocate("a")
    (state / "10.11.0.9").symlink_to(secret)
    with pytest.raises(IpamError, match=r"10\.11\.0\.9 is a symlink"):
        ipam.allocated()
    (state / "10.11.0.9").unlink()
    (state / "10.11.0.9").write_bytes(b"x" * (1 << 20))
    with pytest.raises(IpamError, match=r"10\.11\.0\.9 is larger than"):
        ipam.release("a")
    (state / "10.11.0.9").unlink()
    os.mkfifo(state / "10.11.0.9")
    with pytest.raises(IpamError, match="not a regular file"):
        ipam.allocated()
    (state / "10.11.0.9").unlink()
    (state / "lock").unlink()
    (state / "lock").symlink_to(secret)
    with pytest.raises(IpamError, match="lock is a symlink"):
        ipam.allocate("b")
    assert secret.read_text() == "do not read"


@pytest.mark.unprivileged
def test_ipam_state_dir_must_not_be_a_symlink(tmp_path: pathlib.Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(IpamError, match="not a symlink"):
        Ipam(tmp_path / "link", "10.11.0.0/24").allocate("a")
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.unprivileged
def test_ipam_skips_a_planted_symlink_when_allocating(tmp_path: pathlib.Path) -> None:
    """O_CREAT|O_EXCL never follows a name already there: a dangling symlink planted
    under the next address is not written through."""
    target = tmp_path / "planted-target"
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "not-an-address").symlink_to(target)
    ipam = Ipam(tmp_path / "st", "10.12.0.0/24")
    assert str(ipam.allocate("a")) == "10.12.0.2"
    assert not target.exists()


# ------------------------------------------------------------------ netns targets

def test_run_in_keeps_the_caller_in_its_namespace(netns: Callable[[], Process]) -> None:
    proc = netns()
    before = current()[Namespace.NET]
    inside = run_in(proc, lambda: current()[Namespace.NET])
    assert inside == nsbind.namespaces.of(proc.pid)[Namespace.NET] != before
    assert current()[Namespace.NET] == before

    def fail() -> None:
        raise KeyError("from inside")

    with pytest.raises(KeyError, match="from inside"):
        run_in(proc, fail)
    assert current()[Namespace.NET] == before


def test_targets_of_every_kind(netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    proc = netns()
    want = nsbind.namespaces.of(proc.pid)[Namespace.NET]
    path = tmp_path / "persisted"
    persist(path, proc.pid, Namespace.NET)
    try:
        targets: list[NetnsTarget] = [proc, proc.pid, proc.pidfd, str(path), path,
                                      Namespaces.join(proc, net=True),
                                      Namespaces.join(str(path))]
        for target in targets:
            with open_netns(target) as fd:
                assert fd.inode == want, target
    finally:
        unpersist(path)
    with pytest.raises(InvalidValue, match=r"Namespaces\.join"):
        open_netns(Namespaces(net=True))
    with pytest.raises(InvalidValue, match="not net"):
        open_netns(f"/proc/{proc.pid}/ns/uts")
    with pytest.raises(InvalidType):
        open_netns(3.5)  # type: ignore[arg-type]


# ------------------------------------------------------------------ bridge, veth

def test_bridge_create_up_address_mtu_delete(tag: str) -> None:
    with Bridge.create(f"{tag}b", address=["10.13.0.1/24", "fd00:13::1/64"], mtu=1400) as br:
        info = br.info()
        assert (info.kind, info.up, info.mtu) == ("bridge", True, 1400)
        assert ipaddress.ip_interface("10.13.0.1/24") in info.addresses
        assert ipaddress.ip_interface("fd00:13::1/64") in info.addresses
        assert Bridge.open(f"{tag}b").index == br.index
        with pytest.raises(FileExistsError):
            Bridge.create(f"{tag}b")
    assert f"{tag}b" not in link_names()
    br.delete()  # twice: no error


def test_bridge_undone_when_its_address_is_refused(tag: str) -> None:
    with pytest.raises(FileExistsError, match=r"add address 10\.21\.0\.1/24"):
        Bridge.create(f"{tag}b", address=["10.21.0.1/24", "10.21.0.1/24"])
    assert f"{tag}b" not in link_names()


def test_veth_peer_made_inside_the_namespace(tag: str, netns: Callable[[], Process],
                                             tmp_path: pathlib.Path) -> None:
    proc = netns()
    path = tmp_path / "netns"
    persist(path, proc.pid, Namespace.NET)
    try:
        with Bridge.create(f"{tag}b") as br, \
                veth_pair(f"{tag}v0", "eth0", into=path, mtu=1280, master=br) as veth:
            host = link_info(f"{tag}v0")
            assert (host.kind, host.mtu, host.up, host.master) == ("veth", 1280, True, br.index)
            assert "eth0" not in link_names() or link_info("eth0").kind != "veth" or \
                link_info("eth0").index != host.index
            peer = link_info("eth0", proc)
            assert (peer.kind, peer.mtu, peer.up) == ("veth", 1280, False)
            configure(proc, "eth0", ["fd00:14::2/64", "10.14.0.2/24"], mtu=9000)
            peer = link_info("eth0", path)
            assert peer.up and peer.mtu == 9000
            assert ipaddress.ip_interface("fd00:14::2/64") in peer.addresses
            assert link_info("lo", proc).up
            # the peer's name is taken in that namespace: nothing is made
            with pytest.raises(FileExistsError):
                veth_pair(f"{tag}v1", "eth0", into=proc)
            assert f"{tag}v1" not in link_names()
        assert f"{tag}v0" not in link_names()
        assert "eth0" not in link_names(proc)
        veth.delete()  # twice: no error
    finally:
        unpersist(path)


def test_a_veth_pair_goes_with_its_namespace(tag: str, netns: Callable[[], Process]) -> None:
    proc = netns()
    veth = veth_pair(f"{tag}v0", "eth0", into=proc)
    assert veth.netns is not None
    veth.netns.close()  # only the process holds the namespace now
    veth.netns = None
    proc.kill()
    proc.wait()
    for _ in range(200):  # the kernel tears a namespace down asynchronously
        if f"{tag}v0" not in link_names():
            break
        threading.Event().wait(0.01)
    veth.delete()  # gone already: no error
    assert f"{tag}v0" not in link_names()


# ------------------------------------------------------------------ attach

def test_attach_two_namespaces_talk_over_the_bridge(
        tag: str, netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    a, b = netns(), netns()
    ipam = Ipam(tmp_path / "ipam", "10.15.0.0/24")
    with Bridge.create(f"{tag}b", address="10.15.0.1/24") as br:
        with attach(a, br, ipam, "ctr-a", host_name=f"{tag}va", mtu=1400) as att_a, \
                attach(b, br, ipam, "ctr-b", host_name=f"{tag}vb") as att_b:
            assert str(att_a.address) == "10.15.0.2/24" and att_a.ifname == "eth0"
            eth0 = link_info("eth0", a)
            assert att_a.address in eth0.addresses and eth0.up and eth0.mtu == 1400
            assert Route.default("10.15.0.1") in eth0.routes
            assert link_info(f"{tag}va").master == br.index
            assert udp_round_trip(a, b, str(att_b.address.ip), socket.AF_INET) == b"ping-pong"
            # and to the bridge's own address on the host, through the veth
            assert udp_round_trip(b, None, "10.15.0.1", socket.AF_INET) == b"ping-pong"
            assert set(ipam.allocated().values()) == {"ctr-a", "ctr-b"}
        assert ipam.allocated() == {}
        assert not [n for n in link_names() if n.startswith(f"{tag}v")]
        assert "eth0" not in link_names(a)


def test_attach_ipv6(tag: str, netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    a, b = netns(), netns()
    ipam = Ipam(tmp_path, "fd00:16::/64")
    with Bridge.create(f"{tag}b", address=f"{ipam.gateway}/64") as br, \
            attach(a, br, ipam, "a", host_name=f"{tag}va") as att_a, \
            attach(b, br, ipam, "b", host_name=f"{tag}vb") as att_b:
        assert att_a.address.version == 6 and att_a.address in link_info("eth0", a).addresses
        assert Route.default(ipam.gateway) in link_info("eth0", a).routes
        assert udp_round_trip(a, b, str(att_b.address.ip), socket.AF_INET6) == b"ping-pong"


def test_attach_undone_when_the_namespace_is_gone(
        tag: str, netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    proc = netns()
    proc.kill()
    proc.wait()
    ipam = Ipam(tmp_path, "10.17.0.0/24")
    with Bridge.create(f"{tag}b", address="10.17.0.1/24") as br:
        with pytest.raises(ProcessLookupError):
            attach(proc, br, ipam, "gone", host_name=f"{tag}v0")
        assert ipam.allocated() == {}
        assert f"{tag}v0" not in link_names()


def test_attach_undone_when_a_late_step_fails(
        tag: str, netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    """The veth exists and is configured when the extra route fails (its gateway is on
    no link): the pair is deleted and the address released."""
    proc = netns()
    ipam = Ipam(tmp_path, "10.18.0.0/24")
    with Bridge.create(f"{tag}b", address="10.18.0.1/24") as br:
        with pytest.raises(NsbindError, match=r"add route 192\.0\.2\.0/24 via 198\.51\.100\.1"):
            attach(proc, br, ipam, "late", host_name=f"{tag}v0",
                   routes=[Route(ipaddress.ip_network("192.0.2.0/24"),
                                 ipaddress.ip_address("198.51.100.1"))])
        assert ipam.allocated() == {}
        assert f"{tag}v0" not in link_names()
        assert "eth0" not in link_names(proc)
        # the name is free again: a second attach works
        with attach(proc, br, ipam, "late", host_name=f"{tag}v0") as att:
            assert str(att.address.ip) == "10.18.0.3"


def test_attach_refuses_a_taken_host_name_and_keeps_the_other(
        tag: str, netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    a, b = netns(), netns()
    ipam = Ipam(tmp_path, "10.19.0.0/24")
    with Bridge.create(f"{tag}b", address="10.19.0.1/24") as br, \
            attach(a, br, ipam, "a", host_name=f"{tag}v0"):
        with pytest.raises(FileExistsError):
            attach(b, br, ipam, "b", host_name=f"{tag}v0")
        assert list(ipam.allocated().values()) == ["a"]
        assert link_info("eth0", a).up


def test_attach_from_a_threaded_parent(tag: str, netns: Callable[[], Process],
                                       tmp_path: pathlib.Path) -> None:
    """Threads keep running during the attach: nothing forks (a fork would copy them
    mid-step), and no thread but the helper ever leaves this namespace."""
    stop = threading.Event()
    seen: set[int] = set()

    def spin() -> None:
        while not stop.is_set():
            seen.add(current()[Namespace.NET])
            stop.wait(0.001)

    spinners = [threading.Thread(target=spin) for _ in range(4)]
    for t in spinners:
        t.start()
    try:
        a, b = netns(), netns()
        ipam = Ipam(tmp_path, "10.20.0.0/24")
        before = current()[Namespace.NET]
        forks: list[int] = []
        watching = [True]
        os.register_at_fork(before=lambda: forks.append(1) if watching else None)
        with Bridge.create(f"{tag}b", address="10.20.0.1/24") as br, \
                attach(a, br, ipam, "a", host_name=f"{tag}va"), \
                attach(b, br, ipam, "b", host_name=f"{tag}vb") as att_b:
            assert udp_round_trip(a, b, str(att_b.address.ip), socket.AF_INET) == b"ping-pong"
        watching.clear()
        assert current()[Namespace.NET] == before
        assert forks == []
    finally:
        stop.set()
        for t in spinners:
            t.join()
    assert seen == {before}


def test_detach_by_owner_from_another_process(
        netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    """No Attachment at hand (a later command, after a crash): the default host name is
    found again from the owner, the pair deleted and the address released."""
    proc = netns()
    ipam = Ipam(tmp_path, "10.22.0.0/24")
    owner = f"{PREFIX}-detach"
    name = host_name_for(owner)
    assert name.startswith("nsbv") and len(name) == 15 and name == host_name_for(owner, "eth0")
    with Bridge.create(f"{PREFIX}xb", address="10.22.0.1/24") as br:
        try:
            att = attach(proc, br, ipam, owner)
            assert att.host_name == name and name in link_names()
            netns_fd = att.veth.netns
            att.keep()  # in place; this object lets go of the namespace fd
            assert netns_fd is not None and netns_fd.closed and name in link_names()
            with att:  # the end of a with block no longer detaches
                pass
            assert name in link_names() and len(ipam.allocated()) == 1
            _script = (f"from nsbind.net import Ipam, detach\n"
                       f"detach(Ipam({str(tmp_path)!r}, '10.22.0.0/24'), {owner!r})\n")
            subprocess.run([sys.executable, "-c", _script], check=True, timeout=60)
            assert name not in link_names() and "eth0" not in link_names(proc)
            assert ipam.allocated() == {}
            att.detach()  # this process's object: all gone already, no error
        finally:
            nsbind.net.delete_link(name, missing_ok=True)
    detach(ipam, owner)  # again: nothing there, no error


def test_a_failed_second_attach_keeps_the_owners_first_address(
        tag: str, netns: Callable[[], Process], tmp_path: pathlib.Path) -> None:
    a = netns()
    ipam = Ipam(tmp_path, "10.23.0.0/24")
    with Bridge.create(f"{tag}b", address="10.23.0.1/24") as br, \
            attach(a, br, ipam, "a", host_name=f"{tag}v0") as first:
        with pytest.raises(FileExistsError):
            attach(a, br, ipam, "a", host_name=f"{tag}v1")  # eth0 is taken in a
        assert ipam.allocated() == {first.address.ip: "a"}
        assert f"{tag}v1" not in link_names()
