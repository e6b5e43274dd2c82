"""The main job: ``python -m nsbind`` shows what a fresh set of namespaces sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "nsbind", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_demo_shows_isolation() -> None:
    views = json.loads(_run("--json").stdout)
    host, fresh = views["this process"], views["fresh namespaces"]
    assert fresh["pid"] == 1
    assert (host["hostname"], fresh["hostname"]) == (os.uname().nodename, "nsbind-demo")
    assert fresh["processes visible"] == 1
    assert fresh["network interfaces"] == "lo"
    for ns in ("net", "pid", "uts", "ipc", "mnt", "cgroup"):
        assert host[f"{ns} namespace"] != fresh[f"{ns} namespace"], ns
    assert host["user namespace"] == fresh["user namespace"]


def test_demo_table_is_the_default() -> None:
    lines = _run().stdout.splitlines()
    assert "fresh namespaces" in lines[0]
    assert lines[1].split() == ["pid", lines[1].split()[1], "1"]
