"""The leak guard itself: it must see what a careless test leaves behind, and only
that - not what other programs on the host do meanwhile (tests/leakguard.py).

The "foreign" programs here are real processes that are not this process's
children (double-forked, in their own session): a cgroup churner at the
hierarchies' roots, and mounters.  Each is bounded in count and time, stopped
through its stdin, confirmed gone through a pidfd, and removes what it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

import leakguard
import nsbind
from helpers import child_exit, private_mount_ns, run_forked
from nsbind import Cgroup, CgroupFd, CloneFlags, UmountFlags, spawn
from nsbind.cgroups import cgroup_layout, mount_v1, unmount_v1

REPO = pathlib.Path(__file__).resolve().parent.parent

# Runs the script argv[1] (with ARGS = argv[2:]) in a grandchild in its own
# session, so that it is not the caller's child: the launcher exits at once.
# The grandchild prints its pid, waits for "g" on stdin, then runs the script;
# the script stops when stdin reaches EOF (the caller closes its end).
_LAUNCHER = r"""
import os, sys
if os.fork() == 0:
    os.setsid()
    os.write(1, b"%d\n" % os.getpid())
    if os.read(0, 1) != b"g":
        os._exit(3)
    code = 0
    try:
        exec(compile(sys.argv[1], "<foreign>", "exec"),
             {"__name__": "__foreign__", "ARGS": sys.argv[2:]})
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    os._exit(code)
os._exit(0)
"""

# Makes <root>/nsbind-churn-<pid>-<n> in every root, keeps the last `window` of
# them and removes the older ones, one step per `interval`; at most `limit`
# steps and `seconds`; removes all it made when it stops.
_CHURN = r"""
import json, os, select, sys, time
roots, limit, seconds, interval, window = json.loads(ARGS[0])
tag = f"nsbind-churn-{os.getpid()}"
alive = []
n = 0
deadline = time.monotonic() + seconds

def remove(i):
    for root in roots:
        try:
            os.rmdir(os.path.join(root, f"{tag}-{i}"))
        except FileNotFoundError:
            pass

print("ready", flush=True)
try:
    while n < limit and time.monotonic() < deadline:
        alive.append(n)
        for root in roots:
            os.mkdir(os.path.join(root, f"{tag}-{n}"))
        n += 1
        while len(alive) > window:
            remove(alive.pop(0))
        if select.select([0], [], [], interval)[0]:
            break  # stdin: EOF, stop
finally:
    for i in alive:
        remove(i)
print(f"done {n}", flush=True)
"""

# Mounts a tmpfs on `target`, in the mount namespace at `ns` (a /proc/<pid>/ns/mnt)
# or, without one, in a private mount namespace of its own; or mounts a cgroup v1
# hierarchy of `cgroup` (comma-separated controllers) there.  Unmounts on stop.
_MOUNT = r"""
import ctypes, json, os, select
spec = json.loads(ARGS[0])
libc = ctypes.CDLL(None, use_errno=True)
def check(ret, what):
    if ret != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x20000, 0x4000, 1 << 18
if spec["ns"]:
    fd = os.open(spec["ns"], os.O_RDONLY)
    check(libc.setns(fd, CLONE_NEWNS), "setns")
    os.close(fd)
else:
    check(libc.unshare(CLONE_NEWNS), "unshare")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
target = spec["target"].encode()
if spec.get("cgroup"):
    check(libc.mount(b"cgroup", target, b"cgroup", 0, spec["cgroup"].encode()), "mount cgroup")
else:
    check(libc.mount(b"tmpfs", target, b"tmpfs", 0, None), "mount tmpfs")
print("ready", flush=True)
select.select([0], [], [], 120)
check(libc.umount2(target, 0), "umount")
print("done", flush=True)
"""


class Foreign:
    """A running foreign process (see _LAUNCHER); ``pid`` is pinned by ``pidfd``."""

    def __init__(self, script: str, *args: str) -> None:
        self._launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, script, *args],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE)
        assert self._launcher.stdin and self._launcher.stdout and self._launcher.stderr
        self._stdin, self._stdout = self._launcher.stdin, self._launcher.stdout
        self._stderr = self._launcher.stderr
        self.pidfd = -1
        self.pid = 0
        self.output = ""
        try:
            line = self._stdout.readline()
            self._launcher.wait(timeout=30)  # the launcher is our child: reaped here
            self.pid = int(line)
            self.pidfd = os.pidfd_open(self.pid)
            stat = leakguard._stat(self.pid)  # it is in its own session, and not ours
            assert stat is not None and stat[1] == self.pid and stat[0] != os.getpid(), stat
            self._stdin.write(b"g")
            self._stdin.flush()
            ready = self._stdout.readline()
            assert ready == b"ready\n", (ready, self._stderr.read().decode())
        except BaseException:
            self.stop()
            raise

    def signal(self, sig: int) -> None:
        signal.pidfd_send_signal(self.pidfd, sig)

    def state(self) -> str:
        with open(f"/proc/{self.pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]

    def stop(self, timeout: float = 30.0) -> str:
        """Ask it to stop (EOF on its stdin), wait until it is gone (SIGKILL after
        ``timeout``); return what it printed after "ready"."""
        if self._launcher.poll() is None:
            self._launcher.kill()
            self._launcher.wait()
        self._stdin.close()
        if self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGCONT)  # if it was paused
            if not select.select([self.pidfd], [], [], timeout)[0]:
                self.signal(signal.SIGKILL)
                select.select([self.pidfd], [], [], timeout)
            os.close(self.pidfd)
            self.pidfd = -1
        self.output = self._stdout.read().decode()
        errors = self._stderr.read().decode()
        self._stdout.close()
        self._stderr.close()
        assert not errors, errors
        return self.output


@contextlib.contextmanager
def foreign(script: str, *args: str) -> Iterator[Foreign]:
    proc = Foreign(script, *args)
    try:
        yield proc
    finally:
        proc.stop()


class Churner(Foreign):
    """Churns cgroups at ``roots`` (see _CHURN): at most 20000 steps and 240 s."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        super().__init__(_CHURN, json.dumps([roots, 20000, 240, 0.01, 4]))

    @property
    def tag(self) -> str:
        return f"nsbind-churn-{self.pid}"

    def made(self, root: str) -> set[str]:
        return {f"{root}/{n}" for n in os.listdir(root) if n.startswith(self.tag + "-")}

    def snapshot_with_new_cgroups(self, before: leakguard.Snapshot) -> leakguard.Snapshot:
        """A snapshot taken while the churner is paused with a cgroup in every root that
        ``before`` did not have."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.signal(signal.SIGSTOP)
            try:
                while self.state() != "T" and time.monotonic() < deadline:
                    time.sleep(0.001)
                if all(self.made(root) - before.cgroups for root in self.roots):
                    return leakguard.snapshot()
            finally:
                self.signal(signal.SIGCONT)
            time.sleep(0.02)
        raise AssertionError(f"the churner made no new cgroup in {self.roots} in 30 s")

    def stop(self, timeout: float = 30.0) -> str:
        out = super().stop(timeout)
        if self.pid:  # had it to be killed: the cgroups it left (named by its pid)
            for root in self.roots:
                for path in self.made(root):
                    os.rmdir(path)
        return out


@contextlib.contextmanager
def churner(roots: list[str]) -> Iterator[Churner]:
    proc = Churner(roots)
    try:
        yield proc
    finally:
        proc.stop()
    done = re.fullmatch(r"done (\d+)\n", proc.output)
    assert done and int(done.group(1)) > 0, proc.output
    for root in roots:
        assert not proc.made(root)


def churn_roots(cgroup2_root: str) -> list[str]:
    """The v2 root and the root of one v1 hierarchy with a controller (pids if any)."""
    v1 = sorted((h for h in cgroup_layout().hierarchies if h.version == 1 and h.controllers),
                key=lambda h: "pids" not in h.controllers)
    return [cgroup2_root, v1[0].mountpoint] if v1 else [cgroup2_root]


# ---------------------------------------------------------------- leaks it must see


def test_leak_guard_catches_a_leaked_mount_and_fd(tmp_path: pathlib.Path) -> None:
    before = leakguard.snapshot()
    nsbind.mount("tmpfs", tmp_path, "tmpfs")  # in the test process's own namespace
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        leaks = leakguard.diff(before, leakguard.snapshot())
        assert f"mount {tmp_path}" in " ".join(leaks)
        assert f"fd {fd} -> /dev/null" in leaks
    finally:
        os.close(fd)
        nsbind.umount2(tmp_path, UmountFlags.DETACH)
    assert leakguard.diff(before, leakguard.snapshot()) == []


@pytest.mark.unprivileged
def test_leak_guard_catches_a_leaked_child_and_cgroup(cgroup2_root: str,
                                                      cgroup_parent: str) -> None:
    before = leakguard.snapshot()
    pid, pidfd = nsbind.clone3(CloneFlags.PIDFD)
    if pid == 0:
        child_exit(signal.pause)
    assert pidfd is not None
    with CgroupFd.open(f"{cgroup2_root}/{cgroup_parent}") as parent:
        parent.mkdir("leakguard-probe").close()
        try:
            after = leakguard.snapshot()
            leaks = leakguard.diff(before, after)
            assert f"child process {pid}" in leaks
            assert f"cgroup {cgroup2_root}/{cgroup_parent}/leakguard-probe" in leaks
            assert any(leak.startswith("fd ") and "pidfd" in leak for leak in leaks)
            leakguard.reap_leaked_children(before, after)
            assert not os.path.exists(f"/proc/{pid}")
        finally:
            parent.rmdir("leakguard-probe")
            pidfd.close()
    assert leakguard.diff(before, leakguard.snapshot()) == []


def test_leak_guard_catches_a_changed_hostname() -> None:
    before = leakguard.snapshot()
    with nsbind.Namespaces(uts=True):  # what the guard reads is the thread's UTS namespace
        nsbind.sethostname("nsbind-leak-probe")
        leaks = leakguard.diff(before, leakguard.snapshot())
    assert any("hostname" in leak and "nsbind-leak-probe" in leak for leak in leaks)


def test_leak_guard_catches_links_addresses_nft_tables_and_forwarding() -> None:
    """The host's network: what nsbind and the tests name is a leak; another link is
    foreign; all of it gone, nothing is reported."""
    from nsbind.net import Bridge, add_address, delete_link
    from nsbind.net.nat import Nat, ip_forward, set_ip_forward

    ours, other = f"nsbt{os.getpid() % 10000}g", f"lg{os.getpid() % 100000}x"
    table = Nat(f"nsbind-test-{os.getpid()}-guard")
    forward = ip_forward()
    before = leakguard.snapshot()
    try:
        Bridge.create(ours)
        add_address(ours, "10.213.0.1/24")
        Bridge.create(other)
        table.add_network("guardnet", "10.213.0.0/24")
        set_ip_forward(not forward)
        found = leakguard.report(before, leakguard.snapshot())
        assert f"link {ours} left" in found.leaks
        assert f"address 10.213.0.1/24 added to {ours}" in found.leaks
        assert f"nftables table inet {table.table} left" in found.leaks
        assert any(leak.startswith("forwarding switches") for leak in found.leaks)
        assert f"link {other} left" in found.foreign
        mid = leakguard.snapshot()
        table.add_network("guardnet2", "10.214.0.0/24")
        assert f"nftables table inet {table.table} changed" in leakguard.diff(
            mid, leakguard.snapshot())
    finally:
        set_ip_forward(forward)
        table.delete_table()
        delete_link(ours, missing_ok=True)
        delete_link(other, missing_ok=True)
    assert leakguard.diff(before, leakguard.snapshot()) == []


# ---------------------------------------------------------------- the cgroup rule


RULE_RUN = leakguard.Run(4242, "nsbind-test-4242", "nsbind", ("/tmp/run-4242",))
RULE_TOPS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids", "/tmp/run-4242/v1")
RULE_OWN = ["/sys/fs/cgroup/pids/user.slice/me.scope"]


@pytest.mark.unprivileged
@pytest.mark.parametrize(("path", "ours"), [
    ("/sys/fs/cgroup/unified/nsbind-test-4242", True),  # the run's parent
    ("/sys/fs/cgroup/pids/nsbind-test-4242/span", True),
    ("/sys/fs/cgroup/unified/nsbind", True),  # nsbind's default parent
    ("/sys/fs/cgroup/unified/nsbind/job-1", True),
    ("/sys/fs/cgroup/unified/elsewhere/test-4242-test_x", True),  # the fixture's name
    ("/sys/fs/cgroup/unified/elsewhere/nsbind-test-4242", True),
    ("/tmp/run-4242/v1/anything", True),  # a hierarchy mounted on the run's dir
    ("/sys/fs/cgroup/pids/user.slice/me.scope/nsbind-sub", True),  # inside our own cgroup
    ("/sys/fs/cgroup/pids/user.slice/me.scope/session-9", False),
    ("/sys/fs/cgroup/unified/nsbind-churn-77-3", False),  # a sibling, prefix or not
    ("/sys/fs/cgroup/unified/nsbindx", False),
    ("/sys/fs/cgroup/unified/nsbind-test-4243", False),  # another run's parent
    ("/sys/fs/cgroup/unified/nsbind-test-4243/test-4243-test_x", False),
    ("/sys/fs/cgroup/unified/test-42424-x", False),  # another pid
    ("/sys/fs/cgroup/unified/system.slice/docker-1.scope", False),
    ("/sys/fs/cgroup/pids/user.slice/nsbind-x", False),  # not inside our own cgroup
    ("/elsewhere/nsbind", False),  # in no hierarchy
])
def test_which_cgroups_are_this_runs(path: str, ours: bool) -> None:
    assert leakguard.cgroup_is_ours(path, RULE_TOPS, RULE_RUN, RULE_OWN) is ours


# ---------------------------------------------------------------- foreign cgroups


def test_foreign_cgroup_churn_is_information_and_our_leftover_a_leak(
        cgroup2_root: str, cgroup_parent: str) -> None:
    roots = churn_roots(cgroup2_root)
    with churner(roots) as churn:
        before = leakguard.snapshot()
        assert churn.pid not in before.children
        with Cgroup.create("work", parent=cgroup_parent, pids_max=16) as cg:  # work of ours
            with spawn(["sh", "-c", "true"], cgroup=cg) as proc:
                assert proc.wait(timeout=60) == 0
        left = Cgroup.create("left-behind", parent=cgroup_parent)
        try:
            found = leakguard.report(before, churn.snapshot_with_new_cgroups(before))
            ours = sorted(f"cgroup {h.path_of(left.path)}" for h in left.layout.hierarchies
                          if h.version == 2 or h.controllers)
            assert [leak for leak in found.leaks if leak.startswith("cgroup ")] == ours
            assert not any(churn.tag in leak or "child process" in leak
                           for leak in found.leaks)
            for root in roots:
                assert any(line.startswith(f"cgroup {root}/{churn.tag}-")
                           for line in found.foreign), (root, found.foreign)
        finally:
            left.remove()
        assert leakguard.report(before, leakguard.snapshot()).leaks == []


@pytest.mark.slow
def test_cgroup_tests_pass_while_a_foreign_process_churns_cgroups(
        cgroup2_root: str, tmp_path: pathlib.Path) -> None:
    some = ("test_create_spans_every_hierarchy or test_freeze_thaw_and_kill or "
            "test_bad_limit_names_the_file or test_open_an_existing_cgroup or "
            "test_wait_until_empty")
    with churner(churn_roots(cgroup2_root)) as churn:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_cgroups.py", "-k", some, "-q",
             "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}",
             "-p", "no:vmfiles"],  # in a kernel-matrix guest: no file lines of its own
            cwd=REPO, capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert re.search(r"\b\d+ passed\b", run.stdout) and " failed" not in run.stdout, out
    assert "leaked" not in out
    assert "leak guard: host changes not made by this run (information)" in run.stdout, out
    assert churn.tag in run.stdout, out


# ---------------------------------------------------------------- mounts


def _mounts_seen(ours: str, theirs: str, outside: str) -> tuple[list[str], list[str]]:
    """In a private mount namespace (so nothing here reaches the host's): one foreign
    process mounts on ``theirs`` in a namespace of its own, another joins ours and
    mounts on ``outside``; this process mounts on ``ours`` and leaves it."""
    private_mount_ns()
    before = leakguard.snapshot()
    spec = {"ns": None, "target": theirs}
    with foreign(_MOUNT, json.dumps(spec)):
        spec = {"ns": f"/proc/{os.getpid()}/ns/mnt", "target": outside}
        with foreign(_MOUNT, json.dumps(spec)):
            nsbind.mount("tmpfs", ours, "tmpfs")
            try:
                found = leakguard.report(before, leakguard.snapshot())
            finally:
                nsbind.umount2(ours)
    return found.leaks, found.foreign


def test_foreign_mounts_are_information_and_ours_a_leak(tmp_path: pathlib.Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    outside = tempfile.mkdtemp(prefix="nsbind-leakguard-foreign-", dir="/tmp")
    try:
        assert not leakguard.current_run().owns_path(outside)
        leaks, foreign_ = run_forked(_mounts_seen, str(ours), str(theirs), outside)
    finally:
        os.rmdir(outside)
    assert [leak for leak in leaks if leak.startswith("mount ")] == [
        leak for leak in leaks if leak.startswith(f"mount {ours} (id ")]
    assert len([leak for leak in leaks if leak.startswith("mount ")]) == 1, leaks
    mounts = [line for line in foreign_ if line.startswith("mount ")]
    assert len(mounts) == 1 and mounts[0].startswith(f"mount {outside} (id "), foreign_
    assert not any(str(theirs) in line for line in leaks + foreign_)
    assert not any(leak.startswith("child process") for leak in leaks)


def _v1_hierarchy_seen(holder_target: str, ours: str, controllers: str) -> list[list[str]]:
    """The guard's verdicts on a v1 hierarchy held by a foreign process, then on one
    this process unmounts with a cgroup still in it (then cleaned up)."""
    private_mount_ns()
    verdicts = []
    before = leakguard.snapshot()
    spec = {"ns": None, "target": holder_target, "cgroup": controllers}
    with foreign(_MOUNT, json.dumps(spec)):
        found = leakguard.report(before, leakguard.snapshot())
        verdicts += [found.leaks, found.foreign]
    deadline = time.monotonic() + 10
    while leakguard.snapshot().hierarchies != before.hierarchies:  # destroyed asynchronously
        assert time.monotonic() < deadline, "the foreign hierarchy stayed"
        time.sleep(0.005)
    names = controllers.split(",")
    mount_v1(names, ours)
    os.mkdir(f"{ours}/{leakguard.current_run().cgroup_parent}-probe")
    nsbind.umount2(ours)  # the hierarchy lives on, unmounted, with the cgroup in it
    try:
        found = leakguard.report(before, leakguard.snapshot())
        verdicts += [found.leaks, found.foreign]
    finally:
        mount_v1(names, ours)  # the same controllers: the kernel gives back that hierarchy
        os.rmdir(f"{ours}/{leakguard.current_run().cgroup_parent}-probe")
        unmount_v1(ours, names)
    return verdicts


def test_a_foreign_v1_hierarchy_is_information_and_one_left_unmounted_a_leak(
        tmp_path: pathlib.Path) -> None:
    layout = cgroup_layout()
    if {"net_cls", "net_prio"} - layout.available:
        pytest.skip("this kernel has no net_cls/net_prio controllers")
    if {"net_cls", "net_prio"} & layout.controllers.keys():
        pytest.skip("net_cls/net_prio are mounted already on this host")
    if any(hid != "0" for controller, hid in leakguard.snapshot().hierarchies
           if controller in ("net_cls", "net_prio")):
        pytest.skip("net_cls/net_prio are bound to a hierarchy (mounted elsewhere)")
    with open("/proc/cmdline") as f:
        if "cgroup_no_v1=" in f.read():
            pytest.skip("this kernel mounts no cgroup v1 hierarchy (cgroup_no_v1)")
    outside = tempfile.mkdtemp(prefix="nsbind-leakguard-foreign-", dir="/tmp")
    ours = tmp_path / "v1"
    ours.mkdir()
    try:
        held_leaks, held_foreign, left_leaks, left_foreign = run_forked(
            _v1_hierarchy_seen, outside, str(ours), "net_cls,net_prio")
    finally:
        os.rmdir(outside)
    assert not any("hierarchy" in leak for leak in held_leaks), held_leaks
    assert any("hierarchy" in line and f"at {outside})" in line for line in held_foreign), \
        held_foreign
    assert any("hierarchy" in leak and "left after an unmount" in leak for leak in left_leaks), \
        left_leaks
    assert not any("hierarchy" in line for line in left_foreign), left_foreign


# ---------------------------------------------------------------- processes


@pytest.mark.unprivileged
def test_a_reparented_grandchild_and_a_foreign_process_are_not_ours() -> None:
    before = leakguard.snapshot()
    with foreign(_CHURN, json.dumps([[], 1, 60, 60, 0])) as other:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # our child: starts a grandchild and exits, which goes to init

            def start() -> None:
                grandchild = os.fork()
                if grandchild == 0:
                    os.execvp("sleep", ["sleep", "60"])
                os.write(wfd, b"%d" % grandchild)

            child_exit(start)
        os.close(wfd)
        grandchild = int(os.read(rfd, 32))
        os.close(rfd)
        os.waitpid(pid, 0)
        pidfd = os.pidfd_open(grandchild)
        try:
            after = leakguard.snapshot()
            found = leakguard.report(before, after)
            assert grandchild not in after.children and other.pid not in after.children
            assert not leakguard.is_our_child(grandchild)
            assert not leakguard.is_our_child(other.pid)
            assert not any(leak.startswith("child process") for leak in found.leaks)
            leakguard.reap_leaked_children(before, after)  # must not touch them
            assert os.path.exists(f"/proc/{grandchild}") and os.path.exists(f"/proc/{other.pid}")
        finally:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 30)
            os.close(pidfd)
