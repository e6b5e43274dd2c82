"""Hooks, sysctls and oomScoreAdj through the OCI lifecycle (create, start, delete):
what each phase sees and where it runs, and that a failing one leaves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
from typing import Any

import pytest

from nsbind.oci import LifecycleError, create, delete, kill, start, state
from nsbind.oci.hooks import HookError
from nsbind.oci.schema import SpecError
from test_oci_lifecycle import cgroup_dirs, make_bundle, reap


def _hook(tmp_path: pathlib.Path, name: str, body: str, out: str = "") -> dict[str, Any]:
    """A hook script (``$1`` its phase, ``$OUT`` where it may write)."""
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return {"path": str(script), "args": [str(script), name],
            "env": [f"PHASE={name}", f"OUT={out}"]}


def _edit(bundle: pathlib.Path, change: dict[str, Any]) -> None:
    config = json.loads((bundle / "config.json").read_text())
    for key, value in change.items():
        where = config
        *parents, last = key.split(".")
        for p in parents:
            where = where.setdefault(p, {})
        where[last] = value
    (bundle / "config.json").write_text(json.dumps(config))


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def test_every_phase_runs_where_the_spec_says_with_the_state(
        tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    # the container's hooks run in its mount namespace: they write to /data, which is
    # tmp_path/data outside; the runtime's write there directly
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "read x < /data/go"])
    out = tmp_path / "data"
    os.mkfifo(out / "go")
    record = 'cat > $OUT/$1.state; echo "$PHASE $(readlink /proc/self/ns/uts)" > $OUT/$1.seen'
    inside = ("createContainer", "startContainer")
    _edit(bundle, {"hooks": {phase: [_hook(tmp_path, phase, record,
                                           "/data" if phase in inside else str(out))]
                             for phase in ("prestart", "createRuntime", "createContainer",
                                           "startContainer", "poststart", "poststop")}})
    root = tmp_path / "state"
    pid = create(bundle, "h1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        container_uts = _ns(pid, "uts")
        seen = {p: (out / f"{p}.seen").read_text().split() for p in (
            "prestart", "createRuntime", "createContainer")}
        assert not (out / "startContainer.seen").exists()
        assert seen["prestart"] == ["prestart", _ns("self", "uts")]  # the runtime's
        assert seen["createRuntime"][1] == _ns("self", "uts")
        assert seen["createContainer"] == ["createContainer", container_uts]
        created = json.loads((out / "createRuntime.state").read_text())
        assert created["status"] == "creating" and created["pid"] == pid
        assert created["id"] == "h1" and created["bundle"] == str(bundle)
        start(root, "h1")
        assert (out / "startContainer.seen").read_text().split()[1] == container_uts
        assert json.loads((out / "poststart.state").read_text())["status"] == "running"
        (out / "go").write_text("go\n")
        code = reap(pid)
    except BaseException:
        with contextlib.suppress(LifecycleError):  # it may have ended meanwhile
            kill(root, "h1", signal.SIGKILL)
        reap(pid)
        delete(root, "h1", force=True)
        raise
    assert code == 0
    delete(root, "h1")
    assert json.loads((out / "poststop.state").read_text())["status"] == "stopped"
    assert not (root / "h1").exists()


@pytest.mark.parametrize("phase", ["prestart", "createRuntime", "createContainer"])
def test_a_failing_create_hook_fails_create_and_leaves_nothing(
        tmp_path: pathlib.Path, cgroup_parent: str, phase: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sleep", "100"])
    _edit(bundle, {f"hooks.{phase}": [_hook(tmp_path, phase, "echo broken >&2; exit 3")]})
    root = tmp_path / "state"
    config = json.loads((bundle / "config.json").read_text())
    with pytest.raises(HookError, match=rf"^hooks.{phase}\[0\] .*: exit status 3: broken"):
        create(bundle, "h2", root=root, cgroup_parent=cgroup_parent)
    assert not (root / "h2").exists()
    assert not cgroup_dirs(config["linux"]["cgroupsPath"])


def test_a_timed_out_start_hook_fails_start(tmp_path: pathlib.Path,
                                            cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    hook = _hook(tmp_path, "slow", "sleep 30")
    _edit(bundle, {"hooks.startContainer": [dict(hook, timeout=1)]})
    root = tmp_path / "state"
    pid = create(bundle, "h3", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        with pytest.raises(HookError, match="timed out after 1 s"):
            start(root, "h3")
        assert state(root, "h3")["status"] == "created"
    finally:
        delete(root, "h3", force=True)
        assert reap(pid) == -signal.SIGKILL


def test_sysctls_are_written_in_the_containers_namespaces(
        tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, [
        "sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni "
                    "> /data/out"])
    _edit(bundle, {"linux.sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmni": "123"}})
    host = [pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text(),
            pathlib.Path("/proc/sys/kernel/shmmni").read_text()]
    root = tmp_path / "state"
    pid = create(bundle, "s1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        start(root, "s1")
    finally:
        code = reap(pid)
    delete(root, "s1")
    assert code == 0
    assert (tmp_path / "data" / "out").read_text().split() == ["1", "123"]
    assert [pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text(),
            pathlib.Path("/proc/sys/kernel/shmmni").read_text()] == host


@pytest.mark.parametrize("sysctl, message", [
    ({"kernel.panic": "1"}, "not a namespaced sysctl"),
    ({"net.ipv4.ip_forward": "1"}, "network namespace"),
])
def test_a_sysctl_the_container_may_not_write_is_refused_before_anything_is_made(
        tmp_path: pathlib.Path, cgroup_parent: str, sysctl: dict[str, str],
        message: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    config = json.loads((bundle / "config.json").read_text())
    namespaces = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
    _edit(bundle, {"linux.sysctl": sysctl, "linux.namespaces": namespaces})
    root = tmp_path / "state"
    with pytest.raises(SpecError, match=message):
        create(bundle, "s2", root=root, cgroup_parent=cgroup_parent)
    assert not (root / "s2").exists()
    assert not cgroup_dirs(config["linux"]["cgroupsPath"])


def test_oom_score_adj_is_set_and_a_refused_one_leaves_nothing(
        tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    _edit(bundle, {"process.oomScoreAdj": 500})
    root = tmp_path / "state"
    own = pathlib.Path("/proc/self/oom_score_adj").read_text()
    pid = create(bundle, "o1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        assert pathlib.Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "500"
        # the kernel gives the value to every process sharing the parked one's memory:
        # this one's stays (the parked process is a copy: nsbind.sharedchild)
        assert pathlib.Path("/proc/self/oom_score_adj").read_text() == own
    finally:
        delete(root, "o1", force=True)
        reap(pid)
    if pathlib.Path("/proc/self/oom_score_adj").read_text().strip() != "0":
        pytest.skip("this process's oom_score_adj is not 0: the refusal below assumes it")
    _edit(bundle, {"process.oomScoreAdj": -500})
    try:
        create(bundle, "o2", root=root, cgroup_parent=cgroup_parent)
    except (LifecycleError, PermissionError) as exc:
        assert "oom_score_adj" in str(exc)
        assert not (root / "o2").exists()
    else:  # a host whose root has CAP_SYS_RESOURCE lowers it
        pid = state(root, "o2")["pid"]
        delete(root, "o2", force=True)
        reap(pid)


def test_namespaces_joined_by_path_beside_new_ones(tmp_path: pathlib.Path, cgroup_parent: str,
                                                   holder: Any) -> None:
    # a pod: the container joins the sandbox's net and uts namespaces (by path), gets
    # its own pid, ipc and mount namespaces
    bundle = make_bundle(tmp_path, cgroup_parent, [
        "sh", "-c", "hostname > /data/out; readlink /proc/self/ns/ipc >> /data/out"])
    config = json.loads((bundle / "config.json").read_text())
    config.pop("hostname", None)
    config["linux"]["namespaces"] = [
        {"type": "pid"}, {"type": "ipc"}, {"type": "mount"},
        {"type": "network", "path": f"/proc/{holder.pid}/ns/net"},
        {"type": "uts", "path": f"/proc/{holder.pid}/ns/uts"}]
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    pid = create(bundle, "j1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        assert _ns(pid, "net") == _ns(holder.pid, "net")
        assert _ns(pid, "uts") == _ns(holder.pid, "uts")
        assert _ns(pid, "ipc") not in (_ns(holder.pid, "ipc"), _ns("self", "ipc"))
        start(root, "j1")
    finally:
        code = reap(pid)
    delete(root, "j1")
    assert code == 0
    hostname, ipc = (tmp_path / "data" / "out").read_text().split()
    assert hostname == "nsbind-holder" and ipc != _ns("self", "ipc")


def test_unified_resources_are_written_to_the_v2_cgroup(tmp_path: pathlib.Path,
                                                       cgroup_parent: str) -> None:
    from nsbind import cgroup_layout

    v2 = next((h for h in cgroup_layout().hierarchies if h.version == 2), None)
    if v2 is None:
        pytest.skip("no cgroup v2 hierarchy on this host")
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    _edit(bundle, {"linux.resources.unified": {"cgroup.max.descendants": "5",
                                               "cgroup.max.depth": "2"}})
    config = json.loads((bundle / "config.json").read_text())
    root = tmp_path / "state"
    pid = create(bundle, "u1", root=root, cgroup_parent=cgroup_parent)["pid"]
    try:
        where = pathlib.Path(v2.path_of(config["linux"]["cgroupsPath"]))
        assert (where / "cgroup.max.descendants").read_text().strip() == "5"
        assert (where / "cgroup.max.depth").read_text().strip() == "2"
    finally:
        delete(root, "u1", force=True)
        reap(pid)


@pytest.mark.parametrize("unified, message", [
    ({"cgroup.procs": "1"}, "not a cgroup v2 file a container's limits may set"),
    ({"../cgroup.procs": "1"}, "is not a cgroup file name"),  # the spec's own check
    ({"nosuch.knob": "1"}, "the nosuch controller is not on this host's cgroup v2"),
    ({"cgroup.max.depth": "1\n2"}, "one line"),
])
def test_bad_unified_resources_are_refused_naming_the_key(
        tmp_path: pathlib.Path, cgroup_parent: str, unified: dict[str, str],
        message: str) -> None:
    bundle = make_bundle(tmp_path, cgroup_parent, ["sh", "-c", "true"])
    _edit(bundle, {"linux.resources.unified": unified})
    config = json.loads((bundle / "config.json").read_text())
    root = tmp_path / "state"
    with pytest.raises(SpecError, match=r"linux\.resources\.unified\[.*" + message):
        create(bundle, "u2", root=root, cgroup_parent=cgroup_parent)
    assert not (root / "u2").exists()
    assert not cgroup_dirs(config["linux"]["cgroupsPath"])
