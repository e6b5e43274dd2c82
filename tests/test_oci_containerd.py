"""containerd (ctr and the io.containerd.runc.v2 shim) driving an OCI runtime binary.

Every test runs once per runtime of clients.RUNTIMES: runc is the reference, nsbind-oci
must behave the same.  ctr is pointed at the runtime with ``ctr run --runc-binary PATH``
(and ``--runc-root`` in the daemon's temp dir); the shim then calls it with
``--root R --log B/log.json --log-format json`` before every command (create, start,
exec --detach, kill [--all], ps --format json, delete [--force]).  One containerd daemon
serves the whole module (tests/clients.py).
"""

from __future__ import annotations

import concurrent.futures
import difflib
import os
import pathlib
import re

import pytest

from clients import (
    CTR_NAMESPACE,
    Containerd,
    Ctr,
    cgroup_dirs,
    check,
    containerd_fixture,  # noqa: F401 - a fixture
    ctr_fixture,  # noqa: F401 - a fixture
    mounts_below,
    wait_until,
)
from nsbind.cgroups import usable_controllers

#: a task that ends on SIGTERM with status 42 once it says it is ready (in /tmp/ready)
TERM_AWARE = "trap 'exit 42' TERM; touch /tmp/ready; while :; do sleep 0.1; done"


def assert_gone(client: Ctr, cid: str) -> None:
    """Nothing is left of container ``cid``: no container or task, no runtime state,
    no cgroup in any hierarchy, no rootfs mount."""
    assert cid not in client.daemon.containers()
    assert client.task_status(cid) is None
    state = client.daemon.state_dir(client.runtime, cid)
    assert not os.path.exists(state), f"runtime state {state} left"
    assert cgroup_dirs(client.cgroup_of(cid)) == [], "the container's cgroup was left"
    bundle = os.path.join(client.daemon.base, "state", "io.containerd.runtime.v2.task",
                          CTR_NAMESPACE, cid)
    assert mounts_below(bundle) == [], "the rootfs mount was left"


def wait_ready(client: Ctr, cid: str, path: str = "/tmp/ready") -> None:
    """Wait (bounded) until the task made ``path``: its signal handlers are set."""
    assert wait_until(lambda: client.exec(cid, f"ready-{os.urandom(3).hex()}",
                                          ["test", "-e", path]).returncode == 0,
                      timeout=10, interval=0.05), f"{cid} never made {path}"


def stop_and_delete(client: Ctr, cid: str) -> int:
    """Wait until task ``cid`` has stopped, delete it and its container; returns the
    task's exit status, which ``ctr tasks delete`` (1.6) reports in a warning only:
    'task ID exit with non-zero exit code N'."""
    assert wait_until(lambda: client.task_status(cid) == "STOPPED", timeout=15), \
        f"task {cid} still {client.task_status(cid)}"
    proc = client("tasks", "delete", cid)
    check(proc)
    check(client("containers", "delete", cid))
    found = re.search(r"exit with non-zero exit code (\d+)", proc.stderr)
    return int(found.group(1)) if found else 0


def test_run_output_and_exit_status(ctr: Ctr) -> None:
    cid = ctr.new_id("run")
    proc = ctr.run(cid, ["sh", "-c", "echo hello from $(cat /proc/1/comm); exit 3"])
    assert proc.returncode == 3, proc
    assert proc.stdout == "hello from sh\n"
    assert_gone(ctr, cid)
    cid = ctr.new_id("run")
    assert check(ctr.run(cid, ["true"])) == ""
    assert_gone(ctr, cid)


def test_run_killed_by_a_signal(ctr: Ctr) -> None:
    """A foreground ``ctr run`` whose task is SIGKILLed (from outside: the init of a pid
    namespace cannot be killed from inside) exits 128 + 9, as the shim reports it."""
    cid = ctr.new_id("sig")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(ctr.run, cid, ["sleep", "60"])
        try:
            assert wait_until(lambda: running.done() or ctr.task_status(cid) == "RUNNING",
                              timeout=15)
            assert not running.done(), running.result()
            check(ctr("tasks", "kill", "-s", "KILL", cid))
            proc = running.result(timeout=30)
        finally:
            if not running.done():
                ctr.cleanup()
    assert proc.returncode == 137, proc
    assert_gone(ctr, cid)


def test_run_env_cwd_and_namespaces(ctr: Ctr) -> None:
    cid = ctr.new_id("env")
    out = check(ctr.run(cid, ["sh", "-c", 'echo "A=$A cwd=$(pwd) pid=$$ uid=$(id -u)"; '
                              'cat /proc/self/cgroup; ls /sys/class/net'],
                        options=["--env", "A=b c", "--cwd", "/tmp"]))
    lines = out.splitlines()
    assert lines[0] == "A=b c cwd=/tmp pid=1 uid=0"
    # the task is in its cgroup in every hierarchy the runtime uses, and in an empty netns;
    # runc (1.1) uses no v1 misc hierarchy (a hybrid layout on 6.x): left out for both
    cgroups = {line.split(":", 2)[2] for line in lines
               if re.match(r"^\d+:", line) and not re.match(r"^\d+:misc:", line)}
    assert cgroups == {ctr.cgroup_of(cid)}, out
    assert lines[-1] == "lo", out
    assert_gone(ctr, cid)


def test_exec_into_a_running_task(ctr: Ctr) -> None:
    cid = ctr.new_id("exec")
    check(ctr.start(cid, ["sleep", "60"]))
    try:
        assert ctr.task_status(cid) == "RUNNING"
        out = check(ctr.exec(cid, "probe",
                             ["sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"]))
        pid, init = out.splitlines()
        assert int(pid) > 1  # in the task's pid namespace, beside its init
        assert init == "sleep 60 "
        assert ctr.exec(cid, "status", ["sh", "-c", "exit 5"]).returncode == 5
        # the exec'd processes are gone; the task runs on
        assert ctr.task_status(cid) == "RUNNING"
        check(ctr("tasks", "kill", "-s", "KILL", cid))
        assert stop_and_delete(ctr, cid) == 137
    finally:
        ctr.cleanup()
    assert_gone(ctr, cid)


def test_task_ps_lists_the_task(ctr: Ctr) -> None:
    cid = ctr.new_id("ps")
    check(ctr.start(cid, ["sh", "-c", "sleep 60 & sleep 61 & wait"]))
    try:
        listed = check(ctr("tasks", "ls"))
        init_pid = next(int(line.split()[1]) for line in listed.splitlines()[1:]
                        if line.split()[0] == cid)

        def ps_pids() -> set[int]:
            out = check(ctr("tasks", "ps", cid))
            return {int(line.split()[0]) for line in out.splitlines()[1:] if line.strip()}

        # the init (sh) and its two sleeps, by host pid (`runc ps --format json`)
        assert wait_until(lambda: len(ps_pids()) == 3, timeout=10), ps_pids()
        pids = ps_pids()
        assert init_pid in pids
        comms = sorted(pathlib.Path(f"/proc/{p}/comm").read_text().strip() for p in pids)
        assert comms == ["sh", "sleep", "sleep"]
        check(ctr("tasks", "kill", "-a", "-s", "KILL", cid))
        assert stop_and_delete(ctr, cid) == 137
    finally:
        ctr.cleanup()
    assert_gone(ctr, cid)


def test_task_kill_term_then_kill(ctr: Ctr) -> None:
    """``ctr tasks kill`` sends SIGTERM (a handler runs: status 42); ``-s KILL`` ends a
    task that ignores SIGTERM (the shell's trap '' TERM): status 137."""
    cid = ctr.new_id("term")
    check(ctr.start(cid, ["sh", "-c", TERM_AWARE]))
    try:
        wait_ready(ctr, cid)
        check(ctr("tasks", "kill", cid))
        assert stop_and_delete(ctr, cid) == 42
        assert_gone(ctr, cid)

        cid = ctr.new_id("kill")
        check(ctr.start(cid, ["sh", "-c", "trap '' TERM; touch /tmp/ready; "
                                          "while :; do sleep 0.1; done"]))
        wait_ready(ctr, cid)
        check(ctr("tasks", "kill", cid))
        assert not wait_until(lambda: ctr.task_status(cid) == "STOPPED", timeout=0.5)
        check(ctr("tasks", "kill", "-s", "KILL", cid))
        assert stop_and_delete(ctr, cid) == 137
    finally:
        ctr.cleanup()
    assert_gone(ctr, cid)


def test_memory_limit(ctr: Ctr) -> None:
    """ctr --memory-limit: a task allocating past it is OOM-killed (137).  Where the
    memory controller is not usable (a hybrid host whose kernel has no v1 memory) both
    runtimes refuse the limit, each naming it, and nothing is left."""
    cid = ctr.new_id("mem")
    proc = ctr.run(cid, ["sh", "-c", 'echo started; x=$(head -c 67108864 /dev/zero | tr "\\0" a);'
                                     ' echo ${#x}'],
                   options=["--memory-limit", str(16 << 20)])
    if "memory" in usable_controllers():
        assert proc.returncode == 137, proc
        assert proc.stdout == "started\n"
    else:
        why = ("memory controller is not enabled" if ctr.runtime == "nsbind-oci"
               else "cannot set memory limit")
        assert proc.returncode != 0 and why in proc.stderr and proc.stdout == "", proc
    assert_gone(ctr, cid)


@pytest.mark.parametrize("runtime", ["nsbind-oci"])
def test_task_sees_what_it_sees_under_runc(containerd: Containerd, runtime: str) -> None:
    """The task sees the same ids, environment, mounts and limits under both runtimes."""
    probe = ("id; pwd; env | sort; ulimit -n; cat /proc/self/status | grep -E "
             "'^(Cap|NoNewPrivs|Seccomp)'; awk '{print $5, $3, $4}' /proc/self/mountinfo "
             "| sed 's/[0-9]*:[0-9]*$//' | sort; ls /dev | sort")
    seen = {}
    for name in ("runc", runtime):
        client = Ctr(containerd, name)
        try:
            proc = client.run(client.new_id("same"), ["sh", "-c", probe])
        finally:
            client.cleanup()
        seen[name] = (proc.returncode, _numbered_devices(proc.stdout))
    diff = "\n".join(difflib.unified_diff(seen["runc"][1].splitlines(),
                                           seen[runtime][1].splitlines(), "runc", runtime,
                                           lineterm=""))
    assert seen[runtime] == seen["runc"], diff


def _numbered_devices(text: str) -> str:
    """Device numbers (0:43) as the order they first appear in (dev1): anonymous device
    numbers differ from run to run; which mounts share a device does not, except masked
    directories: runc mounts a tmpfs for each, nsbind clones one read-only empty tmpfs
    (a recorded difference, nothing a process can tell apart but the device number)."""
    numbers: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        if line.startswith(("/proc/acpi ", "/proc/scsi ", "/sys/firmware ")):
            line = re.sub(r"\b\d+:\d+\b", "masked-dir", line)
        lines.append(re.sub(r"\b\d+:\d+\b", lambda m: numbers.setdefault(
            m.group(0), f"dev{len(numbers) + 1}"), line))
    return "\n".join(lines) + "\n"
