"""nsbind.oci.hooks: OCI hooks run as runc runs them — argv, exactly their env, the state
JSON on stdin, bounded output, timeouts that kill and reap — with errors naming the
phase, the index and the path."""

from __future__ import annotations

import json
import os
import pathlib
import time

import pytest

from helpers import SLOWDOWN
from nsbind.errors import InvalidValue, NsbindError
from nsbind.oci.hooks import OUTPUT_TAIL, HookError, phase_hooks, run_hooks
from nsbind.oci.spec import Hook, Hooks

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

STATE = {"ociVersion": "1.2.0", "id": "box", "status": "created", "pid": 4242,
         "bundle": "/srv/box"}


def script(path: pathlib.Path, body: str, mode: int = 0o755) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def recorder(tmp_path: pathlib.Path, name: str = "hook") -> str:
    """A hook that records its argv (its shell's /proc cmdline), its environment exactly
    as exec'd, its stdin and its working directory into ``tmp_path/<name>.*``."""
    out = tmp_path / name
    return script(tmp_path / f"{name}.sh",
                  f"tr '\\0' '\\n' < /proc/$$/cmdline > {out}.argv\n"
                  f"tr '\\0' '\\n' < /proc/$$/environ > {out}.env\n"
                  f"cat > {out}.stdin\n"
                  f"pwd > {out}.cwd\n")


def lines(path: pathlib.Path) -> list[str]:
    return path.read_text().splitlines()


def gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer exists (zombies reparented to init included)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    time.sleep(0.02)
                    continue
        except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped after the open
            return True
        time.sleep(0.02)
    return False


def test_a_hook_gets_its_args_exactly_its_env_and_the_state(tmp_path: pathlib.Path) -> None:
    path = recorder(tmp_path)
    hook = Hook(path=path, args=(path, "a b", "c"), env=("FOO=bar", "EMPTY=", "X=y=z"))
    os.environ["NSBIND_TEST_LEAK"] = "1"
    try:
        run_hooks([hook], "prestart", STATE, cwd=str(tmp_path))
    finally:
        del os.environ["NSBIND_TEST_LEAK"]
    # a #! script: the kernel puts the interpreter and the script path first
    assert lines(tmp_path / "hook.argv") == ["/bin/sh", path, "a b", "c"]
    assert lines(tmp_path / "hook.env") == ["FOO=bar", "EMPTY=", "X=y=z"]
    assert json.loads((tmp_path / "hook.stdin").read_bytes()) == STATE
    assert lines(tmp_path / "hook.cwd") == [str(tmp_path)]


def test_args0_is_argv0_and_no_args_means_path(tmp_path: pathlib.Path) -> None:
    body = tmp_path / "body.sh"
    body.write_text(f"tr '\\0' '\\n' < /proc/$$/cmdline > {tmp_path}/argv\ncat >/dev/null\n")
    run_hooks([Hook(path="/bin/sh", args=("not-sh", str(body), "x"))], "poststop", STATE)
    assert lines(tmp_path / "argv") == ["not-sh", str(body), "x"]
    path = recorder(tmp_path, "bare")
    run_hooks([Hook(path=path)], "poststop", STATE)
    assert lines(tmp_path / "bare.argv") == ["/bin/sh", path]
    assert (tmp_path / "bare.env").read_text() == ""


def test_hooks_run_in_order_and_the_first_failure_stops_the_rest(tmp_path: pathlib.Path) -> None:
    first = script(tmp_path / "first.sh", f"cat >/dev/null; echo 1 >> {tmp_path}/order\n")
    bad = script(tmp_path / "bad.sh", "echo to stdout\necho first >&2\necho 'last words' >&2\n"
                                      "exit 3\n")
    third = script(tmp_path / "third.sh", f"echo 3 >> {tmp_path}/order\n")
    hooks = [Hook(path=first), Hook(path=bad), Hook(path=third)]
    with pytest.raises(HookError) as info:
        run_hooks(hooks, "createRuntime", STATE)
    assert str(info.value) == f"hooks.createRuntime[1] {bad}: exit status 3: last words"
    err = info.value
    assert (err.phase, err.index, err.path, err.returncode) == ("createRuntime", 1, bad, 3)
    assert err.stdout == b"to stdout\n"
    assert err.stderr == b"first\nlast words\n"
    assert isinstance(err, NsbindError) and isinstance(err, RuntimeError)
    assert lines(tmp_path / "order") == ["1"]


def test_a_hook_killed_by_a_signal(tmp_path: pathlib.Path) -> None:
    path = script(tmp_path / "sig.sh", "kill -TERM $$\n")
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path=path)], "create_container", STATE)
    assert str(info.value) == f"hooks.createContainer[0] {path}: killed by signal 15 (SIGTERM)"
    assert info.value.returncode == -15


def test_a_hook_that_times_out_is_killed_with_its_children(tmp_path: pathlib.Path) -> None:
    path = script(tmp_path / "slow.sh", f"echo $$ > {tmp_path}/pid\nsleep 30 &\n"
                                        f"echo $! > {tmp_path}/child\nwait\n")
    start = time.monotonic()
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path=path, timeout=1)], "startContainer", STATE)
    took = time.monotonic() - start
    assert str(info.value) == f"hooks.startContainer[0] {path}: timed out after 1 s"
    assert info.value.returncode == -9
    assert 1.0 <= took < 1.0 + 1.5 * SLOWDOWN
    for name in ("pid", "child"):
        assert gone(int((tmp_path / name).read_text()))


def test_timeout_default_applies_to_hooks_without_one(tmp_path: pathlib.Path) -> None:
    path = script(tmp_path / "slow.sh", "exec sleep 30\n")
    start = time.monotonic()
    with pytest.raises(HookError, match=r"timed out after 0\.5 s$"):
        run_hooks([Hook(path=path)], "poststart", STATE, timeout_default=0.5)
    assert time.monotonic() - start < 0.5 + 1.5 * SLOWDOWN
    with pytest.raises(InvalidValue, match="timeout_default 0 must be positive"):
        run_hooks([Hook(path=path)], "poststart", STATE, timeout_default=0)


@pytest.mark.parametrize("timeout", [0, -1])
def test_a_timeout_that_is_not_positive_is_refused_unrun(tmp_path: pathlib.Path,
                                                         timeout: int) -> None:
    path = recorder(tmp_path)
    with pytest.raises(HookError, match=f"timeout {timeout} must be a positive number"):
        run_hooks([Hook(path=path, timeout=timeout)], "prestart", STATE)
    assert not (tmp_path / "hook.argv").exists()


def test_paths_that_cannot_run_are_refused_unrun(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path=missing)], "prestart", STATE)
    assert str(info.value) == (f"hooks.prestart[0] {missing}: cannot run it: ENOENT "
                               "(No such file or directory)")
    assert isinstance(info.value, NsbindError) and info.value.returncode is None
    plain = script(tmp_path / "plain.sh", f"touch {tmp_path}/ran\n", mode=0o644)
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path=plain)], "prestart", STATE)
    assert str(info.value) == f"hooks.prestart[0] {plain}: not executable (no x permission bit)"
    with pytest.raises(HookError, match=r": not a regular file$"):
        run_hooks([Hook(path=str(tmp_path))], "prestart", STATE)
    with pytest.raises(HookError, match=r"^hooks\.prestart\[0\] plain\.sh: path is not absolute"):
        run_hooks([Hook(path="plain.sh")], "prestart", STATE)
    assert not (tmp_path / "ran").exists()


def test_an_exec_failure_names_the_errno(tmp_path: pathlib.Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fnot an executable\n")
    junk.chmod(0o755)
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path=str(junk))], "prestart", STATE)
    assert str(info.value) == (f"hooks.prestart[0] {junk}: exec failed: ENOEXEC "
                               "(Exec format error)")


def test_a_hook_that_does_not_read_a_large_state_still_works(tmp_path: pathlib.Path) -> None:
    state = {**STATE, "annotations": {"big": "x" * (4 << 20)}}
    quiet = script(tmp_path / "quiet.sh", f"touch {tmp_path}/ran\n")
    reader = recorder(tmp_path)
    run_hooks([Hook(path=quiet), Hook(path=reader)], "prestart", state)
    assert (tmp_path / "ran").exists()
    assert json.loads((tmp_path / "hook.stdin").read_bytes()) == state


def test_output_is_kept_bounded(tmp_path: pathlib.Path) -> None:
    path = script(tmp_path / "loud.sh",
                  "i=0; while [ $i -lt 2000 ]; do echo \"line $i of noise\"; "
                  "echo \"err $i of noise\" >&2; i=$((i+1)); done\nexit 1\n")
    with pytest.raises(HookError) as info:
        run_hooks([Hook(path=path)], "poststop", STATE)
    assert str(info.value).endswith(": exit status 1: err 1999 of noise")
    assert len(info.value.stderr) == OUTPUT_TAIL
    assert len(info.value.stdout) == OUTPUT_TAIL
    assert info.value.stdout.endswith(b"line 1999 of noise\n")


def test_a_process_left_holding_stdout_does_not_keep_the_runtime_waiting(
        tmp_path: pathlib.Path) -> None:
    path = script(tmp_path / "daemon.sh", f"sleep 30 &\necho $! > {tmp_path}/child\n")
    start = time.monotonic()
    try:
        run_hooks([Hook(path=path)], "poststart", STATE)
        assert time.monotonic() - start < 5
    finally:
        child = int((tmp_path / "child").read_text())
        os.kill(child, 9)
    assert gone(child)


def test_phases_by_either_name(tmp_path: pathlib.Path) -> None:
    hook = Hook(path=recorder(tmp_path))
    hooks = Hooks(create_runtime=(hook,))
    assert phase_hooks(hooks, "createRuntime") == (hook,)
    assert phase_hooks(hooks, "create_runtime") == (hook,)
    assert phase_hooks(hooks, "poststop") == ()
    assert phase_hooks(None, "prestart") == ()
    with pytest.raises(InvalidValue, match="'preStart' is not a hook phase"):
        run_hooks([hook], "preStart", STATE)
    assert not (tmp_path / "hook.argv").exists()
