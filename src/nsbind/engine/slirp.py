"""Rootless networking, as podman's: slirp4netns gives the container's network
namespace a tap device (``tap0``, 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3) and
carries its traffic through the user's own sockets; published ports are forwarded by
it (its API socket's ``add_hostfwd``).  It runs as a child of the process that made
the container (``nsbind run`` or the monitor), which holds the write end of its
``--exit-fd``: when that process is gone, so is slirp4netns.  The container cannot
reach the host's loopback (``--disable-host-loopback``)."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

from nsbind.engine.errors import EngineError

__all__ = ["RESOLV_CONF", "SLIRP_ADDRESS", "start_slirp"]

SLIRP_ADDRESS = "10.0.2.100"  #: the container's address
RESOLV_CONF = "nameserver 10.0.2.3\n"  #: slirp4netns's DNS forwarder
_READY_SECONDS = 10.0


def start_slirp(pid: int, mappings: Sequence[Any] = ()) -> int:
    """Start slirp4netns for ``pid``'s network namespace and forward ``mappings``
    (:class:`nsbind.net.nat.PortMapping`); the fd whose closing stops it (keep it open
    as long as the container runs: it is CLOEXEC, and this process's exit closes it)."""
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise EngineError("rootless networking needs slirp4netns (Debian package "
                          "slirp4netns); --network none or loopback work without it")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        raise EngineError("rootless networking needs /dev/net/tun, which this user may not "
                          "open (Debian makes it mode 0666; here it is not): use --network "
                          "none or loopback")
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    folder = tempfile.mkdtemp(prefix="nsbind-slirp-")
    api = os.path.join(folder, "api.sock")
    try:
        proc = subprocess.Popen(
            [binary, "--configure", "--mtu=65520", "--disable-host-loopback",
             f"--exit-fd={exit_r}", f"--ready-fd={ready_w}", f"--api-socket={api}",
             str(pid), "tap0"],
            pass_fds=(exit_r, ready_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)
        os.close(exit_r)
        os.close(ready_w)
        exit_r = ready_w = -1
        ready, _, _ = select.select([ready_r], [], [], _READY_SECONDS)
        if not ready or os.read(ready_r, 1) != b"1":
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise EngineError("slirp4netns did not configure the container's network: "
                              + (err.decode(errors="replace").strip().splitlines() or
                                 ["no answer"])[-1])
        if proc.stderr is not None:
            proc.stderr.close()
        for m in mappings:
            _hostfwd(api, m)
    except BaseException:
        os.close(exit_w)  # slirp4netns exits
        raise
    finally:
        for fd in (exit_r, ready_w, ready_r):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)  # the socket: forwards are made
    return exit_w


def _hostfwd(api: str, mapping: Any) -> None:
    request = {"execute": "add_hostfwd", "arguments": {
        "proto": mapping.protocol, "host_addr": mapping.host_ip or "0.0.0.0",
        "host_port": mapping.host_port, "guest_port": mapping.container_port}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as conn:
        conn.settimeout(5)
        conn.connect(api)
        conn.sendall(json.dumps(request).encode())
        conn.shutdown(socket.SHUT_WR)
        answer = conn.recv(65536)
    try:
        reply = json.loads(answer or b"{}")
    except ValueError:
        reply = {"error": {"desc": answer[:200].decode(errors="replace")}}
    if "error" in reply:
        raise EngineError(f"-p {mapping.host_port}:{mapping.container_port}: slirp4netns: "
                          f"{reply['error'].get('desc', reply['error'])}")
