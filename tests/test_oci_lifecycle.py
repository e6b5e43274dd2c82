"""The OCI lifecycle (nsbind.oci.create/start/state/kill/delete) on busybox bundles.

The container's process is this test process's child (create does not wait for it):
each test reaps it, as a runtime's subreaper (conmon, the shim) would."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from helpers import SLOWDOWN, busybox_root
from nsbind import cgroup_layout
from nsbind.oci import (
    LifecycleError,
    create,
    default_spec_json,
    delete,
    kill,
    lifecycle,
    start,
    state,
)
from nsbind.oci.lifecycle import read_gate
from nsbind.oci.state import process_alive, start_time


def make_bundle(tmp_path: pathlib.Path, cgroup_parent: str, args: list[str]) -> pathlib.Path:
    """A busybox bundle (runc spec's defaults), no terminal, host dir ``data`` bound at
    /data, its cgroup under the test parent."""
    bundle = tmp_path / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    busybox_root(rootfs)
    for d in ("proc", "dev", "sys", "tmp", "data"):
        (rootfs / d).mkdir(exist_ok=True)
    (tmp_path / "data").mkdir()
    config: dict[str, Any] = default_spec_json()
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["mounts"].append({"destination": "/data", "type": "bind",
                             "source": str(tmp_path / "data"), "options": ["rbind", "rw"]})
    config["linux"]["cgroupsPath"] = f"/{cgroup_parent}/life-{os.getpid()}-{tmp_path.name}"
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def reap(pid: int) -> int:
    """Wait for the container's process (this test's child) and reap it."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def wchan(pid: int) -> str:
    with open(f"/proc/{pid}/wchan") as f:
        return f.read()


def cgroup_dirs(path: str) -> list[str]:
    return [d for h in cgroup_layout().hierarchies if h.holds_cgroups
            for d in [h.path_of(path)] if os.path.isdir(d)]


def test_create_start_state_delete(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "echo hello > /data/out"])
    root = tmp_path / "state"
    created = create(bundle, "c1", root=root, cgroup_parent=cgroup_parent,
                     pid_file=tmp_path / "pid")
    pid = created["pid"]
    try:
        assert created["status"] == "created" and created["id"] == "c1"
        assert int((tmp_path / "pid").read_text()) == pid
        assert state(root, "c1")["status"] == "created"
        assert wchan(pid) in ("0", "", "wait_for_partner")  # parked in the FIFO's open
        assert not (tmp_path / "data" / "out").exists()
        directory = root / "c1"
        assert oct(directory.stat().st_mode & 0o777) == "0o700"
        assert (directory / "exec.fifo").exists()
        stored = json.loads((directory / "state.json").read_text())
        cgroup = stored["nsbind"]["cgroup"]
        assert cgroup_dirs(cgroup)
        start(root, "c1")
        assert not (directory / "exec.fifo").exists()
    finally:
        code = reap(pid)
    assert code == 0
    assert (tmp_path / "data" / "out").read_text() == "hello\n"
    assert state(root, "c1")["status"] == "stopped"
    delete(root, "c1")
    assert not (root / "c1").exists()
    assert not cgroup_dirs(cgroup)
    with pytest.raises(LifecycleError, match="does not exist"):
        state(root, "c1")


def test_kill_a_created_container(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    root = tmp_path / "state"
    pid = create(bundle, "k1", root=root, cgroup_parent=cgroup_parent)["pid"]
    kill(root, "k1", signal.SIGKILL)
    assert reap(pid) == -signal.SIGKILL
    assert state(root, "k1")["status"] == "stopped"
    with pytest.raises(LifecycleError, match="container not running"):
        kill(root, "k1", signal.SIGKILL)
    with pytest.raises(LifecycleError, match="not created"):
        start(root, "k1")
    delete(root, "k1")
    assert not (root / "k1").exists()


def test_delete_running_needs_force(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sleep", "100"])
    root = tmp_path / "state"
    pid = create(bundle, "r1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        start(root, "r1")
        assert state(root, "r1")["status"] == "running"
        with pytest.raises(LifecycleError, match="not stopped"):
            delete(root, "r1")
        assert state(root, "r1")["status"] == "running"  # refused: nothing changed
        with pytest.raises(LifecycleError, match="not created"):
            start(root, "r1")  # start twice
        delete(root, "r1", force=True)
    finally:
        code = reap(pid)
    assert code == -signal.SIGKILL
    assert not (root / "r1").exists()


def test_duplicate_unknown_and_invalid_ids(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    root = tmp_path / "state"
    pid = create(bundle, "d1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        with pytest.raises(LifecycleError, match="already exists"):
            create(bundle, "d1", root=root, cgroup_parent=cgroup_parent)
        assert state(root, "d1")["status"] == "created"  # the first is untouched
        for op in (lambda: state(root, "nope"), lambda: start(root, "nope"),
                   lambda: kill(root, "nope", signal.SIGKILL),
                   lambda: delete(root, "nope")):
            with pytest.raises(LifecycleError, match="does not exist"):
                op()
        for bad in ("", "-x", "a/b", "..", "x" * 129):
            with pytest.raises(LifecycleError, match="invalid container id"):
                state(root, bad)
        delete(root, "d1", force=True)
    finally:
        code = reap(pid)
    assert code == -signal.SIGKILL
    assert not (root / "d1").exists() and os.listdir(root) == []


def test_state_sees_a_reused_pid_as_stopped(tmp_path: pathlib.Path,
                                            cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    root = tmp_path / "state"
    pid = create(bundle, "p1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        path = root / "p1" / "state.json"
        stored = json.loads(path.read_text())
        stored["nsbind"]["startTime"] -= 1  # as if the pid now belonged to another process
        path.write_text(json.dumps(stored))
        assert state(root, "p1")["status"] == "stopped"
        with pytest.raises(LifecycleError, match="container not running"):
            kill(root, "p1", signal.SIGKILL)
        stored["nsbind"]["startTime"] += 1
        path.write_text(json.dumps(stored))
        delete(root, "p1", force=True)
    finally:
        deadline = time.monotonic() + 10
        code = reap(pid)
        assert time.monotonic() < deadline
    assert code == -signal.SIGKILL


# ------------------------------------------------ the start gate's wait (start's read)


def _gate_writer(tmp_path: pathlib.Path, script: str) -> tuple[str, subprocess.Popen[bytes]]:
    fifo = str(tmp_path / "exec.fifo")
    os.mkfifo(fifo)
    return fifo, subprocess.Popen(["sh", "-c", script.replace("FIFO", fifo)])


_RENAMES_ITSELF = ("import sys, time\n"
                   "with open('/proc/self/comm', 'wb') as comm:\n"
                   "    comm.write(bytes.fromhex(sys.argv[1]))\n"
                   "print('named', flush=True)\n"
                   "time.sleep(60)\n")


@pytest.mark.parametrize("name", [b"a) Z 1 2 (", b"\xff\xfe)) ", b"))))))))))))))) "],
                         ids=["fields", "not-utf8", "parentheses"])
def test_a_process_named_to_mislead_is_still_read_right(name: bytes) -> None:
    """A container's process names itself (/proc/self/comm, 15 bytes of its choice):
    state still finds its start time and that it runs."""
    proc = subprocess.Popen([sys.executable, "-S", "-c", _RENAMES_ITSELF, name.hex()],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"named\n"
        with open(f"/proc/{proc.pid}/stat", "rb") as stat:
            line = stat.read()
        assert b"(" + name[:15] + b")" in line  # the name took (15 bytes at most)
        started = start_time(proc.pid)
        assert started == int(line.rpartition(b")")[2].split()[19])
        assert process_alive(proc.pid, started)
        proc.kill()
        proc.wait()
        assert not process_alive(proc.pid, started)
        assert start_time(proc.pid) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_start_reads_the_byte_of_a_process_that_exited_since(tmp_path: pathlib.Path) -> None:
    """A short command writes its byte and ends at once: start reads the byte all the
    same, whether the process is still there, a zombie, or reaped."""
    fifo, proc = _gate_writer(tmp_path, "printf 0 > FIFO")  # blocks until start's open
    try:
        started = start_time(proc.pid)
        assert started is not None
        assert read_gate(fifo, proc.pid, started) == b"0"
    finally:
        proc.wait()
    keep = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the pipe lives while a reader does
    try:
        for reaped in (False, True):
            proc = subprocess.Popen(["sh", "-c", f"printf 0 > {fifo}"])
            started = start_time(proc.pid)
            assert started is not None
            deadline = time.monotonic() + 10 * SLOWDOWN
            while process_alive(proc.pid, started) and time.monotonic() < deadline:
                time.sleep(0.01)
            if reaped:
                proc.wait()  # its pid gone: no pidfd to be had
            assert read_gate(fifo, proc.pid, started) == b"0"
            proc.wait()
    finally:
        os.close(keep)


@pytest.mark.parametrize(("script", "killed"), [("exec 3> FIFO; exec 3>&-; exec sleep 30", False),
                                               ("exec sleep 30", True)],
                         ids=["closed-without-its-byte", "killed-before-the-gate"])
def test_start_gives_up_at_once_on_a_process_that_cannot_pass(
        tmp_path: pathlib.Path, script: str, killed: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """start waits in poll(2), not for its timeout: a writer that closes the FIFO
    without the byte, or a process that dies parked, ends the wait."""
    monkeypatch.setattr(lifecycle, "_START_TIMEOUT", 20 * SLOWDOWN)  # above the bound
    fifo, proc = _gate_writer(tmp_path, script)
    timer = threading.Timer(0.2, proc.kill)
    try:
        started = start_time(proc.pid)
        assert started is not None
        if killed:
            timer.start()
        begun = time.monotonic()
        assert read_gate(fifo, proc.pid, started) == b""
        assert time.monotonic() - begun < 5 * SLOWDOWN
    finally:
        timer.cancel()
        if timer.is_alive():
            timer.join()
        proc.kill()
        proc.wait()
