"""Rootless ``nsbind run``: the same commands as an unprivileged user the tests make,
with subordinate id ranges (newuidmap/newgidmap) and without (a single-id map).  The
user, its /etc/subuid and /etc/subgid lines and its files are removed afterwards
(the two files are restored byte for byte, or removed if they were not there).

Rootless networking (slirp4netns) needs a /dev/net/tun the user may open: Debian's is
mode 0666, some hosts' 0600.  Those tests run the user's commands in a private mount
namespace (made by root, one per command) where a tun node of the test's own, mode
0666, is bind-mounted over /dev/net/tun: the host's node stays as it is, and nothing is
mounted on the host."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import nsbind
from clients import build_rootfs, oci_archive, tar_rootfs
from nsbind import Namespaces, Process
from nsbind.net import configure, link_names, run_in, veth_pair
from testuser import delegated_cgroup, made_user, remove_cgroup_tree

SRC = str(pathlib.Path(__file__).resolve().parent.parent / "src")
PYTHON = "/usr/bin/python3"  # Debian's: the user cannot reach a python under /root
IMG = "localhost/busybox:test"
# In a mount namespace of its own ($1: the test's tun node): the node over /dev/net/tun
# (``dev`` again: a bind mount keeps its source's nodev), then the command (the rest).
TUN_SCRIPT = ('mount -n --bind "$1" /dev/net/tun && '
              'mount -n -o remount,bind,dev /dev/net/tun && shift && exec "$@"')

pytestmark = [
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is missing (passwd)"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is missing"),
    pytest.mark.skipif(not os.path.exists(PYTHON), reason=f"{PYTHON} is missing (python3)"),
]


class User:
    """An unprivileged user running ``nsbind`` (Debian's python3, this checkout)."""

    def __init__(self, name: str, home: pathlib.Path, tun: str | None = None,
                 procs: str | None = None) -> None:
        self.name, self.home, self.tun, self.procs = name, home, tun, procs
        self.uid = pwd.getpwnam(name).pw_uid

    def with_tun(self, node: str) -> User:
        """The same user, each command in a private mount namespace where ``node`` is
        /dev/net/tun (see :data:`TUN_SCRIPT`)."""
        return User(self.name, self.home, node, self.procs)

    def in_cgroup(self, procs: str) -> User:
        """The same user, each command started in the cgroup of ``procs`` (its
        cgroup.procs, written as root before the user's command runs)."""
        return User(self.name, self.home, self.tun, procs)

    def command(self, *args: str) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) of ``nsbind ARGS`` as this user."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.home),
               "PYTHONPATH": SRC, "XDG_DATA_HOME": str(self.home / "data"),
               "XDG_RUNTIME_DIR": str(self.home / "run")}
        argv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                PYTHON, "-m", "nsbind", *args]
        if self.tun is not None:
            argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                    TUN_SCRIPT, "sh", self.tun, *argv]
        if self.procs is not None:
            argv = ["/bin/sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "sh",
                    self.procs, *argv]
        return argv, env

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv, env = self.command(*args)
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=self.home)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args}: exit {proc.returncode}: {proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[pathlib.Path]:
    """A directory the test user can reach (pytest's own are root's, mode 0700)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="nsbind-rootless-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def archive(shared_dir: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("rootless-image")
    root = build_rootfs(base / "rootfs")
    out = oci_archive(tar_rootfs(root, str(base / "layer.tar")), str(shared_dir / "bb.tar"),
                      IMG)
    os.chmod(out, 0o644)
    return out


@pytest.fixture(params=["subids", "single"])
def user(request: pytest.FixtureRequest, shared_dir: pathlib.Path) -> Iterator[User]:
    name = f"nsbt{os.getpid() % 100000}"
    home = shared_dir / f"home-{request.param}-{len(list(shared_dir.iterdir()))}"
    with made_user(name, home, subids=request.param == "subids"):
        test_user = User(name, home)
        try:
            yield test_user
        finally:
            for record in _containers(test_user):  # what a failed test left, by nsbind
                test_user("rm", "-f", record["Id"], check=False)
    if home.exists():  # owned by the user's subordinate ids: removed as root
        shutil.rmtree(home)


def _containers(user: User) -> list[dict[str, Any]]:
    return list(json.loads(user("ps", "-a", "--format", "json").stdout))


def test_rootless_run_exec_logs_stop_rm(user: User, archive: str) -> None:
    out = user("run", "--rm", archive, "sh", "-c",
               "echo $$; id -u; touch /made && echo rw; stat -c %u /home/tester").stdout.split("\n")
    assert out[0] == "1" and out[1] == "0" and out[2] == "rw"
    subuid = pathlib.Path("/etc/subuid")
    if subuid.exists() and user.name in subuid.read_text():  # a range: owners kept
        assert out[3] == "1000"
    cid = user("run", "-d", "--name", "rl", IMG, "sh", "-c",
               "echo hello; exec sleep 60").stdout.strip()
    assert [r["State"] for r in _containers(user)] == ["running"]
    # the container's processes are the user's, in its own user namespace
    pid = json.loads(user("inspect", "rl").stdout)[0]["State"]["Pid"]
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{user.uid}" in status
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    assert user("exec", "rl", "sh", "-c", "id -u; exit 3", check=False).returncode == 3
    assert user("logs", "rl").stdout == "hello\n"
    user("stop", "-t", "1", "rl")
    assert _containers(user)[0]["Status"] == "Exited (137)"
    assert user("rm", "rl").stdout.strip() == "rl"
    assert _containers(user) == []
    storage = user.home / "data" / "nsbind" / "containers"
    assert not (storage / cid).exists()


def test_rootless_limits_are_refused_without_a_delegated_cgroup(user: User,
                                                                archive: str) -> None:
    proc = user("run", "--rm", "-m", "64m", archive, "true", check=False)
    assert proc.returncode == 125 and "delegated cgroup" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert _containers(user) == []
    assert list((user.home / "data" / "nsbind" / "containers").iterdir()) == []


def _cgroup_of(pid: int) -> str:
    """``pid``'s cgroup in the v2 hierarchy (its ``0::`` line)."""
    return _cgroup_line(pathlib.Path(f"/proc/{pid}/cgroup").read_text())[3:]


def _subdirs(cgroup: str) -> list[str]:
    return sorted(d for d in os.listdir(cgroup) if os.path.isdir(os.path.join(cgroup, d)))


def test_rootless_containers_live_in_the_users_delegated_cgroup(user: User,
                                                                archive: str) -> None:
    """In a cgroup v2 subtree delegated to the user (as systemd's Delegate=yes leaves
    one), its containers get cgroups of their own below it, ``<subtree>/nsbind/<id>``,
    with the limits a controller enabled there allows; a limit whose controller the
    subtree lacks (on a hybrid host, every v1 one) is refused naming it, and nothing is
    left: the container's cgroup and the ``nsbind`` parent go with the container."""
    from nsbind.cgroupcontrollers import usable_controllers
    from nsbind.cgroups import cgroup_layout

    layout = cgroup_layout()
    if layout.unified is None:
        pytest.skip("no cgroup v2 hierarchy: nothing can be delegated")
    on_v2 = {c for c in usable_controllers(layout) if layout.controllers[c].version == 2}
    with delegated_cgroup(user.uid, user.uid, "nsbind-rootless") as (subtree, procs):
        top = os.path.join(nsbind.cgroup2_mountpoint(), subtree)
        inside = user.in_cgroup(procs)
        doctor = {r["name"]: r for r in json.loads(inside("doctor", "--json",
                                                          check=False).stdout)}
        usable = doctor["cgroup controllers"]["detail"].split("; ")[0]
        assert ("memory" in usable) is ("memory" in on_v2), usable  # the subtree's, not the leaf's
        cid = inside("run", "-d", archive, "sleep", "60").stdout.strip()
        record = json.loads(inside("inspect", cid).stdout)[0]
        assert _cgroup_of(record["State"]["Pid"]) == f"/{subtree}/nsbind/{cid}"
        assert _subdirs(os.path.join(top, "nsbind")) == [cid]
        stats = inside("stats", "--no-stream", cid).stdout
        assert cid[:12] in stats
        inside("rm", "-f", cid)
        assert not os.path.exists(os.path.join(top, "nsbind"))
        limited = inside("run", "--rm", "-m", "64m", "--pids-limit", "33", archive, "cat",
                         "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", check=False)
        if {"memory", "pids"} <= on_v2:  # a pure-v2 host: the subtree has them
            assert limited.returncode == 0, limited.stderr
            assert limited.stdout.split() == [str(64 << 20), "33"]
        else:
            missing = sorted({"memory", "pids"} - on_v2)
            assert limited.returncode == 125 and limited.stderr.count("\n") == 1
            assert any(f"{c}" in limited.stderr for c in missing), limited.stderr
            assert "delegated" in limited.stderr or "not enabled" in limited.stderr
        assert _containers(inside) == []
        assert not os.path.exists(os.path.join(top, "nsbind"))
        assert _subdirs(top) == ["pytest"]


def _comm(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return "(gone)"


def _cgroup_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("0::"))


def test_rootless_exec_from_another_session_stays_in_its_cgroup(user: User,
                                                                archive: str) -> None:
    """A container started from one login session's delegated subtree and exec'd into
    from another's: the two meet only at the v2 root, which is root's, so the kernel
    refuses to move the process (EACCES).  As runc does for a rootless exec, the process
    then stays in its caller's cgroup and the command runs, as it does from a session
    whose cgroup is root's; from the first session it joins the container's cgroup."""
    from nsbind.cgroups import cgroup_layout

    if cgroup_layout().unified is None:
        pytest.skip("no cgroup v2 hierarchy: nothing can be delegated")
    with delegated_cgroup(user.uid, user.uid, "nsbind-session-a") as (sub_a, procs_a), \
            delegated_cgroup(user.uid, user.uid, "nsbind-session-b") as (sub_b, procs_b):
        first, second = user.in_cgroup(procs_a), user.in_cgroup(procs_b)
        cid = first("run", "-d", archive, "sleep", "60").stdout.strip()
        try:
            pid = json.loads(first("inspect", cid).stdout)[0]["State"]["Pid"]
            assert _cgroup_of(pid) == f"/{sub_a}/nsbind/{cid}"
            own = _cgroup_line(first("exec", cid, "cat", "/proc/self/cgroup").stdout)
            assert sub_b not in own and (own == "0::/" or cid in own), own
            # while it waits, the exec command is back in its own cgroup (the
            # container's limits are not charged for it); what it runs stays
            argv, env = first.command("exec", cid, "sleep", "30")
            waiting = subprocess.Popen(argv, env=env, cwd=user.home, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                container = os.path.join(nsbind.cgroup2_mountpoint(), sub_a, "nsbind", cid)
                deadline = time.monotonic() + 20
                while True:  # (the command moves in, spawns, moves out)
                    members = pathlib.Path(container, "cgroup.procs").read_text().split()
                    names = sorted(_comm(int(m)) for m in members)
                    if names == ["sleep", "sleep"] or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                assert names == ["sleep", "sleep"], names  # sleep 60 and 30, no nsbind
                assert str(waiting.pid) not in members
                assert _cgroup_of(waiting.pid) == f"/{sub_a}/pytest"
            finally:
                waiting.kill()  # the exec command this test started
                waiting.wait()
            other = second("exec", cid, "cat", "/proc/self/cgroup", check=False)
            assert other.returncode == 0, other.stderr
            assert _cgroup_line(other.stdout).endswith(f"/{sub_b}/pytest"), other.stdout
            # a session systemd did not delegate (its cgroup is root's): the same
            plain = os.path.join(nsbind.cgroup2_mountpoint(), f"nsbind-session-c-{os.getpid()}")
            os.mkdir(plain)
            try:
                third = user.in_cgroup(os.path.join(plain, "cgroup.procs"))
                out = third("exec", cid, "cat", "/proc/self/cgroup", check=False)
                assert out.returncode == 0, out.stderr
                assert _cgroup_line(out.stdout).endswith(os.path.basename(plain)), out.stdout
            finally:
                remove_cgroup_tree(plain)
        finally:
            first("rm", "-f", cid)
        assert _containers(first) == []


def test_rootless_host_root(user: User) -> None:
    out = user("run", "--rm", "--rootfs", "/", "--", "sh", "-c",
               "echo $$; id -u; touch /usr/x 2>/dev/null || echo ro").stdout.split()
    assert out == ["1", "0", "ro"]


# ------------------------------------------------------------------ rootless networking

needs_slirp = pytest.mark.skipif(shutil.which("slirp4netns") is None,
                                 reason="slirp4netns is missing (Debian package slirp4netns)")


def _tun_mounts() -> list[str]:
    """This mount namespace's mounts on /dev/net/tun or of a test's tun node, and
    libmount's utab lines naming either: there must be none, before and after."""
    lines = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
    with contextlib.suppress(FileNotFoundError):
        lines += pathlib.Path("/run/mount/utab").read_text().splitlines()
    return [line for line in lines if "/dev/net/tun" in line or "nsbind-tun-" in line]


@pytest.fixture(scope="module")
def tun_node() -> Iterator[str]:
    """A tun device node of the test's own (10:200, mode 0666 as Debian's) in a directory
    only root may enter; removed afterwards."""
    folder = tempfile.mkdtemp(prefix="nsbind-tun-")
    node = os.path.join(folder, "tun")
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(10, 200))
        os.chmod(node, 0o666)  # past the umask
        yield node
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def net_user(user: User, tun_node: str) -> Iterator[User]:
    """``user``, its commands seeing ``tun_node`` as /dev/net/tun; the host's node is
    the same afterwards, nothing is mounted here, and no slirp4netns of the user is left."""
    host_tun = os.stat("/dev/net/tun")
    assert _tun_mounts() == []
    yield user.with_tun(tun_node)
    after = os.stat("/dev/net/tun")
    assert (after.st_mode, after.st_rdev, after.st_uid) == \
        (host_tun.st_mode, host_tun.st_rdev, host_tun.st_uid)
    assert _tun_mounts() == []
    assert _wait_no_slirp(user) == []


def _slirps(user: User) -> list[int]:
    """The pids of ``user``'s slirp4netns processes (zombies included)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = pathlib.Path(f"/proc/{entry}/comm").read_text().strip()
            owner = os.stat(f"/proc/{entry}").st_uid
        except (FileNotFoundError, ProcessLookupError):
            continue
        if comm == "slirp4netns" and owner == user.uid:
            found.append(int(entry))
    return found


def _parent(pid: int) -> int:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(status.split("\nPPid:", 1)[1].split()[0])


def _wait_no_slirp(user: User, timeout: float = 10.0) -> list[int]:
    """``user``'s slirp4netns processes still there after ``timeout`` (it exits when its
    --exit-fd closes: just after the process holding it)."""
    deadline = time.monotonic() + timeout
    while (left := _slirps(user)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_publish_parsing_needs_no_netlink() -> None:
    """A rootless run's ``-p`` is parsed on a bare python3 (Debian's has no pyroute2):
    parsing it must not load the netlink modules."""
    code = ("import sys; from nsbind.net.nat import parse_publish; "
            "parse_publish('127.0.0.1:8080:80'); "
            "print(sorted(m for m in sys.modules "
            "if m.startswith(('pyroute2', 'nsbind.net.links'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": SRC}).stdout
    assert out == "[]\n"


@needs_slirp
def test_rootless_bridge_network_is_slirp4netns(net_user: User, archive: str) -> None:
    """``--network bridge`` as a user: slirp4netns's tap0, 10.0.2.100/24, the default
    route through 10.0.2.2 and its DNS forwarder; it is gone with the container."""
    out = net_user("run", "--rm", "--network", "bridge", archive, "sh", "-c",
                   "ip -4 addr show tap0; ip route; cat /etc/resolv.conf").stdout
    assert "inet 10.0.2.100/24" in out
    assert "default via 10.0.2.2 dev tap0" in out
    assert "nameserver 10.0.2.3" in out
    assert _wait_no_slirp(net_user) == []
    assert _containers(net_user) == []


@needs_slirp
def test_rootless_bridge_network_refused_without_a_tun_device(user: User,
                                                              archive: str) -> None:
    """Where the user may not open /dev/net/tun (this host's, if it is mode 0600), one
    line says so and nothing is left."""
    if os.stat("/dev/net/tun").st_mode & 0o006 == 0o006:
        pytest.skip("this host's /dev/net/tun is open to every user")
    proc = user("run", "--rm", "--network", "bridge", archive, "true", check=False)
    assert proc.returncode == 125 and "/dev/net/tun" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert _containers(user) == []
    assert _slirps(user) == []


def _http_get(port: int, timeout: float = 15.0) -> str:
    """The body of ``GET /`` from 127.0.0.1:``port``, retried until the server answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := conn.recv(4096):
                    answer += chunk
            if b"\r\n\r\n" in answer:
                return answer.split(b"\r\n\r\n", 1)[1].decode()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer on 127.0.0.1:{port}")
        time.sleep(0.1)


@needs_slirp
def test_rootless_published_port_is_forwarded_by_slirp4netns(net_user: User,
                                                             archive: str) -> None:
    """``-p 127.0.0.1:PORT:8080``: the host's 127.0.0.1:PORT reaches the container's
    httpd through slirp4netns (a child of the container's monitor); ``rm -f`` takes
    slirp4netns and the forward with it."""
    port = _free_port()
    cid = net_user("run", "-d", "--network", "bridge", "-p", f"127.0.0.1:{port}:8080",
                   archive,
                   "sh", "-c", "mkdir /www && echo slirp-forwarded > /www/index.html && "
                   "exec httpd -f -p 8080 -h /www").stdout.strip()
    assert _http_get(port) == "slirp-forwarded\n"
    info = json.loads(net_user("inspect", cid).stdout)[0]
    slirps = _slirps(net_user)
    assert len(slirps) == 1
    argv = pathlib.Path(f"/proc/{slirps[0]}/cmdline").read_bytes().split(b"\0")
    assert str(info["State"]["Pid"]).encode() in argv and b"--disable-host-loopback" in argv
    # the monitor's child, as the container is: it holds slirp4netns's --exit-fd
    assert _parent(slirps[0]) == _parent(int(info["State"]["Pid"])) != os.getpid()
    net_user("rm", "-f", cid)
    assert _containers(net_user) == []
    assert _wait_no_slirp(net_user) == []
    assert not os.path.exists(f"/proc/{slirps[0]}")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@contextlib.contextmanager
def _server_namespace(prefix: str) -> Iterator[tuple[Process, str]]:
    """A network namespace of the test's own (a sleeping process holds it), reached
    from the host's through a veth pair (``prefix``o, 10.231.90.1/30 here, .2 there);
    the pair and the process are gone afterwards."""
    proc = nsbind.spawn(["sleep", "300"], namespaces=Namespaces(net=True))
    try:
        with veth_pair(f"{prefix}o", "eth0", into=proc):
            configure(None, f"{prefix}o", ["10.231.90.1/30"], loopback=False)
            configure(proc, "eth0", ["10.231.90.2/30"])
            yield proc, "10.231.90.2"
    finally:
        proc.kill()
        proc.wait()
    assert f"{prefix}o" not in link_names()


@needs_slirp
def test_rootless_container_reaches_out_through_slirp4netns(net_user: User,
                                                            archive: str) -> None:
    """Outbound: the container connects to a server in a network namespace the test
    makes (slirp4netns opens the connection from the host's namespace, as the user);
    the host's loopback stays out of reach (--disable-host-loopback: 10.0.2.2 is not
    the host's 127.0.0.1)."""
    with _server_namespace(f"nsbt{os.getpid() % 10000}") as (proc, address), \
            run_in(proc, socket.socket, socket.AF_INET, socket.SOCK_STREAM) as server, \
            socket.socket() as loopback:
        server.bind((address, 0))
        server.listen(1)
        server.settimeout(30)
        port = server.getsockname()[1]
        loopback.bind(("127.0.0.1", 0))
        loopback.listen(1)
        loopback.settimeout(30)
        peers: dict[str, str] = {}  # greeting: the address of whoever got it
        done = threading.Event()

        def serve(listener: socket.socket, greeting: bytes) -> None:
            with contextlib.suppress(OSError):
                conn, peer = listener.accept()
                with conn:
                    if not done.is_set():  # not the wake-up below
                        peers[greeting.decode()] = peer[0]
                        conn.sendall(greeting)

        threads = [threading.Thread(target=serve, args=(server, b"hello from outside\n")),
                   threading.Thread(target=serve, args=(loopback, b"loopback\n"))]
        for thread in threads:
            thread.start()
        try:
            out = net_user("run", "--rm", "--network", "bridge", archive, "sh", "-c",
                           f"nc {address} {port} </dev/null; "
                           f"nc -w 3 10.0.2.2 {loopback.getsockname()[1]} </dev/null "
                           "2>/dev/null | grep -q loopback && echo loopback reached || "
                           "echo loopback refused"
                           ).stdout
        finally:
            done.set()
            for listener, thread in zip((server, loopback), threads, strict=True):
                if thread.is_alive():  # wake an accept still waiting
                    with contextlib.suppress(OSError):
                        socket.create_connection(listener.getsockname(), timeout=2).close()
                thread.join()
    assert out == "hello from outside\nloopback refused\n"
    # slirp4netns's socket, in the host's namespace; nothing reached the host's loopback
    assert peers == {"hello from outside\n": "10.231.90.1"}
