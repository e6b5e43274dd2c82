"""nsbind.net.nat: masquerade and published ports with nftables, on the real kernel.

A test bridge with a "container" network namespace on it, and an "outside host" network
namespace joined to this host by a veth pair with its own /30 (standing for another
machine: it knows no route to the container subnet).  Rules go into a table of the
test's own (``nsbind-test-<pid>``); ip_forward is put back as found."""

from __future__ import annotations

import errno
import os
import pathlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import nsbind
from nsbind import Namespaces, Process
from nsbind.errors import InvalidType, InvalidValue, Missing
from nsbind.net import (
    Bridge,
    Ipam,
    Nat,
    NetnsTarget,
    PortMapping,
    add_address,
    attach,
    configure,
    delete_link,
    enable_ip_forward,
    ip_forward,
    link_names,
    parse_publish,
    run_in,
    set_ip_forward,
    veth_pair,
)
from nsbind.net.nat import libnftables, list_tables

PREFIX = f"nsbt{os.getpid() % 10000}"
TABLE = f"nsbind-test-{os.getpid()}"
SUBNET = "10.217.0.0/24"        # the bridge network; gateway 10.217.0.1
HOST_IP, OUTSIDE_IP = "10.218.0.1", "10.218.0.2"  # the /30 to the outside host
TIMEOUT = 2.0


@dataclass
class World:
    nat: Nat
    container: Process
    container_ip: str
    other: Process      # a second container on the bridge
    other_ip: str
    outside: Process
    gateway: str


def _sleeper() -> Process:
    return nsbind.spawn(["sleep", "300"], namespaces=Namespaces(net=True))


@pytest.fixture
def world(tmp_path: pathlib.Path) -> Iterator[World]:
    forward = ip_forward()
    procs: list[Process] = []
    try:
        procs += [_sleeper(), _sleeper(), _sleeper()]
        container, other, outside = procs
        ipam = Ipam(tmp_path / "ipam", SUBNET)
        with Bridge.create(f"{PREFIX}n", address=f"{ipam.gateway}/24") as br, \
                attach(container, br, ipam, "ctr", host_name=f"{PREFIX}c") as att, \
                attach(other, br, ipam, "other", host_name=f"{PREFIX}d") as att2, \
                veth_pair(f"{PREFIX}o", "eth0", into=outside):
            add_address(f"{PREFIX}o", f"{HOST_IP}/30")
            configure(outside, "eth0", [f"{OUTSIDE_IP}/30"])  # no route to SUBNET
            set_ip_forward(True)
            nat = Nat(TABLE)
            try:
                yield World(nat, container, str(att.address.ip), other, str(att2.address.ip),
                            outside, str(ipam.gateway))
            finally:
                nat.delete_table()
    finally:
        set_ip_forward(forward)
        for proc in procs:
            proc.kill()
            proc.wait()
        left = [n for n in link_names() if n.startswith(PREFIX)]
        for name in left:
            delete_link(name, missing_ok=True)
        tables = [t for t in list_tables() if t[1].startswith(TABLE)]
        for _family, name in tables:
            Nat(name).delete_table()
        assert ip_forward() == forward
        assert left == [] and tables == []


def tcp_peer(client: NetnsTarget | None, server: NetnsTarget | None, listen_port: int,
             connect: tuple[str, int]) -> str:
    """Connect from ``client``'s namespace to ``connect``, accepted by a listener on
    ``listen_port`` in ``server``'s; a byte goes both ways; return the peer address the
    listener saw."""
    srv = run_in(server, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    cli = run_in(client, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    with srv, cli:
        srv.settimeout(TIMEOUT)
        cli.settimeout(TIMEOUT)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # after TIME_WAIT
        srv.bind(("0.0.0.0", listen_port))
        srv.listen(1)
        cli.connect(connect)
        conn, peer = srv.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            cli.sendall(b"x")
            assert conn.recv(1) == b"x"
            conn.sendall(b"y")
            assert cli.recv(1) == b"y"
        return str(peer[0])


def udp_peer(client: NetnsTarget | None, server: NetnsTarget | None, listen_port: int,
             send_to: tuple[str, int]) -> str:
    """A datagram from ``client`` to ``send_to``, received on ``listen_port`` in
    ``server`` and answered; return the peer address the server saw."""
    srv = run_in(server, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    cli = run_in(client, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    with srv, cli:
        srv.settimeout(TIMEOUT)
        cli.settimeout(TIMEOUT)
        srv.bind(("0.0.0.0", listen_port))
        cli.sendto(b"ping", send_to)
        data, peer = srv.recvfrom(100)
        srv.sendto(data + b"-pong", peer)
        assert cli.recvfrom(100)[0] == b"ping-pong"
        return str(peer[0])


def listener(where: NetnsTarget, port: int) -> socket.socket:
    """A TCP listener on ``port`` in ``where`` (to show a refusal is not its doing)."""
    srv = run_in(where, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    return srv


def refused(client: NetnsTarget | None, address: tuple[str, int]) -> bool:
    cli = run_in(client, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    with cli:
        cli.settimeout(TIMEOUT)
        return cli.connect_ex(address) == errno.ECONNREFUSED


# ------------------------------------------------------------------ parsing

@pytest.mark.unprivileged
@pytest.mark.parametrize(("text", "want"), [
    ("8080:80", PortMapping(8080, 80)),
    ("53:53/udp", PortMapping(53, 53, "udp")),
    ("127.0.0.1:8080:80/tcp", PortMapping(8080, 80, "tcp", "127.0.0.1")),
    ("[::1]:8080:80", PortMapping(8080, 80, "tcp", "::1")),
    ("[fd00::0001]:1:65535/udp", PortMapping(1, 65535, "udp", "fd00::1")),
])
def test_publish_strings(text: str, want: PortMapping) -> None:
    assert parse_publish(text) == want
    assert parse_publish(str(want)) == want


@pytest.mark.unprivileged
@pytest.mark.parametrize("text", [
    "", "80", "0:80", "80:0", "65536:80", "80:65536", "a:80", "80:b", "80:80/sctp",
    "80:80/", "1.2.3:80:80", "::1:80:80", "[1.2.3.4]:80:80", "[::1:80:80", "[::1]80:80",
    "1.2.3.4::80", "8000-8010:80", "+80:80", " 80:80", "80:80 ", "\uff11:80", "1:2:3:4",
    "080000:80",
])
def test_bad_publish_strings_are_refused_naming_them(text: str) -> None:
    with pytest.raises(InvalidValue, match="--publish"):
        parse_publish(text)


def test_bad_mappings_and_arguments() -> None:
    with pytest.raises(InvalidValue, match="1 to 65535"):
        PortMapping(0, 80)
    with pytest.raises(InvalidType):
        PortMapping(True, 80)
    with pytest.raises(InvalidValue, match="protocol"):
        PortMapping(80, 80, "sctp")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="not an address"):
        PortMapping(80, 80, host_ip="localhost")
    with pytest.raises(InvalidType):
        parse_publish(8080)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="table name"):
        Nat("bad name")
    nat = Nat(TABLE)
    with pytest.raises(InvalidValue, match="IP versions"):
        nat.publish("x", "10.217.0.2", [PortMapping(80, 80, host_ip="::1")])
    with pytest.raises(InvalidValue, match="container IP"):
        nat.publish("x", "banana", [])
    with pytest.raises(InvalidValue, match="subnet"):
        nat.add_network("x", "10.0.0.1/24")
    assert not nat.exists()  # nothing was made


@pytest.mark.unprivileged
def test_missing_library_names_the_package() -> None:
    with pytest.raises(Missing, match="libnftables1"):
        libnftables("libnftables-not-here.so.9")


# ------------------------------------------------------------------ ip_forward

def test_ip_forward_is_reported_and_restored() -> None:
    original = ip_forward()
    try:
        assert set_ip_forward(False) is original
        assert not ip_forward()
        assert enable_ip_forward() is True  # it changed: the caller tells the user
        assert enable_ip_forward() is False
        assert ip_forward()
        with pytest.raises(InvalidType):
            set_ip_forward(1)  # type: ignore[arg-type]
    finally:
        set_ip_forward(original)
    assert ip_forward() == original


# ------------------------------------------------------------------ traffic

def test_masquerade_hides_the_container_address(world: World) -> None:
    c, out = world.container, world.outside
    # without the rule the outside host sees the container's address (and cannot answer)
    srv = run_in(out, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    cli = run_in(c, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    with srv, cli:
        srv.settimeout(TIMEOUT)
        srv.bind(("0.0.0.0", 9000))
        cli.sendto(b"bare", (OUTSIDE_IP, 9000))
        assert srv.recvfrom(100)[1][0] == world.container_ip
    world.nat.add_network("testnet", SUBNET)
    world.nat.add_network("testnet", SUBNET)  # idempotent
    assert len(world.nat.rules(network="testnet")) == 2
    assert udp_peer(c, out, 9001, (OUTSIDE_IP, 9001)) == HOST_IP
    assert tcp_peer(c, out, 9002, (OUTSIDE_IP, 9002)) == HOST_IP
    # traffic inside the subnet keeps its addresses
    assert udp_peer(c, world.other, 9003, (world.other_ip, 9003)) == world.container_ip
    assert world.nat.remove_network("testnet") is True
    assert world.nat.remove_network("testnet") is False
    assert world.nat.rules() == []


def test_published_ports_from_another_host(world: World) -> None:
    world.nat.add_network("testnet", SUBNET)
    world.nat.publish("ctr", world.container_ip, [
        parse_publish("18080:8080"), parse_publish("18080:8080/udp"),
        parse_publish(f"{HOST_IP}:18081:8081"), parse_publish(f"{world.gateway}:18082:8082")])
    c, out = world.container, world.outside
    # the outside host's address is kept: published ports see the real client
    assert tcp_peer(out, c, 8080, (HOST_IP, 18080)) == OUTSIDE_IP
    assert udp_peer(out, c, 8080, (HOST_IP, 18080)) == OUTSIDE_IP
    assert tcp_peer(out, c, 8081, (HOST_IP, 18081)) == OUTSIDE_IP
    # bound to the bridge's address: not on the veth address
    with listener(c, 8082):
        assert refused(out, (HOST_IP, 18082))


def test_hairpin_from_the_host_and_from_a_container(world: World) -> None:
    world.nat.add_network("testnet", SUBNET)
    world.nat.publish("ctr", world.container_ip, [parse_publish("18080:8080"),
                                                  parse_publish("18080:8080/udp")])
    c = world.container
    # the host itself, to its bridge address and to its veth address
    assert tcp_peer(None, c, 8080, (world.gateway, 18080)) == world.gateway
    assert tcp_peer(None, c, 8080, (HOST_IP, 18080)) == HOST_IP
    assert udp_peer(None, c, 8080, (HOST_IP, 18080)) == HOST_IP
    # another container of the network, through the host's address: masqueraded, so the
    # answer comes back through the host
    assert tcp_peer(world.other, c, 8080, (HOST_IP, 18080)) == world.gateway
    assert udp_peer(world.other, c, 8080, (world.gateway, 18080)) == world.gateway
    # a connection of the host to another machine's port is not redirected
    assert refused(None, (OUTSIDE_IP, 18080))


def test_unpublish_removes_exactly_that_owner(world: World) -> None:
    nat, c, out = world.nat, world.container, world.outside
    nat.add_network("testnet", SUBNET)
    nat.publish("a", world.container_ip, [parse_publish("18080:8080")])
    nat.publish("b", world.other_ip, [parse_publish("18090:8080/udp"),
                                      parse_publish("18091:8080")])
    nat.publish("b", world.other_ip, [parse_publish("18091:8080")])  # replaces b's
    assert {r.chain for r in nat.rules("a")} == {"prerouting", "output"}
    assert len(nat.rules("b")) == 2 and len(nat.rules()) == 6
    assert tcp_peer(out, c, 8080, (HOST_IP, 18080)) == OUTSIDE_IP
    before_b = nat.rules("b")
    assert nat.unpublish("a") is True
    assert nat.unpublish("a") is False
    assert nat.rules("a") == [] and nat.rules("b") == before_b
    assert len(nat.rules(network="testnet")) == 2
    with listener(c, 8080):
        assert refused(out, (HOST_IP, 18080))  # a's port is gone
    assert tcp_peer(out, world.other, 8080, (HOST_IP, 18091)) == OUTSIDE_IP  # b's stays
    assert ("inet", TABLE) in list_tables()
    assert nat.delete_table() is True
    assert ("inet", TABLE) not in list_tables() and not nat.exists()
    assert nat.delete_table() is False
    assert nat.rules() == [] and nat.unpublish("b") is False


def test_long_owner_names_fit_in_a_comment(world: World) -> None:
    owner = "o" * 255
    world.nat.publish(owner, world.container_ip, [parse_publish("18080:8080")])
    assert len(world.nat.rules(owner)) == 2
    assert world.nat.unpublish(owner) and world.nat.rules() == []


def test_rules_of_other_tables_are_left_alone(world: World) -> None:
    other = Nat(f"{TABLE}-x")
    try:
        other.publish("ctr", world.container_ip, [parse_publish("18080:8080")])
        world.nat.publish("ctr", world.container_ip, [parse_publish("18080:8080")])
        world.nat.unpublish("ctr")
        world.nat.delete_table()
        assert len(other.rules("ctr")) == 2
    finally:
        other.delete_table()
    assert not other.exists()


def _unreachable(client: NetnsTarget, address: tuple[str, int]) -> bool:
    """A TCP connect from ``client`` to ``address`` gets no answer (dropped, not refused)."""
    cli = run_in(client, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    with cli:
        cli.settimeout(0.5)
        return cli.connect_ex(address) in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINPROGRESS)


def test_two_networks_are_isolated_from_each_other(world: World,
                                                   tmp_path: pathlib.Path) -> None:
    """Docker's isolation: a container of one bridge network reaches the other network's
    containers only once neither network is isolated; the uplink stays open to both."""
    second = _sleeper()
    try:
        ipam = Ipam(tmp_path / "ipam2", "10.219.0.0/24")
        with Bridge.create(f"{PREFIX}m", address=f"{ipam.gateway}/24") as br, \
                attach(second, br, ipam, "third", host_name=f"{PREFIX}e") as att:
            far = str(att.address.ip)
            # routed through the host between the two bridges, before any rule
            assert tcp_peer(world.container, second, 9100, (far, 9100)) == world.container_ip
            world.nat.add_network("testnet", SUBNET, bridge=f"{PREFIX}n")
            world.nat.add_network("second", "10.219.0.0/24", bridge=f"{PREFIX}m")
            assert len(world.nat.rules(network="second")) == 4
            with listener(second, 9101), listener(world.container, 9102):
                assert _unreachable(world.container, (far, 9101))
                assert _unreachable(second, (world.container_ip, 9102))
            # each network still reaches the outside host, and its own bridge-mates
            assert tcp_peer(world.container, world.outside, 9103, (OUTSIDE_IP, 9103)) == HOST_IP
            assert tcp_peer(second, world.outside, 9104, (OUTSIDE_IP, 9104)) == HOST_IP
            assert tcp_peer(world.container, world.other, 9105,
                            (world.other_ip, 9105)) == world.container_ip
            # a network removed is no longer one of this table's: nothing isolates it
            assert world.nat.remove_network("second") is True
            assert world.nat.rules(network="second") == []
            assert len(world.nat.rules(network="testnet")) == 4
            # (masqueraded: it leaves testnet's subnet)
            assert tcp_peer(world.container, second, 9106, (far, 9106)) == str(ipam.gateway)
    finally:
        second.kill()
        second.wait()


def test_a_bad_bridge_name_is_refused_before_nftables_sees_it(world: World) -> None:
    with pytest.raises(ValueError, match="interface name"):
        world.nat.add_network("testnet", SUBNET, bridge="bad name/")
    assert not world.nat.exists()
