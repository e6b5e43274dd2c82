"""Cgroup layout discovery: this host (hybrid), and recorded unified and legacy hosts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
