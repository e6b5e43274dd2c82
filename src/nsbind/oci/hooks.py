"""OCI runtime-spec hooks (config.md "POSIX-platform Hooks"), run as runc runs them.

Each hook is a program on the host: ``path`` (absolute, checked to be an executable
regular file before it is run), ``args`` as its argv (``args[0]`` is argv[0]; without
args, argv is ``[path]``), exactly ``env`` as its environment (nothing inherited), the
container's state JSON on its stdin (a pipe, closed once written: a hook that does not
read it still runs), its stdout and stderr captured (the last :data:`OUTPUT_TAIL` bytes
of each kept, for the error message) and ``timeout`` seconds to finish, after which it
is killed with SIGKILL (its whole process group: each hook starts its own session) and
reaped.  Hooks of one phase run in order; the first that fails stops the rest and
raises :class:`HookError`.  What a failure means is the caller's policy (the spec: an
error for prestart, createRuntime, createContainer and startContainer; a warning for
poststart and poststop).
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from nsbind import signals
from nsbind._sys.proc import pidfd_open
from nsbind.ctxlite import suppress
from nsbind.errors import InvalidValue, MessageError
from nsbind.oci.spec import Hook, Hooks

__all__ = ["OUTPUT_TAIL", "PHASES", "HookError", "phase_hooks", "phase_name", "run_hooks"]

#: how many bytes of a hook's stdout and of its stderr are kept
OUTPUT_TAIL = 4096
#: the phases by their config.json names, each with the field of :class:`Hooks`
PHASES: dict[str, str] = {
    "prestart": "prestart", "createRuntime": "create_runtime",
    "createContainer": "create_container", "startContainer": "start_container",
    "poststart": "poststart", "poststop": "poststop"}
_BY_FIELD = {fieldname: name for name, fieldname in PHASES.items()}
_LINE = 200  # characters of output quoted in a message


class HookError(MessageError, RuntimeError):
    """A hook that failed: not runnable, a non-zero exit, a signal, a timeout.

    The message is one line naming the phase, the index and the path, then what
    happened and the hook's last line of output: ``hooks.prestart[0] /usr/bin/x: exit
    status 3: no such device``.  Attributes: ``phase`` (config.json name), ``index``,
    ``path``, ``returncode`` (None unless the hook ran and was reaped; -N for signal
    N), ``stdout`` and ``stderr`` (the last :data:`OUTPUT_TAIL` bytes of each).
    """

    operation = "oci hooks"

    def __init__(self, message: str, err: int | None = None, *, phase: str = "",
                 index: int = -1, path: str = "", returncode: int | None = None,
                 stdout: bytes = b"", stderr: bytes = b"") -> None:
        super().__init__(message, err)
        self.phase = phase
        self.index = index
        self.path = path
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.what, self.errno, self.phase, self.index, self.path,
                           self.returncode, self.stdout, self.stderr))


def _rebuild(message: str, err: int, phase: str, index: int, path: str,
             returncode: int | None, stdout: bytes, stderr: bytes) -> HookError:
    return HookError(message, err, phase=phase, index=index, path=path,
                     returncode=returncode, stdout=stdout, stderr=stderr)


def phase_name(phase: str) -> str:
    """The config.json name of ``phase`` (given as that or as a :class:`Hooks` field)."""
    name = phase if phase in PHASES else _BY_FIELD.get(phase)
    if name is None:
        raise InvalidValue(f"hooks: {phase!r} is not a hook phase ({', '.join(PHASES)})")
    return name


def phase_hooks(hooks: Hooks | None, phase: str) -> tuple[Hook, ...]:
    """The hooks of ``phase`` in a spec's ``hooks`` (none when absent)."""
    found: tuple[Hook, ...] | None = getattr(hooks, PHASES[phase_name(phase)], None)
    return found or ()


def run_hooks(hooks: Sequence[Hook], phase: str, state: Mapping[str, Any], *,
              timeout_default: float | None = None, cwd: str | None = None,
              join_pid: int | None = None) -> None:
    """Run ``hooks`` of ``phase`` one after the other, each with the container ``state``
    (the runtime-spec state object) as JSON on its stdin; HookError for the first that
    fails.  A hook without ``timeout`` gets ``timeout_default`` seconds (None: no limit).
    ``cwd`` is the hooks' working directory (default: the caller's; runc runs them in
    the bundle directory).  With ``join_pid`` (createContainer, startContainer: "in the
    container namespace") each hook is opened here, in the runtime's namespaces, and
    run by :func:`nsbind.spawn` in every namespace of that process, exec'd through
    ``/proc/self/fd`` (the container's procfs: argv[0] is that path then; cwd is the
    container's root).
    """
    name = phase_name(phase)
    try:
        data = json.dumps(dict(state), separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"hooks.{name}: the state is not JSON: {exc}") from None
    if timeout_default is not None and not timeout_default > 0:
        raise InvalidValue(f"hooks.{name}: timeout_default {timeout_default} must be positive")
    for index, hook in enumerate(hooks):
        _Run(hook, name, index).run(data, timeout_default, cwd, join_pid)


class _Run:
    """One hook run: its checks, the process, and the errors that name it."""

    def __init__(self, hook: Hook, phase: str, index: int) -> None:
        self.hook = hook
        self.phase = phase
        self.index = index
        self.label = f"hooks.{phase}[{index}] {hook.path}"

    def fail(self, what: str, err: int, returncode: int | None = None,
             out: bytes = b"", errout: bytes = b"") -> HookError:
        return HookError(f"{self.label}: {what}", err, phase=self.phase, index=self.index,
                         path=self.hook.path, returncode=returncode, stdout=out,
                         stderr=errout)

    def check(self, timeout_default: float | None) -> tuple[list[str], dict[str, str],
                                                            float | None]:
        """argv, environment and timeout of the hook; HookError if it cannot run."""
        hook = self.hook
        if not os.path.isabs(hook.path):
            raise self.fail("path is not absolute", errno.EINVAL)
        try:
            mode = os.stat(hook.path).st_mode
        except OSError as exc:
            raise self.fail(f"cannot run it: {_errname(exc)}", exc.errno or errno.EIO) from None
        if not stat.S_ISREG(mode):
            raise self.fail("not a regular file", errno.EACCES)
        if not mode & 0o111:
            raise self.fail("not executable (no x permission bit)", errno.EACCES)
        env: dict[str, str] = {}
        for entry in hook.env or ():
            key, sep, value = entry.partition("=")
            if not sep or not key or "\0" in entry:
                raise self.fail(f"env entry {entry[:80]!r} is not KEY=value", errno.EINVAL)
            env[key] = value
        timeout: float | None = hook.timeout
        if timeout is None:
            timeout = timeout_default
        elif isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
            raise self.fail(f"timeout {timeout!r} must be a positive number of seconds",
                            errno.EINVAL)
        argv = list(hook.args) if hook.args else [hook.path]
        return argv, env, timeout

    def start(self, argv: list[str], env: dict[str, str], cwd: str | None,
              join_pid: int | None) -> Any:
        """The hook's process (a Popen, or an nsbind Process with the same calls)."""
        if join_pid is None:
            return subprocess.Popen(argv, executable=self.hook.path, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env, cwd=cwd, close_fds=True, start_new_session=True)
        from nsbind.namespaces import Namespaces
        from nsbind.process import PIPE, spawn

        fd = os.open(self.hook.path, os.O_PATH | os.O_CLOEXEC)
        try:
            return spawn([f"/proc/self/fd/{fd}", *argv[1:]], env=env, stdin=PIPE,
                         stdout=PIPE, stderr=PIPE, pass_fds=[fd], start_new_session=True,
                         namespaces=Namespaces.join(join_pid))
        finally:
            os.close(fd)

    def run(self, data: bytes, timeout_default: float | None, cwd: str | None,
            join_pid: int | None = None) -> None:
        argv, env, timeout = self.check(timeout_default)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            proc = self.start(argv, env, cwd, join_pid)
        except OSError as exc:
            raise self.fail(f"exec failed: {_errname(exc)}", exc.errno or errno.EIO) from None
        with proc:
            try:
                out, errout, timed_out = _talk(proc, data, deadline)
            finally:
                if proc.poll() is None:  # timed out, or an error here: never left running
                    _kill_group(proc)
        if timed_out:
            raise self.fail(f"timed out after {timeout:g} s", errno.ETIMEDOUT, proc.returncode,
                            out, errout)
        code = proc.returncode
        if code == 0:
            return
        what = (f"exit status {code}" if code > 0
                else f"killed by signal {-code} ({signals.describe(-code)})")
        line = _last_line(errout) or _last_line(out)
        raise self.fail(f"{what}: {line}" if line else what, errno.EIO, code, out, errout)


def _talk(proc: Any, data: bytes,
          deadline: float | None) -> tuple[bytes, bytes, bool]:
    """Write ``data`` to the hook's stdin (then close it), keep the tail of its stdout and
    stderr, until it exits or ``deadline`` passes: (stdout, stderr, timed out).

    The hook's exit (its pidfd), not EOF, ends the wait: a daemon it left holding its
    stdout does not keep the runtime waiting."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    tails = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    view = memoryview(data)
    stdin = proc.stdin.fileno()
    with pidfd_open(proc.pid) as pidfd, selectors.DefaultSelector() as sel:
        sel.register(pidfd.fileno(), selectors.EVENT_READ)
        for fd in tails:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        os.set_blocking(stdin, False)
        sel.register(stdin, selectors.EVENT_WRITE)
        exited = timed_out = False
        while not exited:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(left):
                if key.fd == pidfd.fileno():
                    exited = True
                elif key.fd == stdin:
                    try:
                        view = view[os.write(stdin, view[:65536]):]
                    except BrokenPipeError:  # the hook does not read its state
                        view = view[:0]
                    if not view:
                        sel.unregister(stdin)
                        proc.stdin.close()
                elif not _read(key.fd, tails[key.fd]):
                    sel.unregister(key.fd)
        for fd, tail in tails.items():
            if exited and fd in sel.get_map():
                _drain(fd, tail)
    return bytes(tails[proc.stdout.fileno()]), bytes(tails[proc.stderr.fileno()]), timed_out


def _read(fd: int, tail: bytearray) -> bool:
    """Read what ``fd`` has into ``tail`` (its last OUTPUT_TAIL bytes kept); False at EOF."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return True
    tail += chunk
    del tail[:-OUTPUT_TAIL]
    return bool(chunk)


def _drain(fd: int, tail: bytearray) -> None:
    """After the hook's exit: read what it wrote that is still in the pipe (a bounded
    amount: a process it left behind may go on writing)."""
    for _ in range(64):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            return
        tail += chunk
        del tail[:-OUTPUT_TAIL]


def _kill_group(proc: Any) -> None:
    """SIGKILL the hook's process group (its own session) and reap the hook."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signals.SIGKILL)
    proc.wait()


def _last_line(raw: bytes) -> str:
    lines = [ln for ln in raw.decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    line = "".join(c if c.isprintable() else "?" for c in lines[-1].strip())
    return line if len(line) <= _LINE else line[:_LINE] + "..."


def _errname(exc: OSError) -> str:
    err = exc.errno or 0
    return f"{errno.errorcode.get(err, f'errno {err}')} ({os.strerror(err)})"
