"""Networks as objects, as ``docker network`` keeps them: a name, a subnet, a gateway
and a bridge, saved under the store (``<store>/networks/<name>.json``), with the
addresses of running containers held by an IPAM under the state root
(``<state>/net/<name>/``).  The default network, ``nsbind`` (10.88.0.0/16 on bridge
``nsbind0``, podman's numbers), is made on first use; a user-defined one gets the next
free 10.89.N.0/24.  A network's bridge is made when a container first joins it and
deleted with the network; a network some container is on cannot be removed.
"""

from __future__ import annotations

import errno
import ipaddress
import os

from nsbind import jsonlite
from nsbind.charsets import ALNUM, Word
from nsbind.ctxlite import suppress
from nsbind.engine.errors import EngineError
from nsbind.frozen import as_dict, fields_of, frozen

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_NETWORK", "MAX_NETWORK_FILE", "Network", "NetworkStore"]

DEFAULT_NETWORK = "nsbind"
MAX_NETWORK_FILE = 64 << 10  #: a network file is a few hundred bytes
_NAME = Word(ALNUM, ALNUM + "_.-", max_len=64)  # [a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}


@frozen
class Network:
    """A network: its bridge carries ``gateway`` as its address in ``subnet``."""

    name: str
    subnet: str
    gateway: str
    bridge: str
    created: str

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = as_dict(self)
        return data


def _bridge_name(name: str) -> str:
    if name == DEFAULT_NETWORK:
        return "nsbind0"
    import hashlib  # here: OpenSSL's start-up is milliseconds, and --net none never names one

    return "nsbr" + hashlib.sha256(name.encode()).hexdigest()[:11]


class NetworkStore:
    """The networks of one store and state root."""

    def __init__(self, store: str, state: str) -> None:
        self.folder = os.path.join(store, "networks")
        self.ipam_root = os.path.join(state, "net")

    def _path(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.matches(name):
            raise EngineError(f"invalid network name {name!r}: [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "expected, at most 64 characters")
        return os.path.join(self.folder, name + ".json")

    def networks(self) -> list[Network]:
        """Every network, by name."""
        if not os.path.isdir(self.folder):
            return []
        found = []
        for entry in sorted(os.listdir(self.folder)):
            if entry.endswith(".json"):
                with suppress(EngineError):
                    found.append(self.get(entry[:-5]))
        return found

    def get(self, name: str) -> Network:
        """The network ``name``; EngineError "network NAME not found"."""
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise EngineError(f"network {name} not found", err=errno.ENOENT) from None
        with os.fdopen(fd, "rb") as f:
            import stat

            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise EngineError(f"network {name}: {path} is not a regular file")
            data = f.read(MAX_NETWORK_FILE + 1)
        try:
            raw = jsonlite.loads(data)
            net = Network(**{k.name: str(raw[k.name]) for k in fields_of(Network)})
            if len(data) > MAX_NETWORK_FILE or net.name != name:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise EngineError(f"network {name}: {path} is damaged") from None
        return net

    def create(self, name: str, subnet: str | None = None,
               gateway: str | None = None) -> Network:
        """A new network (see the module doc); EngineError when the name is taken, the
        subnet is not one or overlaps another network's, or the gateway is not in it."""
        from nsbind.engine.records import now
        from nsbind.net import Ipam

        path = self._path(name)
        taken = [ipaddress.ip_network(n.subnet) for n in self.networks()]
        if subnet is None:
            subnet = self._free_subnet(name, taken)
        try:
            net = ipaddress.ip_network(subnet, strict=True)
        except ValueError as exc:
            raise EngineError(f"invalid subnet {subnet!r}: {exc}") from None
        for other in taken:
            if net.version == other.version and net.overlaps(other):
                raise EngineError(f"subnet {net} overlaps another network's ({other})")
        try:
            gw = ipaddress.ip_address(gateway) if gateway else next(net.hosts())
        except ValueError as exc:
            raise EngineError(f"invalid gateway {gateway!r}: {exc}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise EngineError(f"gateway {gw} is not a host address of subnet {net}")
        try:
            Ipam(self._ipam_dir(name), net, str(gw))  # the IPAM's own checks
        except (ValueError, OSError) as exc:
            raise EngineError(f"network {name}: {exc}") from None
        record = Network(name, str(net), str(gw), _bridge_name(name), now())
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                         | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise EngineError(f"network with name {name} already exists",
                              err=errno.EEXIST) from None
        with os.fdopen(fd, "w") as f:
            f.write(jsonlite.dumps(record.to_json(), indent=1))
        return record

    @staticmethod
    def _free_subnet(name: str, taken: list[Any]) -> str:
        if name == DEFAULT_NETWORK:
            return "10.88.0.0/16"
        for n in range(256):
            candidate = ipaddress.ip_network(f"10.89.{n}.0/24")
            if not any(candidate.overlaps(t) for t in taken if t.version == 4):
                return str(candidate)
        raise EngineError("no free subnet left in 10.89.0.0/16: give --subnet")

    def _ipam_dir(self, name: str) -> str:
        return os.path.join(self.ipam_root, name)

    def default(self) -> Network:
        """The default network, made on first use."""
        try:
            return self.get(DEFAULT_NETWORK)
        except EngineError:
            with suppress(EngineError):
                self.create(DEFAULT_NETWORK)
            return self.get(DEFAULT_NETWORK)

    def ipam(self, network: Network) -> Any:
        """The network's IPAM (:class:`nsbind.net.Ipam`)."""
        from nsbind.net import Ipam

        return Ipam(self._ipam_dir(network.name), network.subnet, network.gateway)

    def bridge(self, network: Network) -> Any:
        """The network's bridge (:class:`nsbind.net.Bridge`), made if it is not there."""
        from nsbind.net import Bridge

        try:
            return Bridge.open(network.bridge)
        except OSError:
            prefix = ipaddress.ip_network(network.subnet).prefixlen
            try:
                return Bridge.create(network.bridge, address=f"{network.gateway}/{prefix}")
            except FileExistsError:  # made meanwhile by another container's start
                return Bridge.open(network.bridge)

    def in_use(self, network: Network) -> list[str]:
        """The owners (container ids) holding an address on ``network``."""
        if not os.path.isdir(self._ipam_dir(network.name)):
            return []
        return sorted(set(self.ipam(network).allocated().values()))

    def remove(self, name: str, nft_table: str = "nsbind") -> Network:
        """Remove the network, its bridge and its masquerade rule (the nftables table
        ``nft_table`` too once it holds nothing else); EngineError while a container is
        on it."""
        network = self.get(name)
        users = self.in_use(network)
        if users:
            raise EngineError(f"network {name} has active endpoints (container "
                              f"{users[0][:12]}): remove them first", err=errno.EBUSY)
        from nsbind.net import delete_link

        delete_link(network.bridge, missing_ok=True)
        _remove_nat(network.name, nft_table)
        import shutil

        shutil.rmtree(self._ipam_dir(name), ignore_errors=True)
        os.unlink(self._path(name))
        return network


def _remove_nat(name: str, table: str) -> None:
    from nsbind.errors import Missing
    from nsbind.net.nat import Nat

    try:
        nat = Nat(table)
        if nat.exists():
            nat.remove_network(name)
            if not nat.rules():
                nat.delete_table()
    except Missing:  # no nftables here: there were no rules either
        pass
