"""nsbind.oci.spec: config.json parsed and validated, every refusal naming its JSON path."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsbind import Capability
from nsbind.errors import MessageError, NsbindError
from nsbind.frozen import replace_fields
from nsbind.oci import (
    UNSUPPORTED,
    Host,
    SpecError,
    default_spec,
    default_spec_json,
    expand_slice,
    load_spec,
    parse_cgroups_path,
    parse_spec,
    systemd_cgroup_path,
)

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

HOST = Host()  # no AppArmor, no SELinux, no RT group scheduling
RT_HOST = Host(rt_group_sched=True)


def _tool_spec(tool: str, tmp_path: pathlib.Path, *flags: str) -> pathlib.Path:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    subprocess.run([tool, "spec", *flags], cwd=tmp_path, check=True)
    return tmp_path


@pytest.fixture(scope="module")
def crun_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = _tool_spec("crun", tmp_path_factory.mktemp("crun"))
    value: dict[str, Any] = json.loads((path / "config.json").read_bytes())
    return value


def base() -> dict[str, Any]:
    return default_spec_json()


# ---------------------------------------------------------------- real inputs


@pytest.mark.parametrize("tool", ["crun", "runc"])
@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_tool_spec_parses_and_round_trips(tool: str, rootless: bool,
                                          tmp_path: pathlib.Path) -> None:
    bundle = _tool_spec(tool, tmp_path, *(["--rootless"] if rootless else []))
    raw = json.loads((bundle / "config.json").read_bytes())
    spec = load_spec(bundle, host=HOST)
    assert spec.to_json() == raw
    assert parse_spec(json.loads(spec.to_bytes()), host=HOST) == parse_spec(raw, host=HOST)
    assert json.loads(spec.to_bytes(indent=False)) == json.loads(spec.to_bytes())
    assert spec.bundle == str(bundle)
    assert spec.rootfs == str(bundle / "rootfs")
    assert spec.process is not None and spec.process.capabilities is not None
    assert Capability.KILL in (spec.process.capabilities.bounding or ())
    assert load_spec(bundle / "config.json", host=HOST) == spec
    assert load_spec((bundle / "config.json").read_bytes(), host=HOST).rootfs == "rootfs"


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_default_spec_is_what_runc_spec_writes(rootless: bool, tmp_path: pathlib.Path) -> None:
    spec = default_spec(rootless)
    assert parse_spec(spec.to_json(), host=HOST) == spec
    bundle = _tool_spec("runc", tmp_path, *(["--rootless"] if rootless else []))
    assert spec.to_json() == json.loads((bundle / "config.json").read_bytes())


def test_spec_error_is_an_nsbind_error_and_a_value_error() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"ociVersion": "2.0.0"}, host=HOST)
    assert isinstance(info.value, MessageError)
    assert isinstance(info.value, NsbindError)
    assert isinstance(info.value, ValueError)


def test_load_spec_refuses_bad_json_and_missing_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(b'{"ociVersion": "1.0.0",', host=HOST)
    with pytest.raises(SpecError, match="duplicate key"):
        load_spec(b'{"ociVersion": "1.0.0", "ociVersion": "1.0.0"}', host=HOST)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path, host=HOST)
    with pytest.raises(SpecError, match="nests more than"):
        parse_spec({"annotations": _deep(100)}, host=HOST)


def test_a_loaded_spec_keeps_the_bytes_it_was_read_from(tmp_path: pathlib.Path) -> None:
    """``source``: what create keeps in the state directory (exec and delete parse it
    again); not part of the spec's value."""
    text = json.dumps(default_spec_json(), indent=3).encode()
    (tmp_path / "config.json").write_bytes(text)
    from_file = load_spec(tmp_path, host=HOST)
    assert from_file.source == text and load_spec(text, host=HOST).source == text
    decoded = parse_spec(json.loads(text), host=HOST)
    assert decoded.source is None
    assert decoded == replace_fields(from_file, bundle=None, rootfs=decoded.rootfs)
    assert parse_spec(json.loads(from_file.source), host=HOST).to_json() == \
        from_file.to_json()


def _deep(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# ---------------------------------------------------------------- the table of bad configs


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b[2].c`` in ``doc`` (creating objects on the way); value DELETE removes."""
    keys: list[Any] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        keys.append(name)
        if rest:
            keys.append(int(rest.rstrip("]")))
    target: Any = doc
    for key in keys[:-1]:
        if isinstance(target, dict) and key not in target:
            target[key] = {}
        target = target[key]
    if value is DELETE:
        del target[keys[-1]]
    elif isinstance(target, list) and keys[-1] == len(target):
        target.append(value)
    else:
        target[keys[-1]] = value


DELETE = object()
NS = "linux.namespaces"

# (edits, the JSON path the message must name, a word of the message)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"ociVersion": "2.0.0"}, "ociVersion", "not supported"),
    ({"ociVersion": "1.3.0"}, "ociVersion", "not supported"),
    ({"ociVersion": 1}, "ociVersion", "must be a string"),
    ({"ociVersion": DELETE}, "ociVersion", "required"),
    ({"root": DELETE}, "root", "required"),
    ({"root.path": ""}, "root.path", "empty"),
    ({"process.terminal": 1}, "process.terminal", "boolean"),
    ({"process.user.uid": True}, "process.user.uid", "bool"),
    ({"process.user.uid": 4294967295}, "process.user.uid", "out of range"),
    ({"process.user.gid": -1}, "process.user.gid", "out of range"),
    ({"process.user.gid": 1.0}, "process.user.gid", "integer"),
    ({"process.user.additionalGids": [1, 2**40]}, "process.user.additionalGids[1]",
     "out of range"),
    ({"process.user.umask": 0o1777}, "process.user.umask", "out of range"),
    ({"process.user": DELETE}, "process.user", "required"),
    ({"process.args": []}, "process.args", "must name"),
    ({"process.args": DELETE}, "process.args", "must name"),
    ({"process.args": ["sh", 3]}, "process.args[1]", "string"),
    ({"process.cwd": "tmp"}, "process.cwd", "absolute"),
    ({"process.env": ["PATH"]}, "process.env[0]", "KEY=VALUE"),
    ({"process.env": ["A=1", "=x"]}, "process.env[1]", "KEY=VALUE"),
    ({"process.env": ["A=\0"]}, "process.env[0]", "NUL"),
    ({"process.oomScoreAdj": 1001}, "process.oomScoreAdj", "-1000..1000"),
    ({"process.oomScoreAdj": False}, "process.oomScoreAdj", "integer"),
    ({"process.consoleSize": {"height": 1, "width": 2}, "process.terminal": False},
     "process.consoleSize", "terminal"),
    ({"process.capabilities.bounding": ["CAP_NOPE"]}, "process.capabilities.bounding[0]",
     "capability"),
    ({"process.capabilities.ambient": ["SYS_ADMIN"]}, "process.capabilities.ambient[0]",
     "capability"),
    ({"process.rlimits[0].type": "NOFILE"}, "process.rlimits[0].type", "RLIMIT_"),
    ({"process.rlimits[0].type": "RLIMIT_BOGUS"}, "process.rlimits[0].type", "RLIMIT_"),
    ({"process.rlimits[0].soft": 4096}, "process.rlimits[0]", "more than hard"),
    ({"process.rlimits[0].hard": -1}, "process.rlimits[0].hard", "out of range"),
    ({"process.rlimits": [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}] * 2},
     "process.rlimits[1].type", "twice"),
    ({"mounts[0].destination": "proc"}, "mounts[0].destination", "absolute"),
    ({"mounts[1].destination": "/dev/../etc"}, "mounts[1].destination", "'..'"),
    ({"mounts[2].options": "nosuid"}, "mounts[2].options", "list"),
    ({"mounts[0].destination": DELETE}, "mounts[0].destination", "required"),
    ({"mounts[0].uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
     "mounts[0]", "go together"),
    ({"mounts": {"destination": "/x"}}, "mounts", "list"),
    ({f"{NS}[0].type": "pidns"}, f"{NS}[0].type", "namespace type"),
    ({f"{NS}[1].type": "pid"}, f"{NS}[1].type", "twice"),
    ({f"{NS}[1].path": "proc/1/ns/net"}, f"{NS}[1].path", "absolute"),
    ({"linux.uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
     "linux.uidMappings", "user namespace"),
    ({f"{NS}[5]": {"type": "user"},
      "linux.gidMappings": [{"containerID": 0, "hostID": 1000, "size": 10},
                            {"containerID": 5, "hostID": 2000, "size": 10}]},
     "linux.gidMappings", "overlap"),
    ({f"{NS}[5]": {"type": "user", "path": "/proc/1/ns/user"},
      "linux.uidMappings": [{"containerID": 0, "hostID": 0, "size": 1}]},
     "linux.uidMappings", "joining"),
    ({f"{NS}[3]": DELETE}, "hostname", "UTS namespace"),  # [3] is uts
    ({"domainname": "x" * 65}, "domainname", "64 bytes"),
    ({"hooks.prestart": [{"path": "bin/true"}]}, "hooks.prestart[0].path", "absolute"),
    ({"hooks.poststop": [{"path": "/bin/true", "timeout": 0}]}, "hooks.poststop[0].timeout",
     "positive"),
    ({"hooks.createRuntime": [{"path": "/bin/true", "env": ["X"]}]},
     "hooks.createRuntime[0].env[0]", "KEY=VALUE"),
    ({"hooks.startContainer": [{"args": ["x"]}]}, "hooks.startContainer[0].path", "required"),
    ({"linux.cgroupsPath": "a:b"}, "linux.cgroupsPath", "systemd form"),
    ({"linux.cgroupsPath": "/a/../b"}, "linux.cgroupsPath", "'..'"),
    ({"linux.cgroupsPath": "a/b.slice:p:n"}, "linux.cgroupsPath slice", "slice name"),
    ({"linux.cgroupsPath": "system.slice:p:"}, "linux.cgroupsPath", "name is empty"),
    ({"linux.resources.memory": {"limit": -2}}, "linux.resources.memory.limit", "at least -1"),
    ({"linux.resources.memory": {"limit": "1G"}}, "linux.resources.memory.limit", "integer"),
    ({"linux.resources.memory": {"swappiness": 101}}, "linux.resources.memory.swappiness",
     "0..100"),
    ({"linux.resources.cpu": {"shares": -1}}, "linux.resources.cpu.shares", "out of range"),
    ({"linux.resources.cpu": {"quota": 2**63}}, "linux.resources.cpu.quota", "out of range"),
    ({"linux.resources.cpu": {"cpus": "0-3;5"}}, "linux.resources.cpu.cpus", "list"),
    ({"linux.resources.cpu": {"idle": 2}}, "linux.resources.cpu.idle", "0 or 1"),
    ({"linux.resources.pids": {}}, "linux.resources.pids.limit", "required"),
    ({"linux.resources.blockIO": {"weight": 5}}, "linux.resources.blockIO.weight", "10..1000"),
    ({"linux.resources.blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 2000}]}},
     "linux.resources.blockIO.weightDevice[0].weight", "10..1000"),
    ({"linux.resources.blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0].rate", "required"),
    ({"linux.resources.hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize", "page size"),
    ({"linux.resources.devices[0].access": "rwx"}, "linux.resources.devices[0].access",
     "r, w, m"),
    ({"linux.resources.devices[0].type": "z"}, "linux.resources.devices[0].type", "a, b or c"),
    ({"linux.resources.devices[0].allow": DELETE}, "linux.resources.devices[0].allow",
     "required"),
    ({"linux.resources.network": {"classID": 2**32}}, "linux.resources.network.classID",
     "out of range"),
    ({"linux.resources.unified": {"../memory.max": "1"}},
     "linux.resources.unified['../memory.max']", "cgroup file"),
    ({"linux.resources.unified": {"memory.max": 1}},
     "linux.resources.unified['memory.max']", "string"),
    ({"linux.devices": [{"type": "c", "path": "/dev/x"}]}, "linux.devices[0]", "major"),
    ({"linux.devices": [{"type": "q", "path": "/dev/x", "major": 1, "minor": 1}]},
     "linux.devices[0].type", "c, b, u or p"),
    ({"linux.devices": [{"type": "p", "path": "dev/x"}]}, "linux.devices[0].path", "absolute"),
    ({"linux.devices": [{"type": "p", "path": "/x", "uid": 2**32}]}, "linux.devices[0].uid",
     "out of range"),
    ({"linux.devices": [{"type": "p", "path": "/x", "fileMode": 0o17777}]},
     "linux.devices[0].fileMode", "0o7777"),
    ({"linux.seccomp": {"defaultAction": "ALLOW"}}, "linux.seccomp.defaultAction",
     "SCMP_ACT_"),
    ({"linux.seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}, "linux.seccomp.defaultAction",
     "listenerPath"),
    ({"linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}},
     "linux.seccomp.architectures[0]", "SCMP_ARCH_"),
    ({"linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "flags": ["TSYNC"]}},
     "linux.seccomp.flags[0]", "flag"),
    ({"linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}},
     "linux.seccomp.syscalls[0].args[0].index", "0..5"),
    ({"linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "EQ"}]}]}},
     "linux.seccomp.syscalls[0].args[0].op", "SCMP_CMP_"),
    ({"linux.seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": [], "action": "SCMP_ACT_ALLOW"}]}}, "linux.seccomp.syscalls[0].names",
     "empty"),
    ({"linux.rootfsPropagation": "recursive"}, "linux.rootfsPropagation", "one of"),
    ({"linux.maskedPaths[0]": "proc/acpi"}, "linux.maskedPaths[0]", "absolute"),
    ({"linux.readonlyPaths[4]": "/proc/../sys"}, "linux.readonlyPaths[4]", "'..'"),
    ({"linux.personality": {"domain": "SVR4"}}, "linux.personality.domain", "not supported"),
    ({"linux.personality": {"domain": "LINUX", "flags": ["X"]}}, "linux.personality.flags",
     "not supported"),
    ({"linux.timeOffsets": {"monotonic": {"secs": 1}}}, "linux.timeOffsets",
     "time namespace"),
    ({f"{NS}[5]": {"type": "time"}, "linux.timeOffsets": {"realtime": {"secs": 1}}},
     "linux.timeOffsets['realtime']", "monotonic"),
    ({"annotations": {"a": 1}}, "annotations['a']", "string"),
    ({"annotations": []}, "annotations", "object"),
    ({"linux": "yes"}, "linux", "object"),
    ({"process.selinuxLabel": "system_u:system_r:container_t:s0"}, "process.selinuxLabel",
     "not supported"),
    ({"linux.mountLabel": "system_u:object_r:container_file_t:s0"}, "linux.mountLabel",
     "not supported"),
    ({"linux.resources.cpu": {"realtimeRuntime": 1000}}, "linux.resources.cpu.realtimeRuntime",
     "not supported"),
]


@pytest.mark.parametrize(("edits", "path", "word"), BAD,
                         ids=[f"{i}-{path}" for i, (_, path, _) in enumerate(BAD)])
def test_bad_config_is_refused_naming_its_path(edits: dict[str, Any], path: str,
                                               word: str) -> None:
    doc = base()
    for key, value in edits.items():
        _set(doc, key, value if value is DELETE else copy.deepcopy(value))
    with pytest.raises(SpecError) as info:
        parse_spec(doc, host=HOST)
    message = str(info.value)
    assert message.startswith(path + " ") or message.startswith(path + ":"), message
    assert word in message, message


def test_the_table_covers_every_class() -> None:
    assert len(BAD) >= 40


# ---------------------------------------------------------------- unknown and unsupported


@pytest.mark.parametrize("path", ["bogus", "process.bogus", "process.user.name",
                                  "linux.resources.memory.bogus", "mounts[0].bogus",
                                  "linux.seccomp.syscalls[0].bogus", "hooks.prestart[0].when",
                                  "linux.namespaces[0].flags", "process.capabilities.all"])
def test_unknown_keys_are_refused(path: str) -> None:
    doc = base()
    _set(doc, "linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    _set(doc, "hooks.prestart", [{"path": "/bin/true"}])
    _set(doc, path, 1)
    with pytest.raises(SpecError, match=r"unknown field") as info:
        parse_spec(doc, host=HOST)
    assert str(info.value).startswith(path + ": ")


def test_annotations_take_any_key() -> None:
    doc = base()
    doc["annotations"] = {"org.example.anything": "x", "io.kubernetes.cri.sandbox-id": "y"}
    assert parse_spec(doc, host=HOST).annotations == doc["annotations"]


@pytest.mark.parametrize("path", sorted(UNSUPPORTED))
def test_unsupported_fields_are_refused(path: str) -> None:
    doc = base()
    _set(doc, path, {"x": 1})
    with pytest.raises(SpecError) as info:
        parse_spec(doc, host=HOST)
    assert str(info.value).startswith(f"{path}: not supported"), str(info.value)


def test_intel_rdt_message_is_the_documented_one() -> None:
    doc = base()
    doc["linux"]["intelRdt"] = {"closID": "x"}
    with pytest.raises(SpecError, match=r"^linux\.intelRdt: not supported"):
        parse_spec(doc, host=HOST)
    doc["linux"]["intelRdt"] = None  # null reads as absent
    parse_spec(doc, host=HOST)


def test_host_features_decide_optional_fields(caplog: pytest.LogCaptureFixture) -> None:
    doc = base()
    doc["process"]["apparmorProfile"] = "docker-default"
    with caplog.at_level(logging.DEBUG, logger="nsbind.oci.spec"):
        spec = parse_spec(doc, host=HOST)
    assert spec.process is not None and spec.process.apparmor_profile == "docker-default"
    assert "process.apparmorProfile" in caplog.text and "AppArmor" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="nsbind.oci.spec"):
        parse_spec(doc, host=Host(apparmor=True))
    assert caplog.text == ""
    doc["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
    parse_spec(doc, host=Host(selinux=True))
    rt = base()
    rt["linux"]["resources"]["cpu"] = {"realtimeRuntime": 950000, "realtimePeriod": 1000000}
    assert parse_spec(rt, host=RT_HOST).to_json() == rt


def test_probed_host_matches_sys() -> None:
    host = Host.probe()
    assert host.selinux == pathlib.Path("/sys/fs/selinux/enforce").exists()


# ---------------------------------------------------------------- sysctl


@pytest.mark.parametrize(("key", "needs"), [
    ("net.ipv4.ip_forward", None), ("net/ipv4/ping_group_range", None),
    ("kernel.shmmax", None), ("kernel.msgmnb", None), ("kernel.sem", None),
    ("fs.mqueue.msg_max", None), ("kernel.domainname", None),
    ("kernel.pid_max", "not a namespaced"), ("vm.swappiness", "not a namespaced"),
    ("fs.file-max", "not a namespaced"), ("kernel..x", "not a sysctl"), ("", "not a sysctl"),
])
def test_sysctl_keys(key: str, needs: str | None) -> None:
    doc = base()
    doc["linux"]["sysctl"] = {key: "1"}
    if needs is None:
        assert parse_spec(doc, host=HOST).linux.sysctl == {key: "1"}  # type: ignore[union-attr]
    else:
        with pytest.raises(SpecError, match=needs) as info:
            parse_spec(doc, host=HOST)
        assert str(info.value).startswith(f"linux.sysctl[{key!r}]")


@pytest.mark.parametrize(("key", "namespace"), [
    ("net.core.somaxconn", "network"), ("kernel.shm_rmid_forced", "ipc"),
    ("fs.mqueue.queues_max", "ipc"), ("kernel.hostname", "uts")])
def test_sysctl_needs_its_namespace(key: str, namespace: str) -> None:
    doc = base()
    doc["linux"]["sysctl"] = {key: "1"}
    doc["linux"]["namespaces"] = [ns for ns in doc["linux"]["namespaces"]
                                  if ns["type"] != namespace]
    if namespace == "uts":
        del doc["hostname"]
    with pytest.raises(SpecError, match=f"needs a {namespace} namespace"):
        parse_spec(doc, host=HOST)
    doc["linux"]["namespaces"].append({"type": namespace, "path": "/proc/1/ns/x"})
    parse_spec(doc, host=HOST)  # joined counts too


def test_sysctl_value_must_be_a_string() -> None:
    doc = base()
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": 1}
    with pytest.raises(SpecError, match=r"^linux\.sysctl\['net\.ipv4\.ip_forward'\] must be"):
        parse_spec(doc, host=HOST)


# ---------------------------------------------------------------- cgroupsPath


def test_cgroups_path_forms() -> None:
    absolute = parse_cgroups_path("/machine/ctr1")
    assert (absolute.form, absolute.cgroupfs_path()) == ("absolute", "machine/ctr1")
    relative = parse_cgroups_path("machine/ctr1")
    assert (relative.form, relative.cgroupfs_path()) == ("relative", "machine/ctr1")
    systemd = parse_cgroups_path("machine-libpod.slice:libpod:abc123")
    assert (systemd.form, systemd.slice, systemd.prefix, systemd.name) == (
        "systemd", "machine-libpod.slice", "libpod", "abc123")
    assert systemd.cgroupfs_path() == "machine.slice/machine-libpod.slice/libpod-abc123.scope"


@pytest.mark.parametrize(("value", "expected"), [
    ("system.slice:docker:abc", "system.slice/docker-abc.scope"),
    (":crio:abc", "system.slice/crio-abc.scope"),
    ("-:crio:abc", "crio-abc.scope"),
    ("a-b-c.slice::abc", "a.slice/a-b.slice/a-b-c.slice/abc.scope"),
    ("user-1000.slice:podman:x", "user.slice/user-1000.slice/podman-x.scope"),
    ("system.slice:ignored:my-sub.slice", "system.slice/my.slice/my-sub.slice"),
])
def test_systemd_cgroup_path(value: str, expected: str) -> None:
    assert systemd_cgroup_path(*value.split(":")) == expected


def test_systemd_cgroup_path_rootless_default_and_bad_slices() -> None:
    assert systemd_cgroup_path("", "p", "n", rootless=True) == "user.slice/p-n.scope"
    assert expand_slice("-.slice") == ""
    for bad in ("a--b.slice", "-a.slice", "a-.slice", "a.scope", ".slice"):
        with pytest.raises(SpecError, match="slice"):
            expand_slice(bad)


def test_spec_exposes_the_cgroups_path_parts() -> None:
    doc = base()
    doc["linux"]["cgroupsPath"] = "machine.slice:libpod:c1"
    spec = parse_spec(doc, host=HOST)
    assert spec.linux is not None
    parts = spec.linux.cgroups_path_parts
    assert parts is not None and parts.cgroupfs_path() == "machine.slice/libpod-c1.scope"
    doc["linux"]["cgroupsPath"] = ""
    assert parse_spec(doc, host=HOST).linux.cgroups_path_parts is None  # type: ignore[union-attr]


# ---------------------------------------------------------------- a full spec round-trips


def test_every_supported_field_round_trips() -> None:
    doc = base()
    doc["ociVersion"] = "1.2.0"
    doc["domainname"] = "example.org"
    doc["process"].update({
        "consoleSize": {"height": 24, "width": 80}, "oomScoreAdj": -1000,
        "user": {"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5, 4294967294]},
        "apparmorProfile": "p"})
    doc["process"]["capabilities"]["inheritable"] = []
    doc["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv",
                          "options": ["rbind"],
                          "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                          "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})
    doc["hooks"] = {name: [{"path": "/bin/true", "args": ["true"], "env": ["A=b"],
                            "timeout": 5}]
                    for name in ("prestart", "createRuntime", "createContainer",
                                 "startContainer", "poststart", "poststop")}
    doc["linux"].update({
        "namespaces": [{"type": t} for t in ("pid", "network", "mount", "ipc", "uts", "user",
                                             "cgroup", "time")],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "sysctl": {"net.ipv4.ip_forward": "1"}, "cgroupsPath": "/nsbind/c1",
        "rootfsPropagation": "rslave",
        "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                     "fileMode": 0o666, "uid": 0, "gid": 0}],
        "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                    "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                    "listenerPath": "/run/seccomp.sock",
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY", "errnoRet": 1,
                                  "args": [{"index": 0, "value": 1, "valueTwo": 2,
                                            "op": "SCMP_CMP_MASKED_EQ"}]}]},
        "personality": {"domain": "LINUX32", "flags": []},
        "timeOffsets": {"monotonic": {"secs": -5, "nanosecs": 1}},
    })
    doc["linux"]["resources"].update({
        "memory": {"limit": 1 << 30, "reservation": -1, "swap": -1, "swappiness": 10,
                   "disableOOMKiller": True, "checkBeforeUpdate": False},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-3,5",
                "mems": "0", "idle": 1},
        "pids": {"limit": 100},
        "blockIO": {"weight": 500, "leafWeight": 0,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                    **{f"throttle{k}Device": [{"major": 8, "minor": 0, "rate": 1 << 62}]
                       for k in ("ReadBps", "WriteBps", "ReadIOPS", "WriteIOPS")}},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 5}]},
        "unified": {"memory.high": "max"},
    })
    spec = parse_spec(doc, bundle="/b", host=HOST)
    assert spec.to_json() == doc
    assert spec.rootfs == "/b/rootfs"
    assert spec.process is not None and spec.process.user.additional_gids == (5, 4294967294)


# ---------------------------------------------------------------- fuzzing

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30)
KEYS = st.sampled_from(["ociVersion", "process", "root", "hostname", "mounts", "linux",
                        "hooks", "annotations", "args", "user", "uid", "namespaces", "type",
                        "path", "resources", "memory", "limit", "sysctl", "cgroupsPath",
                        "seccomp", "syscalls", "devices", "capabilities", "bounding"])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(JSON)
def test_fuzz_arbitrary_json_raises_only_spec_error(value: Any) -> None:
    with contextlib.suppress(SpecError):
        parse_spec(value, host=HOST)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_fuzz_mutated_crun_spec_raises_only_spec_error(crun_json: dict[str, Any],
                                                       data: st.DataObject) -> None:
    doc = copy.deepcopy(crun_json)
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(KEYS)] = data.draw(JSON)
        else:
            parent[path[-1]] = data.draw(JSON)
    try:
        spec = parse_spec(doc, host=HOST)
    except SpecError:
        return
    assert parse_spec(spec.to_json(), host=HOST) == spec
