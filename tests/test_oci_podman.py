"""podman (with conmon) driving an OCI runtime binary: ``podman --runtime PATH``.

Every test runs once per runtime of clients.RUNTIMES: runc is the reference, nsbind-oci
must give the same observable results.  conmon calls the runtime's ``create --bundle B
--pid-file P [--console-socket S] ID`` and ``exec --process F --detach --pid-file P
[--tty --console-socket S] ID`` (with ``--log-format=json --log FILE`` before the
command); podman itself calls ``start``, ``state``, ``kill ID SIG`` and ``delete --force``.
One private podman storage serves the whole module (tests/clients.py).
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import re
import subprocess
import time

from clients import (
    PODMAN_IMAGE,
    Podman,
    PodmanStore,
    cgroup_dirs,
    check,
    mounts_below,
    podman_fixture,  # noqa: F401 - a fixture
    podman_store_fixture,  # noqa: F401 - a fixture
    run_bounded,
    run_in_pty,
    runtime_path,
    state_dir_of,
    wait_until,
)
from helpers import SLOWDOWN
from nsbind.cgroups import cgroup_layout, usable_controllers

_serial = 0


def name(podman: Podman, what: str) -> str:
    """A container name of this test's own."""
    global _serial
    _serial += 1
    return f"{what}-{podman.runtime}-{os.getpid()}-{_serial}"


def detached(podman: Podman, cname: str, command: list[str], options: tuple[str, ...] = ()
             ) -> str:
    """``podman run -d --name cname ... command``: the container's full id."""
    out = check(podman.run_image(["--name", cname, *options], command, rm=False, detach=True))
    cid = out.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", cid), out
    return cid


def wait_ready(podman: Podman, cid: str, path: str = "/tmp/ready") -> None:
    """Wait (bounded) until the container made ``path``: its signal handlers are set."""
    assert wait_until(lambda: podman.run("exec", cid, "test", "-e", path).returncode == 0,
                      timeout=10, interval=0.05), f"{cid} never made {path}"


def exit_code(podman: Podman, cid: str) -> int:
    """The exit status of a container that exited (``podman wait``, bounded)."""
    return int(check(podman.run("wait", cid, timeout=30)).strip())


def test_run_exit_status(podman: Podman) -> None:
    assert check(podman.run_image([], ["true"])) == ""
    proc = podman.run_image([], ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert proc.returncode == 3, proc
    assert proc.stdout == "out\n"
    assert "err\n" in proc.stderr
    # podman's own codes for a command that cannot run: 127 (not found), 126 (not runnable)
    assert podman.run_image([], ["/no/such/command"]).returncode == 127
    assert podman.run_image([], ["/etc/passwd"]).returncode == 126


def test_run_killed_by_a_signal(podman: Podman) -> None:
    """``podman run`` in the foreground exits 137 when its container is SIGKILLed from
    outside (``podman kill``; the init of a pid namespace cannot be killed from inside)."""
    cname = name(podman, "sig")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(podman.run_image, ["--name", cname], ["sleep", "60"])
        try:
            assert wait_until(lambda: running.done()
                              or podman.run("exec", cname, "true").returncode == 0,
                              timeout=15, interval=0.05)
            assert not running.done(), running.result()
            check(podman.run("kill", cname))
            proc = running.result(timeout=30)
        finally:
            if not running.done():
                podman.cleanup()
    assert proc.returncode == 137, proc


def test_hostname(podman: Podman) -> None:
    out = check(podman.run_image(["--hostname", "box-x"],
                                 ["sh", "-c", "hostname; echo $(cat /etc/hostname)"]))
    assert out == "box-x\nbox-x\n"


def test_env(podman: Podman) -> None:
    out = check(podman.run_image(["-e", "A=b c", "-e", "EMPTY="],
                                 ["sh", "-c", 'echo "A=$A"; env | sort']))
    lines = out.splitlines()
    assert lines[0] == "A=b c"
    assert "EMPTY=" in lines
    assert "container=podman" in lines
    assert any(line.startswith("PATH=/usr/local/sbin:") for line in lines)


def test_user(podman: Podman) -> None:
    assert check(podman.run_image(["-u", "1000:1000"], ["id"])) == \
        "uid=1000(tester) gid=1000(tester) groups=1000(tester)\n"
    assert check(podman.run_image(["-u", "tester"], ["sh", "-c", "id -u; echo $HOME"])) == \
        "1000\n/home/tester\n"
    assert check(podman.run_image([], ["id"])).startswith("uid=0(root) gid=0(root)")


def test_workdir(podman: Podman) -> None:
    assert check(podman.run_image(["-w", "/tmp"], ["pwd"])) == "/tmp\n"
    assert check(podman.run_image(["-u", "1000", "-w", "/home/tester"],
                                  ["sh", "-c", "pwd; touch mine && echo writable"])) == \
        "/home/tester\nwritable\n"


def test_interactive_stdin(podman: Podman) -> None:
    assert check(podman.run_image([], ["cat"], input="hi\nthere\n")) == "hi\nthere\n"
    assert check(podman.run_image([], ["wc", "-c"], input="x" * 100000)).strip() == "100000"


def test_tty(podman: Podman) -> None:
    code, out = podman.run_tty([], ["sh", "-c", "tty; test -t 0 && test -t 1 && echo both; "
                                    "stty size >/dev/null && echo sized; exit 4"])
    assert code == 4, out
    lines = out.replace("\r\n", "\n").splitlines()
    assert lines[0] == "/dev/pts/0", out
    assert "both" in lines
    assert "sized" in lines


def test_exec_into_a_detached_container(podman: Podman) -> None:
    cid = detached(podman, name(podman, "exec"), ["sleep", "60"])
    out = check(podman.run("exec", cid, "sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline"))
    pid, init = out.splitlines()
    assert int(pid) > 1  # beside the init, in its pid namespace
    assert init == "sleep 60 "
    assert podman.run("exec", cid, "sh", "-c", "exit 5").returncode == 5
    assert check(podman.run("exec", "-u", "1000", "-w", "/tmp", "-e", "E=1", cid,
                            "sh", "-c", 'echo "$(id -u) $(pwd) $E"')) == "1000 /tmp 1\n"
    assert check(podman.run("exec", "-i", cid, "cat", input="in\n")) == "in\n"
    code, shown = run_in_pty(podman.cmd("exec", "-t", cid, "tty"), env=podman.store.env,
                             cwd=podman.store.base)
    assert code == 0, shown
    assert "/dev/pts/" in shown
    assert check(podman.run("inspect", "--format", "{{.State.Status}}", cid)).strip() == "running"
    check(podman.run("rm", "-f", "-t", "0", cid))


def test_stop(podman: Podman) -> None:
    """``podman stop`` sends TERM (the handler's status is the container's), and KILLs a
    container that ignores TERM once ``-t`` seconds have passed."""
    cid = detached(podman, name(podman, "stop"),
                   ["sh", "-c", "trap 'exit 42' TERM; touch /tmp/ready; "
                                "while :; do sleep 0.1; done"])
    wait_ready(podman, cid)
    check(podman.run("stop", "-t", "10", cid))
    assert exit_code(podman, cid) == 42

    cid = detached(podman, name(podman, "stubborn"), ["sleep", "60"])  # init: TERM ignored
    started = time.monotonic()
    check(podman.run("stop", "-t", "1", cid))
    took = time.monotonic() - started
    assert exit_code(podman, cid) == 137
    assert 0.9 < took < 20 * SLOWDOWN, took


def test_kill(podman: Podman) -> None:
    cid = detached(podman, name(podman, "kill"), ["sleep", "60"])
    check(podman.run("kill", cid))  # SIGKILL by default
    assert exit_code(podman, cid) == 137
    cid = detached(podman, name(podman, "usr1"),
                   ["sh", "-c", "trap 'exit 7' USR1; touch /tmp/ready; "
                                "while :; do sleep 0.1; done"])
    wait_ready(podman, cid)
    check(podman.run("kill", "-s", "USR1", cid))
    assert exit_code(podman, cid) == 7


def limit_file(controller: str, v1_name: str, v2_name: str) -> str:
    """Where a container sees its limit file: in the controller's own v1 hierarchy on a
    hybrid host, at the top of its cgroup namespace's cgroup2 mount on a pure-v2 one."""
    layout = cgroup_layout()
    if layout.controllers[controller].version == 1:
        return f"/sys/fs/cgroup/{controller}/{v1_name}"
    assert layout.mode == "unified", layout.to_dict()
    return f"/sys/fs/cgroup/{v2_name}"


def test_memory_limit(podman: Podman) -> None:
    """A shell holding 64 MiB in a variable under --memory 16m is OOM-killed: 137.
    Where the memory controller is not usable (a hybrid host whose kernel has no v1
    memory) podman drops the limit itself, saying so, and the shell finishes."""
    proc = podman.run_image(["--memory", "16m"],
                            ["sh", "-c", 'echo started; x=$(head -c 67108864 /dev/zero | '
                                         'tr "\\0" a); echo ${#x}'])
    if "memory" not in usable_controllers():
        assert proc.returncode == 0, proc
        assert proc.stdout == f"started\n{64 << 20}\n"
        assert "does not support memory limit capabilities" in proc.stderr, proc
        return
    assert proc.returncode == 137, proc
    assert proc.stdout == "started\n"
    limit = check(podman.run_image(["--memory", "16m"],
                                   ["cat", limit_file("memory", "memory.limit_in_bytes",
                                                      "memory.max")]))
    assert int(limit) == 16 << 20


#: what a Go runtime prints when it cannot make a thread (with cgo and without)
GO_THREAD_FAILURES = ("runtime/cgo: pthread_create failed", "failed to create new OS thread")


def run_under_pids_limit(podman: Podman, limit: int, command: list[str]
                         ) -> subprocess.CompletedProcess[str]:
    """``podman run --pids-limit LIMIT ... command``.  runc's init is Go and runs in the
    container's cgroup: its runtime's threads count against pids.max, and under a tight
    limit on a loaded machine it can fail to make one and abort before the command runs
    (opencontainers/runc#1914).  Such a run of a Go runtime is made again, at most four
    times; nsbind-oci's init is C, one thread, and gets one try."""
    for _ in range(1 if podman.runtime == "nsbind-oci" else 5):
        proc = podman.run_image(["--pids-limit", str(limit)], command)
        if not any(text in proc.stderr for text in GO_THREAD_FAILURES):
            break
    return proc


def test_pids_limit(podman: Podman) -> None:
    """Under --pids-limit 5 the shell (pid 1) starts four sleeps; the fifth fork fails,
    and busybox's shell gives up (status 2)."""
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 & echo started $i; done; echo done"
    proc = run_under_pids_limit(podman, 5, ["sh", "-c", script])
    assert proc.returncode == 2, proc
    assert "can't fork" in proc.stderr, proc
    assert proc.stdout.splitlines() == [f"started {i}" for i in range(1, 5)], proc
    assert check(run_under_pids_limit(
        podman, 5, ["cat", limit_file("pids", "pids.max", "pids.max")])) == "5\n"


def test_read_only(podman: Podman) -> None:
    proc = podman.run_image(["--read-only"], ["sh", "-c", "touch /x"])
    assert proc.returncode == 1, proc
    assert "Read-only file system" in proc.stderr
    # podman mounts tmpfs on /tmp, /var/tmp and /run of a read-only container
    assert check(podman.run_image(["--read-only"],
                                  ["sh", "-c", "touch /tmp/x /run/x && echo ok"])) == "ok\n"


def test_bind_volume(podman: Podman, tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("from the host\n")
    out = check(podman.run_image(["-v", f"{data}:/data"],
                                 ["sh", "-c", "cat /data/in; echo from the container > /data/out"]))
    assert out == "from the host\n"
    assert (data / "out").read_text() == "from the container\n"
    proc = podman.run_image(["-v", f"{data}:/data:ro"], ["sh", "-c", "echo x > /data/out"])
    assert proc.returncode != 0, proc
    assert (data / "out").read_text() == "from the container\n"


def test_ps(podman: Podman) -> None:
    cname = name(podman, "ps")
    cid = detached(podman, cname, ["sleep", "60"])
    out = check(podman.run("ps", "--no-trunc", "--filter", "status=running",
                           "--format", "{{.ID}} {{.Names}} {{.Command}}"))
    assert f"{cid} {cname} sleep 60" in out.splitlines(), out
    top = check(podman.run("top", cid, "pid", "args"))
    assert "sleep 60" in top, top
    check(podman.run("rm", "-f", "-t", "0", cid))
    out = check(podman.run("ps", "-a", "--no-trunc", "--format", "{{.ID}}"))
    assert cid not in out


def test_nothing_left_after_rm(podman: Podman) -> None:
    """While a container runs it has its cgroup (every hierarchy), the runtime's state,
    a rootfs and shm mount and a conmon; after ``podman rm -f`` none of them is left."""
    cid = detached(podman, name(podman, "rm"), ["sleep", "60"])
    info = podman.inspect(cid)
    conmon = info["State"]["ConmonPid"]
    merged = info["GraphDriver"]["Data"]["MergedDir"]
    cgroup = f"{podman.cgroup_parent}/libpod-{cid}"
    runtime = runtime_path(podman.runtime)
    assert cgroup_dirs(cgroup), "no cgroup for the container"
    state = run_bounded([runtime, "state", cid], timeout=30)
    assert '"running"' in check(state)
    assert mounts_below(merged), "the rootfs is not mounted"
    assert os.path.exists(f"/proc/{conmon}")

    check(podman.run("rm", "-f", "-t", "0", cid))
    assert cgroup_dirs(cgroup) == [], "the container's cgroup was left"
    assert run_bounded([runtime, "state", cid], timeout=30).returncode != 0
    assert not os.path.exists(state_dir_of(podman.runtime, cid))
    assert mounts_below(merged) == []
    assert mounts_below(os.path.join(podman.store.base, "root", "overlay-containers", cid)) == []
    assert wait_until(lambda: not os.path.exists(f"/proc/{conmon}"), timeout=10)


PROBE = r"""
echo "ids=$(id)"; echo "cwd=$(pwd)"; echo "nofile=$(ulimit -n) nproc=$(ulimit -u)"
env | grep -v -e '^HOSTNAME=' | sort | sed 's/^/env:/'
grep -E '^(Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t'
awk '{print "mnt:" $5, $6, $(NF-2), $NF}' /proc/self/mountinfo | sed 's/[0-9a-f]\{64\}/ID/g' | sort
ls -l /dev | awk '{print "dev:" $1, $5, $6, $NF}' | sort
echo "ping_group_range=$(cat /proc/sys/net/ipv4/ping_group_range | tr '\t' ' ')"
echo "links=$(ls /sys/class/net | tr '\n' ' ')"
grep -v '^[0-9]*:misc:' /proc/self/cgroup | sed 's/[0-9a-f]\{64\}/ID/' | sed 's/^/cg:/'
echo "umask=$(umask)"
"""


def test_sees_what_it_sees_under_runc(podman_store: PodmanStore) -> None:
    """One probe of what a container sees, under runc and under nsbind-oci: the same.
    Bar a v1 ``misc`` hierarchy (a hybrid layout on 6.x): runc (1.1) knows no such
    subsystem and leaves the container in conmon's cgroup there, nsbind-oci joins it."""
    seen = {}
    for runtime in ("runc", "nsbind-oci"):
        client = Podman(podman_store, runtime)
        try:
            proc = client.run_image(["--hostname", "probe"], ["sh", "-c", PROBE])
        finally:
            client.cleanup()
        seen[runtime] = (proc.returncode, proc.stdout)
    assert seen["runc"][0] == 0, seen["runc"]
    assert seen["nsbind-oci"] == seen["runc"], line_diff(seen["runc"][1], seen["nsbind-oci"][1])


def line_diff(reference: str, other: str) -> str:
    """The lines that differ (``-`` runc, ``+`` nsbind-oci)."""
    import difflib

    return "\n".join(line for line in difflib.unified_diff(
        reference.splitlines(), other.splitlines(), "runc", "nsbind-oci", lineterm="", n=0))


def test_image_is_the_test_image(podman_store: PodmanStore) -> None:
    """The storage holds the image imported from the busybox rootfs, and nothing else."""
    out = check(podman_store.podman("runc", "images", "--format", "{{.Repository}}:{{.Tag}}"))
    assert out.split() == [PODMAN_IMAGE]
