"""Handing a container's terminal to its client: the ``--console-socket`` protocol.

runc, crun and the clients that drive them (conmon, containerd's shim) agree on this:
the client listens on an AF_UNIX stream socket; the runtime connects to it and sends
the pty master as exactly one SCM_RIGHTS fd, with the terminal's name as the data,
before ``create`` (or a detached ``exec``) returns.  The client owns the master from
then on; the runtime closes its copy.
"""

from __future__ import annotations

import errno
import os
import stat

from nsbind.errors import MessageError

__all__ = ["ConsoleError", "send_console"]

#: how long connecting and sending may take (a socket that does not answer)
CONSOLE_TIMEOUT = 10.0


class ConsoleError(MessageError, OSError):
    """The console socket could not be used: missing, not a socket, not answering."""

    operation = "console socket"


def _check_socket(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConsoleError(f"console socket {path}: {exc.strerror}", exc.errno) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ConsoleError(f"console socket {path}: not a socket", errno.ENOTSOCK)


def send_console(path: str, master: int, name: str = "/dev/ptmx",
                 timeout: float = CONSOLE_TIMEOUT) -> None:
    """Connect to the AF_UNIX socket ``path`` and send ``master`` (one SCM_RIGHTS fd,
    ``name`` as the data).  ConsoleError naming the socket when it fails."""
    import socket  # only a terminal needs it

    _check_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        socket.send_fds(sock, [name.encode()], [master])
    except OSError as exc:
        what = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ConsoleError(f"send the terminal to console socket {path}: {what}",
                           exc.errno or errno.ETIMEDOUT) from None
    finally:
        sock.close()
