"""``nsbind network`` and ``nsbind run --network``: bridge networks end to end (real
bridges, veth pairs, addresses, routes; traffic only between the test's containers).
Every network and link a test makes is removed; the teardown checks no link of
nsbind's naming is left."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from clients import build_rootfs, oci_archive, tar_rootfs
from enginecli import Engine
from helpers import SLOWDOWN

IMG = "localhost/busybox:test"


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()
            if line.split(": ")[1].startswith(("nsbr", "nsbv", "nsbind0"))}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("net-image")
    root = build_rootfs(base / "rootfs")
    return oci_archive(tar_rootfs(root, str(base / "layer.tar")), str(base / "bb.tar"), IMG)


TABLE = f"nsbind-test-{os.getpid()}"  # the engine's nftables table in these tests


@pytest.fixture
def engine(tmp_path: pathlib.Path, cgroup_parent: str, archive: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    from nsbind.net.nat import ip_forward, list_tables, set_ip_forward

    before = _links()
    forwarding = ip_forward()
    monkeypatch.setenv("NSBIND_NFT_TABLE", TABLE)
    eng = Engine(tmp_path, cgroup_parent)
    eng("image", "load", "-q", archive)
    try:
        yield eng
    finally:
        for record in eng.containers():
            eng("rm", "-f", record["Id"], check=False)
        held = eng.addresses()  # every container gone: no address may stay allocated
        for name in eng("network", "ls", "-q").stdout.split():
            eng("network", "rm", name, check=False)
        set_ip_forward(forwarding)  # as the machine had it
    assert held == [] and eng.left() == []
    assert _links() - before == set()
    assert ("inet", TABLE) not in list_tables()


def test_network_create_ls_inspect_rm(engine: Engine) -> None:
    assert engine("network", "create", "--subnet", "10.231.7.0/24", "alpha").stdout == "alpha\n"
    engine("network", "create", "beta")
    listing = engine("network", "ls").stdout
    assert "10.231.7.0/24" in listing and "10.231.7.1" in listing and "beta" in listing
    info = json.loads(engine("network", "inspect", "alpha").stdout)[0]
    assert info["subnet"] == "10.231.7.0/24" and info["containers"] == {}
    for args, words in ((["create", "alpha"], "already exists"),
                        (["create", "--subnet", "10.231.7.128/25", "gamma"], "overlaps"),
                        (["create", "--subnet", "10.1.2.3/24", "delta"], "host bits"),
                        (["create", "--subnet", "10.232.0.0/24", "--gateway", "10.9.9.9",
                          "eps"], "not a host address"),
                        (["create", "bad/name"], "invalid network name"),
                        (["rm", "nosuch"], "not found")):
        proc = engine("network", *args, check=False)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
    assert engine("network", "rm", "alpha", "beta").stdout.split() == ["alpha", "beta"]
    assert engine("network", "ls", "-q").stdout == ""


def test_containers_on_a_network_reach_each_other_by_name(engine: Engine) -> None:
    engine("network", "create", "--subnet", "10.231.8.0/24", "web")
    engine("run", "-d", "--name", "server", "--net", "web", IMG, "sh", "-c",
           "mkdir /srv && echo served-over-tcp > /srv/index.html && "
           "exec httpd -f -p 8080 -h /srv")
    out = engine("run", "--rm", "--name", "client", "--net", "web", IMG, "sh", "-c",
                 "ip -4 -o addr show eth0; ip route; ping -c1 -W2 server >/dev/null "
                 "&& echo reached; cat /etc/hosts; for a in server 10.231.8.2; do "
                 "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://$a:8080/ "
                 "&& break; sleep 0.2; done; done").stdout
    assert "inet 10.231.8.3/24" in out and "default via 10.231.8.1" in out
    assert "reached" in out and "10.231.8.2\tserver" in out
    assert out.count("served-over-tcp") == 2, out  # over TCP, by name and by address
    # the server's /etc/hosts named the client while it ran, and no longer does
    hosts = engine("exec", "server", "cat", "/etc/hosts").stdout
    assert "client" not in hosts and "10.231.8.2\t" in hosts
    info = json.loads(engine("network", "inspect", "web").stdout)[0]
    assert [c["name"] for c in info["containers"].values()] == ["server"]
    proc = engine("network", "rm", "web", check=False)
    assert proc.returncode == 1 and "active endpoints" in proc.stderr
    engine("rm", "-f", "server")
    engine("network", "rm", "web")


def test_two_networks_are_isolated(engine: Engine) -> None:
    """As Docker's: a container reaches its own network's containers, not another's."""
    engine("network", "create", "--subnet", "10.231.10.0/24", "red")
    engine("network", "create", "--subnet", "10.231.11.0/24", "blue")
    engine("run", "-d", "--name", "bluesrv", "--net", "blue", IMG, "sleep", "60")
    probe = "ping -c1 -W1 10.231.11.2 >/dev/null && echo reached || echo dropped"
    assert engine("run", "--rm", "--net", "blue", IMG, "sh", "-c", probe).stdout == "reached\n"
    assert engine("run", "--rm", "--net", "red", IMG, "sh", "-c", probe).stdout == "dropped\n"
    engine("rm", "-f", "bluesrv")
    engine("network", "rm", "red", "blue")


def test_fifty_concurrent_starts_get_fifty_addresses(engine: Engine) -> None:
    """The IPAM under 50 container starts at once, each holding its address a while:
    no address is handed out twice, and every one is released at the end."""
    import subprocess

    engine("network", "create", "--subnet", "10.231.12.0/24", "busy")
    procs = [subprocess.Popen(engine.argv("run", "--rm", "--net", "busy", IMG, "sh", "-c",
                                          "ip -4 -o addr show eth0; sleep 2"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(50)]
    # 15 s here; the 50 starts share the CPUs, so an emulated guest takes SLOWDOWN times
    deadline = time.monotonic() + 240 * SLOWDOWN
    try:
        outputs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))
                   for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0] * 50, [err for _, err in outputs if err][:3]
    addresses = [out.split()[3] for out, _ in outputs]
    assert len(set(addresses)) == 50 and all(a.startswith("10.231.12.") for a in addresses)
    assert engine.addresses() == [] and engine.containers() == []
    engine("network", "rm", "busy")


def test_network_container_mode_shares_the_namespace(engine: Engine) -> None:
    engine("network", "create", "--subnet", "10.231.9.0/24", "shared")
    engine("run", "-d", "--name", "owner", "--net", "shared", IMG, "sleep", "60")
    out = engine("run", "--rm", "--net", "container:owner", IMG, "ip", "-4", "-o", "addr",
                 "show", "eth0").stdout
    assert "10.231.9.2/24" in out
    engine("rm", "-f", "owner")


def test_the_default_bridge_network(engine: Engine) -> None:
    out = engine("run", "--rm", "--net", "bridge", IMG, "ip", "-4", "-o", "addr", "show",
                 "eth0").stdout
    assert "inet 10.88.0.2/16" in out
    assert engine("network", "ls", "-q").stdout == "nsbind\n"
    engine("network", "rm", "nsbind")


def test_bad_network_flags(engine: Engine) -> None:
    for args, words in ((["--net", "nosuch"], "network nosuch not found"),
                        (["--net", "none", "-p", "80:80"], "--publish"),
                        (["--net", "container:nobody"], "No such container")):
        proc = engine("run", "--rm", *args, IMG, "true", check=False)
        assert proc.returncode == 125 and words in proc.stderr, proc.stderr
    assert engine.left() == []


def test_published_port_reaches_the_container(engine: Engine) -> None:
    """-p HOST:CONTAINER: a connection to the host's address (here the bridge's, from the
    host itself: the hairpin rule) lands in the container; outbound traffic is
    masqueraded; all of it goes with the container."""
    from nsbind.net.nat import Nat, ip_forward

    engine("network", "create", "--subnet", "10.231.10.0/24", "pub")
    engine("run", "-d", "--name", "srv", "--net", "pub", "-p", "18080:8080/tcp", IMG, "sh",
           "-c", "echo hello from the container | nc -l -p 8080")
    assert ip_forward()
    rules = Nat(TABLE).rules()
    assert {r.kind for r in rules} == {"network", "publish"}
    data = b""
    for _ in range(50):  # the listener starts after the container does
        try:
            with socket.create_connection(("10.231.10.1", 18080), timeout=2) as conn:
                data = conn.recv(100)
            if data:
                break
        except OSError:
            pass
        time.sleep(0.1)
    assert data == b"hello from the container\n"
    engine("rm", "-f", "srv")
    assert [r for r in Nat(TABLE).rules() if r.kind == "publish"] == []
    engine("network", "rm", "pub")


def test_ip_chosen_on_a_named_network(engine: Engine) -> None:
    engine("network", "create", "--subnet", "10.231.11.0/24", "fixed")
    engine("run", "-d", "--name", "pinned", "--net", "fixed", "--ip", "10.231.11.50", IMG,
           "sleep", "60")
    out = engine("exec", "pinned", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "inet 10.231.11.50/24" in out
    for ip, words in (("10.231.11.50", "already allocated"), ("10.231.11.1", "gateway"),
                      ("10.9.9.9", "not a free host address"), ("x.y", "not an IP address")):
        proc = engine("run", "--rm", "--net", "fixed", "--ip", ip, IMG, "true", check=False)
        assert proc.returncode == 125 and words in proc.stderr, proc.stderr
    proc = engine("run", "--rm", "--net", "bridge", "--ip", "10.88.0.9", IMG, "true",
                  check=False)
    assert proc.returncode == 125 and "user-defined network" in proc.stderr
    engine("rm", "-f", "pinned")
    engine("network", "rm", "fixed")
