"""SECURITY.md's attacks that the OCI container layer owns, each a bundle run under
runc, crun (where it runs on this host) and ``nsbind-oci``.

For each: the host files the attack aims at are unchanged after every runtime; where
runc refuses the bundle, nsbind-oci refuses it too (exit status 1, one line on
stderr); where runc runs it safely, nsbind-oci runs it with the same safe effect (what
the container saw, printed on its stdout, compared).

crun 1.8.1 refuses this hybrid-cgroup host ("cgroups in hybrid mode not supported"):
its cases skip with crun's own message when it does.  runc 1.1.5 predates the fixes
of CVE-2025-52565 and CVE-2025-52881: where runc changes the host, its case is an
expected failure naming the CVE (and the victim is a test-owned file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clients import keep_named_parent
from helpers import as_subreaper, busybox_root, reap_new_children, tree
from nsbind import cgroup_layout
from nsbind.oci import default_spec_json

NSBIND_OCI = os.path.join(sysconfig.get_path("scripts"), "nsbind-oci")
RUNTIMES = ("runc", "crun", "nsbind-oci")
TIMEOUT = 60.0
HOST_FILES = ("/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname",
              "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/ostype")

Edit = Callable[[dict[str, Any]], None]


#: this process's children before the test: the only ones _reap_all leaves alone
_BEFORE: set[int] = set()


def _reap_all() -> None:
    reap_new_children(_BEFORE)


@pytest.fixture(autouse=True)
def subreaper() -> Iterator[None]:
    """Containers' inits orphaned by ``create`` become this process's children (as
    conmon's): reaped by each case, and killed and reaped at the end if left (never a
    child this process had before the test)."""
    with as_subreaper() as before:
        _BEFORE.clear()
        _BEFORE.update(before)
        yield


def _tool_path(tool: str) -> str:
    path = NSBIND_OCI if tool == "nsbind-oci" else shutil.which(tool)
    if path is None or not os.path.exists(path):
        pytest.skip(f"{tool} is not installed")
    return path


@dataclasses.dataclass
class Outcome:
    tool: str
    code: int
    out: str  # the container's stdout
    err: str  # the runtime's stderr

    @property
    def refused(self) -> bool:
        return self.code != 0 and not self.out


def _host_state(victims: list[pathlib.Path]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for path in HOST_FILES:
        with open(path) as f:
            state[path] = f.read()
    for v in victims:
        if v.is_dir():
            state[str(v)] = tree(v)
        elif v.exists() or v.is_symlink():
            st = v.lstat()
            state[str(v)] = (st.st_mode, st.st_uid, st.st_size,
                             v.read_bytes() if v.is_file() else None)
        else:
            state[str(v)] = None
    # mounts in the host's namespace on or below the victims' directories (the rest of
    # the machine mounts and unmounts meanwhile: the leak guard attributes those)
    scopes = tuple(str(v.parent) for v in victims)
    with open("/proc/self/mountinfo") as f:
        points = [line.split(" - ")[0].split(None, 4)[4].split()[0] for line in f]
    state["mounts"] = sorted(p for p in points if p.startswith(scopes))
    return state


def _cgroup_dirs(path: str) -> list[str]:
    return [d for h in cgroup_layout().hierarchies if h.holds_cgroups
            for d in [h.path_of(path)] if os.path.isdir(d)]


@dataclasses.dataclass
class Case:
    """A bundle factory: ``build(dir)`` makes the bundle under ``dir`` and returns it."""
    tmp_path: pathlib.Path
    cgroup_parent: str
    args: list[str]
    edit: Edit | None = None
    prepare: Callable[[pathlib.Path], None] | None = None  # the rootfs, before the run
    terminal: bool = False

    def build(self, where: pathlib.Path) -> pathlib.Path:
        bundle = where / "bundle"
        rootfs = bundle / "rootfs"
        rootfs.mkdir(parents=True)
        busybox_root(rootfs)
        for d in ("proc", "dev", "sys", "tmp"):
            (rootfs / d).mkdir(exist_ok=True)
        config: dict[str, Any] = default_spec_json()
        config["process"]["terminal"] = self.terminal
        config["process"]["args"] = self.args
        config["linux"]["cgroupsPath"] = (f"/{self.cgroup_parent}/atk-{os.getpid()}-"
                                          f"{self.tmp_path.name}-{where.name}")
        if self.edit is not None:
            self.edit(config)
        (bundle / "config.json").write_text(json.dumps(config))
        if self.prepare is not None:
            self.prepare(rootfs)
        return bundle


def _console_listener(path: pathlib.Path) -> tuple[socket.socket, threading.Thread,
                                                     list[bytes]]:
    """Listen on ``path``; a thread receives the pty master (exactly one fd) and reads
    the container's output from it until EOF."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(TIMEOUT)
    got: list[bytes] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return  # not exactly one fd: no terminal output (compared as such)
        master = fds[0]
        try:
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the container's side closed
                    break
                if not chunk:
                    break
                got.append(chunk)
        finally:
            os.close(master)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, got


def run_case(tool: str, case: Case, where: pathlib.Path) -> Outcome:
    """create (with a console socket when the case has a terminal), start, wait,
    delete: the container's stdout and the runtime's stderr."""
    exe = _tool_path(tool)
    where.mkdir(parents=True)
    bundle = case.build(where)
    root = where / "state"
    cid = f"atk-{tool}"
    out_path = where / "stdout"
    err_path = where / "stderr"
    pid_file = where / "pid"
    listener: socket.socket | None = None
    thread: threading.Thread | None = None
    got: list[bytes] = []
    create = [exe, "--root", str(root), "create", "--bundle", str(bundle), "--pid-file",
              str(pid_file)]
    if case.terminal:
        sock_path = pathlib.Path(tempfile.mkdtemp(prefix="atk-console-")) / "s"
        listener, thread, got = _console_listener(sock_path)
        create += ["--console-socket", str(sock_path)]
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.run([*create, cid], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=err, timeout=TIMEOUT, check=False)
            code = proc.returncode
            if code == 0:
                pid = int(pid_file.read_text())
                started = subprocess.run([exe, "--root", str(root), "start", cid],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         timeout=TIMEOUT, check=False)
                if started.returncode != 0:
                    code = started.returncode
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + TIMEOUT
                while True:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        if started.returncode == 0:
                            code = os.waitstatus_to_exitcode(status)
                        break
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        raise AssertionError(f"{tool}: the container did not exit")
                    time.sleep(0.02)
    finally:
        subprocess.run([exe, "--root", str(root), "delete", "--force", cid],
                       capture_output=True, timeout=TIMEOUT, check=False)
        _reap_all()
        keep_named_parent(case.cgroup_parent)
        if listener is not None:
            sock_dir = os.path.dirname(listener.getsockname())
            with contextlib.suppress(OSError):  # wakes an accept no runtime answered
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            assert thread is not None
            thread.join(TIMEOUT)
            shutil.rmtree(sock_dir, ignore_errors=True)
    out_text = out_path.read_text(errors="replace")
    if case.terminal:
        out_text += b"".join(got).decode(errors="replace").replace("\r\n", "\n")
    err_text = err_path.read_text(errors="replace")
    if tool == "crun" and "hybrid mode not supported" in err_text:
        pytest.skip(f"crun refuses this host: {err_text.strip()}")
    assert not (root / cid).exists() or tool != "nsbind-oci"
    return Outcome(tool, code, out_text, err_text)


def check_case(tool: str, case: Case, victims: list[pathlib.Path], cve: str,
               unsafe: Callable[[Outcome], str | None] | None = None) -> Outcome:
    """Run the case under ``tool``; the host is unchanged.  For nsbind-oci, runc's
    outcome on the same bundle too: refused where runc refuses, and the same safe
    effect where runc runs it."""
    before = _host_state(victims)
    outcome = run_case(tool, case, case.tmp_path / tool)
    after = _host_state(victims)
    seen = None if unsafe is None else unsafe(outcome)
    if tool != "nsbind-oci":
        if after != before:
            pytest.xfail(f"{tool} is open to {cve}: the host changed "
                         f"({_changes(before, after)})")
        if seen is not None:
            pytest.xfail(f"{tool} is open to {cve}: {seen}")
        return outcome
    assert after == before, f"nsbind-oci changed the host: {_changes(before, after)}"
    assert seen is None, f"nsbind-oci is open to {cve}: {seen}: {outcome}"
    reference = run_case("runc", case, case.tmp_path / "runc-reference")
    runc_safe = _host_state(victims) == after and (unsafe is None or unsafe(reference) is None)
    if reference.refused:
        assert outcome.code == 1, (outcome, reference)
        lines = outcome.err.splitlines()
        assert len(lines) == 1 and "Traceback" not in outcome.err, outcome.err
        assert not outcome.out, outcome
    elif runc_safe:
        assert (outcome.code, outcome.out) == (reference.code, reference.out), (
            outcome, reference)
    return outcome


def _changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {str(before.get(k))[:120]} -> {str(after.get(k))[:120]}"
                     for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k))


# --------------------------------------------- CVE-2019-19921 / CVE-2023-27561


def _victim_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    victim = tmp_path / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "file").write_text("victim\n")
    return victim


@pytest.mark.parametrize("tool", RUNTIMES)
@pytest.mark.parametrize(("link", "destination"), [
    ("/proc", "/evil/sys/kernel"),
    ("/proc/self/attr", "/evil"),
    ("../../../../../../proc", "/evil/self/attr"),
], ids=["evil-to-proc", "volume-to-proc-self-attr", "relative-to-proc"])
def test_cve_2019_19921_mount_through_symlink_into_proc(
        tmp_path: pathlib.Path, cgroup_parent: str, tool: str, link: str,
        destination: str) -> None:
    """A bind mount whose destination reaches /proc through a rootfs symlink: never
    over the container's procfs (the fake files of ``victim`` do not stand in for
    /proc), and nothing on the host changes."""
    victim = _victim_dir(tmp_path)

    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": destination, "type": "bind",
                                 "source": str(victim), "options": ["rbind", "rw"]})

    def prepare(rootfs: pathlib.Path) -> None:
        os.symlink(link, rootfs / "evil")

    case = Case(tmp_path, cgroup_parent, [
        "sh", "-c", "echo pwned > /proc/sys/kernel/file; echo pwned > /evil/file; "
        "cat /proc/sys/kernel/ostype; cat /proc/self/attr/current; "
        "ls /proc/sys/kernel | head -3"], edit, prepare)
    check_case(tool, case, [victim], "CVE-2023-27561")
    assert (victim / "file").read_text() == "victim\n"
    assert sorted(os.listdir(victim)) == ["file"]


# ---------------------------------------------------------------- CVE-2023-28642


@pytest.mark.parametrize("tool", RUNTIMES)
@pytest.mark.parametrize("target", ["relative-in-rootfs", "absolute-in-rootfs",
                                    "absolute-host", "relative-escape"])
@pytest.mark.parametrize("label", ["none", "apparmor", "selinux"])
def test_cve_2023_28642_rootfs_proc_is_a_symlink(tmp_path: pathlib.Path, cgroup_parent: str,
                                                 tool: str, target: str, label: str) -> None:
    """rootfs/proc a symlink (into the rootfs, or naming a host directory): refused,
    or procfs lands inside the rootfs only; the host directory stays untouched; an
    apparmorProfile/selinuxLabel is not written through a fake /proc."""
    victim = _victim_dir(tmp_path)
    link = {"relative-in-rootfs": "tmp", "absolute-in-rootfs": "/tmp",
            "absolute-host": str(victim),
            "relative-escape": "../" * 16 + str(victim).lstrip("/")}[target]

    def edit(config: dict[str, Any]) -> None:
        if label == "apparmor":
            config["process"]["apparmorProfile"] = "nsbind-test-profile"
        elif label == "selinux":
            config["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"

    def prepare(rootfs: pathlib.Path) -> None:
        (rootfs / "proc").rmdir()
        os.symlink(link, rootfs / "proc")
        (rootfs / victim.relative_to("/")).mkdir(parents=True)

    case = Case(tmp_path, cgroup_parent, [
        "sh", "-c", "cat /proc/self/attr/current 2>&1; echo pwned > /proc/self/attr/exec; "
        "stat -f -c %T /proc/ 2>&1"], edit, prepare)
    check_case(tool, case, [victim], "CVE-2023-28642")
    assert tree(victim) == {"file": tree(victim)["file"]}
    assert (victim / "file").read_text() == "victim\n"


# ---------------------------------------------------------------- CVE-2025-52565


def _no_dev_tmpfs(config: dict[str, Any]) -> None:
    """The image's own /dev (no tmpfs over it; devpts still at /dev/pts), so its
    console symlink is seen."""
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/dev"]


@pytest.mark.parametrize("tool", RUNTIMES)
@pytest.mark.parametrize("target", ["host-file", "proc-domainname"])
def test_cve_2025_52565_dev_console_symlink(tmp_path: pathlib.Path, cgroup_parent: str,
                                            tool: str, target: str) -> None:
    """process.terminal with a console socket; the rootfs /dev/console a symlink to a
    host file (or a procfs file): the host file is untouched, the procfs file never
    becomes writable through /dev/console."""
    victim = tmp_path / "victim-file"
    victim.write_text("victim\n")
    os.chmod(victim, 0o644)
    link = str(victim) if target == "host-file" else "/proc/sys/kernel/domainname"

    def prepare(rootfs: pathlib.Path) -> None:
        os.symlink(link, rootfs / "dev" / "console")
        os.symlink("pts/ptmx", rootfs / "dev" / "ptmx")
        for d in ("pts", "shm", "mqueue"):
            (rootfs / "dev" / d).mkdir()

    def unsafe(outcome: Outcome) -> str | None:
        if "domainname-type=character special file" in outcome.out:
            return "the pty is mounted over /proc/sys/kernel/domainname"
        if "domainname=pwned" in outcome.out:
            return "/proc/sys/kernel/domainname written through /dev/console"
        return None

    # stat, not cat: where the pty is mounted over the procfs file, cat would block
    case = Case(tmp_path, cgroup_parent, [
        "sh", "-c", "echo pwned > /dev/console 2>/dev/null; "
        "echo \"domainname-type=$(stat -c %F /proc/sys/kernel/domainname)\"; "
        "[ -f /proc/sys/kernel/domainname ] && "
        "echo \"domainname=$(cat /proc/sys/kernel/domainname)\"; "
        "echo \"console=$(stat -c %F /dev/console)\""],
        _no_dev_tmpfs, prepare, terminal=True)
    check_case(tool, case, [victim], "CVE-2025-52565", unsafe)
    assert victim.read_text() == "victim\n"


# ---------------------------------------------------------------- CVE-2025-52881


@pytest.mark.parametrize("tool", RUNTIMES)
@pytest.mark.parametrize("over", ["bind-dir", "tmpfs", "bind-dir-kernel"])
def test_cve_2025_52881_mount_over_proc_sys_with_sysctl(
        tmp_path: pathlib.Path, cgroup_parent: str, tool: str, over: str) -> None:
    """A mount over /proc/sys (or /proc/sys/kernel) and a linux.sysctl entry: the
    sysctl never lands in the mounted thing (the host directory ``victim``), and the
    host's sysctls are unchanged.  A runtime without sysctl support refuses."""
    victim = _victim_dir(tmp_path)
    (victim / "kernel").mkdir()
    (victim / "kernel" / "domainname").write_text("victim\n")
    (victim / "domainname").write_text("victim\n")

    def edit(config: dict[str, Any]) -> None:
        if over == "tmpfs":
            config["mounts"].append({"destination": "/proc/sys", "type": "tmpfs",
                                     "source": "tmpfs", "options": ["nosuid"]})
        else:
            dest = "/proc/sys/kernel" if over == "bind-dir-kernel" else "/proc/sys"
            config["mounts"].append({"destination": dest, "type": "bind",
                                     "source": str(victim), "options": ["rbind", "rw"]})
        config["linux"]["sysctl"] = {"kernel.domainname": "pwned"}

    case = Case(tmp_path, cgroup_parent, [
        "sh", "-c", "echo \"domainname=$(cat /proc/sys/kernel/domainname 2>&1)\"; "
        "ls /proc/sys/ | head -3"], edit)
    outcome = check_case(tool, case, [victim], "CVE-2025-52881")
    assert (victim / "kernel" / "domainname").read_text() == "victim\n"
    assert (victim / "domainname").read_text() == "victim\n"
    del outcome
