"""spawn(): the C engine on the real kernel — namespaces, steps, failures, stdio, waiting."""

from __future__ import annotations

import asyncio
import os
import pathlib
import resource
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import nsbind
from helpers import forked
from nsbind import (
    PIPE,
    STDOUT,
    Capability,
    CapabilitySets,
    CgroupFd,
    MountFlags,
    MountStep,
    Namespaces,
    PidFd,
    SpawnError,
    mounts,
    spawn,
)
from nsbind._native import lib
from nsbind.namespaces import current

ALL_BUT_USER = Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True, cgroup=True)


def _run(args: list[str], **kwargs: object) -> tuple[str, int]:
    with spawn(args, stdout=PIPE, **kwargs) as proc:  # type: ignore[arg-type]
        out, _ = proc.communicate(timeout=30)
    assert out is not None and proc.returncode is not None
    return out.decode(), proc.returncode


def _status_field(text: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith(name + ":"))


def _usr_root(tmp_path: pathlib.Path, *dirs: str) -> pathlib.Path:
    """A root directory to bind the host's /usr into: usr/, proc/, ``dirs``, and the
    merged-/usr symlinks (bin, lib, lib64, sbin) as the host has them."""
    root = tmp_path / "root"
    for d in ("usr", "proc", *dirs):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            os.symlink(os.readlink(f"/{link}"), root / link)
    return root


# ---------------------------------------------------------------- the plan cache


def test_repeated_spawns_reuse_their_plan_and_still_see_changed_arguments(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A spawn repeated with the same arguments copies the C plan of the last one; any
    change (the env dict mutated in place, os.environ, a list argument) makes a new plan."""
    from nsbind.plancache import plans

    ns = Namespaces(uts=True, pid=True)
    script = ["/bin/sh", "-c", "echo $X $Y $(hostname) $(ulimit -n)"]
    env = {"X": "1", "PATH": "/usr/bin:/bin"}
    limits = {resource.RLIMIT_NOFILE: (100, 100)}
    plans.plans.clear()
    plans.seen.clear()

    def twice(**kwargs: object) -> str:  # the second spawn keeps its plan
        first = _run(script, namespaces=ns, **kwargs)
        assert _run(script, namespaces=ns, **kwargs) == first and first[1] == 0
        return first[0]

    assert twice(env=env, hostname="a", rlimits=limits) == "1 a 100\n"
    assert len(plans.plans) == 1
    assert _run(script, env=env, namespaces=ns, hostname="a", rlimits=limits) == ("1 a 100\n", 0)
    assert len(plans.plans) == 1  # the same plan again
    same = Namespaces(uts=True, pid=True)  # an equal request: equal namespaces, new object
    assert _run(script, env=dict(env), namespaces=same, hostname="a",
                rlimits=dict(limits)) == ("1 a 100\n", 0)
    assert len(plans.plans) == 1
    env["X"] = "2"
    limits[resource.RLIMIT_NOFILE] = (90, 90)
    assert twice(env=env, hostname="b", rlimits=limits) == "2 b 90\n"
    monkeypatch.setenv("Y", "from-environ")  # env=None: the caller's environment
    assert "from-environ b" in twice(hostname="b")
    monkeypatch.setenv("Y", "changed")
    out = twice(hostname="b")
    assert "changed" in out and "from-environ" not in out
    assert len(plans.plans) == 4
    # inherited stdio: a repeat starts from the whole plan; failures still name the step
    for _ in range(3):
        with pytest.raises(SpawnError, match=r"^exec /nonexistent/x: ENOENT"):
            spawn(["/nonexistent/x"], env={}, namespaces=ns)
        with spawn(["/bin/sh", "-c", "exit 7"], env={}, namespaces=ns) as proc:
            assert proc.wait() == 7
    assert sum(p.ready is not None for p in plans.plans.values()) == 2  # the last two


# ---------------------------------------------------------------- namespaces


def test_fresh_namespaces_pid_1_hostname_and_only_lo() -> None:
    out, code = _run(["/bin/sh", "-c", "echo $$; hostname; cat /proc/self/net/dev | wc -l; "
                      "readlink /proc/self/ns/net /proc/self/ns/mnt"],
                     namespaces=ALL_BUT_USER, hostname="box")
    assert code == 0
    pid, hostname, devlines, net, mnt = out.split()
    assert (pid, hostname, devlines) == ("1", "box", "3")  # 2 header lines + lo
    assert net != os.readlink("/proc/self/ns/net") and mnt != os.readlink("/proc/self/ns/mnt")
    assert os.uname().nodename != "box"


def test_user_namespace_maps_written_by_the_parent_root_inside() -> None:
    out, code = _run(["sh", "-c", "echo $$ $(id -u) $(id -g); cat /proc/self/uid_map"],
                     namespaces=Namespaces(user=True, pid=True, uid_map=[(0, 100000, 65536)],
                                           gid_map=[(0, 100000, 65536)]))
    assert code == 0
    assert out.split() == ["1", "0", "0", "0", "100000", "65536"]


def test_time_namespace_uses_the_copy_on_write_child() -> None:
    out, code = _run(["readlink", "/proc/self/ns/time"], namespaces=Namespaces(time=True))
    assert code == 0 and out.strip() != os.readlink("/proc/self/ns/time")


def test_new_mount_namespace_is_private_and_mounts_stay_inside(tmp_path: pathlib.Path) -> None:
    out, code = _run(["sh", "-c", f"grep -c ' {tmp_path} ' /proc/self/mountinfo"],
                     namespaces=Namespaces(mnt=True),
                     mounts=[MountStep("tmpfs", str(tmp_path), "tmpfs", MountFlags.NOSUID)])
    assert (out.strip(), code) == ("1", 0)
    with open("/proc/self/mountinfo") as f:
        assert f" {tmp_path} " not in f.read()


@pytest.mark.unprivileged
def test_spawned_inside_a_cgroup(test_cgroup: CgroupFd) -> None:
    out, code = _run(["cat", "/proc/self/cgroup"], cgroup=test_cgroup)
    rel = "/" + os.path.relpath(test_cgroup.path, nsbind.cgroup2_mountpoint())
    assert code == 0 and f"0::{rel}\n" in out


def test_pivot_root_into_a_bind_assembled_root(tmp_path: pathlib.Path) -> None:
    root = _usr_root(tmp_path, "etc")
    (root / "etc" / "marker").write_text("inside\n")
    ro = MountFlags.BIND | MountFlags.REMOUNT | MountFlags.RDONLY
    out, code = _run(
        ["/bin/sh", "-c", "ls /; cat /etc/marker; echo $$; ls /proc | grep -c '^[0-9]'"],
        namespaces=Namespaces(mnt=True, pid=True),
        mounts=[MountStep(str(root), str(root), None, MountFlags.BIND),
                MountStep("/usr", str(root / "usr"), None, MountFlags.BIND | MountFlags.REC),
                MountStep(None, str(root / "usr"), None, ro),
                MountStep("proc", str(root / "proc"), "proc",
                          MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC)],
        pivot_root=str(root), cwd="/")
    assert code == 0, out
    lines = out.split()
    assert "etc" in lines and "usr" in lines and "tmp" not in lines and "home" not in lines
    assert lines[-3:-1] == ["inside", "1"]
    assert int(lines[-1]) <= 4  # the fresh /proc shows this pid namespace only: sh, ls, grep


# ---------------------------------------------------------------- the steps


def test_ids_rlimits_umask_no_new_privs_and_capabilities() -> None:
    script = ("id -u; id -g; id -G; ulimit -n; umask; cat /proc/self/status")
    keep = frozenset({Capability.NET_BIND_SERVICE})
    out, code = _run(["sh", "-c", script], uid=65534, gid=65534, groups=[65534],
                     rlimits={resource.RLIMIT_NOFILE: (64, 64)}, umask=0o027, no_new_privs=True,
                     capabilities=CapabilitySets(permitted=keep, ambient=keep))
    assert code == 0
    lines = out.splitlines()
    assert lines[:5] == ["65534", "65534", "65534", "64", "0027"]
    status = "\n".join(lines[5:])
    assert _status_field(status, "NoNewPrivs") == "1"
    bit = f"{1 << Capability.NET_BIND_SERVICE:016x}"
    assert _status_field(status, "CapBnd") == bit
    assert _status_field(status, "CapAmb") == bit
    assert _status_field(status, "CapEff") == bit  # ambient: effective after exec as non-root


@pytest.mark.unprivileged
def test_new_session_and_parent_death_signal() -> None:
    out, code = _run(["sh", "-c", "ps -o sid= -p $$ 2>/dev/null || cut -d' ' -f6 /proc/$$/stat;"
                      " echo $$"], start_new_session=True, pdeathsig=signal.SIGKILL)
    sid, pid = out.split()[-2:]
    assert code == 0 and sid == pid


@pytest.mark.unprivileged
def test_exit_status_and_signal_returncode() -> None:
    assert _run(["sh", "-c", "exit 3"])[1] == 3
    assert _run(["sh", "-c", "kill -TERM $$"])[1] == -signal.SIGTERM


# ---------------------------------------------------------------- failures name the step


WITHOUT_ROOT = pytest.mark.unprivileged  # the steps that fail alike without root


@pytest.mark.parametrize(
    ("kwargs", "message", "exc_type"),
    [
        pytest.param({"args": ["/bin/nosuch"]}, r"^exec /bin/nosuch: ENOENT", FileNotFoundError,
                     marks=WITHOUT_ROOT),
        pytest.param({"args": ["nsbind-no-such-program"], "env": {"PATH": "/usr/bin:/bin"}},
                     r"^exec /bin/nsbind-no-such-program: ENOENT", FileNotFoundError,
                     marks=WITHOUT_ROOT),
        pytest.param({"args": ["true"], "cwd": "/nonexistent"}, r"^chdir /nonexistent: ENOENT",
                     FileNotFoundError, marks=WITHOUT_ROOT),
        ({"args": ["true"], "namespaces": Namespaces(mnt=True),
          "mounts": [MountStep("proc", "/nonexistent/proc", "proc")]},
         r"^mount proc on /nonexistent/proc: ENOENT", FileNotFoundError),
        pytest.param({"args": ["true"], "rlimits": {resource.RLIMIT_NOFILE: (2**40, 2**40)}},
                     r"^setrlimit RLIMIT_NOFILE \d+:\d+: EPERM", PermissionError,
                     marks=WITHOUT_ROOT),
        ({"args": ["true"], "namespaces": Namespaces(mnt=True), "pivot_root": "/nonexistent"},
         r"^enter the new root /nonexistent: ENOENT", FileNotFoundError),
        ({"args": ["true"], "capabilities": CapabilitySets(
            permitted=frozenset(), ambient=frozenset({Capability.NET_ADMIN}),
            bounding=frozenset({Capability.NET_ADMIN}))},
         r"^raise ambient CAP_NET_ADMIN: EPERM", PermissionError),
    ],
    ids=["missing-binary", "missing-on-path", "bad-cwd", "failing-mount",
         "rlimit-above-nr_open", "missing-new-root", "ambient-not-permitted"],
)
def test_step_failures_name_the_step(kwargs: dict[str, object], message: str,
                                     exc_type: type[BaseException]) -> None:
    with pytest.raises(SpawnError, match=message) as info:
        spawn(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, exc_type)


@pytest.mark.unprivileged
def test_bad_cgroup_fd_fails_in_clone3(tmp_path: pathlib.Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(SpawnError, match=r"^clone3 .*into cgroup fd \d+: E"):
            spawn(["true"], cgroup=fd)
    finally:
        os.close(fd)


@pytest.mark.unprivileged
def test_hostname_without_a_uts_namespace_is_refused() -> None:
    with pytest.raises(ValueError, match="need a new UTS namespace"):
        spawn(["true"], hostname="would-rename-the-host")


def test_failed_hostname_in_uts_namespace_leaves_host_alone() -> None:
    before = os.uname().nodename
    with pytest.raises(SpawnError, match=r"^sethostname"):
        spawn(["true"], namespaces=Namespaces(uts=True), hostname="x" * 100)
    assert os.uname().nodename == before and current()


# ---------------------------------------------------------------- stdio and fds


@pytest.mark.unprivileged
def test_stdin_stdout_stderr_pipes_and_stdout_merge() -> None:
    with spawn(["sh", "-c", "cat; echo err >&2"], stdin=PIPE, stdout=PIPE, stderr=PIPE) as proc:
        out, err = proc.communicate(b"hello", timeout=30)
    assert (out, err, proc.returncode) == (b"hello", b"err\n", 0)
    with spawn(["sh", "-c", "echo out; echo err >&2"], stdout=PIPE, stderr=STDOUT) as proc:
        out, err = proc.communicate(timeout=30)
    assert (out, err) == (b"out\nerr\n", None)


@pytest.mark.unprivileged
def test_file_objects_devnull_and_pass_fds(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out"
    r, w = os.pipe()
    try:
        script = f"echo to-file; echo passed > /proc/self/fd/{w}"
        with open(target, "wb") as f, spawn(["sh", "-c", script], stdin=nsbind.DEVNULL,
                                            stdout=f, pass_fds=[w]) as proc:
            assert proc.wait(timeout=30) == 0
        assert target.read_text() == "to-file\n"
        assert os.read(r, 100) == b"passed\n"
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.unprivileged
def test_child_gets_exactly_the_fds_it_was_given() -> None:
    with tempfile.TemporaryFile() as leaky:
        os.set_inheritable(leaky.fileno(), True)  # even an inheritable fd does not leak
        out, code = _run(["sh", "-c", "ls /proc/$$/fd"])
    assert code == 0
    assert sorted(int(x) for x in out.split()) == [0, 1, 2, 255] or \
        sorted(int(x) for x in out.split()) == [0, 1, 2]


def test_cwd_of_the_host_does_not_leak_through_pivot_root(tmp_path: pathlib.Path) -> None:
    # After pivot_root the child's cwd is "/" of the new root, not the host's cwd.
    root = _usr_root(tmp_path)
    out, code = _run(["/bin/sh", "-c", "pwd; cd ..; pwd; ls"],
                     namespaces=Namespaces(mnt=True),
                     mounts=[MountStep(str(root), str(root), None, MountFlags.BIND),
                             MountStep("/usr", str(root / "usr"), None, MountFlags.BIND)],
                     pivot_root=str(root))
    assert code == 0
    assert out.split() == ["/", "/", *sorted(os.listdir(root))]  # the new root, nothing else


# ---------------------------------------------------------------- waiting


@pytest.mark.unprivileged
def test_wait_timeout_poll_and_kill() -> None:
    proc = spawn(["sleep", "60"])
    try:
        assert proc.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
        proc.kill()
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.kill()  # reaped: a no-op, never a recycled pid
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


@pytest.mark.unprivileged
def test_context_manager_kills_on_exception() -> None:
    with pytest.raises(KeyError), spawn(["sleep", "60"]) as proc:
        raise KeyError("boom")
    assert proc.returncode == -signal.SIGKILL


def test_200_concurrent_spawns_from_asyncio() -> None:
    async def one(i: int) -> int:
        proc = spawn(["sh", "-c", f"exit {i % 7}"], namespaces=Namespaces(uts=True))
        return await proc.wait_async()

    async def main() -> list[int]:
        return await asyncio.gather(*(one(i) for i in range(200)))

    assert asyncio.run(main()) == [i % 7 for i in range(200)]


# ---------------------------------------------------------------- init and rootless


def test_init_forwards_signals_and_exits_with_the_commands_status() -> None:
    out, code = _run(["sh", "-c", "echo $$; exit 5"], namespaces=Namespaces(pid=True), init=True)
    assert (out.strip(), code) == ("2", 5)  # the command is PID 2 under our init
    with spawn(["sh", "-c", "trap 'echo got TERM; exit 9' TERM; echo ready; "
                "while :; do sleep 0.01; done"],
               namespaces=Namespaces(pid=True), init=True, stdout=PIPE) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.terminate()
        out_b, _ = proc.communicate(timeout=30)
    assert (out_b, proc.returncode) == (b"got TERM\n", 9)


def test_init_reaps_orphans() -> None:
    script = ("(sh -c 'sleep 0.1' &); sleep 0.5; "
              "for s in /proc/[0-9]*/stat; do cut -d' ' -f3 $s; done")
    out, code = _run(["sh", "-c", script], namespaces=Namespaces(pid=True, mnt=True), init=True,
                     mounts=[MountStep("proc", "/proc", "proc")])
    assert code == 0
    assert "Z" not in out.split()  # the orphaned sleep was reaped by init


def test_init_exit_by_signal_is_128_plus_n() -> None:
    _, code = _run(["sh", "-c", "kill -USR1 $$"], namespaces=Namespaces(pid=True), init=True)
    assert code == 128 + signal.SIGUSR1


def _rootless_spawn() -> tuple[str, int]:
    from helpers import drop_to_nobody

    drop_to_nobody()
    nsbind.set_dumpable(True)  # as a login user is
    out, code = _run(["sh", "-c", "id -u; cat /proc/self/uid_map; cat /proc/self/setgroups"],
                     namespaces=Namespaces(user=True, net=True, uts=True, pid=True),
                     hostname="rootless")
    assert code == 0
    return out, os.getuid()  # 65534, or the unprivileged pass's own user


@pytest.mark.unprivileged
def test_rootless_spawn_with_a_user_namespace() -> None:
    from helpers import run_forked

    out, uid = run_forked(_rootless_spawn)
    assert out.split() == ["0", "0", str(uid), "1", "deny"]


def test_cve_2024_21626_leaked_fd_as_cwd_stays_confined(tmp_path: pathlib.Path) -> None:
    """No parent fd (here: a host directory fd, as runc leaked) survives to the chdir:
    cwd=/proc/self/fd/N fails for every N in 3..64, inside a pivot_root'ed container."""
    root = _usr_root(tmp_path)
    host_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # inheritable: the bait a leak would be
    os.set_inheritable(host_dir, True)
    steps = [MountStep(str(root), str(root), None, MountFlags.BIND),
              MountStep("/usr", str(root / "usr"), None, MountFlags.BIND),
              MountStep("proc", str(root / "proc"), "proc")]
    try:
        for n in range(3, 65):
            with pytest.raises(SpawnError, match=rf"^chdir /proc/self/fd/{n}: E"):
                spawn(["/bin/true"], namespaces=Namespaces(mnt=True, pid=True), mounts=steps,
                      pivot_root=str(root), cwd=f"/proc/self/fd/{n}")
    finally:
        os.close(host_dir)
    out, code = _run(["sh", "-c", "ls /proc/self/fd"], namespaces=Namespaces(mnt=True, pid=True),
                     mounts=steps, pivot_root=str(root))
    assert code == 0 and sorted(int(x) for x in out.split()) == [0, 1, 2, 3]  # 3: ls's own


@forked
def test_cve_2022_24769_inheritable_and_ambient_empty_unless_asked() -> None:
    # a parent with an inheritable and an ambient capability
    caps = nsbind.capget()
    nsbind.capset(nsbind.Capabilities(caps.effective, caps.permitted,
                                      frozenset({Capability.NET_RAW})))
    nsbind.prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_RAISE, Capability.NET_RAW)
    out, code = _run(["cat", "/proc/self/status"], namespaces=Namespaces(pid=True))
    assert code == 0
    assert _status_field(out, "CapInh") == "0" * 16
    assert _status_field(out, "CapAmb") == "0" * 16
    keep = frozenset({Capability.CHOWN, Capability.KILL})
    out, code = _run(["cat", "/proc/self/status"],
                     capabilities=CapabilitySets(permitted=keep, inheritable=keep))
    both = (1 << Capability.CHOWN) | (1 << Capability.KILL)
    assert _status_field(out, "CapInh") == f"{both:016x}"
    assert _status_field(out, "CapAmb") == "0" * 16


def _sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_cve_2019_5736_proc_self_exe_cannot_reach_host_binaries(tmp_path: pathlib.Path) -> None:
    """A container writing through /proc/self/exe and /proc/1/exe during start cannot
    change the host's Python or nsbind's compiled module: nsbind never re-executes a
    host binary inside the container (the C child execs the container's program)."""
    import nsbind._native._nsbind as native

    watched = [os.path.realpath(sys.executable), native.__file__]
    before = [_sha256(p) for p in watched]
    root = _usr_root(tmp_path)
    script = ("for t in /proc/self/exe /proc/1/exe; do "
              "(echo pwned > $t) 2>/dev/null && echo wrote $t; "
              "(cat /proc/self/exe > /dev/null) 2>/dev/null; done; echo done")
    out, code = _run(["/bin/sh", "-c", script], namespaces=Namespaces(mnt=True, pid=True),
                     mounts=[MountStep(str(root), str(root), None, MountFlags.BIND),
                             mounts.bind("/usr", str(root / "usr"), readonly=True),
                             MountStep("proc", str(root / "proc"), "proc")],
                     pivot_root=str(root))
    assert (out, code) == ("done\n", 0)
    assert [_sha256(p) for p in watched] == before


def test_bad_input_leaves_no_fd_behind() -> None:
    """Input refused while the plan is built releases what was already acquired
    (the leak guard checks fds); the message names the problem."""
    with nsbind.NamespacePool(net=True, size=1) as pool:
        assert pool.wait_full(timeout=30)
        with pytest.raises(ValueError, match="STDOUT is only valid for stderr"):
            spawn(["true"], namespaces=pool, stdin=STDOUT)
        with pytest.raises(ValueError, match="NUL byte"):
            spawn(["true\0"], namespaces=pool)


def _ns_inode(pid: int, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


def test_spawn_joins_the_namespaces_of_a_running_container() -> None:
    """As ``nsenter -t PID -a``: user first (root inside), then pid (for the child),
    net, uts, ipc, mnt; the child is a process of the container's pid namespace."""
    userns = Namespaces(user=True, pid=True, net=True, uts=True, ipc=True, mnt=True,
                        uid_map=[(0, 100000, 65536)], gid_map=[(0, 100000, 65536)])
    with spawn(["sleep", "60"], namespaces=userns, hostname="box") as box:
        try:
            with spawn(["sh", "-c", "echo $$; id -u; cat /proc/sys/kernel/hostname; "
                        "readlink /proc/self/ns/net /proc/self/ns/uts /proc/self/ns/user; "
                        "sleep 0.2"],
                       namespaces=Namespaces.join(box), stdout=PIPE) as proc:
                joined_pid = proc.pid
                with open(f"/proc/{joined_pid}/status") as f:
                    host_uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
                out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0
            lines = out.decode().split() if out else []
            assert int(lines[0]) > 1  # a pid inside the container's pid namespace
            assert lines[1:3] == ["0", "box"]
            assert lines[3:6] == [_ns_inode(box.pid, n) for n in ("net", "uts", "user")]
            assert host_uid == "100000"  # root inside is 100000 outside
        finally:
            box.kill()


def test_spawn_joins_a_single_namespace_by_path(holder: PidFd) -> None:
    with spawn(["readlink", "/proc/self/ns/net"], stdout=PIPE,
               namespaces=Namespaces.join(f"/proc/{holder.pid}/ns/net")) as proc:
        out, _ = proc.communicate(timeout=30)
    assert out is not None and out.decode().strip() == _ns_inode(holder.pid, "net")
    assert os.readlink("/proc/self/ns/net") != _ns_inode(holder.pid, "net")  # came back


_KILLED_DURING_START = """
import sys, time
import nsbind, nsbind.idmap

def stall(pid, *args, **kwargs):  # the parent dies before it writes the id maps
    with open(sys.argv[1], "w") as f:
        f.write(str(pid))
    time.sleep(600)

nsbind.idmap.write_maps = stall
nsbind.spawn(["sleep", "600"], namespaces=nsbind.Namespaces(user=True, pid=True, mnt=True))
"""


@pytest.mark.unprivileged
def test_killing_the_parent_during_start_leaves_no_orphan(tmp_path: pathlib.Path) -> None:
    """The child waits for its id maps on a pipe: when the parent dies first, it sees
    EOF and exits before running anything (no orphaned container, no mount)."""
    marker = tmp_path / "child-pid"
    parent = subprocess.Popen([sys.executable, "-c", _KILLED_DURING_START, str(marker)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.01)
        child = nsbind.pidfd_open(int(marker.read_text()))
    finally:
        parent.kill()
        parent.wait()
    with child:
        assert child.readable(10), "the child outlived its killed parent"
    try:  # exited: gone, or a zombie until the host's init reaps it
        with open(f"/proc/{marker.read_text()}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped after the open
        pass


@pytest.mark.unprivileged
def test_a_child_that_dies_before_its_go_byte_is_an_error_naming_the_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the go byte cannot reach a user-namespace child (it died after its maps were
    written), spawn raises naming the sync step and leaves no child, instead of
    returning a Process for a child that never ran."""
    real_write_maps = nsbind.idmap.write_maps
    victims: list[int] = []

    def write_then_kill(pid: int, *args: object, **kwargs: bool) -> None:
        real_write_maps(pid, *args, **kwargs)  # type: ignore[arg-type]
        victims.append(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # dead (a zombie): its sync pipe end is closed
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
            time.sleep(0.001)

    monkeypatch.setattr(nsbind.idmap, "write_maps", write_then_kill)
    with pytest.raises(SpawnError, match=r"^tell the child to go on after the id maps .*: EPIPE"
                       ) as info:
        spawn(["true"], namespaces=Namespaces(user=True, pid=True))
    assert info.value.step == "sync"
    assert victims and not os.path.exists(f"/proc/{victims[0]}")  # reaped


@pytest.mark.unprivileged
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"uid": 2**32}, r"uid 4294967296 is out of range"),
    ({"uid": 2**32 - 1}, r"uid 4294967295 is out of range"),
    ({"uid": -1}, r"uid -1 is out of range"),
    ({"gid": 2**32 - 1}, r"gid 4294967295 is out of range"),
    ({"gid": -1}, r"gid -1 is out of range"),
    ({"groups": [0, 2**32]}, r"supplementary group 4294967296 is out of range"),
    ({"groups": [-1]}, r"supplementary group -1 is out of range"),
    ({"uid": 1.0}, r"uid 1.0 is not a uid/gid"),
    ({"uid": True}, r"uid True is not a uid/gid"),
    ({"uid": "0"}, r"uid '0' is not a uid/gid"),
], ids=["uid-past-32-bits", "uid-minus-one-unsigned", "uid-minus-one", "gid-minus-one-unsigned",
        "gid-minus-one", "group-past-32-bits", "group-minus-one", "float", "bool", "string"])
def test_ids_out_of_range_are_refused_never_truncated(kwargs: dict[str, object],
                                                      message: str) -> None:
    """2**32 would become uid 0 in the kernel, and -1 / 2**32-1 mean 'unchanged' to
    setresuid (the child would stay root): refused before anything starts."""
    with pytest.raises(ValueError, match=message):
        spawn(["id", "-u"], **kwargs)  # type: ignore[arg-type]


def test_the_largest_valid_uid_is_taken() -> None:
    out, code = _run(["/bin/sh", "-c", "id -u; id -g; id -G"], uid=2**32 - 2, gid=2**32 - 2,
                     groups=[2**32 - 2])
    assert (out.split(), code) == (["4294967294"] * 3, 0)


@pytest.mark.unprivileged
def test_joining_a_pid_that_does_not_exist_says_so() -> None:
    with pytest.raises(ProcessLookupError, match=r"join the namespaces of pid 99999999: ESRCH"
                       r".*no such process") as info:
        Namespaces.join(99999999)
    assert isinstance(info.value, nsbind.NsbindError)
    with pytest.raises(ValueError, match="a pid is positive"):
        Namespaces.join(0)


@pytest.mark.unprivileged
def test_joining_a_fifo_does_not_hang(tmp_path: pathlib.Path) -> None:
    """A FIFO where an nsfs file was expected is opened without blocking and refused."""
    fifo = tmp_path / "netns"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a namespace file"):
        with Namespaces.join(fifo):
            pass
    with pytest.raises(ValueError, match="is not a namespace file"):
        spawn(["true"], namespaces=Namespaces.join(fifo))


def test_a_user_namespace_mapping_root_elsewhere_makes_its_dev_as_root_inside() -> None:
    """With 0 mapped to another host id, the child becomes uid/gid 0 of its user namespace
    right after the maps are written: mount points and /dev nodes made by the steps are
    made by a mapped id (before, mkdir in the fresh /dev tmpfs failed with EOVERFLOW)."""
    from helpers import busybox_root
    from nsbind import RootFS, mounts

    ns = Namespaces(user=True, pid=True, mnt=True, uid_map=[(0, 200000, 65536)],
                    gid_map=[(0, 200000, 65536)])
    with tempfile.TemporaryDirectory() as top, RootFS(
            busybox_root(os.path.join(top, "root")), defaults=False).add(
            mounts.proc(), mounts.dev()) as root:
        os.chmod(top, 0o755)  # (pytest's tmp_path is 0700: closed to uid 200000)
        for d in ("proc", "dev"):  # the image's own mount points (host root owns the tree)
            os.mkdir(os.path.join(top, "root", d))
        with spawn(["/bin/sh", "-c", "id -u; id -g; ls /dev/null /dev/pts; cat /proc/self/uid_map"],
                   namespaces=ns, rootfs=root, env={"PATH": "/bin"}, stdout=PIPE,
                   stderr=PIPE) as proc:
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out is not None and out.decode().split()[:3] == ["0", "0", "/dev/null"]
    assert "200000" in out.decode()
