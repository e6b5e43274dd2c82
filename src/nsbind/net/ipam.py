"""Address management for one subnet, shared by processes through a state directory.

The layout is the CNI host-local plugin's: one file per allocated address, named by
the address (``10.88.0.5``, ``fd00::5``) and holding its owner; ``last_reserved_ip.0``
remembers where the last search stopped, so freed addresses are not handed out again
at once; ``lock`` is taken with ``flock(LOCK_EX)`` around every change.  An address
file is created with ``O_CREAT|O_EXCL``, so two allocators can never both get one,
also across processes and hosts' reboots (the files stay until released).

The range is the subnet's addresses minus the network address, the IPv4 broadcast
address and the gateway.  The directory is treated as hostile: it is opened once
(not a symlink), every file in it is opened with ``O_NOFOLLOW|O_NONBLOCK`` relative
to that fd, must be a regular file and is read up to :data:`MAX_STATE_FILE` bytes;
anything else is refused with an :class:`IpamError` naming the file.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import stat

from nsbind._sys.fd import PathLike, fsbytes
from nsbind.ctxlite import contextmanager, suppress
from nsbind.errors import InvalidType, InvalidValue, MessageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_STATE_FILE", "AddressesExhausted", "IPAddress", "IPNetwork", "Ipam",
           "IpamError", "check_owner", "check_subnet"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the longest state file read (an owner is at most 255 bytes)
MAX_STATE_FILE = 4096
_LOCK = "lock"
_LAST = "last_reserved_ip.0"
_MAX_OWNER = 255


class IpamError(MessageError, RuntimeError):
    """The IPAM state is unusable (a hostile or corrupt file), or a request cannot be met."""

    operation = "ipam"


class AddressesExhausted(IpamError):
    """Every address of the range is allocated."""

    default_errno = errno.ENOSPC


def check_subnet(subnet: str | IPNetwork) -> IPNetwork:
    """Parse ``subnet`` (strict: no host bits) and check it leaves room for addresses:
    IPv4 /8 to /30, IPv6 /64 to /126 (the kernel takes any, but a smaller range
    has no address besides network, broadcast and gateway)."""
    if isinstance(subnet, bool) or not isinstance(
            subnet, (str, ipaddress.IPv4Network, ipaddress.IPv6Network)):
        raise InvalidType(f"a subnet is a string or an ip_network, not {subnet!r}")
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise InvalidValue(f"subnet {subnet!r}: {exc}") from None
    low, high = (8, 30) if net.version == 4 else (64, 126)
    if not low <= net.prefixlen <= high:
        raise InvalidValue(f"subnet {net}: the prefix length must be {low} to {high} "
                           f"for IPv{net.version}")
    return net


def check_owner(owner: str) -> str:
    """An owner is 1 to 255 bytes of printable UTF-8 without whitespace other than a
    space (it is stored as a file's contents and shown in messages)."""
    if not isinstance(owner, str):
        raise InvalidType(f"an owner is a string, not {owner!r}")
    if not owner or len(owner.encode("utf-8", "surrogatepass")) > _MAX_OWNER or any(
            not (c.isprintable()) for c in owner):
        raise InvalidValue(f"owner {owner!r}: 1 to {_MAX_OWNER} bytes, printable")
    return owner


class Ipam:
    """Hands out addresses of ``subnet`` (never the network, broadcast or ``gateway``
    address, never one twice) to owners, with its state in ``state_dir``.

    ``gateway`` defaults to the subnet's first address (``10.88.0.1`` in
    ``10.88.0.0/16``); it must lie inside the subnet.  ``state_dir`` is created
    (mode 0700) if missing; one directory per subnet.
    """

    def __init__(self, state_dir: PathLike, subnet: str | IPNetwork,
                 gateway: str | IPAddress | None = None) -> None:
        self.state_dir = os.fsdecode(fsbytes(state_dir))
        self.subnet: IPNetwork = check_subnet(subnet)
        net = self.subnet
        first = int(net.network_address) + 1
        last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
        if gateway is None:
            gw: IPAddress = ipaddress.ip_address(first) if net.version == 4 else \
                ipaddress.IPv6Address(first)
        else:
            try:
                gw = ipaddress.ip_address(gateway)
            except ValueError as exc:
                raise InvalidValue(f"gateway {gateway!r}: {exc}") from None
            if gw.version != net.version or not first <= int(gw) <= last:
                raise InvalidValue(f"gateway {gw} is not a host address of {net}")
        self.gateway: IPAddress = gw
        self._first, self._last = first, last

    @property
    def size(self) -> int:
        """How many addresses the range holds."""
        return self._last - self._first  # + 1 for the bounds, - 1 for the gateway

    def __repr__(self) -> str:
        return f"<Ipam {self.subnet} gateway {self.gateway} in {self.state_dir}>"

    # ------------------------------------------------------------------ public

    def allocate(self, owner: str, address: str | IPAddress | None = None) -> IPAddress:
        """Give ``owner`` an address (``address`` when asked for: a host address of the
        subnet, not the gateway, free or already the owner's) and record it; an owner
        that holds one already gets the same one back (allocation is idempotent).
        Raises :class:`AddressesExhausted` naming the subnet when none is free,
        :class:`IpamError` when the address asked for cannot be had."""
        check_owner(owner)
        if address is not None:
            return self._allocate_this(owner, address)
        with self._locked() as dirfd:
            entries = self._entries(dirfd)
            for address, who in entries.items():
                if who == owner:
                    return address
            taken = {int(a) for a in entries}
            if len(taken - {int(self.gateway)}) >= self.size:
                raise AddressesExhausted(f"no free address in {self.subnet}: all {self.size} "
                                         f"are allocated (state in {self.state_dir})")
            start = self._last_reserved(dirfd)
            for candidate in self._candidates(start):
                if candidate in taken:
                    continue
                address = self._address(candidate)
                try:
                    self._write_new(dirfd, str(address), owner)
                except FileExistsError:  # a name we could not read as an address
                    continue
                self._write_last(dirfd, address)
                return address
        raise AddressesExhausted(f"no free address in {self.subnet} "
                                 f"(state in {self.state_dir})")

    def _allocate_this(self, owner: str, text: str | IPAddress) -> IPAddress:
        try:
            want = ipaddress.ip_address(text)
        except ValueError as exc:
            raise IpamError(f"address {str(text)[:60]!r}: {exc}") from None
        if (want.version != self.subnet.version or not self._first <= int(want) <= self._last
                or want == self.gateway):
            raise IpamError(f"address {want} is not a free host address of {self.subnet} "
                            f"(gateway {self.gateway})")
        with self._locked() as dirfd:
            who = self._entries(dirfd).get(want)
            if who == owner:
                return want
            if who is not None:
                raise IpamError(f"address {want} of {self.subnet} is already allocated",
                                errno.EADDRINUSE)
            self._write_new(dirfd, str(want), owner)
            return want

    def release(self, owner: str, address: str | IPAddress | None = None) -> list[IPAddress]:
        """Free every address ``owner`` holds (only ``address``, when given); return them
        (none: an empty list).  Another owner's address is never freed."""
        check_owner(owner)
        only = None if address is None else ipaddress.ip_address(address)
        freed = []
        with self._locked() as dirfd:
            for address, who in self._entries(dirfd).items():
                if who == owner and only in (None, address):
                    os.unlink(str(address), dir_fd=dirfd)
                    freed.append(address)
        return freed

    def allocated(self) -> dict[IPAddress, str]:
        """Every allocated address of the subnet and its owner."""
        with self._locked() as dirfd:
            return self._entries(dirfd)

    def owner_of(self, address: str | IPAddress) -> str | None:
        """Who holds ``address`` (None: nobody)."""
        return self.allocated().get(ipaddress.ip_address(address))

    # ------------------------------------------------------------------ state

    @contextmanager
    def _locked(self) -> Iterator[int]:
        """The state directory's fd, with the lock held (flock on a fresh open file
        description: excludes other threads of this process as well as other
        processes)."""
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise IpamError(f"IPAM state directory {self.state_dir}: {exc.strerror}",
                            exc.errno) from None
        try:
            dirfd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                            | os.O_CLOEXEC)
        except OSError as exc:
            raise IpamError(f"IPAM state directory {self.state_dir}: {exc.strerror} "
                            "(it must be a directory, not a symlink)", exc.errno) from None
        try:
            lockfd = self._open_file(dirfd, _LOCK, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(lockfd, fcntl.LOCK_EX)
                yield dirfd
            finally:
                os.close(lockfd)  # drops the lock
        finally:
            os.close(dirfd)

    def _open_file(self, dirfd: int, name: str, flags: int) -> int:
        """Open a state file refusing symlinks, FIFOs, devices and directories."""
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600,
                         dir_fd=dirfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IpamError(f"IPAM state file {self._shown(name)} is a symlink: "
                                "refused") from None
            if exc.errno == errno.ENOENT:
                raise
            raise IpamError(f"IPAM state file {self._shown(name)}: {exc.strerror}",
                            exc.errno) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise IpamError(f"IPAM state file {self._shown(name)} is not a regular file: "
                            "refused")
        return fd

    def _read(self, dirfd: int, name: str) -> str:
        fd = self._open_file(dirfd, name, os.O_RDONLY)
        try:
            if os.fstat(fd).st_size > MAX_STATE_FILE:
                raise IpamError(f"IPAM state file {self._shown(name)} is larger than "
                                f"{MAX_STATE_FILE} bytes: refused")
            data = os.read(fd, MAX_STATE_FILE + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_STATE_FILE:
            raise IpamError(f"IPAM state file {self._shown(name)} is larger than "
                            f"{MAX_STATE_FILE} bytes: refused")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise IpamError(f"IPAM state file {self._shown(name)} is not UTF-8") from None

    def _entries(self, dirfd: int) -> dict[IPAddress, str]:
        """The address files of this subnet and their owners (host-local writes
        "owner\\nifname": the first line is the owner)."""
        found: dict[IPAddress, str] = {}
        for name in os.listdir(dirfd):
            address = self._parse(name)
            if address is None:
                continue
            try:
                text = self._read(dirfd, name)
            except FileNotFoundError:
                continue
            found[address] = text.split("\n", 1)[0].strip()
        return found

    def _parse(self, name: str) -> IPAddress | None:
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return None
        if str(address) != name or address.version != self.subnet.version or (
                not self._first <= int(address) <= self._last):
            return None  # another subnet's, or a name no allocator writes
        return address

    def _write_new(self, dirfd: int, name: str, text: str) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dirfd)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(name, dir_fd=dirfd)
            raise
        os.close(fd)

    def _last_reserved(self, dirfd: int) -> int:
        try:
            address = self._parse(self._read(dirfd, _LAST).strip())
        except FileNotFoundError:
            return self._last
        if address is None or not self._first <= int(address) <= self._last:
            return self._last
        return int(address)

    def _write_last(self, dirfd: int, address: IPAddress) -> None:
        tmp = f"{_LAST}.tmp"
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dirfd)
        self._write_new(dirfd, tmp, str(address))
        os.rename(tmp, _LAST, src_dir_fd=dirfd, dst_dir_fd=dirfd)

    def _candidates(self, last: int) -> Iterator[int]:
        """Every host address after ``last``, round the range once, gateway left out."""
        gateway = int(self.gateway)
        span = self._last - self._first + 1
        for step in range(1, span + 1):
            value = self._first + (last - self._first + step) % span
            if value != gateway:
                yield value

    def _address(self, value: int) -> IPAddress:
        if self.subnet.version == 4:
            return ipaddress.IPv4Address(value)
        return ipaddress.IPv6Address(value)

    def _shown(self, name: str) -> str:
        return os.path.join(self.state_dir, name)
