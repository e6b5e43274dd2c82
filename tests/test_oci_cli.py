"""``nsbind-oci`` as a client (conmon, containerd's shim, podman) sees it: the real
console script driven with subprocess, on busybox bundles, compared with runc where
clients match its words.

The test process is made a child subreaper for each test (as conmon and the shim are):
a container's init, orphaned when ``create``/``run -d`` returns, becomes this process's
child, so each test reaps it and reads its exit status.  Every container lives in a
``--root`` under tmp_path and is deleted (``delete --force``) in a finally.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import nsbind
from clients import keep_named_parent
from helpers import SLOWDOWN, as_subreaper, busybox_root, child_pids, reap_new_children
from nsbind import cgroup_layout
from nsbind.oci import default_spec_json

NSBIND_OCI = os.path.join(sysconfig.get_path("scripts"), "nsbind-oci")
TIMEOUT = 60.0

Edit = Callable[[dict[str, Any]], None]


#: this process's children before the test: the only ones reap_all leaves alone
_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def subreaper() -> Iterator[None]:
    """This process is a subreaper for the test (as conmon is); orphans the test leaves
    are killed and reaped at the end, never children it had before (the leak guard
    reports the test's own leaks: the test reaps its containers itself)."""
    if not os.path.exists(NSBIND_OCI):
        pytest.skip(f"{NSBIND_OCI} is not installed")
    with as_subreaper() as before:
        _BEFORE.clear()
        _BEFORE.update(before)
        yield


def oci(root: pathlib.Path, *args: str, stdin: str | None = None,
        timeout: float = TIMEOUT, tool: str = NSBIND_OCI) -> subprocess.CompletedProcess[str]:
    """``nsbind-oci --root ROOT ARGS...`` (or runc), stdout and stderr captured in
    files (as clients do: a container's init inherits them and outlives the call)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run([tool, "--root", str(root), *args], stdout=out, stderr=err,
                              input=None if stdin is None else stdin.encode(),
                              stdin=subprocess.DEVNULL if stdin is None else None,
                              timeout=timeout, check=False)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.args, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def cgroups_path(tmp_path: pathlib.Path, cgroup_parent: str) -> str:
    return f"/{cgroup_parent}/cli-{os.getpid()}-{tmp_path.name}"


def make_bundle(tmp_path: pathlib.Path, cgroup_parent: str, args: list[str],
                edit: Edit | None = None, name: str = "bundle") -> pathlib.Path:
    """A busybox bundle (runc spec's defaults), no terminal, host dir ``data`` (mode
    1777) bound at /data, its cgroup under the test parent."""
    bundle = tmp_path / name
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    busybox_root(rootfs)
    for d in ("proc", "dev", "sys", "tmp", "data"):
        (rootfs / d).mkdir(exist_ok=True)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    os.chmod(data, 0o1777)
    config: dict[str, Any] = default_spec_json()
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["mounts"].append({"destination": "/data", "type": "bind",
                             "source": str(data), "options": ["rbind", "rw"]})
    config["linux"]["cgroupsPath"] = cgroups_path(tmp_path, cgroup_parent)
    if edit is not None:
        edit(config)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def cgroup_dirs(path: str) -> list[str]:
    return [d for h in cgroup_layout().hierarchies if h.holds_cgroups
            for d in [h.path_of(path)] if os.path.isdir(d)]


def reap(pid: int, timeout: float = TIMEOUT) -> int:
    """Wait (bounded) for a child (the container's init, ours as subreaper)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"process {pid} did not exit in {timeout}s")
        time.sleep(0.02)


def reap_all() -> None:
    """Kill and reap every child the test left (orphaned container inits, ours as
    subreaper)."""
    reap_new_children(_BEFORE)


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def status_of(root: pathlib.Path, cid: str) -> str:
    return str(json.loads(ok(oci(root, "state", cid)))["status"])


@contextlib.contextmanager
def container(root: pathlib.Path, bundle: pathlib.Path, cid: str, *,
              started: bool = True) -> Iterator[int]:
    """create (and start) a container; yield its pid; delete --force and reap at the end."""
    pid_file = bundle.parent / f"{cid}.pid"
    try:
        ok(oci(root, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid))
        pid = int(pid_file.read_text())
        if started:
            ok(oci(root, "start", cid))
        yield pid
    finally:
        oci(root, "delete", "--force", cid)
        reap_all()


def assert_refused(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit status 1, exactly one line on stderr that names each of ``words``, no
    traceback."""
    assert proc.returncode == 1, (proc.args, proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def assert_nothing_left(root: pathlib.Path, cid: str, cgroup: str,
                        children_before: set[int]) -> None:
    assert not (root / cid).exists(), os.listdir(root / cid)
    assert cgroup_dirs(cgroup) == []
    time.sleep(0.05)
    assert child_pids() - children_before == set()


# ------------------------------------------------------------------ happy paths


@pytest.mark.unprivileged
def test_version() -> None:
    proc = subprocess.run([NSBIND_OCI, "--version"], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    out = ok(proc)
    # one version, the package's, for both commands and the installed metadata
    assert out.startswith(f"nsbind-oci version {nsbind.__version__}\n")
    assert importlib.metadata.version("nsbind") == nsbind.__version__
    assert "spec: 1." in out


@pytest.mark.unprivileged
def test_spec_matches_runc_and_refuses_to_overwrite(tmp_path: pathlib.Path) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    (tmp_path / "r").mkdir()
    (tmp_path / "n").mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(tmp_path / "r")], check=True,
                   timeout=TIMEOUT)
    ok(oci(tmp_path / "state", "spec", "--bundle", str(tmp_path / "n")))
    ours = (tmp_path / "n" / "config.json").read_text()
    assert json.loads(ours) == json.loads((tmp_path / "r" / "config.json").read_text())
    assert json.loads(ours) == default_spec_json()
    line = assert_refused(oci(tmp_path / "state", "spec", "--bundle", str(tmp_path / "n")),
                          "config.json")
    assert "exist" in line
    assert (tmp_path / "n" / "config.json").read_text() == ours


def test_create_state_start_state_delete(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, [
        "sh", "-c", "echo started > /data/out; while [ ! -e /data/go ]; do sleep 0.05; done"])
    root = tmp_path / "state"
    pid_file = tmp_path / "c1.pid"
    try:
        ok(oci(root, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1"))
        st = json.loads(ok(oci(root, "state", "c1")))
        pid = int(pid_file.read_text())
        assert st["ociVersion"].startswith("1.")
        assert st["id"] == "c1" and st["status"] == "created" and st["pid"] == pid
        assert st["bundle"] == str(bundle) and os.path.isabs(st["bundle"])
        assert not (tmp_path / "data" / "out").exists()  # parked until start
        ok(oci(root, "start", "c1"))
        wait_for((tmp_path / "data" / "out").exists, "the container's output")
        st = json.loads(ok(oci(root, "state", "c1")))
        assert st["status"] == "running" and st["pid"] == pid
        (tmp_path / "data" / "go").touch()
        assert reap(pid) == 0
        assert status_of(root, "c1") == "stopped"
        # the cgroup of a stopped container goes by rmdir: nsbind.cgroups is not imported
        proc = subprocess.run([sys.executable, "-S", "-X", "importtime", NSBIND_OCI, "--root",
                               str(root), "delete", "c1"], capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "nsbind.cgroups\n" not in proc.stderr and "nsbind.oci.lifecycle\n" in proc.stderr
        assert not (root / "c1").exists()
        assert cgroup_dirs(cgroups_path(tmp_path, cgroup_parent)) == []
        assert_refused(oci(root, "state", "c1"), "does not exist")
    finally:
        oci(root, "delete", "--force", "c1")
        reap_all()


def _no_pid_namespace(config: dict[str, Any]) -> None:
    config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                     if n["type"] != "pid"]


@pytest.mark.parametrize(("script", "no_pidns", "expected"), [
    ("true", False, 0),
    ("exit 3", False, 3),
    ("kill -TERM $$", True, 128 + signal.SIGTERM),
    ("kill -KILL $$", True, 128 + signal.SIGKILL),
], ids=["0", "3", "sigterm", "sigkill"])
def test_run_exit_status_as_runc(tmp_path: pathlib.Path, cgroup_parent: str, script: str,
                                 no_pidns: bool, expected: int) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", script],
                         _no_pid_namespace if no_pidns else None)
    root = tmp_path / "state"
    try:
        proc = oci(root, "run", "--bundle", str(bundle), "r1")
        assert proc.returncode == expected, proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (root / "r1").exists()  # run deletes the container
        assert cgroup_dirs(cgroups_path(tmp_path, cgroup_parent)) == []
    finally:
        oci(root, "delete", "--force", "r1")
        reap_all()
    if shutil.which("runc") is not None:
        runc_root = tmp_path / "runc-state"
        try:
            runc = oci(runc_root, "run", "--bundle", str(bundle), "r1", tool="runc")
        finally:
            oci(runc_root, "delete", "--force", "r1", tool="runc")
            keep_named_parent(cgroup_parent)
            reap_all()
        assert runc.returncode == expected, runc.stderr


def test_run_detached(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sleep", "100"])
    root = tmp_path / "state"
    try:
        started = time.monotonic()
        ok(oci(root, "run", "-d", "--bundle", str(bundle), "--pid-file",
               str(tmp_path / "pid"), "d1"))
        assert time.monotonic() - started < 30 * SLOWDOWN
        pid = int((tmp_path / "pid").read_text())
        st = json.loads(ok(oci(root, "state", "d1")))
        assert st["status"] == "running" and st["pid"] == pid
        ok(oci(root, "kill", "d1", "KILL"))
        assert reap(pid) == -signal.SIGKILL
        assert status_of(root, "d1") == "stopped"
        ok(oci(root, "delete", "d1"))
    finally:
        oci(root, "delete", "--force", "d1")
        reap_all()


TRAPS = ("trap 'echo USR1 >> /data/sig' USR1; trap 'echo USR2 >> /data/sig' USR2; "
         "trap 'echo TERM >> /data/sig; exit 7' TERM; echo ready > /data/ready; "
         "while :; do sleep 0.05; done")


def test_kill_by_name_number_and_signame(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", TRAPS])
    root = tmp_path / "state"
    sig = tmp_path / "data" / "sig"

    def lines() -> list[str]:
        return sig.read_text().split() if sig.exists() else []

    with container(root, bundle, "k1") as pid:
        wait_for((tmp_path / "data" / "ready").exists, "the traps")
        ok(oci(root, "kill", "k1", "USR1"))
        wait_for(lambda: lines() == ["USR1"], "USR1")
        ok(oci(root, "kill", "k1", str(int(signal.SIGUSR2))))
        wait_for(lambda: lines() == ["USR1", "USR2"], "USR2")
        ok(oci(root, "kill", "k1", "SIGTERM"))
        assert reap(pid) == 7
        assert lines() == ["USR1", "USR2", "TERM"]
        assert status_of(root, "k1") == "stopped"


def test_kill_all_reaches_every_process(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, [
        "sh", "-c", "sleep 100 & sleep 100 & echo ready > /data/ready; wait"])
    root = tmp_path / "state"
    with container(root, bundle, "a1") as pid:
        wait_for((tmp_path / "data" / "ready").exists, "the children")
        pids = json.loads(ok(oci(root, "ps", "--format", "json", "a1")))
        assert pid in pids and len(pids) == 3
        ok(oci(root, "kill", "--all", "a1", "KILL"))
        assert reap(pid) == -signal.SIGKILL
        wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids),
                 "every process gone")


def test_exec(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sleep", "100"])
    root = tmp_path / "state"
    with container(root, bundle, "e1"):
        out = ok(oci(root, "exec", "e1", "sh", "-c", "echo hello $(hostname)"))
        assert out == "hello runc\n"
        proc = oci(root, "exec", "-e", "FOO=bar baz", "--cwd", "/tmp", "-u", "1000:1001", "e1",
                   "sh", "-c", 'echo "$FOO|$(pwd)|$(id -u):$(id -g)"; exit 5')
        assert proc.returncode == 5, proc.stderr
        assert proc.stdout == "bar baz|/tmp|1000:1001\n"
        process = default_spec_json()["process"]
        process.update(terminal=False, args=["sh", "-c", 'echo "$X $(pwd)"; exit 4'],
                       env=["PATH=/bin", "X=from-process"], cwd="/data")
        (tmp_path / "process.json").write_text(json.dumps(process))
        proc = oci(root, "exec", "--process", str(tmp_path / "process.json"), "e1")
        assert (proc.returncode, proc.stdout) == (4, "from-process /data\n"), proc.stderr
        assert status_of(root, "e1") == "running"


def test_exec_gets_the_containers_seccomp_filter(tmp_path: pathlib.Path,
                                                 cgroup_parent: str) -> None:
    # as runc: an exec'd process is filtered like the container's own (the program
    # create compiled, kept in the state directory)
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}

    bundle = make_bundle(tmp_path, cgroup_parent, ["sleep", "100"], edit)
    root = tmp_path / "state"
    with container(root, bundle, "sc1"):
        assert (root / "sc1" / "seccomp.bpf").stat().st_size > 0
        proc = oci(root, "exec", "sc1", "sh", "-c",
                   "grep Seccomp: /proc/self/status; mkdir /tmp/never")
        assert proc.returncode != 0 and "Seccomp:\t2" in proc.stdout, proc
        assert "Operation not permitted" in proc.stderr


def test_a_seccomp_profile_is_compiled_once_for_every_container(
        tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    # podman sends the same profile with each container: the second create reads the
    # program the first compiled (nsbind.seccompcache), and filters as well
    def edit(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}

    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "mkdir /tmp/x"], edit)
    root = tmp_path / "state"
    for cid in ("cache1", "cache2"):
        proc = oci(root, "run", "--bundle", str(bundle), cid)
        assert proc.returncode == 1 and "Operation not permitted" in proc.stderr, proc
        entries = os.listdir(root / ".seccomp-cache")
        assert len(entries) == 1 and entries[0].endswith(".bpf"), entries
    assert ok(oci(root, "list", "-q")) == ""  # the cache is no container
    keep_named_parent(cgroup_parent)


def test_ps_and_list(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sleep", "100"])
    root = tmp_path / "state"
    with container(root, bundle, "p1") as pid:
        assert json.loads(ok(oci(root, "ps", "--format", "json", "p1"))) == [pid]
        table = ok(oci(root, "list")).splitlines()
        assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
        row = [line.split() for line in table[1:]]
        assert [r[:3] for r in row] == [["p1", str(pid), "running"]]
        listed = json.loads(ok(oci(root, "list", "--format", "json")))
        assert [(s["id"], s["pid"], s["status"], s["bundle"]) for s in listed] == [
            ("p1", pid, "running", str(bundle))]
        assert ok(oci(root, "list", "-q")) == "p1\n"


def test_pause_resume(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, [
        "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /data/n; sleep 0.02; done"])
    root = tmp_path / "state"
    count = tmp_path / "data" / "n"

    def n() -> int:
        try:
            return len(count.read_text().splitlines())
        except FileNotFoundError:
            return 0

    with container(root, bundle, "z1"):
        wait_for(lambda: n() > 2, "the counter")
        ok(oci(root, "pause", "z1"))
        assert status_of(root, "z1") == "paused"
        frozen = n()
        time.sleep(0.5)
        assert n() == frozen
        ok(oci(root, "resume", "z1"))
        assert status_of(root, "z1") == "running"
        wait_for(lambda: n() > frozen + 2, "the counter after resume")


def test_update_pids_limit(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sleep", "100"])
    root = tmp_path / "state"
    pids = cgroup_layout().controllers["pids"]
    pids_max = pathlib.Path(pids.path_of(cgroups_path(tmp_path, cgroup_parent))) / "pids.max"
    with container(root, bundle, "u1"):
        ok(oci(root, "update", "--resources", "-", "u1", stdin=json.dumps(
            {"pids": {"limit": 42}})))
        assert pids_max.read_text().strip() == "42"
        (tmp_path / "res.json").write_text(json.dumps({"pids": {"limit": 17}}))
        ok(oci(root, "update", "--resources", str(tmp_path / "res.json"), "u1"))
        assert pids_max.read_text().strip() == "17"


@pytest.mark.unprivileged
def test_features() -> None:
    proc = subprocess.run([NSBIND_OCI, "features"], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    doc = json.loads(ok(proc))
    assert isinstance(doc["linux"], dict)
    assert doc["ociVersionMax"].startswith("1.")
    # what it reports is what a config may use: every mount option word is accepted
    # on a bind, and the propagation modes nsbind refuses are not reported
    from nsbind.oci import load_spec, to_spawn

    options = doc["mountOptions"]
    assert {"rbind", "ro", "nosuid", "rprivate"} <= set(options)
    assert not {"shared", "rslave", "remount", "sync"} & set(options)
    config = default_spec_json()
    config["process"]["terminal"] = False
    config["root"]["path"] = "/nonexistent-root"  # converted, never run
    config["mounts"].append({"destination": "/x", "type": "bind", "source": "/tmp",
                             "options": [o for o in options  # tmpfs and idmap words aside
                                         if "idmap" not in o and o != "tmpcopyup"]})
    to_spawn(load_spec(json.dumps(config).encode()), cgroup_parent="/")


@pytest.mark.unprivileged
def test_log_json_appends_errors(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log.json"
    for _ in range(2):
        proc = oci(tmp_path / "state", "--log", str(log), "--log-format", "json",
                   "state", "nope")
        assert proc.returncode == 1
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) == 2
    for e in entries:
        assert e["level"] == "error"
        assert "does not exist" in e["msg"]
        assert e["time"][:4].isdigit() and "T" in e["time"]


# ------------------------------------------------------------------ bad input


def _bad_config(kind: str) -> Callable[[pathlib.Path], None]:
    def apply(bundle: pathlib.Path) -> None:
        config = bundle / "config.json"
        if kind == "missing":
            config.unlink()
        elif kind == "not-json":
            config.write_text("{not json")
        elif kind == "not-object":
            config.write_text("[1, 2]")
        elif kind == "intelRdt":
            data = json.loads(config.read_text())
            data["linux"]["intelRdt"] = {"closID": "x", "l3CacheSchema": "L3:0=f"}
            config.write_text(json.dumps(data))
        elif kind == "no-rootfs":
            shutil.rmtree(bundle / "rootfs")
    return apply


@pytest.mark.parametrize(("kind", "word"), [
    ("missing", "config.json"), ("not-json", "config.json"), ("not-object", "config.json"),
    ("intelRdt", "intelRdt"), ("no-rootfs", "rootfs")])
@pytest.mark.parametrize("command", ["create", "run"])
def test_bad_bundle_is_refused_and_leaves_nothing(tmp_path: pathlib.Path, cgroup_parent: str,
                                                  kind: str, word: str, command: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", ":"])
    _bad_config(kind)(bundle)
    root = tmp_path / "state"
    before = child_pids()
    try:
        assert_refused(oci(root, command, "--bundle", str(bundle), "b1"), word)
        assert_nothing_left(root, "b1", cgroups_path(tmp_path, cgroup_parent), before)
    finally:
        oci(root, "delete", "--force", "b1")
        reap_all()


def test_duplicate_id(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", ":"])
    root = tmp_path / "state"
    with container(root, bundle, "d1", started=False) as pid:
        before = child_pids()
        assert_refused(oci(root, "create", "--bundle", str(bundle), "d1"), "d1",
                       "already exists")
        assert child_pids() == before
        st = json.loads(ok(oci(root, "state", "d1")))
        assert (st["status"], st["pid"]) == ("created", pid)  # the first is untouched


@pytest.mark.unprivileged
@pytest.mark.parametrize("args", [["state"], ["start"], ["kill"], ["kill", "--all"],
                                  ["delete"], ["pause"], ["exec"], ["ps"]])
def test_unknown_id_does_not_exist_as_runc(tmp_path: pathlib.Path, args: list[str]) -> None:
    extra = ["true"] if args == ["exec"] else []
    line = assert_refused(oci(tmp_path / "state", *args, "nope", *extra), "nope")
    assert "does not exist" in line
    if shutil.which("runc") is not None:
        runc = oci(tmp_path / "runc-state", *args, "nope", *extra, tool="runc")
        assert runc.returncode != 0 and "does not exist" in runc.stderr  # exec: 255


def test_lifecycle_refusals(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    """start twice, delete running without --force, kill stopped: refused, nothing
    changed; wording as runc where clients match it."""
    bundle = make_bundle(tmp_path, cgroup_parent, [
        "sh", "-c", "while [ ! -e /data/go ]; do sleep 0.05; done"])
    root = tmp_path / "state"
    with container(root, bundle, "l1") as pid:
        assert_refused(oci(root, "start", "l1"), "l1")
        assert status_of(root, "l1") == "running"
        assert_refused(oci(root, "delete", "l1"), "l1")
        assert status_of(root, "l1") == "running"
        (tmp_path / "data" / "go").touch()
        assert reap(pid) == 0
        line = assert_refused(oci(root, "kill", "l1", "KILL"))
        assert "container not running" in line
        assert_refused(oci(root, "start", "l1"), "l1")
        assert status_of(root, "l1") == "stopped"


def test_kill_stopped_wording_as_runc(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", ":"])
    root = tmp_path / "runc-state"
    try:
        ok(oci(root, "run", "-d", "--bundle", str(bundle), "r1", tool="runc"))
        wait_for(lambda: '"stopped"' in oci(root, "state", "r1", tool="runc").stdout,
                 "runc's container to stop")
        runc = oci(root, "kill", "r1", "KILL", tool="runc")
    finally:
        oci(root, "delete", "--force", "r1", tool="runc")
        keep_named_parent(cgroup_parent)
        reap_all()
    assert runc.returncode == 1 and "container not running" in runc.stderr


@pytest.mark.parametrize("kind", ["absent", "regular-file", "directory"])
def test_console_socket_not_a_socket(tmp_path: pathlib.Path, cgroup_parent: str,
                                     kind: str) -> None:
    def terminal(config: dict[str, Any]) -> None:
        config["process"]["terminal"] = True

    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", ":"], terminal)
    path = tmp_path / "console"
    if kind == "regular-file":
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    root = tmp_path / "state"
    before = child_pids()
    try:
        assert_refused(oci(root, "create", "--bundle", str(bundle), "--console-socket",
                           str(path), "t1"), "console")
        assert_nothing_left(root, "t1", cgroups_path(tmp_path, cgroup_parent), before)
    finally:
        oci(root, "delete", "--force", "t1")
        reap_all()


def test_console_socket_nobody_listening(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    def terminal(config: dict[str, Any]) -> None:
        config["process"]["terminal"] = True

    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", ":"], terminal)
    path = tmp_path / "console.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # bound, never listened: connect is refused
    root = tmp_path / "state"
    before = child_pids()
    try:
        assert_refused(oci(root, "create", "--bundle", str(bundle), "--console-socket",
                           str(path), "t2"), "console")
        assert_nothing_left(root, "t2", cgroups_path(tmp_path, cgroup_parent), before)
    finally:
        oci(root, "delete", "--force", "t2")
        reap_all()


@pytest.mark.unprivileged
@pytest.mark.parametrize("cid", ["../x", "a/b", "-x", ".."])
def test_invalid_id(tmp_path: pathlib.Path, cgroup_parent: str, cid: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", ":"])
    root = tmp_path / "state"
    before = child_pids()
    try:
        args = ["create", "--bundle", str(bundle), "--", cid]
        assert_refused(oci(root, *args), "invalid container id")
        assert not (tmp_path / "x").exists()
        assert not root.exists() or os.listdir(root) == []
        assert cgroup_dirs(cgroups_path(tmp_path, cgroup_parent)) == []
        assert child_pids() == before
    finally:
        reap_all()


@pytest.mark.unprivileged
def test_preserve_fds_not_open(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", ":"])
    root = tmp_path / "state"
    before = child_pids()
    try:
        # subprocess closes every fd above 2 in the child: fds 3..7 are not open
        assert_refused(oci(root, "create", "--preserve-fds", "5", "--bundle", str(bundle),
                           "f1"), "preserve-fds")
        assert_nothing_left(root, "f1", cgroups_path(tmp_path, cgroup_parent), before)
    finally:
        oci(root, "delete", "--force", "f1")
        reap_all()


def test_run_in_the_foreground_holds_the_terminal_itself(tmp_path: pathlib.Path,
                                                         cgroup_parent: str) -> None:
    """process.terminal without a console socket: `run` makes the container's pty, copies
    between it and its own terminal (the window size too) and exits with the status."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    def edit(config: dict[str, Any]) -> None:
        config["process"]["terminal"] = True

    bundle = make_bundle(tmp_path, cgroup_parent,
                         ["sh", "-c", "tty; stty size; read x; echo got:$x; exit 5"], edit)
    pid, fd = pty.fork()
    if pid == 0:  # the child: nsbind-oci on a terminal, as a user at a shell runs it
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        os.execv(NSBIND_OCI, [NSBIND_OCI, "--root", str(tmp_path / "state"), "run",
                              "--bundle", str(bundle), "tty1"])
    try:
        out = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and b"got:" not in out:
            if b"33 101" in out and b"hello" not in out:
                os.write(fd, b"hello\n")
                out += b"hello"
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        if b"got:" not in out:  # stuck: end it (and with it the container) to report
            os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = out.decode(errors="replace")
    assert "/dev/pts/0" in text and "33 101" in text and "got:hello" in text, text
    assert os.waitstatus_to_exitcode(status) == 5
    assert not (tmp_path / "state" / "tty1").exists()


@pytest.mark.unprivileged
def test_a_config_json_that_is_a_fifo_is_refused_without_hanging(tmp_path: pathlib.Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    os.mkfifo(bundle / "config.json")
    proc = oci(tmp_path / "state", "create", "--bundle", str(bundle), "fifo1", timeout=20)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"nsbind-oci: {bundle}/config.json is a FIFO, not a regular file: refused"]
    assert not (tmp_path / "state" / "fifo1").exists()
