"""Links over rtnetlink (pyroute2): bridges, veth pairs, addresses, routes, MTU, up/down.

Kernel rules applied here (see ip-link(8), veth(4), rtnetlink(7)):

- An interface name is 1 to 15 bytes (IFNAMSIZ - 1), without ``/``, ``:`` or
  whitespace, and not ``.`` or ``..``; it is unique within its network namespace.
- The MTU of an Ethernet-like link is 68 (the IPv4 minimum) to 65535; IPv6 needs
  1280 or more, and the kernel drops the link's IPv6 addresses below that.
- A veth pair is created whole: its peer is made directly inside the target network
  namespace (``IFLA_NET_NS_FD``), under its final name, so no half-moved pair is ever
  visible.  Deleting either end deletes both, and so does the end of the namespace
  that holds one end.
- A route through a gateway needs the gateway to be reachable on a link that is up
  (an address of its subnet on it); otherwise the kernel answers ENETUNREACH.
- Work inside another network namespace runs in a helper thread that joined it
  (:func:`nsbind.net.netns.run_in`): the netlink socket is made there, and the
  calling thread never changes namespace; nothing forks.
- Every step needs CAP_NET_ADMIN in the namespace it changes.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nsbind._sys.ns import NamespaceFd
from nsbind.ctxlite import contextmanager, suppress
from nsbind.errors import InvalidType, InvalidValue, NsbindError, error_for
from nsbind.frozen import frozen
from nsbind.net.ipam import IPAddress, Ipam, IPNetwork
from nsbind.net.netns import NetnsTarget, open_netns, run_in

__all__ = ["MTU_MAX", "MTU_MIN", "Attachment", "Bridge", "IPInterface", "LinkInfo", "Route",
           "VethPair", "add_address", "attach", "check_ifname", "check_mtu", "configure",
           "delete_link", "detach", "host_name_for", "link_info", "link_names", "set_link",
           "veth_pair"]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

MTU_MIN = 68
MTU_MAX = 65535
_IFNAMSIZ = 16
_IFF_UP = 0x1
_IFA_F_NODAD = 0x02
_RT_TABLE_MAIN = 254


# ------------------------------------------------------------------ checks

def check_ifname(name: str) -> str:
    """Refuse a name the kernel would refuse (or misread): 1 to 15 bytes, no ``/``,
    ``:``, NUL or whitespace, not ``.`` or ``..``."""
    if not isinstance(name, str):
        raise InvalidType(f"an interface name is a string, not {name!r}")
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or len(raw) >= _IFNAMSIZ:
        raise InvalidValue(f"interface name {name!r}: 1 to {_IFNAMSIZ - 1} bytes (IFNAMSIZ)")
    if name in (".", "..") or any(c in "/:\0" or c.isspace() or not c.isprintable()
                                  for c in name):
        raise InvalidValue(f"interface name {name!r}: no '/', ':', whitespace or control "
                           "characters, and not '.' or '..'")
    return name


def check_mtu(mtu: int) -> int:
    """An MTU is an int from 68 to 65535."""
    if isinstance(mtu, bool) or not isinstance(mtu, int):
        raise InvalidType(f"an MTU is an int, not {mtu!r}")
    if not MTU_MIN <= mtu <= MTU_MAX:
        raise InvalidValue(f"MTU {mtu}: {MTU_MIN} to {MTU_MAX}")
    return mtu


def _interface(value: str | IPInterface) -> IPInterface:
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return value
    if not isinstance(value, str):
        raise InvalidType(f"an address is 'ip/prefix' or an ip_interface, not {value!r}")
    if "/" not in value:
        raise InvalidValue(f"address {value!r}: give a prefix length ('10.0.0.2/24')")
    try:
        return ipaddress.ip_interface(value)
    except ValueError as exc:
        raise InvalidValue(f"address {value!r}: {exc}") from None


@contextmanager
def _netlink(what: str, target: str | None = None) -> Iterator[None]:
    """Turn pyroute2's NetlinkError into the matching :class:`NsbindError`."""
    try:
        yield
    except NetlinkError as exc:
        code = exc.code if isinstance(exc.code, int) and exc.code > 0 else errno.EIO
        raise error_for(code, "netlink", target, what=what) from None


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise error_for(errno.ENODEV, "netlink", ifname, what=f"find link {ifname}",
                        detail="no such interface in this network namespace")
    return int(found[0])


# ------------------------------------------------------------------ link facts

@frozen
class Route:
    """A route: ``destination`` (a network; ``0.0.0.0/0`` or ``::/0`` is the default
    route) through ``gateway`` (None: on the link itself)."""

    destination: IPNetwork
    gateway: IPAddress | None = None

    @classmethod
    def default(cls, gateway: str | IPAddress) -> Route:
        """The default route through ``gateway``."""
        gw = ipaddress.ip_address(gateway)
        return cls(ipaddress.ip_network("0.0.0.0/0" if gw.version == 4 else "::/0"), gw)

    def __post_init__(self) -> None:
        dst = ipaddress.ip_network(self.destination)
        object.__setattr__(self, "destination", dst)
        if self.gateway is not None:
            gw = ipaddress.ip_address(self.gateway)
            if gw.version != dst.version:
                raise InvalidValue(f"route to {dst} via {gw}: not the same IP version")
            object.__setattr__(self, "gateway", gw)


@frozen
class LinkInfo:
    """What the kernel says about one link."""

    name: str
    index: int
    kind: str | None
    mtu: int
    up: bool
    master: int | None
    address: str | None
    addresses: tuple[IPInterface, ...] = ()
    routes: tuple[Route, ...] = ()


def _info(ipr: Any, ifname: str) -> LinkInfo:
    index = _index(ipr, ifname)
    with _netlink(f"get link {ifname}", ifname):
        msg = ipr.link("get", index=index)[0]
        addrs = ipr.addr("dump", index=index)
        routes = ipr.route("dump", table=_RT_TABLE_MAIN, oif=index)
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None
    found = tuple(ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                  for a in addrs)
    table = []
    for r in routes:
        if r.get_attr("RTA_OIF") not in (None, index):
            continue
        dst = r.get_attr("RTA_DST") or ("0.0.0.0" if r["family"] == 2 else "::")
        gw = r.get_attr("RTA_GATEWAY")
        table.append(Route(ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False),
                           ipaddress.ip_address(gw) if gw else None))
    return LinkInfo(name=msg.get_attr("IFLA_IFNAME"), index=index, kind=kind,
                    mtu=int(msg.get_attr("IFLA_MTU")), up=bool(msg["flags"] & _IFF_UP),
                    master=msg.get_attr("IFLA_MASTER"), address=msg.get_attr("IFLA_ADDRESS"),
                    addresses=found, routes=tuple(table))


def link_info(ifname: str, target: NetnsTarget | None = None) -> LinkInfo:
    """The link ``ifname`` of ``target``'s network namespace (None: the caller's), with
    its addresses and its routes in the main table.  ENODEV when there is none."""
    check_ifname(ifname)

    def work() -> LinkInfo:
        with IPRoute() as ipr:
            return _info(ipr, ifname)

    return run_in(target, work)


def link_names(target: NetnsTarget | None = None) -> list[str]:
    """The names of every link of ``target``'s network namespace (None: the caller's)."""
    def work() -> list[str]:
        with IPRoute() as ipr, _netlink("list links"):
            return [str(m.get_attr("IFLA_IFNAME")) for m in ipr.link("dump")]

    return run_in(target, work)


# ------------------------------------------------------------------ changes

def set_link(ifname: str, target: NetnsTarget | None = None, *, mtu: int | None = None,
             up: bool | None = None, master: str | None = None) -> None:
    """Change the MTU, state (up/down) or bridge (``master``) of ``ifname`` in
    ``target``'s network namespace (None: the caller's)."""
    check_ifname(ifname)
    if mtu is not None:
        check_mtu(mtu)
    if master is not None:
        check_ifname(master)

    def work() -> None:
        with IPRoute() as ipr:
            _set(ipr, ifname, mtu=mtu, up=up, master=master)

    run_in(target, work)


def _set(ipr: Any, ifname: str, *, mtu: int | None = None, up: bool | None = None,
         master: str | None = None) -> None:
    index = _index(ipr, ifname)
    if mtu is not None:
        with _netlink(f"set the MTU of {ifname} to {mtu}", ifname):
            ipr.link("set", index=index, mtu=mtu)
    if master is not None:
        with _netlink(f"attach {ifname} to {master}", ifname):
            ipr.link("set", index=index, master=_index(ipr, master))
    if up is not None:
        with _netlink(f"set {ifname} {'up' if up else 'down'}", ifname):
            ipr.link("set", index=index, state="up" if up else "down")


def add_address(ifname: str, address: str | IPInterface,
                target: NetnsTarget | None = None) -> None:
    """Add ``address`` ('ip/prefix') to ``ifname`` (IPv6 without duplicate address
    detection, as a container's link has no one to collide with but the bridge's
    IPAM)."""
    check_ifname(ifname)
    iface = _interface(address)

    def work() -> None:
        with IPRoute() as ipr:
            _add_address(ipr, _index(ipr, ifname), ifname, iface)

    run_in(target, work)


def _add_address(ipr: Any, index: int, ifname: str, iface: IPInterface) -> None:
    extra = {"flags": _IFA_F_NODAD} if iface.version == 6 else {}
    with _netlink(f"add address {iface} to {ifname}", ifname):
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                 **extra)


def _add_route(ipr: Any, index: int, ifname: str, route: Route) -> None:
    spec: dict[str, Any] = {"oif": index, "family": 2 if route.destination.version == 4 else 10}
    if route.destination.prefixlen:
        spec.update(dst=str(route.destination.network_address),
                    dst_len=route.destination.prefixlen)
    if route.gateway is not None:
        spec["gateway"] = str(route.gateway)
    via = f" via {route.gateway}" if route.gateway is not None else ""
    with _netlink(f"add route {route.destination}{via} on {ifname}", ifname):
        ipr.route("add", **spec)


def configure(target: NetnsTarget | None, ifname: str,
              addresses: Sequence[str | IPInterface] = (), routes: Sequence[Route] = (), *,
              mtu: int | None = None, up: bool = True, loopback: bool = True) -> None:
    """Set up ``ifname`` inside ``target``'s network namespace (None: the caller's), in
    the kernel's order: MTU, addresses, up (and ``lo`` up with ``loopback``), then
    ``routes`` (a gateway must be reachable through an address added before)."""
    check_ifname(ifname)
    ifaces = [_interface(a) for a in addresses]
    if mtu is not None:
        check_mtu(mtu)
    for route in routes:
        if not isinstance(route, Route):
            raise InvalidType(f"a route is a nsbind.net.Route, not {route!r}")

    def work() -> None:
        with IPRoute() as ipr:
            index = _index(ipr, ifname)
            if mtu is not None:
                _set(ipr, ifname, mtu=mtu)
            for iface in ifaces:
                _add_address(ipr, index, ifname, iface)
            if up:
                _set(ipr, ifname, up=True)
                if loopback:
                    _set(ipr, "lo", up=True)
            for route in routes:
                _add_route(ipr, index, ifname, route)

    run_in(target, work)


def delete_link(ifname: str, target: NetnsTarget | None = None, *,
                missing_ok: bool = False) -> bool:
    """Delete ``ifname`` (one end of a veth pair takes the other with it); return
    whether it existed.  ENODEV when it did not, unless ``missing_ok``."""
    check_ifname(ifname)

    def work() -> bool:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                if missing_ok:
                    return False
                _index(ipr, ifname)  # raises ENODEV
            try:
                with _netlink(f"delete link {ifname}", ifname):
                    ipr.link("del", index=found[0])
            except NsbindError as exc:
                if missing_ok and exc.errno == errno.ENODEV:
                    return False  # gone meanwhile (its namespace died)
                raise
            return True

    return run_in(target, work)


# ------------------------------------------------------------------ bridge

class Bridge:
    """A Linux bridge in the caller's network namespace.  ``with`` deletes it at the end.

    >>> br = Bridge.create("nsbind0", address="10.88.0.1/16")
    >>> br.delete()
    """

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.deleted = False

    @classmethod
    def create(cls, name: str, *, address: str | IPInterface | Sequence[str | IPInterface]
               | None = None, mtu: int | None = None, up: bool = True) -> Bridge:
        """Create the bridge ``name`` with ``address`` (one or several 'ip/prefix'; the
        containers' gateway), ``mtu``, and up; EEXIST when the name is taken.  On any
        error the bridge is deleted again."""
        check_ifname(name)
        if address is None:
            ifaces: list[IPInterface] = []
        elif isinstance(address, (str, ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
            ifaces = [_interface(address)]
        else:
            ifaces = [_interface(a) for a in address]
        if mtu is not None:
            check_mtu(mtu)
        with IPRoute() as ipr:
            extra = {"mtu": mtu} if mtu is not None else {}
            with _netlink(f"create bridge {name}", name):
                ipr.link("add", ifname=name, kind="bridge", **extra)
            index = _index(ipr, name)
            bridge = cls(name, index)
            try:
                for iface in ifaces:
                    _add_address(ipr, index, name, iface)
                if up:
                    _set(ipr, name, up=True)
            except BaseException:
                bridge.delete()
                raise
        return bridge

    @classmethod
    def open(cls, name: str) -> Bridge:
        """The existing bridge ``name``; ENODEV when there is none, InvalidValue when
        ``name`` is another kind of link."""
        check_ifname(name)
        with IPRoute() as ipr:
            info = _info(ipr, name)
        if info.kind != "bridge":
            raise InvalidValue(f"link {name} is a {info.kind or 'plain'} link, not a bridge")
        return cls(name, info.index)

    def info(self) -> LinkInfo:
        """The bridge's link facts (addresses, MTU, state)."""
        return link_info(self.name)

    def delete(self) -> None:
        """Delete the bridge (the links on it are left, detached); deleting twice, or a
        bridge already gone, is not an error."""
        if self.deleted:
            return
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=self.name)
            if found and found[0] == self.index:
                with suppress(NsbindError), _netlink(
                        f"delete bridge {self.name}", self.name):
                    ipr.link("del", index=self.index)
        self.deleted = True

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.delete()

    def __repr__(self) -> str:
        return f"<Bridge {self.name} index {self.index}{' deleted' if self.deleted else ''}>"


# ------------------------------------------------------------------ veth

class VethPair:
    """A veth pair: ``host_name`` in the caller's network namespace, ``peer_name`` in
    ``netns`` (an nsfs fd this object owns; None: the caller's namespace too).
    :meth:`delete` (or the end of a ``with`` block) removes both ends."""

    def __init__(self, host_name: str, peer_name: str, host_index: int,
                 netns: NamespaceFd | None) -> None:
        self.host_name = host_name
        self.peer_name = peer_name
        self.host_index = host_index
        self.netns = netns
        self.deleted = False

    def delete(self) -> None:
        """Delete the pair (through its host end; a pair whose namespace has died is
        gone already) and close the namespace fd.  Idempotent."""
        if self.deleted:
            return
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.host_name)
                if found and found[0] == self.host_index:
                    try:
                        with _netlink(f"delete veth {self.host_name}", self.host_name):
                            ipr.link("del", index=self.host_index)
                    except NsbindError as exc:
                        if exc.errno != errno.ENODEV:
                            raise
        finally:
            self.deleted = True
            if self.netns is not None:
                self.netns.close()

    def __enter__(self) -> VethPair:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.delete()

    def __repr__(self) -> str:
        where = f" in {self.netns.label}" if self.netns is not None else ""
        return f"<VethPair {self.host_name} <-> {self.peer_name}{where}>"


def veth_pair(host_name: str, peer_name: str, *, into: NetnsTarget | None = None,
              mtu: int | None = None, master: str | Bridge | None = None,
              up: bool = True) -> VethPair:
    """Create a veth pair whose peer ``peer_name`` is made directly inside ``into``'s
    network namespace (None: the caller's), both ends with ``mtu``; the host end is
    put on the bridge ``master`` and brought up (with ``up``).  The peer is left down:
    :func:`configure` it.  On any error nothing is left behind."""
    check_ifname(host_name)
    check_ifname(peer_name)
    if mtu is not None:
        check_mtu(mtu)
    bridge = master.name if isinstance(master, Bridge) else master
    if bridge is not None:
        check_ifname(bridge)
    if into is None and host_name == peer_name:
        raise InvalidValue(f"veth ends {host_name!r} and {peer_name!r}: one namespace, "
                           "one name each")
    netns = open_netns(into) if into is not None else None
    try:
        peer: dict[str, Any] = {"ifname": peer_name}
        extra: dict[str, Any] = {}
        if netns is not None:
            peer["net_ns_fd"] = netns.fileno()
        if mtu is not None:
            peer["mtu"] = extra["mtu"] = mtu
        with IPRoute() as ipr:
            with _netlink(f"create veth {host_name} with peer {peer_name}"
                          + (f" in {netns.label}" if netns is not None else ""), host_name):
                ipr.link("add", ifname=host_name, kind="veth", peer=peer, **extra)
            pair = VethPair(host_name, peer_name, _index(ipr, host_name), netns)
            try:
                _set(ipr, host_name, master=bridge, up=True if up else None)
            except BaseException:
                pair.delete()
                raise
    except BaseException:
        if netns is not None:
            netns.close()
        raise
    return pair


# ------------------------------------------------------------------ attach

class Attachment:
    """A network namespace attached to a bridge: an address from an :class:`Ipam`, a
    veth pair whose host end is on the bridge, and the namespace's end configured
    (address, up, default route via the gateway).  :meth:`detach` (or the end of a
    ``with`` block) undoes it all: the pair is deleted, the address released."""

    def __init__(self, owner: str, ipam: Ipam, address: IPInterface, gateway: IPAddress,
                 veth: VethPair) -> None:
        self.owner = owner
        self.ipam = ipam
        #: the namespace end's address, with the subnet's prefix
        self.address = address
        self.gateway = gateway
        self.veth = veth
        self.detached = False

    @property
    def host_name(self) -> str:
        return self.veth.host_name

    @property
    def ifname(self) -> str:
        return self.veth.peer_name

    def keep(self) -> None:
        """Leave the attachment in place for good (its owner detaches it later by name,
        with :func:`detach`, from any process): close the namespace fd this object
        holds, and make :meth:`detach` and the ``with`` block's end do nothing.
        Idempotent."""
        self.detached = True
        if self.veth.netns is not None:
            self.veth.netns.close()

    def detach(self) -> None:
        """Delete the veth pair and release the owner's addresses (both are tried even
        when one fails; the first error is raised).  Idempotent."""
        if self.detached:
            return
        self.detached = True
        try:
            self.veth.delete()
        finally:
            self.ipam.release(self.owner)

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.detach()

    def __repr__(self) -> str:
        return (f"<Attachment {self.owner}: {self.address} on {self.ifname} via "
                f"{self.host_name}{' detached' if self.detached else ''}>")


def attach(target: NetnsTarget, bridge: Bridge, ipam: Ipam, owner: str, *,
           ifname: str = "eth0", host_name: str | None = None, mtu: int | None = None,
           routes: Sequence[Route] = ()) -> Attachment:
    """Attach ``target``'s network namespace to ``bridge``: allocate an address for
    ``owner`` from ``ipam``, create the veth pair ``host_name`` (on the bridge) /
    ``ifname`` (in the namespace), give ``ifname`` the address, bring it and ``lo`` up,
    and route by default via the IPAM's gateway (plus ``routes``).  Every step is
    undone when a later one fails: no veth is left and the address is released.
    ``host_name`` defaults to ``nsbv`` + a digest of ``owner`` and ``ifname`` (so an
    owner attached twice collides: EEXIST)."""
    check_ifname(ifname)
    host_name = check_ifname(host_name or host_name_for(owner, ifname))
    if mtu is not None:
        check_mtu(mtu)
    held = set(ipam.allocated())
    ip = ipam.allocate(owner)
    try:
        address = ipaddress.ip_interface(f"{ip}/{ipam.subnet.prefixlen}")
        veth = veth_pair(host_name, ifname, into=target, mtu=mtu, master=bridge)
        try:
            configure(veth.netns, ifname, [address],
                      [Route.default(ipam.gateway), *routes], loopback=True)
        except BaseException:
            veth.delete()
            raise
    except BaseException:
        if ip not in held:  # the owner's earlier address stays with its attachment
            ipam.release(owner, ip)
        raise
    return Attachment(owner, ipam, address, ipam.gateway, veth)


def host_name_for(owner: str, ifname: str = "eth0") -> str:
    """The host end's name :func:`attach` picks by default: ``nsbv`` and 11 hex digits
    of a digest of ``owner`` and ``ifname``."""
    digest = hashlib.sha256(f"{owner}\0{ifname}".encode()).hexdigest()
    return f"nsbv{digest[:11]}"


def detach(ipam: Ipam, owner: str, *, ifname: str = "eth0",
           host_name: str | None = None) -> None:
    """Undo an :func:`attach` without its :class:`Attachment` (another process, after
    a crash): delete the host end ``host_name`` (default: :func:`host_name_for`) if it
    is there, taking its peer along, and release ``owner``'s addresses."""
    name = check_ifname(host_name or host_name_for(owner, ifname))
    try:
        delete_link(name, missing_ok=True)
    finally:
        ipam.release(owner)
