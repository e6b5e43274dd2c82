"""What a cgroup reports: resource statistics, events, and waiting for it to empty.

The names are logical (``memory_current``), read from whichever hierarchy carries
the controller: v2 files (memory.current, memory.peak, cpu.stat, pids.current,
io.stat, memory.events, cgroup.events) or their v1 counterparts
(memory.usage_in_bytes, memory.max_usage_in_bytes, cpuacct.usage, pids.current,
blkio.throttle.io_service_bytes/io_serviced, memory.oom_control).

Waiting uses the kernel's notification on a v2 ``cgroup.events`` file (poll
reports POLLPRI when it changes): no thread and no busy loop.  A cgroup with no
v2 directory (a v1-only host) is polled every few milliseconds instead.
"""

from __future__ import annotations

import os
import select
import time

from nsbind.cgroupfs import CgroupFd, parse_flat
from nsbind.frozen import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CgroupStats", "EventsWatch", "parse_blkio", "parse_io_stat"]


def parse_io_stat(text: str) -> dict[str, dict[str, int]]:
    """v2 io.stat: ``8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...`` per device."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        dev, *pairs = line.split()
        out[dev] = {k: int(v) for k, _, v in (p.partition("=") for p in pairs)}
    return out


def parse_blkio(bytes_text: str, ios_text: str) -> dict[str, dict[str, int]]:
    """v1 blkio.throttle.io_service_bytes / io_serviced, in io.stat's names."""
    out: dict[str, dict[str, int]] = {}
    for text, prefix in ((bytes_text, "bytes"), (ios_text, "ios")):
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[1] in ("Read", "Write"):
                key = ("r" if fields[1] == "Read" else "w") + prefix
                out.setdefault(fields[0], {})[key] = int(fields[2])
    return out


@frozen
class CgroupStats:
    """A snapshot; a field is None when the host has no such controller or file."""

    memory_current: int | None
    memory_peak: int | None
    memory_stat: dict[str, int]
    cpu_usage_us: int | None
    pids_current: int | None
    io: dict[str, dict[str, int]]  # "major:minor" -> rbytes, wbytes, rios, wios
    oom_kills: int | None


class EventsWatch:
    """A v2 ``cgroup.events`` file watched through an epoll fd (EPOLLPRI).

    ``fileno()`` is the epoll fd: it is readable when the events changed, so an
    asyncio loop can watch it with ``add_reader``."""

    def __init__(self, cgroup: CgroupFd) -> None:
        self._fd = os.open("cgroup.events", os.O_RDONLY | os.O_CLOEXEC, dir_fd=cgroup.fileno())
        self._ep = select.epoll()
        self._ep.register(self._fd, select.EPOLLPRI)

    def fileno(self) -> int:
        return self._ep.fileno()

    def read(self) -> dict[str, int]:
        """The current events (reading also re-arms the notification)."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        return parse_flat(os.read(self._fd, 4096).decode())

    def wait(self, timeout: float | None) -> bool:
        """Wait for a change; False on timeout."""
        return bool(self._ep.poll(-1 if timeout is None else timeout))

    def close(self) -> None:
        self._ep.close()
        os.close(self._fd)

    def __enter__(self) -> EventsWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(watch: EventsWatch | None, done: Callable[[], bool],
               timeout: float | None) -> bool:
    """Block until ``done()``; with a watch, sleep on its notifications."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        if watch is None:
            time.sleep(0.005 if left is None else min(0.005, left))
        else:
            watch.wait(left)
    return True


async def wait_until_async(watch: EventsWatch | None, done: Callable[[], bool]) -> None:
    """As :func:`wait_until`, on the running event loop (no thread)."""
    import asyncio  # here, not at import time: most callers never need it

    if watch is None:
        while not done():
            await asyncio.sleep(0.005)
        return
    loop = asyncio.get_running_loop()
    while not done():
        changed: asyncio.Future[None] = loop.create_future()

        def wake(fut: asyncio.Future[None] = changed) -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(watch.fileno(), wake)
        try:
            if done():  # changed between the check and the registration
                return
            await changed
        finally:
            loop.remove_reader(watch.fileno())
        watch.wait(0)  # consume the epoll event; done() re-reads the file
