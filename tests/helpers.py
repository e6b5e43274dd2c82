"""Test helpers: run code in a forked child, private mount namespaces, free pids."""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import pickle
import stat
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import nsbind
from nsbind import CloneFlags, MountFlags

P = ParamSpec("P")
R = TypeVar("R")

#: how many times slower than a real machine the tests run: a guest of tests/vm.py is
#: plain emulation (TCG, about 10 times slower, more while the host is busy); a test
#: that makes a deadline short to finish quickly scales it by this
SLOWDOWN = 20.0 if os.environ.get("NSBIND_VM_GUEST") else 1.0


def run_forked(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` in a forked child; return its result or raise its failure here.

    Tests that change the process's own state (namespaces, mounts, capabilities,
    prctl) use this so that the test process stays as it was.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(rfd)
            try:
                reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
            except BaseException:
                reply = ("error", traceback.format_exc())
            try:
                data = pickle.dumps(reply)
            except Exception:
                data = pickle.dumps(("error", f"unpicklable result {reply!r}"))
            view = memoryview(data)
            while view:
                view = view[os.write(wfd, view):]
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as reader:
        while chunk := reader.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise AssertionError(f"forked child died without answering ({_describe(status)})")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        raise AssertionError(f"in the forked child:\n{value}")
    return value  # type: ignore[no-any-return]


def forked(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: the whole test body runs in a forked child (see run_forked)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_forked(fn, *args, **kwargs)

    return wrapper


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def private_mount_ns() -> None:
    """Enter a new mount namespace whose mounts do not propagate back to the host."""
    nsbind.unshare(CloneFlags.NEWNS)
    nsbind.mount(None, "/", None, MountFlags.REC | MountFlags.PRIVATE)


def mountinfo() -> list[list[str]]:
    """/proc/self/mountinfo, split into fields."""
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f]


def mount_at(path: str) -> list[str] | None:
    """The mountinfo fields of the top mount at ``path``, or None."""
    found = None
    for fields in mountinfo():
        if fields[4] == path:
            found = fields
    return found


def fstype_of(fields: list[str]) -> str:
    return fields[fields.index("-") + 1]


def free_pid() -> int:
    """A pid that no process uses right now (high in the range, so unlikely to be taken)."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    for candidate in range(pid_max - 1000, pid_max - 1):
        if not os.path.exists(f"/proc/{candidate}"):
            return candidate
    raise RuntimeError("no free pid found")


def drop_to_nobody() -> None:
    """Become uid/gid 65534 with no capabilities (in a forked child only).

    A caller that is not root (the unprivileged pass) already is such a user: it stays
    who it is (tests read their ids back rather than assume 65534), after a check
    that it has no effective capability either."""
    if os.geteuid() != 0:
        with open("/proc/self/status") as f:
            eff = next(line.split()[1] for line in f if line.startswith("CapEff:"))
        if int(eff, 16) != 0:
            raise RuntimeError(f"uid {os.geteuid()} has capabilities {eff}: not unprivileged")
        return
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def child_exit(fn: Callable[[], int | None]) -> NoReturn:
    """In a cloned child: run ``fn`` and _exit with its result (70 if it raised).

    A child must never return into pytest, whatever happens.
    """
    code = 70
    try:
        code = fn() or 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


BUSYBOX = "/usr/bin/busybox"  # Debian's busybox-static (scripts/test.sh installs it)
_APPLETS = ("sh", "cat", "ls", "stat", "echo", "id", "readlink", "touch", "mkdir", "grep",
            "pwd", "wc", "sleep", "find", "head", "hostname", "test", "mount", "awk", "rm")


def busybox_root(path: os.PathLike[str] | str) -> str:
    """Make ``path`` a tiny root filesystem: bin/busybox (static) and applet links."""
    import shutil

    if not os.path.exists(BUSYBOX):
        import pytest

        pytest.skip(f"{BUSYBOX} is missing (Debian package busybox-static)")
    bindir = os.path.join(path, "bin")
    os.makedirs(bindir, exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(bindir, "busybox"))
    for applet in _APPLETS:
        os.symlink("busybox", os.path.join(bindir, applet))
    return os.fspath(path)


def tree(root: str | pathlib.Path) -> dict[str, str]:
    """Every entry under ``root``: type, mode, owner, and content hash or link target."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            desc = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    desc += f" {st.st_size} {hashlib.sha256(f.read()).hexdigest()[:12]}"
            elif stat.S_ISLNK(st.st_mode):
                desc += f" -> {os.readlink(path)}"
            elif kind in (stat.S_IFCHR, stat.S_IFBLK):
                desc += f" {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            out[os.path.relpath(path, root)] = desc
    return out


PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper(on: bool) -> None:
    """Make this process a child subreaper (as conmon and containerd's shim are), or
    stop being one: orphaned descendants (a container's init once the runtime that
    made it exits) become its children."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def child_pids() -> set[int]:
    """This process's children (every thread's), from /proc."""
    import contextlib

    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError), open(
                f"/proc/self/task/{tid}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def reap_new_children(before: set[int]) -> None:
    """Kill and reap the children this process has now and did not have in ``before``
    (containers a test left as their subreaper): never the others (the suite's own
    helpers, a zygote)."""
    import contextlib
    import signal

    for pid in child_pids() - before:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def as_subreaper() -> Any:
    """A context manager: this process a child subreaper inside (see
    :func:`set_child_subreaper`), yielding the set of children it had before; at the
    end the children it gained are killed and reaped (:func:`reap_new_children`)."""
    import contextlib

    @contextlib.contextmanager
    def manager() -> Any:
        before = child_pids()
        set_child_subreaper(True)
        try:
            yield before
        finally:
            try:
                reap_new_children(before)
            finally:
                set_child_subreaper(False)

    return manager()


def make_layers(base: pathlib.Path, count: int, name: str = "l{i:03d}") -> list[pathlib.Path]:
    """``count`` overlay layer directories under ``base`` (top layer first), layer i
    holding ``f<i>`` and a ``shared`` file that says which layer it is; then ``upper``,
    ``work`` and ``merged`` beside them."""
    lower = []
    for i in range(count):
        layer = base / name.format(i=i)
        layer.mkdir()
        (layer / f"f{i}").write_text(str(i))
        (layer / "shared").write_text(f"layer {i}")
        lower.append(layer)
    for d in ("upper", "work", "merged"):
        (base / d).mkdir()
    return lower


#: a limit on each controller that Cgroup.create takes, to see it refused where unusable
_CONTROLLER_LIMITS: dict[str, dict[str, Any]] = {
    "memory": {"memory_max": "64M"}, "cpuset": {"cpuset_cpus": "0"},
    "pids": {"pids_max": 64}, "cpu": {"cpu_weight": 100}}


def require_controllers(parent: str, *controllers: str) -> None:
    """Skip, naming why, unless every one of ``controllers`` is usable in the cgroups
    nsbind makes (:func:`nsbind.cgroups.usable_controllers`: on a v1 hierarchy, or
    enabled below the v2 root).  Before skipping, a limit on a missing one must be
    refused with the error that says why, and nothing be made."""
    from nsbind.cgroups import Cgroup, cgroup_layout, usable_controllers

    missing = [c for c in controllers if c not in usable_controllers()]
    if not missing:
        return
    import pytest

    reasons = []
    for c in missing:
        limits = _CONTROLLER_LIMITS.get(c)
        if limits is None:
            reasons.append(f"no {c} controller usable here")
            continue
        with pytest.raises(LookupError, match=rf"{c}") as refused:
            Cgroup.create("nsbind-refused", parent=parent, **limits).remove()
        for h in cgroup_layout().hierarchies:
            assert not os.path.exists(h.path_of(f"/{parent}/nsbind-refused"))
        reasons.append(str(refused.value))
    pytest.skip("; ".join(reasons))


def argparse_reading(parser: Callable[[list[str]], Any], argv: list[str]) -> dict[str, Any] | str:
    """What the argparse parser ``parser(argv)`` reads from ``argv`` (its namespace as a
    dict), or how it refused it (``exit N``): what a fast command-line reader must match."""
    try:
        return dict(vars(parser(list(argv)).parse_args(list(argv))))
    except SystemExit as exc:
        return f"exit {exc.code}"
