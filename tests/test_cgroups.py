"""Cgroup layout discovery: this host (hybrid), and recorded unified and legacy hosts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nsbind import PIPE, Cgroup, spawn
from nsbind.cgroups import cgroup_layout

V2_ONLY_MOUNTINFO = """\
24 31 0:22 / /sys rw,nosuid - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
V2_ONLY_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t0\t80\t1
cpu\t0\t80\t1
memory\t0\t80\t1
pids\t0\t80\t1
net_cls\t0\t1\t1
"""
LEGACY_MOUNTINFO = """\
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:29 /docker /mnt/memory-again rw - cgroup cgroup rw,memory
"""
LEGACY_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpu\t2\t1\t1
cpuacct\t2\t1\t1
memory\t3\t1\t1
hugetlb\t0\t1\t0
"""
LEGACY_SELF = "3:memory:/user.slice\n2:cpu,cpuacct:/\n1:name=systemd:/user.slice/x.scope\n"


def test_this_host_matches_proc() -> None:
    layout = cgroup_layout()
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            own[names] = path
    with open("/proc/self/mountinfo") as f:
        fstypes = {line.split(" - ")[1].split()[0] for line in f}
    has_v1 = "cgroup" in fstypes
    has_v2 = "cgroup2" in fstypes
    assert layout.mode == ("hybrid" if has_v1 and has_v2 else "unified" if has_v2 else "legacy")
    for h in layout.hierarchies:
        if h.version == 2:
            assert h.own == own[""]
            with open(f"{h.mountpoint}/cgroup.controllers") as f:
                assert h.controllers == frozenset(f.read().split())
        elif h.controllers:
            assert h.own == own[",".join(sorted(h.controllers))] or h.own in own.values()
    for controller, h in layout.controllers.items():
        assert controller in h.controllers


def test_this_hybrid_host_has_memory_on_v1_and_reports_net_cls_unmounted() -> None:
    layout = cgroup_layout()
    if layout.mode != "hybrid":
        pytest.skip(f"this host's cgroup layout is {layout.mode}, not hybrid")
    assert layout.hierarchy_for("memory").version == 1
    assert layout.unified is not None
    if "net_cls" in layout.unmounted:
        with pytest.raises(LookupError, match="net_cls is compiled in but not mounted"):
            layout.hierarchy_for("net_cls")


def test_recorded_unified_host() -> None:
    layout = cgroup_layout(V2_ONLY_MOUNTINFO, V2_ONLY_CGROUPS, "0::/user.slice\n",
                           read_controllers=lambda mp: "cpuset cpu memory pids")
    assert layout.mode == "unified"
    assert layout.unified is not None and layout.unified.own == "/user.slice"
    assert layout.hierarchy_for("memory").mountpoint == "/sys/fs/cgroup"
    assert layout.unmounted == {"net_cls"}
    assert layout.unified.path_of("/user.slice/job") == "/sys/fs/cgroup/user.slice/job"


def test_recorded_legacy_host_ignores_binds_and_disabled_controllers() -> None:
    layout = cgroup_layout(LEGACY_MOUNTINFO, LEGACY_CGROUPS, LEGACY_SELF)
    assert layout.mode == "legacy"
    assert [h.mountpoint for h in layout.hierarchies] == [
        "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory"]
    assert layout.hierarchy_for("cpuacct") is layout.hierarchy_for("cpu")
    assert layout.hierarchy_for("memory").own == "/user.slice"
    assert layout.hierarchies[0].name == "systemd"
    assert layout.hierarchies[0].own == "/user.slice/x.scope"
    with pytest.raises(LookupError, match="no cgroup hierarchy carries the hugetlb"):
        layout.hierarchy_for("hugetlb")


def test_cli_prints_the_layout() -> None:
    out = subprocess.run([sys.executable, "-m", "nsbind", "cgroups", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == cgroup_layout().to_dict()
    table = subprocess.run([sys.executable, "-m", "nsbind", "cgroups"],
                           capture_output=True, text=True, check=True).stdout
    assert table.startswith(f"cgroup layout: {cgroup_layout().mode}\n")


# ---------------------------------------------------------------- Cgroup


def _run_in(cg: Cgroup, script: str) -> tuple[int, str, str]:
    with spawn(["sh", "-c", script], cgroup=cg, stdout=PIPE, stderr=PIPE) as proc:
        out, err = proc.communicate(timeout=60)
    assert out is not None and err is not None and proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_create_spans_every_hierarchy_and_spawn_joins_them(cgroup_parent: str) -> None:
    with Cgroup.create("span", parent=cgroup_parent) as cg:
        code, out, _ = _run_in(cg, "cat /proc/self/cgroup")
        assert code == 0
        for line in out.splitlines():
            _, names, path = line.split(":", 2)
            if not names.startswith("name="):
                assert path == f"/{cgroup_parent}/span", line
        for h in cg.layout.hierarchies:
            if h.version == 2 or h.controllers:
                assert os.path.isdir(h.path_of(cg.path))
    for h in cg.layout.hierarchies:
        assert not os.path.exists(h.path_of(f"/{cgroup_parent}/span"))


def test_pids_max_makes_fork_fail(cgroup_parent: str) -> None:
    with Cgroup.create("pids", parent=cgroup_parent, pids_max=3) as cg:
        _, _, err = _run_in(cg, "for i in 1 2 3 4 5 6; do sleep 1 & done; wait")
    assert "fork" in err.lower() or "resource temporarily unavailable" in err.lower(), err


def test_memory_max_oom_kills_and_is_counted(cgroup_parent: str) -> None:
    with Cgroup.create("mem", parent=cgroup_parent, memory_max="32M") as cg:
        assert cg.oom_kills() == 0
        with spawn([sys.executable, "-c", "b = bytearray(256 << 20)"], cgroup=cg) as proc:
            assert proc.wait(timeout=60) == -signal.SIGKILL
        assert cg.oom_kills() >= 1


def test_freeze_thaw_and_kill(cgroup_parent: str) -> None:
    with Cgroup.create("frz", parent=cgroup_parent) as cg:
        procs = [spawn(["sleep", "60"], cgroup=cg) for _ in range(3)]
        assert sorted(cg.procs()) == sorted(p.pid for p in procs)
        cg.freeze()
        cg.thaw()
        cg.kill()
        assert [p.wait(timeout=30) for p in procs] == [-signal.SIGKILL] * 3


def test_bad_limit_names_the_file_and_leaves_nothing(cgroup_parent: str) -> None:
    layout = cgroup_layout()
    with pytest.raises(OSError, match=r"set (memory.max|memory.limit_in_bytes)=lots on "):
        Cgroup.create("bad", parent=cgroup_parent, memory_max="lots")
    for h in layout.hierarchies:
        assert not os.path.exists(h.path_of(f"/{cgroup_parent}/bad"))


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_invalid_names_are_refused(name: str, cgroup_parent: str) -> None:
    with pytest.raises(ValueError, match="invalid cgroup name"):
        Cgroup.create(name, parent=cgroup_parent)


def test_cpu_max_limits_a_busy_loop_to_about_a_fifth(cgroup_parent: str) -> None:
    with Cgroup.create("cpu", parent=cgroup_parent, cpu_max=0.2) as cg:
        with spawn(["sh", "-c", "while :; do :; done"], cgroup=cg) as proc:
            before = cg.cpu_usage_us()
            started = time.monotonic()
            time.sleep(1.0)
            used = (cg.cpu_usage_us() - before) / 1e6 / (time.monotonic() - started)
            proc.kill()
        assert 0.1 <= used <= 0.3, f"used {used:.2f} CPUs under cpu_max=0.2"


def test_cpu_weight_is_written(cgroup_parent: str) -> None:
    with Cgroup.create("weight", parent=cgroup_parent, cpu_weight=200) as cg:
        h = cg.layout.hierarchy_for("cpu")
        knob = "cpu.weight" if h.version == 2 else "cpu.shares"
        with open(f"{h.path_of(cg.path)}/{knob}") as f:
            assert int(f.read()) == (200 if h.version == 2 else 2 + 199 * 262142 // 9999)


def test_cpuset_pins_the_member(cgroup_parent: str) -> None:
    with Cgroup.create("pin", parent=cgroup_parent, cpuset_cpus="0", cpuset_mems="0") as cg:
        code, out, _ = _run_in(cg, "grep Cpus_allowed_list /proc/self/status")
    assert code == 0 and out.split() == ["Cpus_allowed_list:", "0"]


def test_devices_deny_all_but_null(cgroup_parent: str) -> None:
    layout = cgroup_layout()
    if "devices" not in layout.controllers or layout.controllers["devices"].version == 2:
        with Cgroup.create("dev", parent=cgroup_parent) as cg, pytest.raises(
                NotImplementedError, match="BPF_PROG_TYPE_CGROUP_DEVICE"):
            cg.set_devices(["c 1:3 rwm"])
        return
    with Cgroup.create("dev", parent=cgroup_parent) as cg:
        cg.set_devices(["c 1:3 rwm"])
        script = ("open('/dev/null', 'w').write('x')\n"
                  "try:\n    open('/dev/zero', 'rb')\nexcept PermissionError:\n"
                  "    print('zero denied')\n")
        with spawn([sys.executable, "-c", script], cgroup=cg, stdout=PIPE) as proc:
            out, _ = proc.communicate(timeout=60)
        assert (out, proc.returncode) == (b"zero denied\n", 0)


def test_io_limits_are_written_and_read_back(cgroup_parent: str) -> None:
    with open("/proc/self/mountinfo") as f:  # the root filesystem's block device, if any
        root = next(line.split() for line in f if line.split()[4] == "/")
    device = root[2]
    if device.startswith("0:"):
        pytest.skip("the root filesystem is not on a block device here")
    with Cgroup.create("io", parent=cgroup_parent) as cg:
        cg.set_io_limits(device, read_bps=1 << 20, write_iops=100)
        layout = cg.layout
        controller = "io" if "io" in layout.controllers else "blkio"
        h = layout.hierarchy_for(controller)
        base = h.path_of(cg.path)
        if h.version == 2:
            with open(f"{base}/io.max") as f:
                assert f"{device} rbps={1 << 20}" in f.read()
        else:
            with open(f"{base}/blkio.throttle.read_bps_device") as f:
                assert f.read().split() == [device, str(1 << 20)]
            with open(f"{base}/blkio.throttle.write_iops_device") as f:
                assert f.read().split() == [device, "100"]
