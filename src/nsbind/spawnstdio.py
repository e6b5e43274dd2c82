"""The parent's side of a spawned child's fds: its stdio, passed fds, and the pipes a
spawn uses to hear from the child.

stdio takes what :mod:`subprocess` takes: ``PIPE``, ``DEVNULL``, ``STDOUT`` (stderr
only), an fd or a file object, or None (inherited).  Every source fd is copied
close-on-exec above the highest target, so the child's dup2 steps never clobber a
source; the copies are closed in the parent once the child has exec'd.
"""

from __future__ import annotations

import fcntl
import os

from nsbind.errors import InvalidValue
from nsbind.frozen import replace_fields
from nsbind.mountstep import MountStep

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import IO, Any, TypeAlias

__all__ = ["DEVNULL", "PIPE", "STDOUT", "SpawnPipes", "StdSpec", "Stdio"]

# subprocess's values (not imported from it: it imports threading, selectors and locale)
PIPE = -1
STDOUT = -2
DEVNULL = -3

#: what a stdio argument of spawn may be
StdSpec: TypeAlias = "int | IO[Any] | None"


class Stdio:
    """The parent's half of the child's stdio and the fd moves for the plan."""

    def __init__(self) -> None:
        self.moves: list[tuple[int, int, str]] = []  # (high source fd, target, description)
        self.close_after: list[int] = []  # fds to close in the parent once spawned
        self.parent_ends: list[IO[bytes] | None] = [None, None, None]
        self.inherited: list[int] = []  # stdio fds the child keeps as they are

    def high(self, fd: int, base: int) -> int:
        """A close-on-exec copy of ``fd`` at ``base`` or above, closed by :meth:`cleanup`:
        every source above every target, so that no dup2 in the child overwrites a
        source another dup2 still needs."""
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base)
        self.close_after.append(high)
        return high

    def arrange(self, stdin: StdSpec, stdout: StdSpec, stderr: StdSpec,
                pass_fds: tuple[int, ...], base: int) -> None:
        """The moves for stdio and ``pass_fds`` (each kept at its own number)."""
        if stdin is None and stdout is None and stderr is None and not pass_fds:
            self.inherited = [0, 1, 2]  # the common case, without the general moves
            return
        for target, spec in enumerate((stdin, stdout, stderr)):
            out1 = next((src for src, dst, _ in self.moves if dst == 1), 1)
            self.add(target, spec, base, out1)
        for fd in pass_fds:
            self.add(fd, fd, base, None)

    def targets(self) -> list[int]:
        """The fds the child has after its dup2 steps: the moved and the inherited."""
        return [t for _, t, _ in self.moves] + self.inherited

    def close_parent_ends(self) -> None:
        """Close this side's pipe ends (the spawn failed)."""
        for stream in self.parent_ends:
            if stream is not None:
                stream.close()

    def add(self, target: int, spec: StdSpec, base: int, out1: int | None) -> None:
        """Move ``spec`` (a stdio argument) to fd ``target`` in the child."""
        desc = f"{('stdin', 'stdout', 'stderr')[target] if target < 3 else 'fd'} to fd {target}"
        if spec is None:
            self.inherited.append(target)  # the child has it already: no move
            return
        if spec == PIPE:
            r, w = os.pipe2(os.O_CLOEXEC)
            mine, theirs = (w, r) if target == 0 else (r, w)
            self.parent_ends[target] = os.fdopen(mine, "wb" if target == 0 else "rb", buffering=0)
            self.close_after.append(theirs)
            src = self.high(theirs, base)
        elif spec == DEVNULL:
            null = os.open(os.devnull, (os.O_RDONLY if target == 0 else os.O_WRONLY) | os.O_CLOEXEC)
            self.close_after.append(null)
            src = self.high(null, base)
        elif spec == STDOUT:
            if target != 2 or out1 is None:
                raise InvalidValue("STDOUT is only valid for stderr")
            src = out1
        elif isinstance(spec, int):
            src = self.high(spec, base)
        else:
            src = self.high(spec.fileno(), base)
        self.moves.append((src, target, desc))

    def high_step_fds(self, step: MountStep, base: int) -> MountStep:
        """``step`` with its fds replaced by close-on-exec copies above ``base``."""
        if step.fd < 0 and step.userns_fd < 0:
            return step
        return replace_fields(
            step, fd=self.high(step.fd, base) if step.fd >= 0 else -1,
            userns_fd=self.high(step.userns_fd, base) if step.userns_fd >= 0 else -1)

    def cleanup(self) -> None:
        fds, self.close_after = self.close_after, []
        for fd in fds:
            os.close(fd)


class SpawnPipes:
    """The report and sync pipes of one spawn; each fd is closed exactly once."""

    def __init__(self) -> None:
        self.err_r = self.err_w = self.sync_r = self.sync_w = -1

    def close(self, name: str) -> None:
        fd = self.take(name)
        if fd >= 0:
            os.close(fd)

    def take(self, name: str) -> int:
        """The fd ``name``, now the caller's to close (-1 here)."""
        fd: int = getattr(self, name)
        setattr(self, name, -1)
        return fd

    def close_all(self) -> None:
        for name in ("err_r", "err_w", "sync_r", "sync_w"):
            self.close(name)
