"""Seccomp: filters compiled by libseccomp in this process, loaded by the spawned child on
the real kernel right before its exec."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import socket
import sys
from typing import Any

import pytest

import nsbind
from helpers import SLOWDOWN
from nsbind import PIPE, CapabilitySets, MountStep, Namespaces, SpawnError, spawn
from nsbind.seccomp import (
    Action,
    ArgCmp,
    Filter,
    Op,
    Program,
    SeccompError,
    SeccompUnavailable,
    library,
)

try:
    library()
except SeccompUnavailable as exc:  # no libseccomp here: nothing below can run
    pytest.skip(str(exc), allow_module_level=True)

#: what a dynamically linked /bin/true needs on x86-64 glibc, found by removing one
#: syscall at a time from a generous list until it stopped running
TRUE_NEEDS = ("execve", "arch_prctl", "mmap", "openat", "newfstatat", "close", "read",
              "pread64", "mprotect", "exit", "exit_group")


def _run(args: list[str], **kwargs: Any) -> tuple[str, str, int]:
    with spawn(args, stdout=PIPE, stderr=PIPE, **kwargs) as proc:
        out, err = proc.communicate(timeout=30)
    assert out is not None and err is not None and proc.returncode is not None
    return out.decode(), err.decode(), proc.returncode


def _status(text: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith(name + ":"))


def _children() -> set[str]:
    pids: set[str] = set()
    for task in pathlib.Path("/proc/self/task").iterdir():
        pids.update((task / "children").read_text().split())
    return pids


def _no_mkdir(err: int = errno.EPERM) -> Filter:
    f = Filter(Action.allow())
    for name in ("mkdir", "mkdirat"):
        f.add_rule(Action.errno(err), name)
    return f


def _personality_probe() -> list[str]:
    """A Python child that calls personality(2) with two arguments and prints errno."""
    code = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True)\n"
            "for arg in (0xffffffff, 0):\n"
            "    rc = libc.personality(ctypes.c_ulong(arg))\n"
            "    print(ctypes.get_errno() if rc == -1 else 'ok')\n")
    return [sys.executable, "-c", code]


# ---------------------------------------------------------------- the child is filtered


def test_errno_rule_fails_mkdir_in_the_child_only(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "x"
    out, err, code = _run(["sh", "-c", f"mkdir {target}; echo $?"], seccomp=_no_mkdir())
    assert code == 0 and "Operation not permitted" in err and out.strip() != "0"
    assert not target.exists()
    os.mkdir(target)  # this process has no filter
    assert _status(pathlib.Path("/proc/self/status").read_text(), "Seccomp") == "0"


def test_child_status_shows_filter_mode_and_one_filter() -> None:
    before = int(_status(pathlib.Path("/proc/self/status").read_text(), "Seccomp_filters"))
    for _ in range(3):  # the repeats come from the plan cache: filtered all the same
        out, _, code = _run(["cat", "/proc/self/status"], seccomp=_no_mkdir())
        assert code == 0
        assert _status(out, "Seccomp") == "2"
        assert int(_status(out, "Seccomp_filters")) == before + 1


def test_argument_comparison_matches_only_that_value() -> None:
    f = Filter(Action.allow())
    f.add_rule(Action.errno(errno.EPERM), "personality", ArgCmp(0, Op.EQ, 0xFFFFFFFF))
    out, _, code = _run(_personality_probe(), seccomp=f)
    assert code == 0 and out.split() == [str(errno.EPERM), "ok"]


def test_kill_process_for_one_socket_family_only() -> None:
    f = Filter(Action.allow())
    f.add_rule(Action.kill_process(), "socket", ArgCmp(0, "SCMP_CMP_EQ", socket.AF_PACKET))
    inet = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print('inet')"
    out, _, code = _run([sys.executable, "-c", inet], seccomp=f)
    assert (out, code) == ("inet\n", 0)
    packet = "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)"
    _, _, code = _run([sys.executable, "-c", packet], seccomp=f)
    assert code == -signal.SIGSYS


def test_errno_default_with_the_allow_list_true_needs() -> None:
    f = Filter("SCMP_ACT_ERRNO", default_errno=errno.ENOSYS)
    for name in TRUE_NEEDS:
        f.add_rule(Action.allow(), name)
    assert spawn(["/bin/true"], seccomp=f, env={}).wait() == 0
    # without execve the filter refuses the exec itself, reported as the exec step
    g = Filter(Action.errno(errno.ENOSYS))
    for name in TRUE_NEEDS[1:]:
        g.add_rule(Action.allow(), name)
    with pytest.raises(SpawnError, match=r"^exec /bin/true: ENOSYS") as info:
        spawn(["/bin/true"], seccomp=g, env={})
    assert info.value.step == "exec"


def test_a_filter_that_refuses_everything_still_reports_the_exec() -> None:
    """Nothing allowed, not even exit_group: the child reports the refused exec, cannot
    exit, and dies by its fallback trap (SIGILL) instead of spinning; no child is left."""
    before = _children()
    with pytest.raises(SpawnError, match=r"^exec /bin/true: EPERM"):
        spawn(["/bin/true"], seccomp=Filter(Action.errno(errno.EPERM)))
    assert _children() == before


@pytest.mark.unprivileged
def test_root_of_a_new_user_namespace_loads_the_filter_without_no_new_privs() -> None:
    # CAP_SYS_ADMIN in its own user namespace is enough (and the child waits for its id
    # maps and reports over a pipe there)
    out, err, code = _run(["sh", "-c", "id -u; mkdir /tmp/nsbind-never-made"],
                          seccomp=_no_mkdir(), namespaces=Namespaces(user=True))
    assert out.split()[0] == "0" and "Operation not permitted" in err and code != 0


def test_init_forks_the_command_before_the_filter_is_loaded() -> None:
    script = "grep Seccomp: /proc/self/status /proc/1/status"
    out, _, code = _run(["sh", "-c", script], seccomp=_no_mkdir(), init=True,
                        namespaces=Namespaces(pid=True, mnt=True),
                        mounts=[MountStep("proc", "/proc", "proc")])
    assert code == 0
    mine, init = out.splitlines()
    assert mine.split()[-1] == "2" and init.split()[-1] == "0"  # the command, not init


def test_raw_bytes_and_a_program_with_flags() -> None:
    bpf = _no_mkdir().export()
    for value in (bpf, Program(bpf, Filter(Action.allow(), flags=[
            "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]).flags)):
        _, err, _ = _run(["mkdir", "/nsbind-never-made"], seccomp=value)
        assert "Operation not permitted" in err


# ---------------------------------------------------------------- refusals


def test_a_program_the_kernel_refuses_names_the_step_and_leaves_no_child() -> None:
    before = _children()
    with pytest.raises(SpawnError, match=r"^load the seccomp filter: EINVAL .*2 instructions"
                       ) as info:
        spawn(["true"], seccomp=b"\xff" * 16)
    assert info.value.step == "seccomp"
    assert _children() == before


def test_without_no_new_privs_the_filter_is_loaded_before_ids_and_capabilities_drop(
        tmp_path: pathlib.Path) -> None:
    # as runc: loading a filter without no_new_privs needs CAP_SYS_ADMIN, so it comes
    # before setuid and the capability sets (podman's configs have no noNewPrivileges)
    tmp_path.chmod(0o777)
    target = tmp_path / "never-made"
    out, err, code = _run(["sh", "-c", f"grep -E '^(NoNewPrivs|Seccomp|CapEff):' "
                           f"/proc/self/status; mkdir {target}"],
                          seccomp=_no_mkdir(), uid=65534, gid=65534, groups=(),
                          capabilities=CapabilitySets(permitted=frozenset(),
                                                      effective=frozenset(),
                                                      inheritable=frozenset(),
                                                      ambient=frozenset(),
                                                      bounding=frozenset()))
    status = dict(line.split(":") for line in out.splitlines())
    assert status["NoNewPrivs"].strip() == "0" and status["Seccomp"].strip() == "2"
    assert int(status["CapEff"], 16) == 0
    assert "Operation not permitted" in err and code != 0 and not target.exists()
    out, _, code = _run(["grep", "NoNewPrivs:", "/proc/self/status"], seccomp=_no_mkdir(),
                        uid=65534, gid=65534, groups=(), no_new_privs=True)
    assert code == 0 and out.split()[-1] == "1"


@pytest.mark.unprivileged
@pytest.mark.parametrize("value", [b"", b"\0" * 12, "not bytes"],
                         ids=["empty", "partial-instruction", "str"])
def test_a_value_that_is_no_program_is_refused_before_any_child(value: object) -> None:
    with pytest.raises(ValueError, match="seccomp"):
        spawn(["true"], seccomp=value)  # type: ignore[arg-type]


@pytest.mark.unprivileged
def test_bad_rules_are_refused_by_name() -> None:
    f = Filter(Action.allow())
    with pytest.raises(SeccompError, match="unknown syscall 'nsbind_nosuch'"):
        f.add_rule(Action.errno(1), "nsbind_nosuch")
    with pytest.raises(SeccompError, match="argument index 6"):
        f.add_rule(Action.errno(1), "read", ArgCmp(6, Op.EQ, 0))
    with pytest.raises(SeccompError, match="unknown comparison operator 'SCMP_CMP_ABOUT'"):
        f.add_rule(Action.errno(1), "read", ArgCmp(0, "SCMP_CMP_ABOUT", 0))
    with pytest.raises(SeccompError, match="errno 65536"):
        Action.errno(65536)
    with pytest.raises(SeccompError, match="user notification"):
        Filter("SCMP_ACT_NOTIFY")
    with pytest.raises(SeccompError, match="unknown seccomp architecture 'SCMP_ARCH_VAX'"):
        Filter(Action.allow(), architectures=["SCMP_ARCH_VAX"])


@pytest.mark.unprivileged
def test_missing_library_names_it_and_the_debian_package() -> None:
    with pytest.raises(SeccompUnavailable, match=r"libseccomp-nsbind-absent\.so\.2.*libseccomp2"
                       ) as info:
        library("libseccomp-nsbind-absent.so.2")
    assert isinstance(info.value, nsbind.MessageError) and info.value.errno == errno.ENOENT


# ---------------------------------------------------------------- export


@pytest.mark.unprivileged
def test_export_is_stable_and_follows_the_rules() -> None:
    a, b = _no_mkdir().export(), _no_mkdir().export()
    assert a == b and len(a) % 8 == 0
    assert _no_mkdir(errno.EROFS).export() != a
    f = _no_mkdir()
    first = f.export()
    f.add_rule(Action.errno(errno.EPERM), "rmdir")
    assert f.export() != first and len(f.export()) > len(first)
    f.add_rule(Action.allow(), "read")  # the default action: adds nothing
    assert f.export() == f.export()


@pytest.mark.unprivileged
def test_more_architectures_make_a_longer_program() -> None:
    native = _no_mkdir().export()
    wide = Filter(Action.allow(), architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    for name in ("mkdir", "mkdirat"):
        wide.add_rule(Action.errno(errno.EPERM), name)
    assert len(wide.export()) > len(native)


# ---------------------------------------------------------------- OCI linux.seccomp


OCI = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat", "nsbind_not_a_syscall"], "action": "SCMP_ACT_ERRNO",
         "errnoRet": errno.EROFS},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
    ],
}


def test_oci_section_maps_errno_ret_args_and_skips_unknown_names() -> None:
    f = Filter.from_oci(OCI)
    assert f.skipped == ["nsbind_not_a_syscall"]
    assert f.flags == 4  # SECCOMP_FILTER_FLAG_SPEC_ALLOW
    _, err, _ = _run(["mkdir", "/nsbind-never-made"], seccomp=f)
    assert "Read-only file system" in err
    # two comparisons of one argument: either matches (runc and crun make two rules)
    out, _, code = _run(_personality_probe(), seccomp=f)
    assert code == 0 and out.split() == [str(errno.EPERM), "ok"]
    assert Filter.from_oci(OCI).export() == f.export()


def _oci(**changes: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW",
                               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                             "args": [{"index": 0, "value": 1,
                                                       "op": "SCMP_CMP_EQ"}]}]}
    for key, value in changes.items():
        if key.startswith("rule_"):
            section["syscalls"][0][key[5:]] = value
        else:
            section[key] = value
    return section


@pytest.mark.unprivileged
@pytest.mark.parametrize(("section", "message"), [
    ({}, r"^linux\.seccomp\.defaultAction: expected a string"),
    (_oci(defaultAction="SCMP_ACT_MAYBE"), r"^linux\.seccomp\.defaultAction: unknown seccomp "
                                           r"action 'SCMP_ACT_MAYBE'"),
    (_oci(defaultErrnoRet=1), r"^linux\.seccomp\.defaultErrnoRet: an errno value needs"),
    (_oci(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]),
     r"^linux\.seccomp\.architectures\[1\]: unknown seccomp architecture"),
    (_oci(flags=["SECCOMP_FILTER_FLAG_NEW_LISTENER"]),
     r"^linux\.seccomp\.flags\[0\]: unknown seccomp flag"),
    (_oci(rule_action="SCMP_ACT_NOTIFY"),
     r"^linux\.seccomp\.syscalls\[0\]\.action: .*listenerPath.* not supported"),
    (_oci(rule_action="ALLOW_MAYBE"), r"^linux\.seccomp\.syscalls\[0\]\.action: unknown"),
    (_oci(rule_action="SCMP_ACT_KILL", rule_errnoRet=1),
     r"^linux\.seccomp\.syscalls\[0\]\.errnoRet: an errno value needs SCMP_ACT_ERRNO"),
    (_oci(rule_errnoRet=70000), r"^linux\.seccomp\.syscalls\[0\]\.errnoRet: expected an "
                                r"integer in 0\.\.65535"),
    (_oci(rule_args=[{"index": 0, "value": 1, "op": "SCMP_CMP_SIMILAR"}]),
     r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]\.op: unknown comparison operator"),
    (_oci(rule_args=[{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]),
     r"^linux\.seccomp\.syscalls\[0\]\.args\[0\]\.index: expected an integer in 0\.\.5"),
    (_oci(rule_names="mkdir"), r"^linux\.seccomp\.syscalls\[0\]\.names: expected an array"),
    (_oci(syscalls=["mkdir"]), r"^linux\.seccomp\.syscalls\[0\]: expected an object"),
], ids=["no-default", "unknown-default", "errno-for-allow", "unknown-arch", "listener-flag",
        "notify", "unknown-action", "errno-for-kill", "errno-too-big", "unknown-op",
        "arg-index", "names-not-array", "rule-not-object"])
def test_oci_errors_name_the_json_path(section: dict[str, Any], message: str) -> None:
    with pytest.raises(SeccompError, match=message):
        Filter.from_oci(section)


# libseccomp 2.5.4 never returns from seccomp_rule_add for this pair of rules: two rules
# of one syscall sharing an ordering comparison, each with a comparison on another argument
_LOOPING = [
    {"names": ["personality"], "action": "SCMP_ACT_TRACE", "errnoRet": 8,
     "args": [{"index": 1, "value": 45891897, "op": "SCMP_CMP_GT"},
              {"index": 0, "value": 246, "op": "SCMP_CMP_LE"}]},
    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
     "args": [{"index": 0, "value": 246, "op": "SCMP_CMP_LE"},
              {"index": 5, "value": 255, "op": "SCMP_CMP_GE"}]},
]


@pytest.mark.unprivileged
def test_a_rule_set_libseccomp_cannot_finish_is_refused_in_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A config.json anyone may write must not hang the runtime: the filter is compiled
    in a child given COMPILE_TIMEOUT seconds, killed and reaped after it (the leak guard
    checks that no child is left)."""
    import time

    import nsbind.seccomp

    monkeypatch.setattr(nsbind.seccomp, "COMPILE_TIMEOUT", 1.0)
    started = time.monotonic()
    with pytest.raises(SeccompError, match=r"^linux\.seccomp: libseccomp did not finish "
                       r"compiling the filter in 1 s \(2 rules\)"):
        Filter.from_oci({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": _LOOPING})
    looping = Filter(Action.errno(1))
    looping.add_rule(Action.trace(8), "personality", ArgCmp(1, Op.GT, 45891897),
                     ArgCmp(0, Op.LE, 246))
    looping.add_rule(Action.errno(2), "personality", ArgCmp(0, Op.LE, 246),
                     ArgCmp(5, Op.GE, 255))
    with pytest.raises(SeccompError, match="did not finish") as info:
        looping.export()
    assert info.value.errno == errno.ETIMEDOUT
    assert time.monotonic() - started < 10 * SLOWDOWN


@pytest.mark.unprivileged
def test_libseccomp_refusals_come_back_from_the_compiling_child() -> None:
    # the same two rules on one argument: libseccomp refuses the second (EEXIST)
    rules = [{"names": ["personality"], "action": "SCMP_ACT_TRACE", "errnoRet": 8,
              "args": [{"index": 0, "value": 246, "op": "SCMP_CMP_LE"}]},
             {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
              "args": [{"index": 0, "value": 246, "op": "SCMP_CMP_LE"}]}]
    with pytest.raises(SeccompError, match=r"^linux\.seccomp.*syscalls\[1\].*libseccomp "
                       r"refused it: EEXIST") as info:
        Filter.from_oci({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
    assert "File exists" in str(info.value)
    assert info.value.errno == errno.EEXIST  # libseccomp's, kept with the JSON path
