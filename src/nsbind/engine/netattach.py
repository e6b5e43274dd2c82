"""A container on a bridge network: its address taken when it is prepared (so its
/etc/hosts can name it), its network namespace attached to the network's bridge once
the container is created and before it starts, and all of it undone when it exits.
Containers on one network find each other by name: every running container's
/etc/hosts lists the others, rewritten in place (it is bind-mounted: a new file would
not reach the container) whenever one joins or leaves."""

from __future__ import annotations

import os

from nsbind.ctxlite import suppress
from nsbind.engine.errors import EngineError
from nsbind.engine.networks import Network, NetworkStore
from nsbind.engine.runopts import uses_bridge

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["BRIDGED", "attach_container", "detach_container", "network_of", "peers",
           "publish_mappings", "refresh_hosts", "uses_bridge"]  # uses_bridge: runopts's

#: --network values that are not a bridge network
BRIDGED = ("bridge",)


def network_of(nets: NetworkStore, network: str) -> Network:
    """The network ``--network`` names (``bridge``: the default network)."""
    return nets.default() if network == "bridge" else nets.get(network)


def _members(records: Any, network: str) -> list[dict[str, Any]]:
    """The running containers on ``network`` that have an address."""
    from nsbind.engine.records import status_of

    return [r for r in records.records()
            if r.get("network") == network and r.get("ip")
            and status_of(r) in ("created", "running", "paused")]


def peers(records: Any, network: str, but: str) -> list[tuple[str, str]]:
    """(address, name) of the running containers on ``network`` other than ``but``."""
    return [(str(r["ip"]), str(r["name"])) for r in _members(records, network)
            if r["id"] != but]


def refresh_hosts(records: Any, network: str) -> None:
    """Rewrite, in place, the /etc/hosts of every running container on ``network`` so it
    names all the others (the records are read once)."""
    from nsbind.engine.etcfiles import hosts_file

    members = _members(records, network)
    for record in members:
        others = [(str(r["ip"]), str(r["name"])) for r in members if r["id"] != record["id"]]
        text = hosts_file(str(record["hostname"]), address=str(record["ip"]), extra=others)
        path = os.path.join(str(record["storage"]), "hosts")
        with suppress(OSError):
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, text.encode(), 0)
            finally:
                os.close(fd)


def publish_mappings(texts: list[str] | tuple[str, ...]) -> list[Any]:
    """``--publish`` values parsed (:func:`nsbind.net.nat.parse_publish`); EngineError
    naming a bad one."""
    from nsbind.net.nat import parse_publish

    out = []
    for text in texts:
        try:
            out.append(parse_publish(text))
        except ValueError as exc:
            raise EngineError(f'invalid argument "{text}" for "-p, --publish": {exc}') from None
    return out


def attach_container(nets: NetworkStore, record: dict[str, Any], pid: int,
                     nft_table: str) -> bool:
    """Attach the created container ``pid`` to its network: veth into its namespace,
    on the bridge (made if need be), its address and default route; outbound
    masquerade for the network and its ``--publish`` ports (nftables table
    ``nft_table``).  Whether it had to turn IPv4 forwarding on (the caller says so)."""
    from nsbind.net import attach
    from nsbind.net.nat import Nat, enable_ip_forward

    network = nets.get(str(record["network"]))
    bridge = nets.bridge(network)
    try:
        # kept: removed by owner at the container's end (detach_container), maybe by
        # another process
        attach(pid, bridge, nets.ipam(network), str(record["id"])).keep()
        nat = Nat(nft_table)
        nat.add_network(network.name, network.subnet, bridge=network.bridge)
        mappings = publish_mappings(record.get("publish") or [])
        if mappings:
            nat.publish(str(record["id"]), str(record["ip"]), mappings)
        return enable_ip_forward()
    except OSError as exc:
        raise EngineError(f"network {network.name}: attaching container "
                          f"{record['name']}: {exc}") from None


def detach_container(nets: NetworkStore, record: dict[str, Any], nft_table: str) -> None:
    """Undo :func:`attach_container` (or only the address a prepare took): its
    published ports, the host end of the veth if it is still there, and the address.
    Idempotent."""
    from nsbind.net import detach

    name = record.get("network")
    if not name or not record.get("ip"):
        return
    if record.get("publish"):
        from nsbind.net.nat import Nat

        with suppress(OSError):
            Nat(nft_table).unpublish(str(record["id"]))
    with suppress(EngineError):
        network = nets.get(str(name))
        detach(nets.ipam(network), str(record["id"]))
