"""``nsbind-oci run``: create, start and wait, in the foreground, as ``runc run``.

The container's process is this process's child: signals to the runtime go on to it,
its exit status is the command's (128 + N for signal N), and the container is deleted
afterwards unless ``keep``.  With ``process.terminal`` and no console socket, the
runtime holds the terminal itself: it listens on a socket of its own for the master
and copies between it and its stdio (in raw mode when stdin is a terminal).
"""

from __future__ import annotations

import os

from nsbind.attachwarm import warm_attach
from nsbind.ctxlite import contextmanager, nullcontext
from nsbind.oci.createop import CGROUP_PARENT, create
from nsbind.oci.lifecycle import delete, start
from nsbind.oci.spec import load_spec
from nsbind.oci.waiting import copy_window_size, forward_signals, wait_foreground

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator

    from nsbind.attachwarm import Warmup

__all__ = ["own_console", "receive_master", "run_container"]


@contextmanager
def own_console() -> Iterator[tuple[str, socket.socket]]:
    """A listening console socket in a private temporary directory: its path (for
    ``create``'s ``console_socket``) and the listener (for :func:`receive_master`)."""
    import socket
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nsbind-oci-console-") as tmp:
        path = os.path.join(tmp, "console.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with listener:
            listener.bind(path)
            listener.listen(1)
            yield path, listener


def receive_master(listener: socket.socket) -> int:
    """The terminal master fd the container's create sends to ``listener``."""
    import socket

    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise OSError("run: the terminal did not arrive on the console socket")
    return fds[0]


def run_container(root: str, container_id: str, bundle: str, *, detach: bool = False,
                  keep: bool = False, pid_file: str | None = None,
                  console_socket: str | None = None, preserve_fds: int = 0,
                  on_start: Callable[[int], None] | None = None,
                  escalate: int | None = None, no_cgroup: bool = False,
                  on_created: Callable[[int], None] | None = None,
                  warmed: bool = False, warmup: Warmup | None = None) -> int:
    """Run the bundle as container ``container_id``; its exit status (0 detached).
    ``on_created`` gets the process's pid once it is created (parked before its exec:
    the place to set up its network), ``on_start`` once it is started; the
    second ``escalate`` signal kills it (see :func:`~nsbind.oci.waiting.forward_signals`);
    ``no_cgroup``: see :func:`~nsbind.oci.create`; ``warmed`` and ``warmup``: the caller
    started the cgroup attach warm-up (:func:`~nsbind.attachwarm.warm_attach`,
    earlier is better: the first write waits a grace period), and this ends it."""
    if not (warmed or no_cgroup):
        warmup = warm_attach()
    master = None
    try:
        spec = load_spec(bundle)
        holds_terminal = (bool(spec.process is not None and spec.process.terminal)
                          and console_socket is None and not detach)
        with own_console() if holds_terminal else nullcontext(None) as console:
            if console is not None:
                console_socket, listener = console
            pid = int(create(bundle, container_id, root=root, cgroup_parent=CGROUP_PARENT,
                             pid_file=pid_file, console_socket=console_socket,
                             preserve_fds=preserve_fds, spec=spec, no_cgroup=no_cgroup,
                             warmed=True, warmup=warmup)["pid"])
            try:
                if console is not None:
                    master = receive_master(listener)
                    copy_window_size(master)  # before the process starts and asks for it
                if on_created is not None:
                    on_created(pid)
            except BaseException:
                delete(root, container_id, force=True)
                raise
    finally:
        if warmup is not None:
            warmup.stop()  # create stops it; this, when create is not reached
    try:
        # in the foreground, signals go to the process from its start on: one that
        # arrives before the wait must not end the runtime and leave the process
        with nullcontext() if detach else forward_signals(pid, escalate=escalate):
            start(root, container_id)
            if on_start is not None:
                on_start(pid)
            return 0 if detach else wait_foreground(pid, master, escalate=escalate)
    except BaseException:
        if detach:  # a detached container that did not start is not left behind
            delete(root, container_id, force=True)
        raise
    finally:
        if master is not None:
            os.close(master)
        if not detach and not keep:
            delete(root, container_id, force=True)
