"""The files Docker writes for a container and mounts over its /etc/hostname,
/etc/hosts and /etc/resolv.conf (as moby's libnetwork etchosts and resolvconf do).

Rules:

- A hostname follows RFC 1123: dot-separated labels of 1-63 letters, digits and
  ``-`` (not first or last), at most 64 bytes in all (sethostname's limit).
- /etc/hosts: ``127.0.0.1 localhost``, then (with IPv6) ``::1 localhost
  ip6-localhost ip6-loopback`` and the ip6-localnet/mcastprefix/allnodes/allrouters
  lines, then the extra records (``--add-host``), then the container's own address
  with its hostname; a container with no address (``--net none``) gets no hostname
  line.  Without IPv6, IPv6 records are left out.  Fields are tab-separated.
  ``--net host`` copies the host's file (plus the extra records).
- /etc/resolv.conf: ``--net host`` gets the host's file unchanged.  Otherwise
  the host's file is parsed (comments dropped, the last ``search``/``domain`` kept,
  ``options`` gathered, unknown directives kept), loopback nameservers (127.0.0.0/8,
  ::1) and, without IPv6, IPv6 ones are dropped, and if none is left Google's
  (8.8.8.8, 8.8.4.4, and with IPv6 2001:4860:4860::8888/8844) are used; the file
  ends with Docker's comment saying how it was made.  When the host's file names
  only systemd-resolved's stub (127.0.0.53), /run/systemd/resolve/resolv.conf (the
  real upstream servers) is read instead.
- Host files are read following symlinks (/etc/resolv.conf often is one), but
  only regular files of at most 1 MiB (EngineError otherwise); a missing file
  counts as empty.
"""

from __future__ import annotations

import os
import stat

from nsbind.charsets import ALNUM, Word
from nsbind.ctxlite import suppress
from nsbind.engine.errors import EngineError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MAX_HOSTNAME", "check_hostname", "host_hosts_file", "hostname_file",
           "hosts_file", "resolv_conf", "write_files"]

MAX_HOSTNAME = 64      #: bytes: HOST_NAME_MAX, what sethostname accepts
MAX_HOST_FILE = 1 << 20
HOST_HOSTS = "/etc/hosts"
HOST_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
SYSTEMD_STUB = "127.0.0.53"

#: [A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?
_LABEL = Word(ALNUM, ALNUM + "-", last=ALNUM, max_len=63)
_DEFAULT_V4 = (("127.0.0.1", "localhost"),)
_DEFAULT_V6 = (("::1", "localhost ip6-localhost ip6-loopback"),
               ("fe00::0", "ip6-localnet"),
               ("ff00::0", "ip6-mcastprefix"),
               ("ff02::1", "ip6-allnodes"),
               ("ff02::2", "ip6-allrouters"))
_DEFAULT_NS_V4 = ("8.8.8.8", "8.8.4.4")
_DEFAULT_NS_V6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")



def _address(text: str) -> tuple[str, int, bool] | None:
    """(the address as ipaddress writes it, its version, whether it is a loopback one)
    for a text ``ipaddress.ip_address`` accepts, else None.  A dotted quad is read here,
    by ipaddress's rules (four decimal parts of 1-3 digits, 0-255, no leading zero):
    importing ipaddress costs every container's start 2-3 ms, and host nameservers are
    mostly IPv4."""
    parts = text.split(".")
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 and int(p) <= 255
                               and (p == "0" or p[0] != "0") for p in parts):
        return text, 4, parts[0] == "127"
    import ipaddress

    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(addr), addr.version, addr.is_loopback


def check_hostname(hostname: str) -> str:
    """``hostname`` if it is valid (see the module's rules), else EngineError naming it."""
    if not isinstance(hostname, str) or not hostname:
        raise EngineError(f"invalid hostname {hostname!r}: it is empty")
    if len(hostname.encode("utf-8", "surrogatepass")) > MAX_HOSTNAME:
        raise EngineError(f"invalid hostname {hostname!r}: longer than {MAX_HOSTNAME} bytes")
    for label in hostname.split("."):
        if not _LABEL.matches(label):
            raise EngineError(f"invalid hostname {hostname!r}: each dot-separated part must "
                              "be 1-63 letters, digits or '-', not starting or ending with '-'")
    return hostname


def hostname_file(hostname: str) -> str:
    """/etc/hostname: the name and a newline."""
    return check_hostname(hostname) + "\n"


def _record(ip: str, names: str) -> tuple[int, str]:
    """(the IP version, the names joined by spaces) of a hosts record, checked."""
    addr = _address(ip)
    if addr is None:
        raise EngineError(f"invalid IP address {ip!r} in a hosts record")
    if not names.strip() or any(c in names for c in "\n\r\0#"):
        raise EngineError(f"invalid host names {names!r} for {ip} in a hosts record")
    return addr[1], " ".join(names.split())


def _records(extra: Sequence[tuple[str, str]], ipv6: bool) -> str:
    out = []
    for ip, names in extra:
        version, joined = _record(ip, names)
        if ipv6 or version == 4:
            out.append(f"{ip}\t{joined}\n")
    return "".join(out)


def hosts_file(hostname: str, *, extra: Sequence[tuple[str, str]] = (), ipv6: bool = True,
               address: str | None = None) -> str:
    """A container's /etc/hosts: localhost and the IPv6 names, ``extra`` (ip, names)
    records, then ``address`` (the container's own, if it has one) with ``hostname``
    (an FQDN is followed by its first label, as Docker does)."""
    check_hostname(hostname)
    defaults = _DEFAULT_V4 + (_DEFAULT_V6 if ipv6 else ())
    text = "".join(f"{ip}\t{names}\n" for ip, names in defaults)
    own = []
    if address is not None:
        short = hostname.split(".", 1)[0]
        own.append((address, hostname if short == hostname else f"{hostname} {short}"))
    return text + _records([*extra, *own], ipv6)


def _read_host_file(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise EngineError(f"cannot read {path}: {exc.strerror}", err=exc.errno) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise EngineError(f"{path} is not a regular file")
        chunks, size = [], 0
        while size <= MAX_HOST_FILE and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_HOST_FILE:
        raise EngineError(f"{path} is larger than {MAX_HOST_FILE} bytes")
    return b"".join(chunks).decode("utf-8", "replace")


def host_hosts_file() -> str:
    """The host's /etc/hosts (for ``--net host``); Docker's defaults if it has none."""
    text = _read_host_file(HOST_HOSTS)
    if not text.strip():
        return hosts_file("localhost")
    return text if text.endswith("\n") else text + "\n"


class _ResolvConf:
    """A parsed resolv.conf, as moby's resolvconf.Parse reads one."""

    def __init__(self, text: str) -> None:
        #: (address, version, loopback), as :func:`_address` gives them
        self.nameservers: list[tuple[str, int, bool]] = []
        self.invalid: list[str] = []
        self.search: list[str] = []
        self.options: list[str] = []
        self.other: list[str] = []
        for line in text.splitlines():
            fields = line.split()
            if not fields or fields[0][0] in "#;":
                continue
            key, args = fields[0], fields[1:]
            if key == "nameserver":
                if args:
                    addr = _address(args[0])
                    if addr is None:
                        self.invalid.append(args[0])
                    else:
                        self.nameservers.append(addr)
            elif key in ("search", "domain"):
                if args:
                    self.search = args  # only the last one counts
            elif key == "options":
                self.options += args
            else:
                self.other.append(line)


def _host_resolv_conf() -> tuple[str, str]:
    """(text, path) of the host's resolv.conf: systemd-resolved's upstream file when
    /etc/resolv.conf names only its stub, as Docker does."""
    text = _read_host_file(HOST_RESOLV_CONF)
    servers = _ResolvConf(text).nameservers
    if [addr for addr, _, _ in servers] == [SYSTEMD_STUB] and \
            os.path.exists(SYSTEMD_RESOLV_CONF):
        return _read_host_file(SYSTEMD_RESOLV_CONF), SYSTEMD_RESOLV_CONF
    return text, HOST_RESOLV_CONF


def resolv_conf(host_text: str | None = None, *, net: str = "none",
                ipv6: bool = False) -> str:
    """A container's /etc/resolv.conf from the host's (``host_text``, or the file read
    now): unchanged for ``net="host"``, else with loopback (and, unless ``ipv6``,
    IPv6) nameservers dropped and Docker's defaults if none is left."""
    if host_text is None:
        host_text, source = _host_resolv_conf()
    else:
        source = HOST_RESOLV_CONF
    if net == "host":
        return host_text
    rc = _ResolvConf(host_text)
    servers = [addr for addr, version, loopback in rc.nameservers
               if not loopback and (ipv6 or version == 4)]
    used_default = not servers
    names = servers or [*_DEFAULT_NS_V4, *(_DEFAULT_NS_V6 if ipv6 else ())]
    out = [f"nameserver {n}\n" for n in names]
    if rc.search:
        out.append(f"search {' '.join(rc.search)}\n")
    if rc.options:
        out.append(f"options {' '.join(rc.options)}\n")
    out += [line + "\n" for line in rc.other]
    out.append(f"\n# Based on host file: '{source}' (legacy)\n")
    if used_default:
        out.append("# Used default nameservers.\n")
    if rc.invalid:
        out.append(f"# Invalid nameservers: [{' '.join(rc.invalid)}]\n")
    out.append("# Overrides: []\n")
    if any(o.split(":", 1)[0] == "ndots" for o in rc.options):
        out.append("# Option ndots from: host\n")
    return "".join(out)


def _write_atomic(dir_fd: int, name: str, text: str) -> None:
    tmp = f".{name}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o644, dir_fd=dir_fd)
    try:
        try:
            os.fchmod(fd, 0o644)  # whatever the umask
            data = memoryview(text.encode("utf-8", "surrogateescape"))
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def write_files(directory: str, hostname: str, net: str, *,
                extra: Sequence[tuple[str, str]] = (), address: str | None = None,
                ipv6: bool = True, dns_ipv6: bool = False) -> dict[str, str]:
    """Write ``hostname``, ``hosts`` and ``resolv.conf`` into ``directory`` (each to a
    temporary file renamed into place, mode 0644; the directory is not followed if
    it is a symlink) and return {container path: file written}.  ``net`` is the
    network mode: ``host`` copies the host's files, anything else is a container
    with its own network namespace; ``extra``, ``address`` and ``ipv6`` are as for
    :func:`hosts_file`, ``dns_ipv6`` is :func:`resolv_conf`'s ``ipv6`` (whether the
    network routes IPv6: off on Docker's default bridge)."""
    check_hostname(hostname)
    if net == "host":
        hosts = host_hosts_file() + _records(extra, True)
    else:
        hosts = hosts_file(hostname, extra=extra, ipv6=ipv6, address=address)
    files = {"/etc/hostname": ("hostname", hostname_file(hostname)),
             "/etc/hosts": ("hosts", hosts),
             "/etc/resolv.conf": ("resolv.conf", resolv_conf(net=net, ipv6=dns_ipv6))}
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise EngineError(f"cannot open directory {directory}: {exc.strerror}",
                          err=exc.errno) from None
    try:
        for name, text in files.values():
            _write_atomic(dir_fd, name, text)
    finally:
        os.close(dir_fd)
    return {target: os.path.join(directory, name) for target, (name, _) in files.items()}
