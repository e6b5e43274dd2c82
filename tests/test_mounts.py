"""Typed mount helpers and overlayfs assembly, applied on the real kernel."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest

from helpers import forked, fstype_of, mount_at
from nsbind import MountFlags, Namespaces, Propagation, mounts, spawn
from nsbind.errors import NsbindError


@forked
def test_helpers_mount_what_they_say(tmp_path: pathlib.Path) -> None:
    names = ["t", "p", "pts", "mq", "sys", "src", "ro"]
    for n in names:
        (tmp_path / n).mkdir()
    (tmp_path / "src" / "file").write_text("x")
    with Namespaces(mnt=True):
        mounts.apply([mounts.tmpfs(tmp_path / "t", size="1m", mode=0o700),
                      mounts.proc(tmp_path / "p"),
                      mounts.devpts(tmp_path / "pts"),
                      mounts.mqueue(tmp_path / "mq"),
                      mounts.sysfs(tmp_path / "sys"),
                      mounts.bind(tmp_path / "src", tmp_path / "ro", readonly=True)])
        kinds = {n: mount_at(str(tmp_path / n)) for n in names if n != "src"}
        assert {n: fstype_of(f) for n, f in kinds.items() if f} == {
            "t": "tmpfs", "p": "proc", "pts": "devpts", "mq": "mqueue", "sys": "sysfs",
            "ro": fstype_of(mount_at(str(tmp_path)) or mount_at("/") or [])}
        assert "size=1024k" in kinds["t"][-1]  # type: ignore[index]
        assert "ptmxmode=666" in kinds["pts"][-1]  # type: ignore[index]
        assert kinds["sys"][5].startswith("ro")  # type: ignore[index]
        assert kinds["ro"][5].startswith("ro")  # type: ignore[index]
        assert (tmp_path / "ro" / "file").read_text() == "x"
        with pytest.raises(OSError) as info:
            (tmp_path / "ro" / "new").write_text("no")
        assert info.value.errno == errno.EROFS
    assert mount_at(str(tmp_path / "t")) is None


@forked
def test_overlay_of_120_layers_with_upper(tmp_path: pathlib.Path) -> None:
    lower = []
    for i in range(120):  # top layer first
        layer = tmp_path / f"l{i:03d}"
        layer.mkdir()
        (layer / f"f{i}").write_text(str(i))
        (layer / "shared").write_text(f"layer {i}")
        lower.append(layer)
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    with Namespaces(mnt=True):
        with mounts.overlay(lower, tmp_path / "upper", tmp_path / "work") as mnt:
            mnt.attach(tmp_path / "merged")
        merged = tmp_path / "merged"
        assert len(os.listdir(merged)) == 121
        assert (merged / "shared").read_text() == "layer 0"  # the top layer wins
        (merged / "new").write_text("written")
        os.unlink(merged / "f5")
    assert (tmp_path / "upper" / "new").read_text() == "written"
    assert (tmp_path / "l005" / "f5").exists()  # lower layers stay untouched
    assert os.stat(tmp_path / "upper" / "f5").st_rdev == 0  # the whiteout: a 0:0 char device


@forked
def test_overlay_without_upper_is_readonly(tmp_path: pathlib.Path) -> None:
    for d in ("l1", "l2", "m"):
        (tmp_path / d).mkdir()
    with Namespaces(mnt=True):
        with mounts.overlay([tmp_path / "l1", tmp_path / "l2"]) as mnt:
            mnt.attach(tmp_path / "m")
        with pytest.raises(OSError) as info:
            (tmp_path / "m" / "x").write_text("no")
        assert info.value.errno == errno.EROFS


def test_overlay_errors_name_the_layer() -> None:
    with pytest.raises(NsbindError, match=r"^fsconfig overlay lowerdir\+=/nonexistent-layer: "):
        mounts.overlay(["/nonexistent-layer", "/tmp"])
    with pytest.raises(ValueError, match="at least one lower layer"):
        mounts.overlay([])
    with pytest.raises(ValueError, match="upper and work go together"):
        mounts.overlay(["/tmp"], upper="/tmp")
    with pytest.raises(ValueError, match="at least two lower layers"):
        mounts.overlay(["/tmp"])


def test_helpers_as_spawn_steps(tmp_path: pathlib.Path) -> None:
    with spawn(["sh", "-c", f"grep -c ' {tmp_path} ' /proc/self/mountinfo"],
               namespaces=Namespaces(mnt=True), stdout=-1,
               mounts=[mounts.tmpfs(tmp_path, size="1m"),
                       mounts.propagation(tmp_path, Propagation.PRIVATE)]) as proc:
        out, _ = proc.communicate(timeout=30)
    assert (out, proc.returncode) == (b"1\n", 0)


def test_bind_steps_shape() -> None:
    steps = mounts.bind("/a", "/b", readonly=True)
    assert [s.flags for s in steps] == [MountFlags.BIND | MountFlags.REC,
                                        MountFlags.BIND | MountFlags.REMOUNT | MountFlags.RDONLY]
