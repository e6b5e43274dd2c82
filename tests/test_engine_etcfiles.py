"""/etc/hostname, /etc/hosts and /etc/resolv.conf as Docker writes them for a container
(the expected texts follow moby's libnetwork etchosts and resolvconf)."""

from __future__ import annotations

import ipaddress
import os
import pathlib
import stat

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from nsbind.engine import etcfiles
from nsbind.engine.errors import EngineError
from nsbind.engine.etcfiles import (
    check_hostname,
    host_hosts_file,
    hostname_file,
    hosts_file,
    resolv_conf,
    write_files,
)

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

DEFAULT_HOSTS = ("127.0.0.1\tlocalhost\n"
                 "::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\n"
                 "ff00::0\tip6-mcastprefix\n"
                 "ff02::1\tip6-allnodes\n"
                 "ff02::2\tip6-allrouters\n")


@pytest.mark.parametrize("name", ["a", "web-1", "db.example.com", "x" * 63, "0abc"])
def test_valid_hostnames(name: str) -> None:
    assert check_hostname(name) == name
    assert hostname_file(name) == name + "\n"


@pytest.mark.parametrize("name", ["", "-a", "a-", "a..b", "a_b", "x" * 64, "a b", "é",
                                  ".".join(["abcdefgh"] * 8), "a\nb", "a/b"])
def test_invalid_hostnames_are_named(name: str) -> None:
    with pytest.raises(EngineError, match="invalid hostname") as info:
        check_hostname(name)
    assert repr(name) in str(info.value)
    assert info.value.status == 125


def test_hosts_without_an_address_has_no_hostname_line() -> None:
    assert hosts_file("box") == DEFAULT_HOSTS  # --net none


def test_hosts_with_extras_and_the_containers_address() -> None:
    text = hosts_file("web.example.com", extra=[("10.0.0.9", "db  cache"), ("fd00::9", "v6")],
                      address="172.17.0.2")
    assert text == (DEFAULT_HOSTS + "10.0.0.9\tdb cache\nfd00::9\tv6\n"
                    "172.17.0.2\tweb.example.com web\n")


def test_hosts_without_ipv6_leaves_ipv6_records_out() -> None:
    text = hosts_file("box", extra=[("fd00::9", "v6"), ("10.0.0.9", "db")], ipv6=False,
                      address="172.17.0.2")
    assert text == "127.0.0.1\tlocalhost\n10.0.0.9\tdb\n172.17.0.2\tbox\n"


@pytest.mark.parametrize("record", [("nope", "a"), ("10.0.0.1", ""), ("10.0.0.1", "a\nb"),
                                    ("10.0.0.1", "a # b")])
def test_bad_records_are_refused(record: tuple[str, str]) -> None:
    with pytest.raises(EngineError):
        hosts_file("box", extra=[record])


def test_host_hosts_file_is_the_hosts() -> None:
    with open("/etc/hosts") as f:
        want = f.read()
    assert host_hosts_file().rstrip("\n") == want.rstrip("\n")


def _ipaddress_reads(text: str) -> tuple[str, int, bool] | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(addr), addr.version, addr.is_loopback


_octet = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "0x1",
                                                                  "", " 1", "1 ", "+1", "-0",
                                                                  "\u0661", "1e2", "0000"]))


@given(st.one_of(st.lists(_octet, min_size=3, max_size=5).map(".".join),
                 st.ip_addresses().map(str), st.text(max_size=20)))
@example("127.0.0.53")
@example("127.255.255.255")
@example("0.0.0.0")
@example("::1")
@example("::ffff:127.0.0.1")
@example("fe80::1%eth0")
@example("1.2.3.4%eth0")
@example("255.255.255.255")
@example("256.1.1.1")
@example("1.2.3")
@example("\uff11.2.3.4")
@example("1.2.3.04")
def test_an_address_is_read_as_ipaddress_reads_it(text: str) -> None:
    """The nameserver and hosts-record check (a dotted quad read without ipaddress, the
    rest by it) accepts, writes and classes what ipaddress.ip_address does."""
    assert etcfiles._address(text) == _ipaddress_reads(text)


def test_resolv_conf_drops_loopback_and_uses_defaults() -> None:
    host = "# comment\nnameserver 127.0.0.53\nnameserver ::1\n"
    assert resolv_conf(host) == ("nameserver 8.8.8.8\nnameserver 8.8.4.4\n\n"
                                 "# Based on host file: '/etc/resolv.conf' (legacy)\n"
                                 "# Used default nameservers.\n# Overrides: []\n")
    assert resolv_conf(host, ipv6=True).startswith(
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\nnameserver 2001:4860:4860::8888\n"
        "nameserver 2001:4860:4860::8844\n\n")


def test_resolv_conf_keeps_routable_servers_search_options_and_other_lines() -> None:
    host = ("nameserver 10.0.0.1\nnameserver 127.0.0.1\nnameserver fdb6:b8fe:b528::1\n"
            "nameserver bogus\ndomain old.example\nsearch a.example b.example\n"
            "options ndots:2\noptions edns0\nsortlist 10.0.0.0/8\n; comment\n")
    assert resolv_conf(host, ipv6=True) == (
        "nameserver 10.0.0.1\nnameserver fdb6:b8fe:b528::1\n"
        "search a.example b.example\noptions ndots:2 edns0\nsortlist 10.0.0.0/8\n\n"
        "# Based on host file: '/etc/resolv.conf' (legacy)\n"
        "# Invalid nameservers: [bogus]\n# Overrides: []\n# Option ndots from: host\n")
    assert resolv_conf(host).startswith("nameserver 10.0.0.1\nsearch ")  # no IPv6


def test_resolv_conf_for_host_network_is_the_hosts_file() -> None:
    host = "nameserver 127.0.0.53\noptions edns0 trust-ad\n"
    assert resolv_conf(host, net="host") == host
    with open("/etc/resolv.conf") as f:
        real = f.read()
    if "127.0.0.53" not in real:
        assert resolv_conf(net="host") == real


def test_host_file_must_be_regular_and_small(tmp_path: pathlib.Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(tmp_path / "fifo")
    monkeypatch.setattr(etcfiles, "HOST_RESOLV_CONF", str(tmp_path / "fifo"))
    with pytest.raises(EngineError, match="not a regular file"):
        resolv_conf()
    big = tmp_path / "big"
    big.write_bytes(b"# x\n" * (etcfiles.MAX_HOST_FILE // 4 + 1))
    monkeypatch.setattr(etcfiles, "HOST_RESOLV_CONF", str(big))
    with pytest.raises(EngineError, match="larger than"):
        resolv_conf()
    monkeypatch.setattr(etcfiles, "HOST_RESOLV_CONF", str(tmp_path / "missing"))
    assert resolv_conf().startswith("nameserver 8.8.8.8\n")


def test_write_files(tmp_path: pathlib.Path) -> None:
    old = os.umask(0o077)
    try:
        paths = write_files(str(tmp_path), "box", "bridge", address="172.17.0.2")
    finally:
        os.umask(old)
    assert set(paths) == {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    assert pathlib.Path(paths["/etc/hostname"]).read_text() == "box\n"
    assert pathlib.Path(paths["/etc/hosts"]).read_text().endswith("172.17.0.2\tbox\n")
    assert pathlib.Path(paths["/etc/resolv.conf"]).read_text().startswith("nameserver ")
    for p in paths.values():
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["hostname", "hosts", "resolv.conf"]  # no temps
    # written again: replaced, not appended
    write_files(str(tmp_path), "other", "none")
    assert pathlib.Path(paths["/etc/hostname"]).read_text() == "other\n"
    assert pathlib.Path(paths["/etc/hosts"]).read_text() == DEFAULT_HOSTS
    host = write_files(str(tmp_path), "other", "host")
    with open("/etc/hosts") as f:
        assert pathlib.Path(host["/etc/hosts"]).read_text().rstrip() == f.read().rstrip()


def test_write_files_refuses_a_bad_name_and_a_symlinked_directory(
        tmp_path: pathlib.Path) -> None:
    with pytest.raises(EngineError, match="invalid hostname"):
        write_files(str(tmp_path), "bad_name", "none")
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(EngineError, match="cannot open directory"):
        write_files(str(tmp_path / "link"), "box", "none")
    assert os.listdir(real) == []
