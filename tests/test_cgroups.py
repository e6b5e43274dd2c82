"""Cgroup layout discovery: this host (hybrid), and recorded unified and legacy hosts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import nsbind
from helpers import SLOWDOWN, private_mount_ns, require_controllers, run_forked
from nsbind import PIPE, Cgroup, UmountFlags, features, spawn
from nsbind.cgroupcontrollers import V1_OPTIONAL
from nsbind.cgrouplayout import held_layout
from nsbind.cgroups import cgroup_layout, mount_v1, unmount_v1, usable_controllers
from nsbind.cgroupsettings import SETTINGS

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


@pytest.mark.unprivileged
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


def test_this_hybrid_host_has_memory_on_v1_or_names_why_not_and_net_cls_unmounted(
        cgroup_parent: str) -> None:
    layout = cgroup_layout()
    if layout.mode != "hybrid":
        pytest.skip(f"this host's cgroup layout is {layout.mode}, not hybrid")
    assert layout.unified is not None
    with open(os.path.join(layout.unified.mountpoint, "cgroup.subtree_control")) as f:
        root_enabled = set(f.read().split())
    for c in V1_OPTIONAL:  # a kernel built without their v1 side has them on v2 only
        if layout.hierarchy_for(c).version == 1 or c in root_enabled:
            assert c in usable_controllers(layout)
        else:  # systemd enables nothing at the v2 root of a hybrid host
            assert c not in usable_controllers(layout)
            limit: dict[str, Any] = {"memory": {"memory_max": "64M"},
                                     "cpuset": {"cpuset_cpus": "0"}}[c]
            with pytest.raises(LookupError, match=rf"the {c} controller is not enabled below "
                               rf"the cgroup v2 root .*no cgroup v1 hierarchy carries {c}"):
                Cgroup.create("v1less", parent=cgroup_parent, **limit)
            assert not os.path.exists(layout.unified.path_of(f"/{cgroup_parent}/v1less"))
    if "net_cls" in layout.unmounted:
        with pytest.raises(LookupError, match="net_cls is compiled in but not mounted"):
            layout.hierarchy_for("net_cls")


@pytest.mark.unprivileged
def test_recorded_unified_host() -> None:
    layout = cgroup_layout(V2_ONLY_MOUNTINFO, V2_ONLY_CGROUPS, "0::/user.slice\n",
                           read_controllers=lambda mp: "cpuset cpu memory pids")
    assert layout.mode == "unified"
    assert layout.unified is not None and layout.unified.own == "/user.slice"
    assert layout.hierarchy_for("memory").mountpoint == "/sys/fs/cgroup"
    assert layout.unmounted == {"net_cls"}
    assert layout.unified.path_of("/user.slice/job") == "/sys/fs/cgroup/user.slice/job"


@pytest.mark.unprivileged
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


@pytest.mark.unprivileged
def test_cli_prints_the_layout() -> None:
    out = subprocess.run([sys.executable, "-m", "nsbind", "cgroups", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == cgroup_layout().to_dict()
    table = subprocess.run([sys.executable, "-m", "nsbind", "cgroups"],
                           capture_output=True, text=True, check=True).stdout
    assert table.startswith(f"cgroup layout: {cgroup_layout().mode}\n")


@pytest.mark.unprivileged
def test_a_repeated_layout_is_the_same_and_the_callers_own() -> None:
    """cgroup_layout() reuses what it built while its files read the same (a command
    asks several times); each caller still gets its own controllers dict.  That a
    change is seen: test_net_cls_and_net_prio_mounted_on_demand (mount_v1's layout)."""
    first = cgroup_layout()
    first.controllers.clear()
    again = cgroup_layout()
    with open("/proc/self/mountinfo") as m, open("/proc/cgroups") as c, \
            open("/proc/self/cgroup") as s:
        built = cgroup_layout(m.read(), c.read(), s.read(),
                              lambda mnt: pathlib.Path(mnt, "cgroup.controllers").read_text())
    assert again == built and again.controllers and again.controllers is not first.controllers


def _held_across_an_unmount() -> tuple[list[str], list[str], list[str]]:
    """In a private mount namespace: the hierarchies' mount points before, within a
    held_layout() block that unmounts the first of them, and after the block."""
    private_mount_ns()
    points = [h.mountpoint for h in cgroup_layout().hierarchies]
    with held_layout():
        nsbind.umount2(points[0], UmountFlags.DETACH)
        within = [h.mountpoint for h in cgroup_layout().hierarchies]
    after = [h.mountpoint for h in cgroup_layout().hierarchies]
    return points, within, after


def test_a_held_layout_is_not_read_again_until_the_block_ends() -> None:
    """held_layout(): within the block the layout read on entry (nsbind.oci's create
    asks seven times); after it, the files again (here: a hierarchy unmounted inside)."""
    points, within, after = run_forked(_held_across_an_unmount)
    assert within == points
    assert after == points[1:]


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
    require_controllers(cgroup_parent, "memory")
    with Cgroup.create("mem", parent=cgroup_parent, memory_max="32M") as cg:
        assert cg.oom_kills() == 0
        with spawn([sys.executable, "-c", "b = bytearray(256 << 20)"], cgroup=cg) as proc:
            assert proc.wait(timeout=60) == -signal.SIGKILL
        assert cg.oom_kills() >= 1


@pytest.mark.unprivileged
@pytest.mark.parametrize("cgroup_kill", [True, False], ids=["cgroup.kill", "freeze-signal-thaw"])
def test_freeze_thaw_and_kill(cgroup_parent: str, cgroup_kill: bool,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """kill() uses cgroup.kill where the kernel has it, else freezes, signals, thaws
    (the pre-5.14 path, forced here): either way every member dies."""
    if cgroup_kill and not features.cgroup_kill():
        pytest.skip("this kernel has no cgroup.kill (Linux 5.14)")
    monkeypatch.setattr(features, "cgroup_kill", lambda: cgroup_kill)
    with Cgroup.create("frz", parent=cgroup_parent) as cg:
        procs = [spawn(["sleep", "60"], cgroup=cg) for _ in range(3)]
        assert sorted(cg.procs()) == sorted(p.pid for p in procs)
        cg.freeze()
        cg.thaw()
        cg.kill()
        assert [p.wait(timeout=30) for p in procs] == [-signal.SIGKILL] * 3


def test_bad_limit_names_the_file_and_leaves_nothing(cgroup_parent: str) -> None:
    require_controllers(cgroup_parent, "cpuset")
    layout = cgroup_layout()
    # well formed, but no such CPU: the kernel refuses it once the cgroup exists
    with pytest.raises(OSError, match=r"set cpuset.cpus=999999 on "):
        Cgroup.create("bad", parent=cgroup_parent, cpuset_cpus="999999")
    for h in layout.hierarchies:
        assert not os.path.exists(h.path_of(f"/{cgroup_parent}/bad"))


@pytest.mark.unprivileged
@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_invalid_names_are_refused(name: str, cgroup_parent: str) -> None:
    with pytest.raises(ValueError, match="invalid cgroup name"):
        Cgroup.create(name, parent=cgroup_parent)


def _tree(cgroup_parent: str) -> set[str]:
    """Every directory below the test parent, in every hierarchy."""
    found: set[str] = set()
    for h in cgroup_layout().hierarchies:
        for top, dirs, _ in os.walk(h.path_of(f"/{cgroup_parent}")):
            found.update(os.path.join(top, d) for d in dirs)
    return found


# one class of bad input per entry: the argument and values of the wrong type or range
BAD_CREATE_ARGUMENTS: dict[str, tuple[str, list[Any]]] = {
    "memory-size": ("memory_max", ["lots", "1.5G", "12Q", -1, 1.5, True, 2**64]),
    "memory-high": ("memory_high", ["64 MB", -4096]),
    "swap-size": ("memory_swap_max", [[1], "-1"]),
    "pids": ("pids_max", [-1, "many", 2.0, 10**7, False]),
    "cpus": ("cpu_max", ["2 cores", 0, -0.5, float("nan"), float("inf"), True, 10**9]),
    "cpu-weight": ("cpu_weight", [0, 10001, "100", 1.5]),
    "cpu-list": ("cpuset_cpus", ["0-", "a", "3-1", "0,,1", "0-7:3/2", 0, " 0"]),
    "node-list": ("cpuset_mems", ["all", [0]]),
    "parent-path": ("parent", ["a/../b", "..", "a//b", "a/", ".", "x\0y", 5, "n" * 256]),
}


@pytest.mark.unprivileged
@pytest.mark.parametrize("kind", BAD_CREATE_ARGUMENTS)
def test_bad_create_argument_is_named_and_nothing_is_made(kind: str, cgroup_parent: str) -> None:
    arg, values = BAD_CREATE_ARGUMENTS[kind]
    before = _tree(cgroup_parent)
    for value in values:
        kwargs: dict[str, Any] = {"parent": f"{cgroup_parent}/made", arg: value}
        with pytest.raises(ValueError, match=rf"^{arg}=") as err:
            Cgroup.create("bad", **kwargs)
        assert repr(value)[:20] in str(err.value)
    assert _tree(cgroup_parent) == before


@pytest.mark.unprivileged
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x\0y", "n" * 256, None])
def test_invalid_names_are_refused_before_anything_is_made(name: Any,
                                                           cgroup_parent: str) -> None:
    before = _tree(cgroup_parent)
    with pytest.raises(ValueError, match=r"^name=.*invalid cgroup name"):
        Cgroup.create(name, parent=f"{cgroup_parent}/made", memory_max="64M")
    assert _tree(cgroup_parent) == before


def test_bad_setter_arguments_are_named_and_nothing_is_written(cgroup_parent: str) -> None:
    with Cgroup.create("setters", parent=cgroup_parent) as cg:
        # where cpuset is usable its file must be left alone
        knob = (os.path.join(cg.layout.hierarchy_for("cpuset").path_of(cg.path), "cpuset.cpus")
                if "cpuset" in usable_controllers(cg.layout) else os.devnull)
        with open(knob) as f:
            cpus = f.read()
        calls: list[tuple[str, Callable[[], object]]] = [
            ("cpuset_mems", lambda: cg.set_cpuset(cpus="0", mems="x")),  # cpus not written
            ("cpu_max", lambda: cg.set_cpu_max("half")),  # type: ignore[arg-type]
            ("period_us", lambda: cg.set_cpu_max(0.5, period_us=10)),
            ("cpu_weight", lambda: cg.set_cpu_weight(True)),
            ("io_weight", lambda: cg.set_io_weight(0)),
            ("device", lambda: cg.set_io_limits("8-0", read_bps=1)),
            ("device", lambda: cg.set_io_limits("99999:0", read_bps=1)),
            ("read_bps", lambda: cg.set_io_limits("8:0", read_bps=0)),
            ("write_iops", lambda: cg.set_io_limits("8:0", write_iops="fast")),
            ("page_size", lambda: cg.set_hugetlb_max("2M", 1 << 21)),
            ("hugetlb_max", lambda: cg.set_hugetlb_max("2MB", "lots")),
            ("net_cls_classid", lambda: cg.set_net_cls_classid(-1)),
            ("net_prio", lambda: cg.set_net_prio({"lo": -1})),
            ("net_prio", lambda: cg.set_net_prio({"a/b": 1})),
            ("allow", lambda: cg.set_devices("c 1:3 rwm")),  # type: ignore[arg-type]
            ("bpf", lambda: cg.set_devices(["a"], bpf="yes")),  # type: ignore[arg-type]
            ("memory_max", lambda: cg.set_memory_max("lots")),
            ("pids_max", lambda: cg.set_pids_max(-2)),
        ]
        for arg, call in calls:
            with pytest.raises(ValueError, match=rf"^{arg}="):
                call()
        with open(knob) as f:
            assert f.read() == cpus


def test_max_is_no_limit_on_v1_and_v2(cgroup_parent: str) -> None:
    require_controllers(cgroup_parent, "memory")
    with Cgroup.create("max", parent=cgroup_parent, memory_max="max", memory_high="max",
                       pids_max="max") as cg:
        h = cg.layout.hierarchy_for("memory")
        name = "memory.max" if h.version == 2 else "memory.limit_in_bytes"
        with open(os.path.join(h.path_of(cg.path), name)) as f:
            text = f.read().strip()
        assert text == "max" if h.version == 2 else int(text) >= 1 << 62  # v1: written -1
        with open(os.path.join(cg.layout.hierarchy_for("pids").path_of(cg.path),
                               "pids.max")) as f:
            assert f.read().strip() == "max"


def _nr_throttled(cg: Cgroup) -> int:
    """cpu.stat's nr_throttled: the periods in which the cgroup used up its quota."""
    h = cg.layout.hierarchy_for("cpu")
    with open(f"{h.path_of(cg.path)}/cpu.stat") as f:
        stat = dict(line.split() for line in f if line.strip())
    return int(stat["nr_throttled"])


def test_cpu_max_limits_a_busy_loop_to_about_a_fifth(cgroup_parent: str) -> None:
    """cpu_max=0.2: a busy loop gets at most about a fifth of a CPU, and the kernel
    throttles it (nr_throttled).  On a busy machine the loop may get less than its
    quota: it runs until it has used 0.15 s of CPU (bounded: 8 s), so that the bound is
    measured over enough of it."""
    with Cgroup.create("cpu", parent=cgroup_parent, cpu_max=0.2) as cg:
        with spawn(["sh", "-c", "while :; do :; done"], cgroup=cg) as proc:
            before = cg.cpu_usage_us()
            started = time.monotonic()
            while True:
                time.sleep(0.25)
                elapsed = time.monotonic() - started
                if (elapsed >= 1.0 and cg.cpu_usage_us() - before >= 150_000) or elapsed > 8:
                    break
            used = (cg.cpu_usage_us() - before) / 1e6 / (time.monotonic() - started)
            throttled = _nr_throttled(cg)
            proc.kill()
        assert 0 < used <= 0.3, f"used {used:.2f} CPUs under cpu_max=0.2"
        assert throttled > 0


def test_cpu_weight_is_written(cgroup_parent: str) -> None:
    with Cgroup.create("weight", parent=cgroup_parent, cpu_weight=200) as cg:
        h = cg.layout.hierarchy_for("cpu")
        knob = "cpu.weight" if h.version == 2 else "cpu.shares"
        with open(f"{h.path_of(cg.path)}/{knob}") as f:
            assert int(f.read()) == (200 if h.version == 2 else 2 + 199 * 262142 // 9999)


def test_cpuset_pins_the_member(cgroup_parent: str) -> None:
    require_controllers(cgroup_parent, "cpuset")
    with Cgroup.create("pin", parent=cgroup_parent, cpuset_cpus="0", cpuset_mems="0") as cg:
        code, out, _ = _run_in(cg, "grep Cpus_allowed_list /proc/self/status")
    assert code == 0 and out.split() == ["Cpus_allowed_list:", "0"]


_DEVICE_PROBE = """
import sys
def tryit(path, mode):
    try:
        with open(path, mode) as f:
            f.read(1) if "r" in mode else f.write(b"x" if "b" in mode else "x")
        return "ok"
    except PermissionError:
        return "denied"
print(*(tryit(p, m) for p, m in [("/dev/null", "w"), ("/dev/zero", "rb"),
                                  ("/dev/urandom", "rb"), ("/dev/urandom", "wb")]))
"""


@pytest.mark.parametrize("bpf", [False, True], ids=["v1-files", "v2-ebpf"])
def test_devices_deny_all_but_the_allowed(cgroup_parent: str, bpf: bool) -> None:
    h = cgroup_layout().controllers.get("devices")
    if not bpf and (h is None or h.version == 2):
        pytest.skip("no cgroup v1 devices controller on this host")
    with Cgroup.create("dev", parent=cgroup_parent) as cg:
        cg.set_devices(["c 1:3 rwm", "c 1:9 r"], bpf=bpf)  # /dev/null; read /dev/urandom

        def probe() -> str:
            with spawn([sys.executable, "-c", _DEVICE_PROBE], cgroup=cg, stdout=PIPE) as proc:
                out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0 and out is not None
            return out.decode().strip()

        assert probe() == "ok denied ok denied"
        cg.set_devices(["a"], bpf=bpf)  # replaces the earlier rules
        assert probe() == "ok ok ok ok"


def test_bad_device_rule_is_refused_before_anything_is_set(cgroup_parent: str) -> None:
    with Cgroup.create("badrule", parent=cgroup_parent) as cg:
        with pytest.raises(ValueError, match="device rule 'c 1:3 rwx'"):
            cg.set_devices(["c 1:3 rwm", "c 1:3 rwx"], bpf=True)
        with pytest.raises(ValueError, match="device rule 'x': expected"):
            cg.set_devices(["x"], bpf=True)
        assert cg._device_prog is None


def test_io_weight_is_written_where_a_scheduler_weighs_cgroups(cgroup_parent: str) -> None:
    with Cgroup.create("ioweight", parent=cgroup_parent) as cg:
        try:
            cg.set_io_weight(500)
        except LookupError as exc:
            pytest.skip(str(exc))
        controller = "io" if "io" in cg.layout.controllers else "blkio"
        h = cg.layout.hierarchy_for(controller)
        base = h.path_of(cg.path)
        for name in ("io.weight", "io.bfq.weight", "blkio.weight", "blkio.bfq.weight"):
            if os.path.exists(os.path.join(base, name)):
                with open(os.path.join(base, name)) as f:
                    text = f.read()
                expected = "500" if h.version == 2 else str(10 + 499 * 990 // 9999)
                assert expected in text.split(), text
                break


@contextlib.contextmanager
def _block_device(tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    """("major:minor", path) of a block device the test may read: a loop device over a
    file of its own (detached after), else a disk this process can open."""
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    made = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                          text=True)
    if made.returncode == 0:
        loop = made.stdout.strip()
        try:
            yield f"{os.major(os.stat(loop).st_rdev)}:{os.minor(os.stat(loop).st_rdev)}", loop
        finally:
            subprocess.run(["losetup", "--detach", loop], check=True)
        return
    for name in sorted(os.listdir("/sys/block")):
        try:
            os.close(os.open(f"/dev/{name}", os.O_RDONLY | os.O_DIRECT))
        except OSError:
            continue
        with open(f"/sys/block/{name}/dev") as f:
            yield f.read().strip(), f"/dev/{name}"
        return
    pytest.skip(f"no loop device ({made.stderr.strip()}) and no readable disk")


def test_io_limits_are_written_read_back_and_throttle_reads(cgroup_parent: str,
                                                            tmp_path: pathlib.Path) -> None:
    with _block_device(tmp_path) as (device, path), \
            Cgroup.create("io", parent=cgroup_parent) as cg:
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
        # 3 MiB of direct (uncached) reads at 1 MiB/s: about 2 s or more (a burst
        # may pass at once); reading the disk changes nothing on it
        start = time.monotonic()
        code, _, err = _run_in(cg, f"dd if={path} of=/dev/null bs=64k count=48 iflag=direct")
        took = time.monotonic() - start
        assert code == 0, err
        assert took >= 1.5, f"3 MiB at 1 MiB/s took {took:.2f} s"
        assert cg.stats().io.get(device, {}).get("rbytes", 0) >= 3 << 20


# ---------------------------------------------------------------- stats and events


def test_stats_report_memory_cpu_pids_and_io(cgroup_parent: str,
                                            tmp_path: pathlib.Path) -> None:
    probe = tmp_path / "probe"
    memory = "memory" in usable_controllers()  # else no memory figure is reported
    with Cgroup.create("stats", parent=cgroup_parent,
                       memory_max="256M" if memory else None) as cg:
        script = ("import time; b = bytearray(48 << 20); t = time.process_time() + 0.3\n"
                  "while time.process_time() < t: pass\n"
                  f"open({str(probe)!r}, 'wb').close(); time.sleep(30)")
        with spawn([sys.executable, "-c", script], cgroup=cg) as proc:
            deadline = time.monotonic() + 30
            while not probe.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            st = cg.stats()
            proc.kill()
        if memory:
            assert st.memory_current is not None and st.memory_current > 48 << 20
            assert st.memory_peak is not None and st.memory_peak >= st.memory_current
            assert st.memory_stat.get("rss", st.memory_stat.get("anon", 0)) > 40 << 20
            assert st.oom_kills == 0
        else:
            assert (st.memory_current, st.memory_peak, st.memory_stat, st.oom_kills) == (
                None, None, {}, None)
        assert st.cpu_usage_us is not None and st.cpu_usage_us >= 250_000
        assert st.pids_current == 1
        assert isinstance(st.io, dict)


def _counter(path: pathlib.Path) -> int:
    """The number a shell loop keeps rewriting (retried while it is half written)."""
    while True:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.005)


@pytest.mark.unprivileged
def test_frozen_member_makes_no_progress_and_events_say_so(cgroup_parent: str,
                                                           tmp_path: pathlib.Path) -> None:
    counter = tmp_path / "n"
    with Cgroup.create("frozen", parent=cgroup_parent) as cg:
        with spawn(["sh", "-c", f"i=0; while :; do i=$((i+1)); echo $i > {counter}; done"],
                   cgroup=cg) as proc:
            _counter(counter)
            cg.freeze()  # returns once the kernel reports the cgroup frozen
            assert cg.events()["frozen"] == 1
            before = counter.read_text()
            time.sleep(0.3)
            assert counter.read_text() == before  # no progress while frozen
            cg.thaw()
            frozen_at = int(before) if before.strip() else 0
            deadline = time.monotonic() + 10
            while _counter(counter) <= frozen_at and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _counter(counter) > frozen_at
            assert cg.events()["frozen"] == 0
            proc.kill()


def test_events_report_the_oom_kill(cgroup_parent: str) -> None:
    require_controllers(cgroup_parent, "memory")
    with Cgroup.create("oomev", parent=cgroup_parent, memory_max="32M") as cg:
        with spawn([sys.executable, "-c", "b = bytearray(256 << 20)"], cgroup=cg) as proc:
            proc.wait(timeout=60)
        ev = cg.events()
        assert ev["oom_kill"] >= 1 and ev["populated"] == 0


@pytest.mark.unprivileged
def test_wait_until_empty_wakes_on_the_kernel_notification(cgroup_parent: str) -> None:
    with Cgroup.create("wait", parent=cgroup_parent) as cg:
        assert cg.wait_until_empty(timeout=0)
        proc = spawn(["sleep", "0.3"], cgroup=cg)
        assert cg.wait_until_empty(timeout=0.05) is False
        start = time.monotonic()
        assert cg.wait_until_empty(timeout=30)
        assert time.monotonic() - start < 5 * SLOWDOWN
        proc.wait()


@pytest.mark.unprivileged
def test_await_wait_empty_on_the_event_loop(cgroup_parent: str) -> None:
    async def main(cg: Cgroup) -> float:
        procs = [spawn(["sleep", str(0.1 * i)], cgroup=cg) for i in range(1, 4)]
        start = time.monotonic()
        await asyncio.wait_for(cg.wait_empty(), 30)
        for p in procs:
            p.wait()
        return time.monotonic() - start

    with Cgroup.create("await", parent=cgroup_parent) as cg:
        took = asyncio.run(main(cg))
    assert 0.2 <= took < 5 * SLOWDOWN
    assert threading.active_count() == 1  # no helper thread was used


@pytest.mark.unprivileged
def test_open_an_existing_cgroup_and_attach_by_pidfd(cgroup_parent: str) -> None:
    with Cgroup.create("opened", parent=cgroup_parent) as made:
        cg = Cgroup.open(made.path)
        with spawn(["sleep", "30"]) as proc:
            cg.attach(proc.pidfd)
            assert made.procs() == [proc.pid]
            proc.kill()
        for h in made.layout.hierarchies:  # without root: the delegated v2 subtree only
            if h.version == 2 or (h.controllers and os.geteuid() == 0):
                with open(os.path.join(h.path_of(made.path), "cgroup.procs")) as f:
                    assert f.read() == ""
    with pytest.raises(FileNotFoundError, match="no cgroup /nope-nsbind"):
        Cgroup.open("/nope-nsbind")


def test_memory_high_is_written_and_swap_without_accounting_is_named(
        cgroup_parent: str) -> None:
    require_controllers(cgroup_parent, "memory")
    with Cgroup.create("high", parent=cgroup_parent, memory_max="128M",
                       memory_high="64M") as cg:
        h = cg.layout.hierarchy_for("memory")
        name = "memory.high" if h.version == 2 else "memory.soft_limit_in_bytes"
        with open(os.path.join(h.path_of(cg.path), name)) as f:
            assert int(f.read()) == 64 << 20
        swap = "memory.swap.max" if h.version == 2 else "memory.memsw.limit_in_bytes"
        if os.path.exists(os.path.join(h.path_of(cg.path), swap)):
            cg.set_memory_swap_max("256M")
        else:
            with pytest.raises(LookupError, match="no swap accounting"):
                cg.set_memory_swap_max("256M")


def test_hugetlb_limit_is_written_and_read_back(cgroup_parent: str) -> None:
    layout = cgroup_layout()
    h = layout.controllers.get("hugetlb")
    if h is None:
        pytest.skip("this kernel has no hugetlb controller")
    probe = h.path_of(f"/{cgroup_parent}")
    if not os.path.exists(os.path.join(probe, "hugetlb.2MB." +
                                       ("max" if h.version == 2 else "limit_in_bytes"))):
        pytest.skip(f"hugetlb is not enabled below the root of {h.mountpoint}: enabling it "
                    "means writing the root's cgroup.subtree_control, which belongs to the "
                    "machine (the pure-v2 VM test covers it)")
    with Cgroup.create("huge", parent=cgroup_parent) as cg:
        cg.set_hugetlb_max("2MB", 4 << 20)
        name = "hugetlb.2MB." + ("max" if h.version == 2 else "limit_in_bytes")
        with open(os.path.join(h.path_of(cg.path), name)) as f:
            assert int(f.read()) == 4 << 20


def _net_cls_in_private_mount(tmp: str, parent: str) -> tuple[str, str, str]:
    private_mount_ns()
    layout = mount_v1(["net_cls", "net_prio"], tmp)
    h = layout.hierarchy_for("net_cls")
    assert h.mountpoint == tmp and layout.hierarchy_for("net_prio") is h
    os.mkdir(os.path.join(tmp, parent))
    try:
        with Cgroup.create("net", parent=parent, layout=layout) as cg:
            cg.set_net_cls_classid(0x100001)
            cg.set_net_prio({"lo": 5})
            with spawn(["cat", "/proc/self/cgroup"], cgroup=cg, stdout=PIPE) as proc:
                out, _ = proc.communicate(timeout=30)
            base = os.path.join(tmp, parent, "net")
            with open(os.path.join(base, "net_cls.classid")) as f:
                classid = f.read().strip()
            with open(os.path.join(base, "net_prio.ifpriomap")) as f:
                prio = next(line for line in f if line.startswith("lo "))
    finally:
        os.rmdir(os.path.join(tmp, parent))
        unmount_v1(tmp, ["net_cls", "net_prio"])
    assert out is not None
    member = next(line for line in out.decode().splitlines() if "net_cls" in line)
    return classid, prio.strip(), member


def test_net_cls_and_net_prio_mounted_on_demand(cgroup_parent: str,
                                                tmp_path: pathlib.Path) -> None:
    if {"net_cls", "net_prio"} - cgroup_layout().available:
        pytest.skip("this kernel has no net_cls/net_prio controllers")
    if "net_cls" in cgroup_layout().controllers:
        pytest.skip("net_cls is mounted already on this host")
    with open("/proc/cmdline") as f:
        if "cgroup_no_v1=" in f.read():
            with pytest.raises(LookupError, match="booted with cgroup_no_v1="):
                mount_v1(["net_cls", "net_prio"], str(tmp_path))
            pytest.skip("this kernel mounts no cgroup v1 hierarchy (cgroup_no_v1)")
    classid, prio, member = run_forked(_net_cls_in_private_mount, str(tmp_path),
                                       cgroup_parent)
    assert (classid, prio) == (str(0x100001), "lo 5")
    assert member.endswith(f":/{cgroup_parent}/net")
    with open("/proc/self/cgroup") as f:
        assert "net_cls" not in f.read()  # the hierarchy is gone again


def _create_as_nobody(deleg: str | None) -> str:
    if deleg is not None:
        with open(os.path.join(deleg, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))  # as root, into the delegated cgroup
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    try:
        cg = Cgroup.create("job")
    except PermissionError as exc:
        return f"refused: {exc}"
    made = [h.path_of(cg.path) for h in cg.layout.hierarchies if os.path.isdir(h.path_of(cg.path))]
    cg.remove()
    return f"made {cg.path} in {made}"


def test_non_root_gets_its_delegated_v2_subtree_or_a_clear_error(cgroup_parent: str) -> None:
    v2 = cgroup_layout().unified
    if v2 is None:
        pytest.skip("this host has no cgroup v2 hierarchy")
    assert run_forked(_create_as_nobody, None).startswith(
        "refused: uid 65534 has no delegated cgroup subtree: ")
    deleg = v2.path_of(f"/{cgroup_parent}/deleg")
    os.mkdir(deleg)
    try:
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(deleg, name), 65534, 65534)  # as systemd's Delegate=yes
        result = run_forked(_create_as_nobody, deleg)
    finally:
        os.rmdir(deleg)
    assert result == f"made /{cgroup_parent}/deleg/job in ['{deleg}/job']"


def _create_as_user_namespace_root(leaf: str) -> str:
    """In ``leaf`` (below a cgroup delegated to uid 65534), as root of a user namespace
    that maps 0 to 65534: where Cgroup.create makes a cgroup below the delegation."""
    import nsbind
    from nsbind.cgrouplayout import delegation_root, privileged_over

    with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))  # as root, into the delegated subtree's leaf
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: own /proc/self
    nsbind.unshare(nsbind.CloneFlags.NEWUSER)
    for name, text in (("uid_map", "0 65534 1"), ("setgroups", "deny"),
                       ("gid_map", "0 65534 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    layout = cgroup_layout()
    top = delegation_root(layout)
    privileged = [h.mountpoint for h in layout.hierarchies if privileged_over(h)]
    cg = Cgroup.create("job", parent=f"{top}/nsbind/more")  # parents made as needed
    made = [h.path_of(cg.path) for h in layout.hierarchies if os.path.isdir(h.path_of(cg.path))]
    cg.remove()
    assert layout.unified is not None
    for parent in (f"{top}/nsbind/more", f"{top}/nsbind"):
        os.rmdir(layout.unified.path_of(parent))
    return f"euid {os.geteuid()} top {top} privileged {privileged} made {made}"


def test_root_of_a_user_namespace_makes_cgroups_in_its_delegated_subtree_only(
        cgroup_parent: str) -> None:
    """Root of a user namespace (a rootless engine's runtime) may write no hierarchy's
    root: Cgroup.create takes the v2 subtree delegated to the user it maps, the highest
    cgroup above its own that it owns (delegation_root), and makes missing parents
    there; never a v1 hierarchy."""
    v2 = cgroup_layout().unified
    if v2 is None:
        pytest.skip("this host has no cgroup v2 hierarchy")
    deleg = v2.path_of(f"/{cgroup_parent}/deleg")
    leaf = os.path.join(deleg, "leaf")
    os.mkdir(deleg)
    try:
        os.mkdir(leaf)
        for d in (deleg, leaf):
            for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                os.chown(os.path.join(d, name), 65534, 65534)  # as systemd's Delegate=yes
        result = run_forked(_create_as_user_namespace_root, leaf)
    finally:
        for d in (leaf, deleg):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(d)
    job = f"{deleg}/nsbind/more/job"
    assert result == (f"euid 0 top /{cgroup_parent}/deleg privileged [] made ['{job}']")


def _cpu_knob(cg: Cgroup) -> tuple[int, str]:
    """(the cpu controller's version, the text of cpu.shares on v1 / cpu.weight on v2)."""
    h = cg.layout.hierarchy_for("cpu")
    knob = "cpu.weight" if h.version == 2 else "cpu.shares"
    with open(f"{h.path_of(cg.path)}/{knob}") as f:
        return h.version, f.read().strip()


def test_cpu_shares_are_written_as_is_on_v1_and_converted_as_runc_does_on_v2(
        cgroup_parent: str) -> None:
    with Cgroup.create("shares", parent=cgroup_parent, cpu_shares=1024) as cg:
        version, text = _cpu_knob(cg)
        assert text == ("1024" if version == 1 else "39")
        # 1025 and the bounds: no cpu_weight gives them on v1
        for shares, weight in ((1025, 40), (2, 1), (262144, 10000), (3, 1)):
            cg.set_cpu_shares(shares)
            assert _cpu_knob(cg)[1] == str(shares if version == 1 else weight)
    setting = SETTINGS["cpu_shares"]
    assert setting.writes(1, 1024, lambda f: True, "cg") == [("cpu.shares", "1024")]
    assert [setting.writes(2, s, lambda f: True, "cg") for s in (2, 1024, 262144)] == [
        [("cpu.weight", "1")], [("cpu.weight", "39")], [("cpu.weight", "10000")]]


def test_bad_cpu_shares_are_named_and_nothing_is_made_or_written(cgroup_parent: str) -> None:
    bad: list[Any] = [0, 1, 262145, -1024, True, "1024", 1024.0, None]
    before = _tree(cgroup_parent)
    for value in bad[:-1]:
        with pytest.raises(ValueError, match=rf"^cpu_shares={value!r}: must be an int "
                           r"2\.\.262144"):
            Cgroup.create("bad", parent=f"{cgroup_parent}/made", cpu_shares=value)
    with pytest.raises(ValueError, match=r"^cpu_shares=512: cpu_weight=100 sets the same"):
        Cgroup.create("bad", parent=f"{cgroup_parent}/made", cpu_weight=100, cpu_shares=512)
    assert _tree(cgroup_parent) == before
    with Cgroup.create("shares", parent=cgroup_parent, cpu_shares=512) as cg:
        for value in bad:
            with pytest.raises(ValueError, match=rf"^cpu_shares={value!r}: "):
                cg.set_cpu_shares(value)
        assert _cpu_knob(cg)[1] == ("512" if _cpu_knob(cg)[0] == 1 else "20")
