"""nsbind run's flags (nsbind.engine.runopts) and the OCI spec made from them and an image
config (nsbind.engine.specgen): every spec is checked by the runtime's own parser and
converter (parse_spec, to_spawn), every bad flag value is an EngineError (125) naming
the flag."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from typing import Any

import pytest

from nsbind.engine import runopts
from nsbind.engine.errors import EngineError
from nsbind.engine.runflags import run_parser
from nsbind.engine.runopts import MountRequest, Ulimit, parse_size, run_options
from nsbind.engine.seccompprofile import convert_profile, default_profile
from nsbind.engine.specgen import DEFAULT_CAPABILITIES, DEFAULT_PATH, build_spec
from nsbind.image import ImageConfig
from nsbind.oci import Host, Spec, parse_spec, to_spawn
from nsbind.seccomp import Filter

HOST = Host()


def opts(*argv: str, environ: dict[str, str] | None = None) -> runopts.RunOptions:
    return run_options(run_parser().parse_args(list(argv)), environ or {})


@pytest.fixture()
def rootfs(tmp_path: pathlib.Path) -> str:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "app:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:root\nwheel:x:10:root\nstaff:x:50:app\n"
                                    "app:x:1000:\n")
    return str(root)


def checked(spec: dict[str, Any]) -> Spec:
    """The spec through JSON, the runtime's parser and its converter."""
    parsed = parse_spec(json.loads(json.dumps(spec)), host=HOST)
    to_spawn(parsed, cgroup_parent="nsbind-test", host=HOST)
    return parsed


def make(rootfs: str, *argv: str, config: ImageConfig | None = None,
         **kw: Any) -> dict[str, Any]:
    o = opts(*argv, "img", *(() if config else ("true",))) if "--rootfs" not in argv \
        else opts(*argv)
    spec = build_spec(o, config, rootfs=rootfs, container_id="c0ffee", hostname="c0ffee", **kw)
    checked(spec)
    return spec


# ------------------------------------------------------------------ parsing argv


@pytest.mark.unprivileged
def test_positionals_docker_style(tmp_path: pathlib.Path) -> None:
    o = opts("--rm", "-it", "img", "sh", "-c", "echo -e x", "--rm")
    assert (o.image, o.command, o.rm, o.tty, o.interactive) == (
        "img", ("sh", "-c", "echo -e x", "--rm"), True, True, True)
    assert opts("img", "--", "ls", "-l").command == ("ls", "-l")
    assert opts("-d", "--", "img", "ls").command == ("ls",)
    o = opts("--rootfs", str(tmp_path), "sh", "-c", "x")
    assert (o.image, o.rootfs, o.command) == (None, str(tmp_path), ("sh", "-c", "x"))
    with pytest.raises(EngineError, match="requires at least 1 argument") as info:
        opts("-d")
    assert info.value.status == 125
    with pytest.raises(SystemExit) as exit_info:
        run_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert opts("-h", "box", "img").hostname == "box"


@pytest.mark.unprivileged
def test_defaults_and_typed_values() -> None:
    o = opts("img")
    assert (o.network, o.seccomp, o.env, o.mounts, o.memory, o.user) == (
        "loopback", "default", (), (), None, None)
    o = opts("-m", "1.5g", "--memory-swap", "-1", "--cpus", "1.5", "--pids-limit", "0",
             "--ulimit", "nofile=1024:2048", "--ulimit", "core=-1", "--ulimit", "nofile=9",
             "--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN", "--cap-add", "all",
             "--stop-signal", "SIGRTMIN+3", "--stop-timeout", "30", "--security-opt",
             "no-new-privileges", "--net", "host", "--userns", "host", "img")
    assert o.memory == 3 << 29 and o.memory_swap == -1 and o.pids_limit is None
    assert o.cpus == (150000, 100000)
    assert o.ulimits == (Ulimit("RLIMIT_NOFILE", 9, 9), Ulimit("RLIMIT_CORE", 2**64 - 1,
                                                                 2**64 - 1))
    assert o.cap_add == ("CAP_NET_ADMIN", "ALL") and o.cap_drop == ("CAP_CHOWN",)
    assert o.stop_signal == 37 and o.stop_timeout == 30 and o.no_new_privileges
    assert opts("--stop-signal", "term", "img").stop_signal == 15


@pytest.mark.unprivileged
@pytest.mark.parametrize(("text", "size"), [
    ("512", 512), ("512b", 512), ("1k", 1024), ("512m", 512 << 20), ("1G", 1 << 30),
    ("1.5g", 3 << 29), ("100mb", 100 << 20), ("2MiB", 2 << 20), ("1t", 1 << 40),
    ("1p", 1 << 50), ("0.5k", 512)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size("-m, --memory", text) == size


@pytest.mark.unprivileged
def test_env_files_then_flags(tmp_path: pathlib.Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("\ufeff# comment\n\n  A=1\nB=  spaced \nFROM_HOST\nUNSET\r\nC=\n")
    o = opts("--env-file", str(env_file), "-e", "A=2", "-e", "FROM_HOST", "-e", "GONE",
             "-e", "D=x=y", "img", environ={"FROM_HOST": "h"})
    assert o.env == ("A=1", "B=  spaced ", "FROM_HOST=h", "C=", "A=2", "FROM_HOST=h", "D=x=y")


@pytest.mark.unprivileged
def test_mount_requests(tmp_path: pathlib.Path) -> None:
    src = str(tmp_path)
    o = opts("-v", f"{src}:/data/./x/:ro", "--mount", f"type=bind,src={src},dst=/b,readonly",
             "--mount", f'"type=bind","source={src}","target=/c",bind-recursive=disabled',
             "--mount", "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770",
             "--tmpfs", "/run:size=64m,mode=755,uid=1000,nr_inodes=10k,exec", "--tmpfs", "/u",
             "img")
    assert o.mounts == (
        MountRequest("bind", src, "/data/x", ("rbind", "ro")),
        MountRequest("bind", src, "/b", ("rbind", "ro")),
        MountRequest("bind", src, "/c", ("bind",)),
        MountRequest("tmpfs", "tmpfs", "/t", ("size=1048576", "mode=1770")),
        MountRequest("tmpfs", "tmpfs", "/run", ("size=64m", "mode=755", "uid=1000",
                                                "nr_inodes=10k", "exec")),
        MountRequest("tmpfs", "tmpfs", "/u", ()))


BAD = [
    (["-m", "12x"], '"12x" for "-m, --memory": invalid size'),
    (["-m", "1k"], "Minimum memory limit"), (["-m", "99999999999p"], "out of range"),
    (["--memory-swap", "1g"], "--memory-swap"),
    (["-m", "1g", "--memory-swap", "512m"], "--memory-swap"),
    (["--cpus", "0"], "--cpus"), (["--cpus", "abc"], "--cpus"), (["--cpus", "-1"], "--cpus"),
    (["--cpus", "100000"], "--cpus"), (["--cpus", "0.0000000001"], "--cpus"),
    (["--cpuset-cpus", "0-"], "--cpuset-cpus"), (["--cpuset-cpus", "3-1"], "--cpuset-cpus"),
    (["--cpuset-cpus", "99999"], "--cpuset-cpus"),
    (["--pids-limit", "1x"], "--pids-limit"), (["--pids-limit", str(2**63)], "--pids-limit"),
    (["--ulimit", "nofile"], "--ulimit"), (["--ulimit", "bogus=1"], "--ulimit"),
    (["--ulimit", "nofile=2:1"], "--ulimit"), (["--ulimit", "nofile=-2"], "--ulimit"),
    (["--ulimit", f"nofile={2**63}"], "--ulimit"), (["-v", "/tmp:/d:ro:x"], "-v, --volume"),
    (["-v", "vol:/data"], "named volumes"), (["-v", "/data"], "anonymous volumes"),
    (["-v", "/nonexistent-nsbind:/d"], "bind source path does not exist: /nonexistent"),
    (["-v", "/tmp:rel"], "-v, --volume"), (["-v", "/tmp:/a/../b"], "-v, --volume"),
    (["-v", "/tmp:/"], "-v, --volume"), (["-v", "/tmp:/d:z"], "-v, --volume"),
    (["-v", "/tmp:/d", "--tmpfs", "/d"], "Duplicate mount point: /d"),
    (["--mount", "type=volume,src=v,dst=/d"], "--mount"),
    (["--mount", "type=bind,dst=/d"], "--mount"), (["--mount", "type=bind,src=/tmp"], "--mount"),
    (["--mount", "type=bind,src=/tmp,dst=/d,bogus=1"], "--mount"),
    (["--mount", "type=bind,src=/tmp,dst=/d,bind-propagation=shared"], "--mount"),
    (["--mount", "type=tmpfs,dst=/d,tmpfs-mode=999"], "--mount"),
    (["--mount", "type=tmpfs,dst=/d,tmpfs-size=big"], "--mount"),
    (["--mount", "type=tmpfs,src=x,dst=/d"], "--mount"),
    (["--mount", "type=bind,src=/tmp,dst=/d,readonly=maybe"], "--mount"),
    (["--tmpfs", "rel"], "--tmpfs"), (["--tmpfs", "/t:size=1x"], "--tmpfs"),
    (["--tmpfs", "/t:mode=8"], "--tmpfs"), (["--tmpfs", "/t:uid=-1"], "--tmpfs"),
    (["--tmpfs", "/t:uid=4294967295"], "--tmpfs"), (["--tmpfs", "/t:huge=always"], "--tmpfs"),
    (["--tmpfs", "/t:suid"], "--tmpfs"), (["--tmpfs", "/t:size=1m,,x=1"], "--tmpfs"),
    (["--cap-add", "BOGUS"], "--cap-add"), (["--cap-drop", "CAP_"], "--cap-drop"),
    (["--security-opt", "seccomp=/nonexistent.json"], "--security-opt"),
    (["--security-opt", "apparmor=foo"], "--security-opt"),
    (["--security-opt", "no-new-privileges=maybe"], "--security-opt"),
    (["--stop-signal", "SIGBOGUS"], "--stop-signal"), (["--stop-signal", "0"], "--stop-signal"),
    (["--stop-signal", "65"], "--stop-signal"), (["--stop-timeout", "x"], "--stop-timeout"),
    (["--stop-timeout", "-2"], "--stop-timeout"),
    (["--net", "br idge"], "--network"), (["--network", "../x"], "--network"),
    (["--net", "none", "-p", "80:80"], "--publish"),
    (["--userns", "keep-id"], "--userns"), (["--userns", "auto:size=x"], "--userns"),
    (["--rootfs", "/nonexistent-nsbind"], "--rootfs"), (["--rootfs", "/etc/passwd"], "--rootfs"),
    (["-e", "=x"], "-e, --env"), (["-e", ""], "-e, --env"),
    (["--env-file", "/nonexistent-nsbind"], "--env-file"), (["--env-file", "/dev/null"],
                                                             "--env-file"),
    (["-w", "rel/dir"], "-w, --workdir"), (["--name", "a"], "--name"),
    (["--name", "bad name"], "--name"), (["-h", "bad_host!"], "-h, --hostname"),
    (["-h", "x" * 65], "-h, --hostname"),
]


@pytest.mark.unprivileged
@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_values(argv: list[str], message: str) -> None:
    with pytest.raises(EngineError) as info:
        opts(*argv, "img")
    assert info.value.status == 125
    assert message in str(info.value)


@pytest.mark.unprivileged
def test_bad_files(tmp_path: pathlib.Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("A B=1\n")
    with pytest.raises(EngineError, match='"--env-file": line 1'):
        opts("--env-file", str(env_file), "img")
    env_file.write_bytes(b"A=\xff\n")
    with pytest.raises(EngineError, match="UTF-8"):
        opts("--env-file", str(env_file), "img")
    os.mkfifo(tmp_path / "fifo")  # refused without blocking
    for flag in ("--env-file", "--security-opt"):
        value = str(tmp_path / "fifo")
        with pytest.raises(EngineError, match=flag):
            opts(flag, f"seccomp={value}" if flag == "--security-opt" else value, "img")
    (tmp_path / "p.json").write_text("[1]")
    with pytest.raises(EngineError, match="defaultAction"):
        opts("--security-opt", f"seccomp={tmp_path / 'p.json'}", "img")


# ------------------------------------------------------------------ the spec

COMBOS = [
    [], ["-t", "-i"], ["--read-only"], ["--net", "host"], ["--net", "none"],
    ["-m", "64m"], ["-m", "64m", "--memory-swap", "-1"], ["-m", "64m", "--memory-swap", "1g"],
    ["--cpus", "0.25", "--cpuset-cpus", "0"], ["--pids-limit", "50"],
    ["--ulimit", "nofile=10:20", "--ulimit", "nproc=-1"], ["--cap-add", "ALL"],
    ["--cap-drop", "ALL"], ["--cap-drop", "ALL", "--cap-add", "sys_admin"],
    ["--security-opt", "seccomp=unconfined"], ["--security-opt", "no-new-privileges=true"],
    ["--init"], ["--init", "--security-opt", "no-new-privileges"],
    ["--tmpfs", "/run:size=64m,mode=1777", "--tmpfs", "/dev/shm:size=1g"],
    ["-v", "/tmp:/mnt/a:ro", "--mount", "type=bind,src=/tmp,dst=/mnt", "--read-only"],
    ["-u", "app", "-w", "/home/app"], ["-u", "1234:50"], ["--entrypoint", "/bin/sh"],
    ["--stop-signal", "KILL", "--stop-timeout", "5"],
]


@pytest.mark.unprivileged
@pytest.mark.parametrize("argv", COMBOS, ids=[" ".join(a) or "plain" for a in COMBOS])
def test_combinations_are_accepted_by_the_runtime(rootfs: str, argv: list[str]) -> None:
    make(rootfs, *argv, etc_files={"/etc/hosts": "/etc/hosts",
                                   "/etc/resolv.conf": "/etc/resolv.conf"})


@pytest.mark.unprivileged
def test_docker_defaults(rootfs: str) -> None:
    spec = make(rootfs)
    proc, linux = spec["process"], spec["linux"]
    assert proc["capabilities"] == {name: list(DEFAULT_CAPABILITIES)
                                    for name in ("bounding", "effective", "permitted")}
    assert "noNewPrivileges" not in proc and proc["terminal"] is False
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [10]}
    assert [ns["type"] for ns in linux["namespaces"]] == ["pid", "network", "ipc", "uts",
                                                          "mount", "cgroup"]
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert spec["root"] == {"path": rootfs, "readonly": False}
    assert spec["hostname"] == "c0ffee" and "annotations" not in spec
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    assert "network" not in [n["type"] for n in make(rootfs, "--net", "host")["linux"][
        "namespaces"]]


@pytest.mark.unprivileged
def test_capabilities(rootfs: str) -> None:
    def caps(*argv: str) -> dict[str, list[str]]:
        result: dict[str, list[str]] = make(rootfs, *argv)["process"]["capabilities"]
        return result

    dropped = caps("--cap-drop", "chown", "--cap-add", "NET_ADMIN")["bounding"]
    assert "CAP_CHOWN" not in dropped and dropped[-1] == "CAP_NET_ADMIN"
    assert caps("--cap-drop", "ALL", "--cap-add", "kill")["effective"] == ["CAP_KILL"]
    everything = caps("--cap-add", "ALL", "--cap-drop", "mknod")["permitted"]
    assert "CAP_SYS_ADMIN" in everything and "CAP_MKNOD" not in everything
    assert caps("-u", "app") == {"bounding": list(DEFAULT_CAPABILITIES), "effective": [],
                                 "permitted": []}


@pytest.mark.unprivileged
@pytest.mark.parametrize(("entrypoint", "cmd", "flags", "command", "args"), [
    (("/ep",), ("c",), [], [], ["/ep", "c"]),
    (("/ep",), ("c",), [], ["x", "y"], ["/ep", "x", "y"]),
    (("/ep",), ("c",), ["--entrypoint", "/new"], [], ["/new"]),
    (("/ep",), ("c",), ["--entrypoint", "/new"], ["z"], ["/new", "z"]),
    (("/ep",), ("c",), ["--entrypoint", ""], [], ["c"]),
    (("/ep",), ("c",), ["--entrypoint", ""], ["z"], ["z"]),
    ((), ("c", "-x"), [], [], ["c", "-x"]),
    ((), (), ["--entrypoint", "sh -c"], [], ["sh -c"]),
])
def test_process_args(rootfs: str, entrypoint: tuple[str, ...], cmd: tuple[str, ...],
                      flags: list[str], command: list[str], args: list[str]) -> None:
    config = ImageConfig(entrypoint=entrypoint, cmd=cmd)
    spec = build_spec(opts(*flags, "img", *command), config, rootfs=rootfs,
                      container_id="c", hostname="h")
    assert spec["process"]["args"] == args
    assert checked(spec).process is not None


@pytest.mark.unprivileged
def test_no_command(rootfs: str) -> None:
    for o, config in ((opts("img"), ImageConfig()),
                      (opts("--entrypoint", "", "img"), ImageConfig(entrypoint=("/ep",))),
                      (opts("--rootfs", rootfs), None)):
        with pytest.raises(EngineError, match="no command specified") as info:
            build_spec(o, config, rootfs=rootfs, container_id="c", hostname="h")
        assert info.value.status == 125


@pytest.mark.unprivileged
def test_env_cwd_and_user_from_image(rootfs: str) -> None:
    config = ImageConfig(env=("FOO=image", "BAR=1"), cmd=("sh",), working_dir="/srv",
                         user="app:wheel")
    spec = make(rootfs, "-t", "-e", "FOO=flag", "-e", "HOSTNAME=mine", config=config)
    proc = spec["process"]
    assert proc["env"] == ["FOO=flag", "BAR=1", f"PATH={DEFAULT_PATH}", "HOSTNAME=mine",
                           "TERM=xterm"]
    assert proc["cwd"] == "/srv" and proc["terminal"] is True
    assert proc["user"] == {"uid": 1000, "gid": 10, "additionalGids": [50]}
    spec = make(rootfs, "-w", "/w", "-u", "0", config=ImageConfig(
        env=("PATH=/img",), cmd=("sh",), working_dir="/srv", user="app"))
    assert spec["process"]["env"][0] == "PATH=/img" and spec["process"]["cwd"] == "/w"
    assert spec["process"]["user"]["uid"] == 0


@pytest.mark.unprivileged
def test_unknown_user_and_group(rootfs: str) -> None:
    for user, message in (("nobody", "unable to find user nobody: no matching entries in "
                                     "passwd file"),
                          ("app:nogroup", "unable to find group nogroup"),
                          ("-5", "unable to resolve user")):
        with pytest.raises(EngineError, match=message) as info:
            build_spec(opts("-u", user, "img", "x"), None, rootfs=rootfs, container_id="c",
                       hostname="h")
        assert info.value.status == 125


@pytest.mark.unprivileged
def test_mounts(rootfs: str, tmp_path: pathlib.Path) -> None:
    spec = make(rootfs, "--read-only", "--tmpfs", "/dev/shm:size=1g", "-v", f"{tmp_path}:/a/b",
                "--tmpfs", "/a:exec", "-v", f"{tmp_path}:/etc/hosts:ro",
                etc_files={"/etc/hosts": "/etc/hosts", "/etc/hostname": "/etc/hostname"})
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.count("/dev/shm") == 1 and dests.count("/etc/hosts") == 1
    assert dests.index("/a") < dests.index("/a/b")
    assert by_dest["/dev/shm"]["options"] == ["nosuid", "nodev", "noexec", "size=1g"]
    assert by_dest["/a"]["options"] == ["nosuid", "nodev", "noexec", "exec"]
    assert by_dest["/a/b"] == {"destination": "/a/b", "type": "bind", "source": str(tmp_path),
                               "options": ["rbind", "rprivate"]}
    assert by_dest["/etc/hosts"]["options"] == ["rbind", "rprivate", "ro"]
    assert by_dest["/etc/hostname"] == {"destination": "/etc/hostname", "type": "bind",
                                        "source": "/etc/hostname",
                                        "options": ["rbind", "rprivate"]}
    assert spec["root"]["readonly"] is True


@pytest.mark.unprivileged
def test_resources_rlimits_annotations(rootfs: str) -> None:
    spec = make(rootfs, "-m", "64m", "--cpus", "0.5", "--cpuset-cpus", "0", "--pids-limit",
                "7", "--ulimit", "nofile=10:20", "--init", "--stop-signal", "SIGINT",
                "--stop-timeout", "3", "--security-opt", "no-new-privileges:true",
                annotations={"org.example": "x"})
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"] == {"quota": 50000, "period": 100000, "cpus": "0"}
    assert res["pids"] == {"limit": 7}
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["annotations"] == {"org.example": "x", "nsbind.init": "true",
                                   "nsbind.stop-signal": "2", "nsbind.stop-timeout": "3"}
    swap = make(rootfs, "-m", "64m", "--memory-swap", "-1")["linux"]["resources"]["memory"]
    assert swap == {"limit": 64 << 20, "swap": -1}
    assert opts("-m", "1g", "--memory-swap", "0", "img").memory_swap is None


# ------------------------------------------------------------------ seccomp


def _denied(section: dict[str, Any]) -> set[str]:
    return {name for rule in section.get("syscalls", ()) if rule["action"] != "SCMP_ACT_ALLOW"
            and not rule.get("args") for name in rule["names"]}


@pytest.mark.unprivileged
def test_default_profile_compiles_and_follows_caps() -> None:
    plain = default_profile(DEFAULT_CAPABILITIES)
    Filter.from_oci(plain).program()
    assert {"mount", "unshare", "setns", "ptrace", "keyctl", "bpf", "clone3",
            "open_by_handle_at", "reboot"} <= _denied(plain)
    admin = default_profile([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    Filter.from_oci(admin).program()
    assert not {"mount", "unshare", "bpf", "ptrace", "clone3"} & _denied(admin)
    assert "keyctl" in _denied(admin)


@pytest.mark.unprivileged
def test_profile_file(rootfs: str, tmp_path: pathlib.Path) -> None:
    from nsbind.engine.seccompprofile import native_arch

    profile = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": native_arch(), "subArchitectures": []},
                    {"architecture": "SCMP_ARCH_PPC", "subArchitectures": []}],
        "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW",
             "comment": "kept"},
            {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
             "excludes": {"caps": ["CAP_KILL"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["uname"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
        ]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    spec = make(rootfs, "--security-opt", f"seccomp={path}")
    section = spec["linux"]["seccomp"]
    assert section["architectures"] == [native_arch()]
    names = [n for rule in section["syscalls"] for n in rule["names"]]
    assert names == ["read", "write", "exit_group", "getpid", "personality"]
    assert "comment" not in section["syscalls"][0]
    admin = convert_profile(profile, ["CAP_SYS_ADMIN"])
    assert "mount" in [n for rule in admin["syscalls"] for n in rule["names"]]
    assert make(rootfs, "--security-opt", "seccomp=unconfined")["linux"].get("seccomp") is None
    for bad in ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
                 "archMap": []},
                {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_LOG"}]},
                {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["read"], "action": "SCMP_ACT_LOG",
                     "includes": {"minKernel": "new"}}]}):
        with pytest.raises(EngineError, match="invalid seccomp profile"):
            convert_profile(bad, [])


def test_default_profile_in_a_spawned_child() -> None:
    """unshare is refused, fork works; nsbind's init, under a filter loaded before the
    capabilities change (no no_new_privs), falls back from clone3 (ENOSYS) to fork."""
    from nsbind import Capability, CapabilitySets, Namespaces, spawn

    plain = Filter.from_oci(default_profile(DEFAULT_CAPABILITIES)).program()
    assert spawn(["unshare", "--ipc", "true"], seccomp=plain, no_new_privs=True,
                 stderr=subprocess.DEVNULL).wait() != 0
    assert spawn(["sh", "-c", "true & wait"], seccomp=plain, no_new_privs=True).wait() == 0
    caps = frozenset(int(Capability[c[4:]]) for c in DEFAULT_CAPABILITIES)
    sets = CapabilitySets(permitted=caps, effective=caps, inheritable=frozenset(),
                          ambient=frozenset(), bounding=caps)
    assert spawn(["true"], seccomp=plain, init=True, capabilities=sets,
                 namespaces=Namespaces(pid=True)).wait() == 0
    assert spawn(["sh", "-c", "exit 3"], seccomp=plain, init=True, capabilities=sets,
                 namespaces=Namespaces(pid=True)).wait() == 3
