"""Strings that become mount options are checked against what the kernel will parse:
overlay paths with option syntax, cgroup v1 options other than controllers, values with
the legacy separator.  Refused with the reason, before anything is mounted."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsbind import Namespaces, features, mounts, spawn
from nsbind.errors import NsbindError


@pytest.mark.unprivileged
@pytest.mark.parametrize("char", [":", ",", "=", "\\", "\n"])
@pytest.mark.parametrize("which", ["lower", "upper", "work"])
def test_overlay_paths_with_option_syntax_are_refused(tmp_path: pathlib.Path, char: str,
                                                      which: str) -> None:
    """'/x/u\\p' would be unescaped by overlayfs to /x/up: a write into a directory the
    caller never named.  Every path of an overlay is refused when it holds option syntax."""
    paths = {"lower": tmp_path / "l1", "upper": tmp_path / "up", "work": tmp_path / "w"}
    paths[which] = tmp_path / f"u{char}p"
    for p in (*paths.values(), tmp_path / "l2", tmp_path / "up", tmp_path / "m"):
        p.mkdir(exist_ok=True)
    with pytest.raises(ValueError, match=r"overlay layer path .* contains"):
        mounts.overlay_step(tmp_path / "m", [paths["lower"], tmp_path / "l2"], paths["upper"],
                            paths["work"])
    with pytest.raises(ValueError, match=r"overlay layer path .* contains"):
        mounts.overlay([paths["lower"], tmp_path / "l2"], paths["upper"], paths["work"])
    assert os.listdir(tmp_path / "up") == []  # nothing was written where '\\p' pointed


@pytest.mark.unprivileged
@pytest.mark.parametrize("option", ["release_agent=/x", "noprefix", "clone_children",
                                    "xattr", "nosuch", "name=a,b", "name=../x", "name="])
def test_cgroup_v1_takes_controller_names_only(tmp_path: pathlib.Path, option: str) -> None:
    with pytest.raises(ValueError, match=r"cgroup v1 mount option .* is not a controller"):
        mounts.cgroup(["pids", option], tmp_path)


@pytest.mark.unprivileged
def test_cgroup_v1_controllers_and_names_are_taken(tmp_path: pathlib.Path) -> None:
    with open("/proc/cgroups") as f:
        controllers = [line.split()[0] for line in f if not line.startswith("#")]
    step = mounts.cgroup([controllers[0], "name=nsbind_test"], tmp_path)
    assert step.options == (controllers[0], "name=nsbind_test")
    assert mounts.cgroup(["none", "name=x"], tmp_path).options == ("none", "name=x")


@pytest.mark.unprivileged
@pytest.mark.parametrize("option", ["hidepid=2,gid=0", "hidepid=2\n", "hide pid=2",
                                    "=2", "a\0b=1"])
def test_option_values_the_kernel_would_split_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match=r"proc option"):
        mounts.proc(options=[option])
    with pytest.raises(ValueError):
        mounts.tmpfs("/t", size=f"1m,{option}")


def test_checked_options_still_mount(tmp_path: pathlib.Path) -> None:
    """The check refuses syntax, not options: proc with hidepid and a sized tmpfs mount."""
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    steps = [mounts.proc(tmp_path / "p", options=["hidepid=2"]),
             mounts.tmpfs(tmp_path / "t", size="1m")]
    with spawn(["sh", "-c", f"grep -E ' {tmp_path}/(p|t) ' /proc/self/mountinfo"],
               namespaces=Namespaces(mnt=True, pid=True), mounts=steps, stdout=-1) as proc:
        out, _ = proc.communicate(timeout=30)
    text = (out or b"").decode()
    assert proc.returncode == 0 and "hidepid=invisible" in text and "size=1024k" in text


@pytest.mark.unprivileged
def test_a_refused_option_reaches_no_kernel(tmp_path: pathlib.Path) -> None:
    """The refusal happens when the step is made: a spawn never starts."""
    with pytest.raises(ValueError):
        spawn(["true"], namespaces=Namespaces(mnt=True),
              mounts=[mounts.cgroup(["release_agent=/x"], tmp_path)])
    # without root, a user namespace of its own lets the child mount (and the kernel see
    # the bad value) rather than fail its clone with EPERM
    ns = Namespaces(mnt=True, user=os.geteuid() != 0)
    with pytest.raises(NsbindError) as info:  # what the kernel says of a well-formed bad value
        with spawn(["true"], namespaces=ns, mounts=[mounts.tmpfs(tmp_path, size="lots")]) as proc:
            proc.wait()
    assert info.value.errno == errno.EINVAL, info.value


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@pytest.mark.unprivileged
@settings(max_examples=300, deadline=None)
@given(name=_TEXT, value=_TEXT)
def test_fuzz_accepted_options_hold_no_separator(name: str, value: str) -> None:
    option = f"{name}={value}"
    try:
        mounts.check_option("fuzz", option)
    except ValueError:
        return
    key, _, val = option.partition("=")  # as the kernel splits it
    assert "," not in val and "\0" not in val and "\n" not in val
    assert key and not set(key) & set(",= \0\n\\")


@pytest.mark.unprivileged
@settings(max_examples=300, deadline=None)
@given(paths=st.lists(_TEXT, min_size=2, max_size=4))
def test_fuzz_overlay_options_name_each_layer_verbatim(paths: list[str]) -> None:
    layers = ["/" + p.replace("/", "_") for p in paths]
    try:
        step = mounts.overlay_step("/m", layers)
    except ValueError:
        assert any(c in p for p in layers for c in ":,=\\\n\0")
        return
    named = [opt.split("=", 1)[1] for opt in step.options]
    if features.lowerdir_plus():
        assert named == layers
    else:
        assert named[0].split(":") == [os.path.relpath(p, step.cwd) if step.cwd else p
                                       for p in layers]
