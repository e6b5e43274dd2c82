"""Outbound NAT and published ports with nftables, in one table of nsbind's own.

>>> nat = nsbind.net.Nat()                                  # table `inet nsbind`
>>> nat.add_network("nsbind0", "10.88.0.0/16")              # masquerade leaving the subnet
>>> nat.publish("c1", "10.88.0.2", [parse_publish("8080:80"), parse_publish("53:53/udp")])
>>> nat.unpublish("c1"); nat.remove_network("nsbind0"); nat.delete_table()
>>> if enable_ip_forward(): print("net.ipv4.ip_forward was 0: turned on")

Everything lives in ``inet <table>`` (as netavark keeps ``inet netavark``), with four
base chains: ``prerouting`` and ``output`` (nat, dstnat priority), ``postrouting``
(nat, srcnat priority) and ``forward`` (filter, policy accept), and one regular chain,
``isolation``.  Each rule carries a comment naming what it is for
(``nsbind:net:<name>`` for a network, ``nsbind:pub:<owner>`` for published ports), so
removal deletes exactly those rules.  Every change is one JSON batch handed to
libnftables (``nft_run_cmd_from_buffer``): the kernel applies all of it or none.
Rules and tables nsbind did not make are never touched.

- A network gets ``saddr SUBNET daddr != SUBNET masquerade`` (outbound), and
  ``saddr SUBNET daddr SUBNET ct status dnat masquerade`` (a container reaching a
  published port of its own network: the answer must come back through the host).
- A network given with its bridge is isolated as Docker isolates its networks: in
  ``forward``, ``iifname BRIDGE oifname != BRIDGE jump isolation``, and in
  ``isolation``, ``oifname BRIDGE drop``: traffic from one network's bridge to another
  network's bridge is dropped, traffic to the uplink goes on.
- A published port gets a DNAT rule in ``prerouting`` (traffic from other hosts) and
  in ``output`` (the host's own connections, the hairpin), both only for local
  destination addresses (``fib daddr type local``), or only for ``host_ip`` when one is
  given.  Connections to 127.0.0.1 / ::1 are not redirected (that needs
  ``route_localnet``; Docker uses its userland proxy there).
- Forwarding must be on (:func:`enable_ip_forward`); filter rules of other tables
  (a FORWARD policy of drop) are not changed.

libnftables is loaded with ctypes, as Debian's python3-nftables does; a host without
it gets a :class:`~nsbind.errors.Missing` naming the package.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import ipaddress
import json
import random
import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from nsbind.errors import InvalidType, InvalidValue, MessageError, Missing
from nsbind.fnlite import cache
from nsbind.frozen import frozen
from nsbind.lazyre import LazyPattern
from nsbind.net.ipam import IPAddress, IPNetwork, check_owner, check_subnet

__all__ = ["IP_FORWARD", "LIBRARY", "Nat", "NatRule", "NftablesError", "PortMapping",
           "Protocol", "enable_ip_forward", "ip_forward", "libnftables", "list_tables",
           "nft", "parse_publish", "set_ip_forward"]

#: the shared object loaded (Debian: libnftables1)
LIBRARY = "libnftables.so.1"
#: the host's IPv4 forwarding switch (the caller's network namespace)
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"

Protocol = Literal["tcp", "udp"]
Json = dict[str, Any]

_NFT_CTX_DEFAULT = 0
_NFT_CTX_OUTPUT_HANDLE = 1 << 3
_NFT_CTX_OUTPUT_JSON = 1 << 4
_FAMILY = "inet"
_PRIO_DSTNAT = -100
_PRIO_SRCNAT = 100
_PRIO_FILTER = 0
_ISOLATION = "isolation"
_BASE_CHAINS = (("prerouting", "prerouting", _PRIO_DSTNAT),
                ("output", "output", _PRIO_DSTNAT),
                ("postrouting", "postrouting", _PRIO_SRCNAT))
_TABLE_NAME = LazyPattern(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_COMMENT_MAX = 127  # nft refuses longer comments
_RETRIES = 40  # a batch that lost a race is rebuilt this often (50 starts at once)


class NftablesError(MessageError, RuntimeError):
    """libnftables refused a command; the message is nft's own error text."""

    operation = "nftables"


# ------------------------------------------------------------------ libnftables

@cache
def libnftables(name: str = LIBRARY) -> ctypes.CDLL:
    """The libnftables shared object, its functions typed (loaded once a name)."""
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise Missing(f"nftables: cannot load {name} ({exc}); install Debian's "
                      "libnftables1 (apt-get install libnftables1 nftables)") from None
    vp, ci, cu, cs = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p
    for fn, restype, argtypes in (
            ("nft_ctx_new", vp, [ctypes.c_uint32]),
            ("nft_ctx_output_set_flags", None, [vp, cu]),
            ("nft_ctx_buffer_output", ci, [vp]),
            ("nft_ctx_buffer_error", ci, [vp]),
            ("nft_ctx_get_output_buffer", cs, [vp]),
            ("nft_ctx_get_error_buffer", cs, [vp]),
            ("nft_run_cmd_from_buffer", ci, [vp, cs]),
            ("nft_ctx_free", None, [vp])):
        func = getattr(lib, fn)
        func.restype = restype
        func.argtypes = argtypes
    return lib


def nft(commands: Sequence[Json]) -> list[Json]:
    """Run ``commands`` (nftables JSON command objects) as one batch — the kernel
    applies all or none — and return the ``nftables`` list of the answer (empty for
    commands that print nothing).  Handles are included in listings."""
    lib = libnftables()
    ctx = lib.nft_ctx_new(_NFT_CTX_DEFAULT)
    if not ctx:
        raise NftablesError("nft_ctx_new failed", errno.ENOMEM)
    try:
        lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON | _NFT_CTX_OUTPUT_HANDLE)
        if lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
            raise NftablesError("cannot buffer libnftables output", errno.ENOMEM)
        text = json.dumps({"nftables": list(commands)}).encode()
        rc = lib.nft_run_cmd_from_buffer(ctx, text)
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)
    if rc != 0:
        raise _error(err)
    if not out.strip():
        return []
    answer = json.loads(out)
    return list(answer.get("nftables", [])) if isinstance(answer, dict) else []


def _error(text: str) -> NftablesError:
    text = " ".join(re.sub(r"^internal:[\d:-]+ ", "", line.strip())
                    for line in text.splitlines() if set(line.strip()) - {"^", "~"})
    text = text or "nftables refused the batch"
    code = errno.EINVAL
    if "No such file or directory" in text:
        code = errno.ENOENT
    elif "not supported" in text:
        code = errno.EOPNOTSUPP
        text += (" (this kernel lacks nf_tables NAT: CONFIG_NF_TABLES_INET, NFT_NAT, "
                 "NFT_MASQ, NFT_FIB_INET, NF_CONNTRACK)")
    elif "Operation not permitted" in text:
        code = errno.EPERM
        text += " (needs CAP_NET_ADMIN)"
    return NftablesError(f"nftables: {text}", code)


def list_tables() -> list[tuple[str, str]]:
    """Every nftables table of the caller's network namespace as (family, name)."""
    return [(t["table"]["family"], t["table"]["name"])
            for t in nft([{"list": {"tables": {}}}]) if "table" in t]


# ------------------------------------------------------------------ ip_forward

def ip_forward() -> bool:
    """Whether ``net.ipv4.ip_forward`` is on (the caller's network namespace: the host's)."""
    with open(IP_FORWARD) as f:
        return f.read().strip() != "0"


def set_ip_forward(on: bool) -> bool:
    """Set ``net.ipv4.ip_forward``; return whether that changed it."""
    if not isinstance(on, bool):
        raise InvalidType(f"ip_forward is True or False, not {on!r}")
    if ip_forward() == on:
        return False
    with open(IP_FORWARD, "w") as f:
        f.write("1\n" if on else "0\n")
    return True


def enable_ip_forward() -> bool:
    """Turn ``net.ipv4.ip_forward`` on; True if it was off (tell the user: the host
    now routes between all its interfaces)."""
    return set_ip_forward(True)


# ------------------------------------------------------------------ port mappings

def _port(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"{what} is an int, not {value!r}")
    if not 1 <= value <= 65535:
        raise InvalidValue(f"{what} {value}: 1 to 65535")
    return value


@frozen
class PortMapping:
    """``host_port`` (on ``host_ip``, None: every local address) forwarded to
    ``container_port`` for ``protocol``."""

    host_port: int
    container_port: int
    protocol: Protocol = "tcp"
    host_ip: str | None = None

    def __post_init__(self) -> None:
        _port(self.host_port, "host port")
        _port(self.container_port, "container port")
        if self.protocol not in ("tcp", "udp"):
            raise InvalidValue(f"protocol {self.protocol!r}: tcp or udp")
        if self.host_ip is not None:
            if not isinstance(self.host_ip, str):
                raise InvalidType(f"host_ip is a string, not {self.host_ip!r}")
            try:
                ip = ipaddress.ip_address(self.host_ip)
            except ValueError:
                raise InvalidValue(f"host IP {self.host_ip!r} is not an address") from None
            object.__setattr__(self, "host_ip", str(ip))

    def __str__(self) -> str:
        ip = self.host_ip
        where = "" if ip is None else (f"[{ip}]:" if ":" in ip else f"{ip}:")
        return f"{where}{self.host_port}:{self.container_port}/{self.protocol}"


def _parse_port(text: str, whole: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise InvalidValue(f"--publish {whole!r}: {what} {text!r} is not a port number")
    if not 1 <= int(text) <= 65535:
        raise InvalidValue(f"--publish {whole!r}: {what} {text}: 1 to 65535")
    return int(text)


def parse_publish(text: str) -> PortMapping:
    """Docker's ``--publish`` syntax: ``[IP:]HOST:CONTAINER[/tcp|udp]``, IPv6 as
    ``[IPv6]:HOST:CONTAINER``.  Port ranges and random host ports are not supported."""
    if not isinstance(text, str):
        raise InvalidType(f"--publish takes a string, not {text!r}")
    rest, slash, proto = text.rpartition("/")
    if not slash:
        rest, proto = text, "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidValue(f"--publish {text!r}: protocol {proto!r} is not tcp or udp")
    host_ip: str | None = None
    if rest.startswith("["):
        addr, bracket, rest = rest[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise InvalidValue(f"--publish {text!r}: [IPv6]:HOST:CONTAINER expected")
        host_ip, rest = addr, rest[1:]
        try:
            ipaddress.IPv6Address(host_ip)
        except ValueError:
            raise InvalidValue(f"--publish {text!r}: {host_ip!r} is not an IPv6 address") \
                from None
    parts = rest.split(":")
    if len(parts) == 3 and host_ip is None:
        host_ip = parts.pop(0)
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidValue(f"--publish {text!r}: {host_ip!r} is not an IPv4 address "
                               "(IPv6 goes in brackets)") from None
    if len(parts) != 2:
        raise InvalidValue(f"--publish {text!r}: [IP:]HOST:CONTAINER[/tcp|udp] expected")
    return PortMapping(_parse_port(parts[0], text, "host port"),
                       _parse_port(parts[1], text, "container port"),
                       "udp" if proto == "udp" else "tcp", host_ip)


# ------------------------------------------------------------------ rules

@frozen
class NatRule:
    """One rule of the table: ``kind`` network or publish, the network's name or the
    owner (as tagged; a long one is a digest), its chain, handle and JSON expression."""

    kind: Literal["network", "publish"]
    name: str
    chain: str
    handle: int
    expr: list[Json]


def _tag(kind: str, name: str) -> str:
    tag = f"nsbind:{kind}:{name}"
    if len(tag.encode()) > _COMMENT_MAX:
        tag = f"nsbind:{kind}:#" + hashlib.sha256(name.encode()).hexdigest()[:32]
    return tag


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _l3(version: int) -> tuple[str, str]:
    """(payload protocol, nfproto) of an IP version."""
    return ("ip", "ipv4") if version == 4 else ("ip6", "ipv6")


def _addr(value: IPAddress | IPNetwork) -> Any:
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return {"prefix": {"addr": str(value.network_address), "len": value.prefixlen}}
    return str(value)


class Nat:
    """NAT rules in the nftables table ``inet <table>`` of the caller's network namespace.

    Thread-safe; concurrent processes are safe too (a batch whose rules vanished
    meanwhile is rebuilt and retried)."""

    def __init__(self, table: str = "nsbind") -> None:
        if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
            raise InvalidValue(f"nftables table name {table!r}: a letter, then up to 63 "
                               "letters, digits, '_', '.', '-'")
        self.table = table
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Nat(table={self.table!r})"

    # -------------------------------------------------------------- public

    def exists(self) -> bool:
        """Whether the table is there."""
        return (_FAMILY, self.table) in list_tables()

    def add_network(self, name: str, subnet: str | IPNetwork, *,
                    bridge: str | None = None) -> None:
        """Masquerade traffic from ``subnet`` to anywhere but ``subnet`` (and hairpinned
        DNAT traffic inside it); with ``bridge``, isolate the network: what enters from
        ``bridge`` is not forwarded to the bridge of any other network of this table,
        nor theirs to it (Docker's isolation chains).  Idempotent; a new subnet or bridge
        for ``name`` replaces the old rules in the same batch."""
        check_owner(name)
        if bridge is not None:
            # here, not at the top: links needs pyroute2, parse_publish must not (a
            # rootless nsbind run's slirp4netns ports run on a bare python3)
            from nsbind.net.links import check_ifname

            check_ifname(bridge)
        net = check_subnet(subnet)
        proto, nfproto = _l3(net.version)
        saddr = {"payload": {"protocol": proto, "field": "saddr"}}
        daddr = {"payload": {"protocol": proto, "field": "daddr"}}
        base = [_match({"meta": {"key": "nfproto"}}, nfproto), _match(saddr, _addr(net))]
        rules = [("postrouting", [*base, _match(daddr, _addr(net), "!="), {"masquerade": None}]),
                 ("postrouting", [*base, _match(daddr, _addr(net)),
                                  _match({"ct": {"key": "status"}}, "dnat", "in"),
                                  {"masquerade": None}])]
        if bridge is not None:
            iif, oif = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}
            rules += [("forward", [_match(iif, bridge), _match(oif, bridge, "!="),
                                   {"jump": {"target": _ISOLATION}}]),
                      (_ISOLATION, [_match(oif, bridge), {"drop": None}])]
        self._replace(_tag("net", name), rules)

    def remove_network(self, name: str) -> bool:
        """Remove the network's masquerade rules; return whether there were any."""
        check_owner(name)
        return self._replace(_tag("net", name), None)

    def publish(self, owner: str, container_ip: str | IPAddress,
                mappings: Iterable[PortMapping]) -> None:
        """Forward each mapping's host port to ``container_ip``: DNAT for traffic from
        other hosts (prerouting) and from this host itself (output, the hairpin).
        Replaces ``owner``'s earlier mappings in the same batch."""
        check_owner(owner)
        try:
            cip = ipaddress.ip_address(container_ip)
        except ValueError:
            raise InvalidValue(f"container IP {container_ip!r} is not an address") from None
        rules: list[tuple[str, list[Json]]] = []
        for m in mappings:
            if not isinstance(m, PortMapping):
                raise InvalidType(f"a mapping is a PortMapping, not {m!r}")
            host_ip = None if m.host_ip is None else ipaddress.ip_address(m.host_ip)
            if host_ip is not None and host_ip.version != cip.version:
                raise InvalidValue(f"{m}: host IP and container IP {cip} are of different "
                                   "IP versions")
            proto, nfproto = _l3(cip.version)
            daddr = {"payload": {"protocol": proto, "field": "daddr"}}
            match = [_match({"meta": {"key": "nfproto"}}, nfproto)]
            if host_ip is not None and not host_ip.is_unspecified:
                match.append(_match(daddr, str(host_ip)))
            else:
                match.append(_match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"))
            match.append(_match({"payload": {"protocol": m.protocol, "field": "dport"}},
                                m.host_port))
            dnat = {"dnat": {"family": proto, "addr": str(cip), "port": m.container_port}}
            loopback = ipaddress.ip_network("127.0.0.0/8" if cip.version == 4 else "::1/128")
            rules.append(("prerouting", [*match, dnat]))
            rules.append(("output", [match[0], _match(daddr, _addr(loopback), "!="), *match[1:],
                                     dnat]))
        self._replace(_tag("pub", owner), rules)

    def unpublish(self, owner: str) -> bool:
        """Remove ``owner``'s published ports; return whether there were any."""
        check_owner(owner)
        return self._replace(_tag("pub", owner), None)

    def rules(self, owner: str | None = None, *, network: str | None = None) -> list[NatRule]:
        """nsbind's rules in the table: all, or those of one ``owner`` / ``network``."""
        want = None
        if owner is not None:
            want = _tag("pub", check_owner(owner))
        elif network is not None:
            want = _tag("net", check_owner(network))
        return [rule for rule, comment in self._listing()
                if want is None or comment == want]

    def delete_table(self) -> bool:
        """Delete the table with all its rules; return whether it existed."""
        with self._lock:
            for _ in range(_RETRIES):
                if not self.exists():
                    return False
                try:
                    nft([{"delete": {"table": {"family": _FAMILY, "name": self.table}}}])
                    return True
                except NftablesError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
            return False

    # -------------------------------------------------------------- internals

    def _listing(self) -> list[tuple[NatRule, str]]:
        if not self.exists():
            return []
        try:
            answer = nft([{"list": {"table": {"family": _FAMILY, "name": self.table}}}])
        except NftablesError as exc:
            if exc.errno == errno.ENOENT:
                return []
            raise
        found = []
        for item in answer:
            rule = item.get("rule")
            if not isinstance(rule, dict) or rule.get("table") != self.table:
                continue
            comment = str(rule.get("comment", ""))
            kind, sep, name = comment.removeprefix("nsbind:").partition(":")
            if not comment.startswith("nsbind:") or not sep or kind not in ("net", "pub"):
                continue
            found.append((NatRule("network" if kind == "net" else "publish", name,
                                  str(rule["chain"]), int(rule["handle"]),
                                  list(rule.get("expr", []))), comment))
        return found

    def _setup(self) -> list[Json]:
        cmds: list[Json] = [{"add": {"table": {"family": _FAMILY, "name": self.table}}}]
        for name, hook, prio in _BASE_CHAINS:
            cmds.append({"add": {"chain": {"family": _FAMILY, "table": self.table,
                                           "name": name, "type": "nat", "hook": hook,
                                           "prio": prio, "policy": "accept"}}})
        cmds.append({"add": {"chain": {"family": _FAMILY, "table": self.table,
                                       "name": "forward", "type": "filter",
                                       "hook": "forward", "prio": _PRIO_FILTER,
                                       "policy": "accept"}}})
        cmds.append({"add": {"chain": {"family": _FAMILY, "table": self.table,
                                       "name": _ISOLATION}}})
        return cmds

    def _replace(self, tag: str, rules: list[tuple[str, list[Json]]] | None) -> bool:
        """In one batch: delete the rules tagged ``tag`` and add ``rules`` (None: only
        delete, and make no table), so a repeated call leaves one set.  Return whether
        any rule was deleted."""
        with self._lock:
            for attempt in range(_RETRIES):
                old = [r for r, comment in self._listing() if comment == tag]
                cmds = [] if rules is None else self._setup()
                cmds += [{"delete": {"rule": {"family": _FAMILY, "table": self.table,
                                              "chain": r.chain, "handle": r.handle}}}
                         for r in old]
                cmds += [{"add": {"rule": {"family": _FAMILY, "table": self.table,
                                           "chain": chain, "expr": expr, "comment": tag}}}
                         for chain, expr in rules or ()]
                if not cmds:
                    return False
                try:
                    nft(cmds)
                    return bool(old)
                except NftablesError as exc:  # a rule deleted meanwhile: look again
                    if exc.errno != errno.ENOENT or not old or attempt == _RETRIES - 1:
                        raise
                    time.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # let it settle
            raise AssertionError("unreachable")


