"""The one network operation namespaces need: bringing an interface up (SIOCSIFFLAGS)."""

from __future__ import annotations

import fcntl
import struct

from nsbind.errors import raise_errno

__all__ = ["set_link_up"]

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH14x"  # struct ifreq: name, then ifr_flags in the union


def set_link_up(name: str = "lo") -> None:
    """Set IFF_UP on interface ``name`` in the calling thread's network namespace.

    Needs CAP_NET_ADMIN in the namespace's owning user namespace.
    """
    import socket  # (a spawn brings lo up in C: this is for the Python callers)

    raw = name.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            reply = fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack(_IFREQ, raw, 0))
            flags = struct.unpack(_IFREQ, reply)[1]
            fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, raw, flags | _IFF_UP))
        except OSError as exc:
            raise_errno(exc.errno or 0, "ioctl", name, what=f"bring link {name} up")
