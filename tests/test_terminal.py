"""spawn(terminal=True): a new pty as the child's controlling terminal and stdio, its
master handed to the caller as Process.console (runc's process.terminal), and
/dev/console made safely inside a root (CVE-2025-52565)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
import select
import stat
import struct
import tempfile
import time
from collections.abc import Iterator

import pytest

from helpers import busybox_root
from nsbind import Namespaces, RootFS, SpawnError, mounts, spawn
from nsbind.process import Process
from nsbind.spawnstdio import PIPE

TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int): the pty's number, from the master
PTY_MAJOR = 136  # Unix98 pty peers (the first 256 of them)
NS = Namespaces(pid=True, mnt=True)
ENV = {"PATH": "/bin"}


def pty_number(master: int) -> int:
    return int(struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0])


def read_until_closed(master: int, timeout: float = 30) -> str:
    """Everything the child writes to its terminal, until every peer is closed (EIO),
    with the terminal's CRLF as LF."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            break
        if not data:
            break
        out += data
    return out.decode().replace("\r\n", "\n")


@contextlib.contextmanager
def finished(proc: Process) -> Iterator[Process]:
    """The process, killed and reaped if the test fails early; its console closed."""
    try:
        with proc:
            yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def tty_root(top: pathlib.Path) -> str:
    """A busybox root with tty and stty, and empty /dev and /proc directories."""
    root = busybox_root(top / "root")
    for applet in ("tty", "stty"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    os.mkdir(os.path.join(root, "dev"))
    os.mkdir(os.path.join(root, "proc"))
    return root


def session_and_tty(pid: int) -> tuple[int, int]:
    """(session id, controlling terminal's device number) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[3]), int(fields[4])


def test_terminal_in_a_root_is_its_own_pty_console_and_stdio(tmp_path: pathlib.Path) -> None:
    script = ("tty; stty size; ls -l /dev/console; stat -c %F:%t:%T /dev/console; "
              "stat -c %t:%T $(tty); echo pid:$$; read x; echo got:$x")
    with RootFS(tty_root(tmp_path)).add(mounts.proc(), mounts.dev()) as root, finished(spawn(
            ["/bin/sh", "-c", script], namespaces=NS, rootfs=root, env=ENV, terminal=True,
            console_size=(33, 101))) as proc:
        assert proc.console is not None
        master = proc.console.fileno()
        number = pty_number(master)
        assert number == 0  # the container's own devpts instance numbers from 0
        # a session of its own, the pty as its controlling terminal
        deadline = time.monotonic() + 10
        while session_and_tty(proc.pid)[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session_and_tty(proc.pid) == (proc.pid, os.makedev(PTY_MAJOR, number))
        os.write(master, b"hello\n")
        out = read_until_closed(master)
        assert proc.wait(timeout=30) == 0
    lines = out.splitlines()
    assert "hello" in lines  # the terminal echoes what it is given (whenever it came)
    lines.remove("hello")
    assert lines[0] == f"/dev/pts/{number}"
    assert lines[1] == "33 101"
    assert lines[2].startswith("c")  # ls -l: a character device
    peer = f"{PTY_MAJOR:x}:{number:x}"
    assert lines[3] == f"character special file:{peer}"  # /dev/console is that pty
    assert lines[4] == peer
    assert lines[5] == "pid:1"
    assert lines[6] == "got:hello"
    assert proc.console is not None and proc.console.closed  # the with block closed it


def test_the_child_gets_no_master_and_only_its_stdio(tmp_path: pathlib.Path) -> None:
    with RootFS(tty_root(tmp_path)).add(mounts.proc(), mounts.dev()) as root, finished(spawn(
            ["/bin/sh", "-c", "ls /proc/self/fd; cd /proc/self/fd; readlink 0; readlink 2"],
            namespaces=NS, rootfs=root, env=ENV, terminal=True)) as proc:
        assert proc.console is not None
        out = read_until_closed(proc.console.fileno())
        assert proc.wait(timeout=30) == 0
    fds, stdin, stderr = out.split("\n")[:3]
    assert set(fds.split()) <= {"0", "1", "2", "3"}  # 3: the directory ls lists
    assert stdin == stderr == "/dev/pts/0"


def test_cve_2025_52565_console_symlink_to_a_host_file_is_replaced_not_followed(
        tmp_path: pathlib.Path) -> None:
    host_file = tmp_path / "host-secret"
    host_file.write_bytes(b"untouched\n")
    os.chmod(host_file, 0o600)
    before = os.stat(host_file)
    root_dir = tty_root(tmp_path)
    os.mkdir(os.path.join(root_dir, "dev", "pts"))
    os.symlink("pts/ptmx", os.path.join(root_dir, "dev", "ptmx"))
    console = os.path.join(root_dir, "dev", "console")
    os.symlink(str(host_file), console)  # absolute: the host's file, seen from the host
    with RootFS(root_dir, defaults=False).add(mounts.devpts("/dev/pts")) as root, finished(
            spawn(["/bin/sh", "-c", "echo pwned > /dev/console; stat -c %F /dev/console"],
                  namespaces=NS, rootfs=root, env=ENV, terminal=True)) as proc:
        assert proc.console is not None
        out = read_until_closed(proc.console.fileno())
        assert proc.wait(timeout=30) == 0
    assert out.split("\n")[:2] == ["pwned", "character special file"]  # went to the pty
    after = os.stat(host_file)
    assert host_file.read_bytes() == b"untouched\n"
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns, after.st_ino) == (
        before.st_mode, before.st_uid, before.st_gid, before.st_mtime_ns, before.st_ino)
    # what the root has at /dev/console now is the fresh, empty file made for the mount
    st = os.lstat(console)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0


def test_dev_as_a_symlink_fails_naming_the_console_step(tmp_path: pathlib.Path) -> None:
    root_dir = tty_root(tmp_path)
    os.rmdir(os.path.join(root_dir, "dev"))
    real = os.path.join(root_dir, "realdev")
    os.makedirs(os.path.join(real, "pts"))
    os.symlink("pts/ptmx", os.path.join(real, "ptmx"))
    os.symlink("realdev", os.path.join(root_dir, "dev"))
    with RootFS(root_dir, defaults=False).add(mounts.devpts("/realdev/pts")) as root:
        with pytest.raises(SpawnError, match=r"open /dev \(a directory, not a symlink\): "
                                             r"(ENOTDIR|ELOOP)") as info:
            spawn(["/bin/true"], namespaces=NS, rootfs=root, env=ENV, terminal=True)
    assert info.value.step == "console"
    assert sorted(os.listdir(real)) == ["ptmx", "pts"]  # no console made through the link


def test_missing_dev_ptmx_names_the_terminal_step(tmp_path: pathlib.Path) -> None:
    with RootFS(tty_root(tmp_path), defaults=False) as root:
        with pytest.raises(SpawnError, match=r"open /dev/ptmx: ENOENT") as info:
            spawn(["/bin/true"], namespaces=NS, rootfs=root, env=ENV, terminal=True)
    assert info.value.step == "terminal"
    assert info.value.errno == errno.ENOENT


def test_master_is_there_while_the_start_gate_parks_the_child(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo, 0o600)
    gate = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    try:
        with RootFS(tty_root(tmp_path)).add(mounts.proc(), mounts.dev()) as root, finished(
                spawn(["/bin/sh", "-c", "read x; echo got:$x"], namespaces=NS, rootfs=root,
                      env=ENV, terminal=True, start_gate=gate)) as proc:
            assert proc.console is not None
            time.sleep(0.1)
            assert proc.poll() is None  # parked, not exec'd
            assert os.readlink(f"/proc/{proc.pid}/fd/0") == "/dev/pts/0"
            master = proc.console.fileno()
            os.write(master, b"early\n")  # typed before start: waits in the terminal
            reader = os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)  # start
            try:
                assert os.read(reader, 1) == b"0"
            finally:
                os.close(reader)
            out = read_until_closed(master)
            assert proc.wait(timeout=30) == 0
    finally:
        os.close(gate)
    assert "got:early" in out.split("\n")  # (the echo of "early" comes first)


def test_terminal_with_init_gives_the_command_the_pty(tmp_path: pathlib.Path) -> None:
    with RootFS(tty_root(tmp_path)).add(mounts.proc(), mounts.dev()) as root, finished(spawn(
            ["/bin/sh", "-c", "tty; echo pid:$$"], namespaces=NS, rootfs=root, env=ENV,
            terminal=True, init=True)) as proc:
        assert proc.console is not None
        out = read_until_closed(proc.console.fileno())
        assert proc.wait(timeout=30) == 0
    assert out.split("\n")[:2] == ["/dev/pts/0", "pid:2"]


def test_terminal_in_a_new_user_namespace() -> None:
    ns = Namespaces(user=True, pid=True, mnt=True, uid_map=[(0, 100000, 65536)],
                    gid_map=[(0, 100000, 65536)])
    with tempfile.TemporaryDirectory() as top:  # reachable by the mapped ids
        os.chmod(top, 0o755)
        with RootFS(tty_root(pathlib.Path(top))).add(
                mounts.proc(), mounts.dev(pts_gid=None)) as root, finished(spawn(
                ["/bin/sh", "-c", "tty; id -u; stat -c %t:%T /dev/console; stty size"],
                namespaces=ns, rootfs=root, env=ENV, terminal=True,
                console_size=(5, 6))) as proc:
            assert proc.console is not None
            out = read_until_closed(proc.console.fileno())
            assert proc.wait(timeout=30) == 0
    assert out.split("\n")[:4] == ["/dev/pts/0", "0", f"{PTY_MAJOR:x}:0", "5 6"]


@pytest.mark.unprivileged
def test_terminal_without_a_root_leaves_the_hosts_console_alone() -> None:
    before = os.lstat("/dev/console")
    with finished(spawn(["sh", "-c", "tty; stty size"], terminal=True,
                        console_size=(10, 20))) as proc:
        assert proc.console is not None
        out = read_until_closed(proc.console.fileno())
        assert proc.wait(timeout=30) == 0
    name, size = out.split("\n")[:2]
    assert name.startswith("/dev/pts/") and size == "10 20"
    after = os.lstat("/dev/console")
    assert (after.st_ino, after.st_rdev, after.st_mode) == (
        before.st_ino, before.st_rdev, before.st_mode)


@pytest.mark.unprivileged
def test_without_terminal_there_is_no_console() -> None:
    with spawn(["true"]) as proc:
        assert proc.console is None
    assert proc.returncode == 0


@pytest.mark.unprivileged
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"terminal": True, "stdout": PIPE}, "leave stdin, stdout and stderr None"),
    ({"terminal": True, "stdin": 0}, "leave stdin, stdout and stderr None"),
    ({"console_size": (24, 80)}, "console_size needs terminal=True"),
    ({"terminal": True, "process_group": 0}, "session leader"),
    ({"terminal": True, "console_size": (24, 70000)}, "0..65535"),
    ({"terminal": True, "console_size": (24,)}, "not \\(rows, columns\\)"),
])
def test_refused_terminal_combinations(kwargs: dict[str, object], message: str) -> None:
    children = os.listdir("/proc/self/task")
    with pytest.raises(ValueError, match=message):
        spawn(["true"], **kwargs)  # type: ignore[arg-type]
    assert os.listdir("/proc/self/task") == children
