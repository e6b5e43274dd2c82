"""Container networking: bridges, veth pairs, addresses, routes and IPAM.

>>> ipam = nsbind.net.Ipam("/run/nsbind/net/nsbind0", "10.88.0.0/16")   # gateway .1
>>> br = nsbind.net.Bridge.create("nsbind0", address="10.88.0.1/16")
>>> with nsbind.net.attach(proc, br, ipam, owner="c1", host_name="veth-c1") as att:
...     att.address                                  # 10.88.0.2/16 on eth0 in proc's netns

A network namespace is named by ``Namespaces.join(...)``, a pid, a pidfd, a
:class:`~nsbind.Process`, an nsfs path (a persisted one) or a NamespaceFd.  Work
inside it runs in a helper thread that joins it (:func:`run_in`): the caller's thread
never changes namespace and nothing forks, so a threaded program can use all of
this.  Netlink goes through pyroute2, imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nsbind.lazyimport import module_getattr

if TYPE_CHECKING:
    from nsbind.net.ipam import AddressesExhausted, Ipam, IpamError
    from nsbind.net.links import (
        Attachment,
        Bridge,
        LinkInfo,
        Route,
        VethPair,
        add_address,
        attach,
        check_ifname,
        check_mtu,
        configure,
        delete_link,
        detach,
        host_name_for,
        link_info,
        link_names,
        set_link,
        veth_pair,
    )
    from nsbind.net.nat import (
        Nat,
        NftablesError,
        PortMapping,
        enable_ip_forward,
        ip_forward,
        parse_publish,
        set_ip_forward,
    )
    from nsbind.net.netns import NetnsTarget, open_netns, run_in

_LAZY: dict[str, str | None] = {
    "AddressesExhausted": ".ipam", "Ipam": ".ipam", "IpamError": ".ipam",
    "Attachment": ".links", "Bridge": ".links", "LinkInfo": ".links", "Route": ".links",
    "VethPair": ".links", "add_address": ".links", "attach": ".links",
    "check_ifname": ".links", "check_mtu": ".links", "configure": ".links",
    "delete_link": ".links", "detach": ".links", "host_name_for": ".links",
    "link_info": ".links", "link_names": ".links", "set_link": ".links",
    "veth_pair": ".links", "NetnsTarget": ".netns", "open_netns": ".netns",
    "run_in": ".netns", "ipam": None, "links": None, "netns": None,
    "Nat": ".nat", "NftablesError": ".nat", "PortMapping": ".nat", "enable_ip_forward": ".nat",
    "ip_forward": ".nat", "parse_publish": ".nat", "set_ip_forward": ".nat", "nat": None}

__getattr__ = module_getattr("nsbind.net", _LAZY, globals())

__all__ = ["AddressesExhausted", "Attachment", "Bridge", "Ipam", "IpamError", "LinkInfo",
           "Nat", "NetnsTarget", "NftablesError", "PortMapping", "Route", "VethPair",
           "add_address", "attach", "check_ifname", "check_mtu", "configure", "delete_link",
           "detach", "enable_ip_forward", "host_name_for", "ip_forward", "link_info",
           "link_names", "open_netns", "parse_publish", "run_in", "set_ip_forward", "set_link",
           "veth_pair"]
