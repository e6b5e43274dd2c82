"""``nsbind doctor`` on this real host, as root and as uid 65534, and on a pure cgroup v2
host (tests/vm.py's guests): every answer is compared with what the test reads itself."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest

from helpers import SLOWDOWN
from nsbind import doctor, features
from nsbind.doctor import Check
from nsbind.frozen import as_dict

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
SYSCTLS = ("user.max_user_namespaces", "kernel.unprivileged_userns_clone",
           "kernel.apparmor_restrict_unprivileged_userns")
NAMES = ["user", "kernel", "seccomp", "user namespaces", "subordinate ids",
         "newuidmap/newgidmap", "rootless network", "cgroup layout", "cgroup controllers",
         "overlayfs", "overlayfs in a user namespace", "mount API", "clone3", "libseccomp",
         "propagation of /"]


def _by_name(found: list[dict[str, Any]] | list[Check]) -> dict[str, dict[str, Any]]:
    rows: list[dict[str, Any]] = [c if isinstance(c, dict) else as_dict(c)
                                  for c in found]
    return {str(r["name"]): r for r in rows}


def _sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _expected_mode() -> str:
    """unified / hybrid / legacy from /proc/self/mountinfo (v1 mounts with a controller)."""
    v1 = v2 = False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype, options = fields[fields.index("-") + 1], fields[-1].split(",")
            if fstype == "cgroup2":
                v2 = True
            elif fstype == "cgroup" and any(o not in ("rw", "ro") and not o.startswith(
                    ("name=", "none", "xattr", "release_agent=", "clone_children"))
                    for o in options):
                v1 = True
    return {(True, True): "hybrid", (False, True): "unified", (True, False): "legacy"}.get(
        (v1, v2), "none")


def _doctor_dirs() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("nsbind-doctor-")}


def _check_sysctls(row: dict[str, Any]) -> None:
    for name in SYSCTLS:
        value = _sysctl(name)
        assert f"{name}={'not in this kernel' if value is None else value}" in row["detail"]


def test_every_check_runs_as_root_and_says_so() -> None:
    before = _doctor_dirs()
    start = time.monotonic()
    found = doctor.checks()
    took = time.monotonic() - start
    assert took < 1.0 * SLOWDOWN, f"doctor took {took:.2f} s"
    rows = _by_name(found)
    assert list(rows)[:len(NAMES)] == NAMES
    assert {n for n in rows if n.startswith("feature ")} == {
        f"feature {n}" for n in features.__all__ if n != "probe_all"}
    for row in rows.values():
        assert "failed" not in row["detail"], row
        assert row["ok"] is not False, row  # nothing needed is missing on this host
    assert rows["user"]["ok"] is True and rows["user"]["detail"].startswith("uid 0 (root)")
    assert rows["user namespaces"]["ok"] is True
    _check_sysctls(rows["user namespaces"])
    with open("/proc/filesystems") as f:
        if "overlay" in f.read():
            assert rows["overlayfs"]["ok"] is True
    assert rows["overlayfs in a user namespace"]["ok"] is True
    assert rows["cgroup layout"]["detail"].startswith(_expected_mode() + ":")
    with open("/proc/self/cgroup") as f:
        assert any(line.startswith("0::") for line in f)
    if _expected_mode() == "hybrid":  # this host: v1 controllers, v2 at .../unified
        assert "/sys/fs/cgroup/unified" in rows["cgroup layout"]["detail"]
    assert rows["cgroup controllers"]["detail"].endswith("may not use: none")
    assert rows["libseccomp"]["ok"] is True and "libseccomp.so.2" in rows["libseccomp"][
        "detail"]
    with open("/proc/self/status") as f:
        seccomp = next(line.split()[1] for line in f if line.startswith("Seccomp:"))
    assert rows["seccomp"]["ok"] is (True if seccomp == "0" else rows["seccomp"]["ok"])
    assert os.uname().release in rows["kernel"]["detail"]
    assert rows["clone3"]["ok"] is True
    assert _doctor_dirs() == before  # the probe's temp dir is gone


def _run_in_process(as_json: bool) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = doctor.run(argparse.Namespace(json=as_json))
    return code, out.getvalue()


def test_run_prints_lines_and_json() -> None:
    code, text = _run_in_process(False)
    assert code == 0
    lines = text.splitlines()
    assert all(line[:4] in ("ok  ", "--  ", "NO  ") or line.lstrip().startswith("fix: ")
               for line in lines), text
    assert any(line.startswith("ok  user ") for line in lines)
    code, text = _run_in_process(True)
    rows = json.loads(text)
    assert code == 0 and [r["name"] for r in rows][:len(NAMES)] == NAMES
    assert all(set(r) == {"name", "ok", "detail", "fix"} for r in rows)


@pytest.mark.unprivileged
def test_the_parser_takes_doctor_json() -> None:
    parser = argparse.ArgumentParser()
    doctor.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", "--json"])
    assert args.command == "doctor" and args.json is True


def _python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_the_module_runs_as_a_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "nsbind.doctor", "--json"],
                          capture_output=True, text=True, env=_python_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)][:len(NAMES)] == NAMES


def test_nsbind_doctor_once_the_cli_has_it() -> None:
    proc = subprocess.run([sys.executable, "-m", "nsbind", "doctor", "--json"],
                          capture_output=True, text=True, env=_python_env(), timeout=60)
    if proc.returncode == 2 and "invalid choice" in proc.stderr:
        pytest.skip("nsbind's cli has no doctor command yet")
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)][:len(NAMES)] == NAMES


def _nobody_python() -> str:
    """An interpreter uid 65534 can run nsbind with (this one may live under /root)."""
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                python, "-c", "import nsbind.doctor"], env=_python_env(),
                               capture_output=True, timeout=60, cwd="/")
        if probe.returncode == 0:
            return python
    pytest.skip("no interpreter that uid 65534 can run nsbind with")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv is missing (util-linux)")
def test_an_unprivileged_caller_is_told_what_it_lacks() -> None:
    python = _nobody_python()
    before = _doctor_dirs()
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           python, "-m", "nsbind.doctor", "--json"], env=_python_env(),
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert "Traceback" not in proc.stderr, proc.stderr
    rows = _by_name(json.loads(proc.stdout))
    assert proc.returncode == (1 if any(r["ok"] is False for r in rows.values()) else 0)
    assert rows["user"]["ok"] is None and "uid 65534" in rows["user"]["detail"]
    try:  # (a kernel whose tun module is not loaded has no node)
        tun = os.stat("/dev/net/tun").st_mode & 0o006 == 0o006
    except FileNotFoundError:
        tun = False
    assert rows["rootless network"]["ok"] is (tun and shutil.which("slirp4netns") is not None)
    assert "not root" in rows["user"]["detail"]
    _check_sysctls(rows["user namespaces"])
    subs = rows["subordinate ids"]
    mine = []
    for path in ("/etc/subuid", "/etc/subgid"):
        with contextlib.suppress(FileNotFoundError), open(path) as f:
            mine += [line for line in f if line.split(":")[0] in ("nobody", "65534")]
    if not mine:  # this host: no ranges for nobody
        assert subs["ok"] is False
        assert "none" in subs["detail"] or "no such file" in subs["detail"]
        assert subs["fix"] and "usermod --add-subuids" in subs["fix"] and "nobody" in subs[
            "fix"]
    # every controller on a hierarchy whose own cgroup nobody does not own: may not use
    ctrl = rows["cgroup controllers"]
    may_not = ctrl["detail"].split("may not use: ")[1].split(" (")[0].split(", ")
    from nsbind.cgroups import cgroup_layout

    for h in cgroup_layout().hierarchies:
        if h.holds_cgroups and os.stat(h.path_of(h.own or "/")).st_uid != 65534:
            assert set(h.controllers) <= set(may_not), (h, ctrl)
    if not ctrl["detail"].startswith("may use: none"):
        return
    assert ctrl["ok"] is False and ctrl["fix"]
    for row in rows.values():  # each line that is not fine says how to fix it
        assert row["ok"] is not False or row["fix"], row
    assert _doctor_dirs() == before


def test_doctor_on_a_pure_cgroup_v2_host() -> None:
    """Where the cgroups are pure v2 (the guests of ``tests/vm.py --cgroups v2``), doctor
    says so and lists every controller of the root as usable."""
    if _expected_mode() != "unified":
        pytest.skip("this host's cgroups are not pure v2 (tests/vm.py --cgroups v2 boots one)")
    proc = subprocess.run([sys.executable, "-m", "nsbind.doctor", "--json"],
                          capture_output=True, text=True, env=_python_env(), timeout=120)
    assert "Traceback" not in proc.stderr
    rows = _by_name(json.loads(proc.stdout))
    assert rows["cgroup layout"]["detail"].startswith("unified: v2 /sys/fs/cgroup (")
    with open("/sys/fs/cgroup/cgroup.controllers") as f:
        controllers = sorted(f.read().split())
    assert rows["cgroup controllers"]["detail"] == (f"may use: {', '.join(controllers)}; "
                                                    "may not use: none")
    assert rows["user"]["ok"] is True
    assert rows["user namespaces"]["ok"] is True, rows["user namespaces"]
