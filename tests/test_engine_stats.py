"""``nsbind stats`` and ``top`` on a real cgroup with a real process in it: memory,
pids and CPU time read as Docker shows them, the table, and ps (or /proc) output."""

from __future__ import annotations

import os
import pathlib
import re
import sys
from collections.abc import Iterator

import pytest

from nsbind import PIPE, Cgroup, Process, spawn
from nsbind.cgroups import usable_controllers
from nsbind.engine.errors import EngineError
from nsbind.engine.stats import (
    Sample,
    cpu_percent,
    format_table,
    human_size,
    human_size_decimal,
    sample,
    top,
)

# allocate and touch 64 MiB, say so, burn 0.3 s of CPU on "go", say so, wait for EOF
CHILD = """
import sys, time
b = bytearray(64 << 20)
for i in range(0, len(b), 4096):
    b[i] = 1
print("ready", flush=True)
sys.stdin.readline()
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
print("done", flush=True)
sys.stdin.read()
"""


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))


@pytest.fixture
def busy(cgroup_parent: str) -> Iterator[tuple[Cgroup, Process]]:
    """A cgroup limited to 512 MiB (where the memory controller is usable) with the
    CHILD in it; both removed at the end."""
    limit = "512M" if "memory" in usable_controllers() else None
    with Cgroup.create(f"stats-{os.getpid()}", parent=cgroup_parent,
                       memory_max=limit) as cg:
        with spawn([sys.executable, "-c", CHILD], cgroup=cg, stdin=PIPE,
                   stdout=PIPE) as proc:
            assert proc.stdout is not None and proc.stdin is not None
            try:
                assert proc.stdout.readline() == b"ready\n"
                yield cg, proc
            finally:
                if proc.returncode is None:
                    proc.kill()


def test_sample_reads_memory_pids_and_cpu_as_docker(busy: tuple[Cgroup, Process]) -> None:
    cg, proc = busy
    assert proc.stdin is not None and proc.stdout is not None
    first = sample("web", cg.path)
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"done\n"
    second = sample("web", cg.path)
    assert first.name == "web"
    if "memory" in usable_controllers():
        assert first.memory_usage is not None and first.memory_usage >= 60 << 20
        assert first.memory_limit == min(512 << 20, mem_total())
    else:  # no figure to read: none is made up, and the limit is the machine's
        assert first.memory_usage is None and first.memory_limit == mem_total()
    assert first.pids == 1
    assert first.cpu_usage_us is not None and second.cpu_usage_us is not None
    assert second.cpu_usage_us - first.cpu_usage_us >= 250_000
    assert second.time > first.time
    ncpus = os.cpu_count() or 1
    pct = cpu_percent(first, second, ncpus)
    assert 0 < pct <= 100 * ncpus
    assert cpu_percent(second, second, ncpus) == 0.0
    table = format_table([(second, pct)])
    header, row = table.splitlines()
    assert re.split(r"\s{2,}", header) == ["CONTAINER", "CPU %", "MEM USAGE / LIMIT",
                                            "MEM %", "BLOCK I/O", "PIDS"]
    assert row.startswith("web") and f"{pct:.2f}%" in row and row.endswith(" 1")
    assert f"/ {human_size(second.memory_limit or 0)}" in row


def test_an_unlimited_cgroup_reports_the_host_memory(cgroup_parent: str) -> None:
    with Cgroup.create(f"stats-idle-{os.getpid()}", parent=cgroup_parent) as cg:
        s = sample("idle", cg.path)
    assert s.memory_limit == mem_total()
    assert s.pids == 0
    assert s.io_read == 0 and s.io_write == 0


@pytest.mark.unprivileged
def test_a_missing_cgroup_is_an_engine_error(cgroup_parent: str) -> None:
    with pytest.raises(EngineError, match="cgroup of ghost"):
        sample("ghost", f"/{cgroup_parent}/no-such-cgroup")
    with pytest.raises(EngineError, match="cgroup of bad"):
        sample("bad", f"/{cgroup_parent}/../x")


def test_top_lists_the_pids_and_their_commands(busy: tuple[Cgroup, Process],
                                              tmp_path: pathlib.Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _, proc = busy
    out = top([proc.pid])
    header, *rows = out.splitlines()
    assert header.split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(rows) == 1 and rows[0].split()[1] == str(proc.pid)
    assert "import sys, time" in rows[0]  # the command line, arguments joined
    custom = top([proc.pid], ["aux"]).splitlines()
    assert custom[0].split()[:2] == ["USER", "PID"] and len(custom) == 2
    assert custom[1].split()[1] == str(proc.pid)
    with pytest.raises(EngineError, match="PID field"):
        top([proc.pid], ["-o", "comm"])
    monkeypatch.setenv("PATH", str(tmp_path))  # no ps: read /proc
    fallback = top([proc.pid, 999_999_999])  # a pid that is gone is left out
    header, *rows = fallback.splitlines()
    assert header.split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(rows) == 1 and rows[0].split()[:3] == ["root", str(proc.pid), str(os.getpid())]
    assert "import sys, time" in rows[0]


@pytest.mark.unprivileged
def test_sizes_and_table_formatting_match_docker() -> None:
    assert human_size(0) == "0B"
    assert human_size(1536 * 1024) == "1.5MiB"
    assert human_size(int(7.775 * 2**30)) == "7.775GiB"
    assert human_size(1023) == "1023B"
    assert human_size_decimal(0) == "0B"
    assert human_size_decimal(12_345_678) == "12.3MB"
    s = Sample("c1", None, None, None, None, 0, 0, 0.0)
    assert format_table([(s, 0.0)]).splitlines()[1].split() == [
        "c1", "--", "--", "/", "--", "--", "0B", "/", "0B", "--"]
    assert cpu_percent(s, s, 4) == 0.0
    a = Sample("c", 0, 0, 1, 1, 0, 0, 0.0)
    b = Sample("c", 8_000_000, 0, 1, 1, 0, 0, 1.0)
    assert cpu_percent(a, b, 4) == 400.0  # capped at 100 x ncpus
