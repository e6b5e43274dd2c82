"""``nsbind run`` and the commands around it, end to end: the installed ``nsbind``
command on a real image (busybox-static in an OCI archive the tests make), real
namespaces, overlayfs, cgroups and monitors.  Every test uses its own store and state
directories and the run's cgroup parent; nothing may be left behind."""

from __future__ import annotations

import json
import os
import pathlib
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from clients import build_rootfs, oci_archive, tar_rootfs
from enginecli import Engine
from helpers import SLOWDOWN
from nsbind.cgroups import cgroup_layout, usable_controllers

IMAGE_CONFIG = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "FROM_IMAGE=yes", "FOO=image"],
                "Cmd": ["sh", "-c", "echo default command"], "WorkingDir": "/home/tester",
                "StopSignal": "SIGUSR1"}
IMAGES = pathlib.Path(__file__).resolve().parent.parent.parent / "shared/testdata/images"


@pytest.fixture(scope="module")
def image_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("engine-image")
    root = build_rootfs(base / "rootfs")
    layer = tar_rootfs(root, str(base / "layer.tar"))
    return oci_archive(layer, str(base / "busybox.tar"), "localhost/busybox:test",
                       config=IMAGE_CONFIG)


@pytest.fixture
def engine(tmp_path: pathlib.Path, cgroup_parent: str, image_archive: str) -> Iterator[Engine]:
    eng = Engine(tmp_path, cgroup_parent)
    eng("image", "load", "-q", image_archive)
    yield eng
    for record in eng.containers():  # a failed test's containers go, by the engine
        eng("rm", "-f", record["Id"], check=False)
    assert eng.left() == []


IMG = "localhost/busybox:test"


def test_foreground_run_with_rm_prints_the_output_and_leaves_nothing(engine: Engine) -> None:
    out = engine("run", "--rm", "--name", "fg", IMG, "sh", "-c",
                 "echo hello; echo $$; hostname; cat /etc/hostname; pwd; echo $FOO; id -u")
    lines = out.stdout.split()
    assert lines[0] == "hello" and lines[1] == "1"  # PID 1 of its own pid namespace
    assert lines[2] == lines[3] and len(lines[2]) == 12  # the short id, as Docker names it
    assert lines[4:] == ["/home/tester", "image", "0"]
    assert engine.left() == []


def test_the_root_overlay_is_volatile_only_for_a_container_removed_at_its_end(
        engine: Engine) -> None:
    """As podman: a ``--rm`` container's upper directory is never synced (``volatile``),
    a kept container's is."""
    show = ["sh", "-c", "grep ' / / ' /proc/self/mountinfo"]
    roots = []
    for args in (["--rm"], ["--name", "kept"]):
        # "... / / rw,relatime - overlay SOURCE rw,lowerdir...,volatile" (kernels with
        # overlay's fsync= option write "fsync=volatile")
        fstype, _, options = engine("run", *args, IMG, *show).stdout.split(" - ")[1].split()
        assert fstype == "overlay"
        roots.append(set(options.split(",")))
    engine("rm", "kept")
    assert roots[0] & {"volatile", "fsync=volatile"}
    assert not roots[1] & {"volatile", "fsync=volatile"}
    assert engine.left() == []


def test_a_plain_run_imports_none_of_the_heavy_standard_modules(engine: Engine) -> None:
    """``nsbind run`` in its plain form reads its command line without argparse (nor
    gettext and locale with it): nsbind.engine.runflags.fast_parse_run; and starts its
    container without typing, json or re (nsbind.jsonlite, nsbind.charsets), enum
    (nsbind.enumtypes), signal (nsbind.signals), contextlib (nsbind.ctxlite), functools
    (nsbind.fnlite), collections (nsbind.namedtuples) or operator."""
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime",
                           *engine.argv("run", "--rm", "-e", "A=1", IMG, "true")],
                          capture_output=True, text=True, timeout=60 * SLOWDOWN, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    assert "nsbind.engine.runflags" in modules and "nsbind.ctxlite" in modules
    heavy = {"argparse", "gettext", "locale", "typing", "json", "re", "enum", "signal",
             "contextlib", "functools", "collections", "collections.abc", "operator"}
    assert not modules & heavy, sorted(modules & heavy)
    assert engine.left() == []


def test_the_image_command_and_its_environment_are_used(engine: Engine) -> None:
    assert engine("run", "--rm", IMG).stdout == "default command\n"
    out = engine("run", "--rm", "-e", "FOO=flag", "-e", "BAR=2", "-w", "/tmp", "-u", "tester",
                 "-h", "box", IMG, "sh", "-c", "echo $FOO $BAR $FROM_IMAGE $HOSTNAME; pwd; "
                 "id -u; id -g; hostname; cat /etc/hosts | grep -c localhost").stdout.split()
    assert out == ["flag", "2", "yes", "box", "/tmp", "1000", "1000", "box", "2"]


def test_exit_status_is_the_containers(engine: Engine) -> None:
    assert engine("run", "--rm", IMG, "sh", "-c", "exit 7", check=False).returncode == 7
    proc = engine("run", "--rm", "--init", IMG, "sh", "-c", "kill -TERM $$", check=False)
    assert proc.returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize(("argv", "status", "words"), [
    (["/no/such/program"], 127, "not found"),
    (["/etc/passwd"], 126, "permission denied"),
])
def test_a_command_that_cannot_run_is_126_or_127(engine: Engine, argv: list[str], status: int,
                                                  words: str) -> None:
    proc = engine("run", "--name", "bad", IMG, *argv, check=False)
    assert proc.returncode == status, proc.stderr
    assert words in proc.stderr and proc.stderr.count("\n") == 1
    assert engine.left() == []


@pytest.mark.parametrize(("args", "words"), [
    (["-m", "12x", IMG, "true"], "invalid size"),
    (["--bogus-flag", IMG, "true"], "--bogus-flag"),
    (["-v", "/no/such/dir:/data", IMG, "true"], "does not exist"),
    (["-u", "nosuchuser", IMG, "true"], "nosuchuser"),
    (["no-such-image:1"], "Unable to find image"),
    ([str(IMAGES / "ggcr-hello-world-v25.tar")], "arm64"),
    ([str(IMAGES / "ggcr-null_manifest.tar")], "manifest.json"),
    (["--rootfs", "/no/such/root", "true"], "/no/such/root"),
])
def test_bad_input_is_one_line_status_125_and_leaves_nothing(engine: Engine, args: list[str],
                                                             words: str) -> None:
    proc = engine("run", "--rm", *args, check=False)
    assert proc.returncode == 125, proc.stderr
    assert words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert engine.left() == []


def test_a_name_is_taken_once(engine: Engine) -> None:
    engine("run", "-d", "--name", "one", IMG, "sleep", "30")
    proc = engine("run", "--name", "one", IMG, "true", check=False)
    assert proc.returncode == 125 and "already in use" in proc.stderr
    engine("rm", "-f", "one")


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout * SLOWDOWN
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_detached_container_logs_stop_inspect_and_rm(engine: Engine) -> None:
    cid = engine("run", "-d", "--name", "web", "--stop-timeout", "1", IMG, "sh", "-c",
                 "echo out; echo err >&2; exec sleep 60").stdout.strip()
    assert len(cid) == 64
    rows = engine.containers()
    assert [(r["Names"], r["State"]) for r in rows] == [("web", "running")]
    _wait_for(lambda: "err" in engine("logs", "web").stderr)
    logs = engine("logs", "web")
    assert logs.stdout == "out\n" and logs.stderr == "err\n"
    assert engine("logs", "--tail", "1", "web").stderr == "err\n"
    log_path = json.loads(engine("inspect", "web").stdout)[0]["LogPath"]
    first = json.loads(pathlib.Path(log_path).read_text().splitlines()[0])
    assert first["log"] == "out\n" and first["stream"] == "stdout"
    assert first["time"].endswith("Z")
    # sleep as PID 1 ignores the stop signal (SIGUSR1, from the image): killed after 1 s
    start = time.monotonic()
    assert engine("stop", "web").stdout.strip() == "web"
    assert 0.9 < time.monotonic() - start < 8 * SLOWDOWN
    info = json.loads(engine("inspect", "web").stdout)[0]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137
    assert info["Config"]["StopSignal"] == "SIGUSR1"
    assert "Exited (137)" in engine("ps", "-a").stdout
    assert engine("ps").stdout.count("\n") == 1  # the heading only
    engine("rm", "web")
    assert engine.left() == []


def test_stop_signal_that_the_container_handles(engine: Engine) -> None:
    engine("run", "-d", "--name", "trap", "--stop-signal", "TERM", IMG, "sh", "-c",
           "trap 'echo bye; exit 3' TERM; echo ready; while :; do sleep 0.05; done")
    _wait_for(lambda: "ready" in engine("logs", "trap").stdout)
    engine("stop", "trap")
    assert engine("wait", "trap").stdout.strip() == "3"
    assert engine("logs", "trap").stdout == "ready\nbye\n"
    engine("rm", "trap")


def test_wait_and_detached_rm(engine: Engine) -> None:
    engine("run", "-d", "--name", "w1", IMG, "sh", "-c", "sleep 0.3; exit 5")
    assert engine("wait", "w1").stdout.strip() == "5"
    engine("rm", "w1")
    engine("run", "-d", "--rm", "--name", "gone", IMG, "true")
    _wait_for(lambda: engine.left() == [])


def test_rm_of_a_running_container_needs_force(engine: Engine) -> None:
    engine("run", "-d", "--name", "busy", IMG, "sleep", "30")
    proc = engine("rm", "busy", check=False)
    assert proc.returncode == 1 and "stop the container" in proc.stderr
    assert engine("rm", "-f", "busy").stdout.strip() == "busy"
    assert engine.left() == []


def test_exec_joins_the_container(engine: Engine) -> None:
    engine("run", "-d", "--name", "xc", "-e", "FOO=run", IMG, "sleep", "30")
    out = engine("exec", "xc", "sh", "-c", "echo $FOO; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                 "pwd; hostname").stdout.split("\n")
    assert out[0] == "run" and out[1].strip() == "sleep 30" and out[2] == "/home/tester"
    assert engine("exec", "-u", "tester", "-w", "/tmp", "-e", "A=1", "xc", "sh", "-c",
                  "id -u; pwd; echo $A").stdout.split() == ["1000", "/tmp", "1"]
    assert engine("exec", "xc", "sh", "-c", "exit 9", check=False).returncode == 9
    proc = engine("exec", "xc", "/nope", check=False)
    assert proc.returncode == 127 and proc.stderr.count("\n") == 1
    engine("rm", "-f", "xc")


def test_exec_detached_leaves_the_caller(engine: Engine) -> None:
    """``exec -d``, as Docker's: it returns once the process runs and prints nothing; the
    process's output goes nowhere, so it does not hold the caller's pipes (this test
    reads them to their end, which would wait for the process)."""
    hold = int(30 * SLOWDOWN)  # what exec -d must not wait for, longer in a slow guest
    engine("run", "-d", "--name", "xd", IMG, "sleep", str(2 * hold))
    started = time.monotonic()
    proc = engine("exec", "-d", "xd", "sh", "-c", f"echo out; echo err >&2; exec sleep {hold}",
                  timeout=25)
    assert time.monotonic() - started < hold * 2 / 3
    assert (proc.stdout, proc.stderr) == ("", "")
    running = engine("exec", "xd", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert f"sleep {hold}" in running.stdout
    engine("rm", "-f", "xd")
    assert engine.left() == []


def test_a_monitor_that_dies_loses_no_record(engine: Engine) -> None:
    engine("run", "-d", "--name", "orphan", IMG, "sleep", "30")
    record = json.loads(pathlib.Path(engine.state, "containers",
                                     engine.containers()[0]["Id"], "record.json").read_text())
    os.kill(int(record["monitorPid"]), signal.SIGKILL)  # the monitor this test started
    _wait_for(lambda: not os.path.exists(f"/proc/{record['monitorPid']}/stat")
              or "Z" in pathlib.Path(f"/proc/{record['monitorPid']}/stat").read_text()
              .split(")")[1][:3])
    assert [r["State"] for r in engine.containers()] == ["running"]
    engine("kill", "orphan")
    _wait_for(lambda: engine.containers()[0]["State"] == "exited")
    assert engine.containers()[0]["Status"] == "Exited (unknown)"
    engine("rm", "orphan")


def test_limits_volumes_and_a_read_only_root(engine: Engine, tmp_path: pathlib.Path,
                                             cgroup_parent: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    memory = ["-m", "64m"] if "memory" in usable_controllers() else []
    if not memory:  # refused, naming why, and nothing is left of the container
        out = engine("run", "--rm", "-m", "64m", IMG, "true", check=False)
        assert out.returncode != 0 and "memory controller is not enabled" in out.stderr, (
            out.stderr)
        assert engine.containers() == []
    out = engine("run", "--rm", "--read-only", "-v", f"{data}:/data:ro", "--tmpfs", "/scratch",
                 *memory, "--pids-limit", "40", IMG, "sh", "-c",
                 "cat /data/in.txt; touch /etc/x 2>/dev/null || echo ro-root; "
                 "touch /data/y 2>/dev/null || echo ro-volume; touch /scratch/z && echo tmpfs;"
                 "touch /tmp/t && echo tmp; cat /proc/self/cgroup | grep -c :", check=False)
    assert out.stdout.split("\n")[:5] == ["from the host", "ro-root", "ro-volume", "tmpfs",
                                          "tmp"], out.stderr
    engine("run", "-d", "--name", "lim", *memory, "--pids-limit", "40", IMG, "sleep", "30")
    cid = engine.containers()[0]["Id"]
    # wherever this host carries each controller: v1 (memory.limit_in_bytes), the v2
    # hierarchy at /sys/fs/cgroup/unified (hybrid) or at /sys/fs/cgroup itself (pure v2)
    layout = cgroup_layout()
    if memory:
        mem_h = layout.hierarchy_for("memory")
        mem = pathlib.Path(mem_h.path_of(f"/{cgroup_parent}/{cid}"),
                           "memory.max" if mem_h.version == 2 else "memory.limit_in_bytes")
        assert int(mem.read_text()) == 64 << 20
    pids = pathlib.Path(layout.hierarchy_for("pids").path_of(f"/{cgroup_parent}/{cid}"),
                        "pids.max")
    assert pids.read_text().strip() == "40"
    stats = engine("stats", "--no-stream", "lim").stdout
    assert "MEM USAGE / LIMIT" in stats and "lim" in stats
    assert ("64MiB" in stats) == bool(memory), stats
    top = engine("top", "lim").stdout
    assert "sleep 30" in top
    engine("rm", "-f", "lim")


def test_the_host_root_read_only_with_fresh_proc(engine: Engine) -> None:
    out = engine("run", "--rm", "--rootfs", "/", "--", "sh", "-c",
                 "echo $$; ls /proc | grep -c '^[0-9]'; touch /usr/x 2>/dev/null || echo ro; "
                 "touch /tmp/y && echo tmp").stdout.split()
    assert out[0] == "1" and int(out[1]) <= 3 and out[2:] == ["ro", "tmp"]


def test_dry_run_prints_the_spec_and_makes_nothing(engine: Engine) -> None:
    spec = json.loads(engine("run", "--dry-run", "-m", "64m", IMG, "echo", "x").stdout)
    assert spec["process"]["args"] == ["echo", "x"]
    assert spec["linux"]["resources"]["memory"]["limit"] == 64 << 20
    assert spec["process"]["cwd"] == "/home/tester"
    assert engine.left() == []


def _pty_session(argv: Sequence[str], send: bytes, prompt: bytes = b"# ",
                 timeout: float = 20) -> tuple[bytes, int]:
    """Run ``argv`` on a new terminal; type ``send`` once ``prompt`` shows (busybox's
    shell asks the terminal for the cursor position first and drops what it reads
    meanwhile); what the terminal showed, and the exit status."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout * SLOWDOWN
    sent = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                if not sent and prompt in out:  # the shell reads its terminal now
                    os.write(fd, send)
                    sent = True
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(fd)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:  # hung: end it (ours), then reap
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
    return out, os.waitstatus_to_exitcode(status)


def test_interactive_terminal(engine: Engine) -> None:
    out, code = _pty_session(engine.argv("run", "--rm", "-it", IMG, "sh"),
                             b"echo $((6*7)); tty; exit 4\n")
    assert b"42" in out and b"/dev/pts/0" in out and code == 4, out


def test_signals_reach_a_foreground_container(engine: Engine) -> None:
    proc = subprocess.Popen(engine.argv("run", "--rm", IMG, "sh", "-c",
                                        "trap 'echo got INT; exit 2' INT; echo ready; "
                                        "while :; do sleep 0.05; done"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == "got INT\n" and proc.returncode == 2, err



def test_ctrl_c_twice_kills_a_container_that_ignores_it(engine: Engine) -> None:
    proc = subprocess.Popen(engine.argv("run", "--rm", IMG, "sh", "-c", "echo ready; "
                                        "exec sleep 30"),  # PID 1 without a handler
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.1)  # sh has exec'd sleep
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert proc.poll() is None  # ignored by PID 1, as Docker's is
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGKILL


def test_exec_with_a_terminal(engine: Engine) -> None:
    engine("run", "-d", "--name", "term", IMG, "sleep", "30")
    out, code = _pty_session(engine.argv("exec", "-it", "term", "sh"),
                             b"echo $((6*7)); tty; exit 5\n")
    assert b"42" in out and b"/dev/pts/" in out and code == 5, out
    engine("rm", "-f", "term")


def test_cve_2022_23648_image_workdir_stays_in_the_root(engine: Engine,
                                                       tmp_path: pathlib.Path) -> None:
    """An image whose WorkingDir climbs out (``/../../etc``) works in the container's own
    /etc, never the host's."""
    root = build_rootfs(tmp_path / "rootfs")
    (tmp_path / "rootfs" / "etc" / "marker").write_text("inside\n")
    archive = oci_archive(tar_rootfs(root, str(tmp_path / "layer.tar")),
                          str(tmp_path / "climb.tar"), "localhost/climb:1",
                          config={"Cmd": ["sh", "-c", "pwd; cat marker"],
                                  "WorkingDir": "/../../etc"})
    out = engine("run", "--rm", archive).stdout.split()
    assert out == ["/etc", "inside"]


def test_a_detached_container_that_cannot_start_leaves_nothing(engine: Engine) -> None:
    proc = engine("run", "-d", "--name", "nostart", IMG, "/no/such/program", check=False)
    assert proc.returncode == 127 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""
    assert engine.left() == []
