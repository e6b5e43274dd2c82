"""Copies of detached mount trees (nsbind.mountclone): on this kernel by open_tree, on
one that refuses to clone a detached tree (Debian's 6.1: tests/vm.py) through a
throwaway mount namespace.  Either way the copies are independent detached trees, the
original stays usable, and nothing is mounted in the caller's namespace or left in the
temp dir."""

from __future__ import annotations

import os
import pathlib
import tempfile

import pytest

from helpers import make_layers
from nsbind import Namespaces, features, mounts
from nsbind.mountclone import clone_tree


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def test_copies_of_a_detached_overlay_are_independent(tmp_path: pathlib.Path) -> None:
    for d in ("l1", "l2", "m1", "m2"):
        (tmp_path / d).mkdir()
    (tmp_path / "l1" / "one").write_text("1")
    (tmp_path / "l2" / "two").write_text("2")
    before = _mount_points()
    leftovers = set(os.listdir(tempfile.gettempdir()))
    with mounts.overlay([tmp_path / "l1", tmp_path / "l2"]) as ovl:
        number = ovl.fileno()
        first = clone_tree(ovl, label="overlay")
        second = clone_tree(ovl, label="overlay")
        assert ovl.fileno() == number  # the original's fd: the same number, still usable
        with first, second, Namespaces(mnt=True):  # every mount private in there
            first.attach(tmp_path / "m1")
            second.attach(tmp_path / "m2")
            assert sorted(os.listdir(tmp_path / "m1")) == ["one", "two"]
            assert sorted(os.listdir(tmp_path / "m2")) == ["one", "two"]
        third = clone_tree(ovl)  # and again, after the others were attached
        third.close()
    assert _mount_points() == before
    assert os.listdir(tmp_path / "m1") == [] and os.listdir(tmp_path / "m2") == []
    assert {n for n in set(os.listdir(tempfile.gettempdir())) - leftovers
            if n.startswith("nsbind-clone-")} == set()
    # which path was taken (informational on a host, the point in the 6.1 guest)
    print(f"clone_detached_mounts: {features.clone_detached_mounts()}")


def test_an_overlay_over_255_bytes_of_lowerdir_without_lowerdir_plus(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-6.8 path (forced here; the 6.1 guest takes it for real): 120 layers
    whose relative names need ~1.4 KB of lowerdir go through mount(2), made in a
    throwaway namespace and handed back detached; nothing is mounted here, and a layer
    that is not there is an error naming the mount and the directory."""
    monkeypatch.setattr(features, "lowerdir_plus", lambda: False)
    lower = make_layers(tmp_path, 120, "layer-{i:03d}-long")  # top layer first
    before = _mount_points()
    with mounts.overlay(lower, tmp_path / "upper", tmp_path / "work") as ovl:
        assert _mount_points() == before
        with Namespaces(mnt=True):
            ovl.attach(tmp_path / "merged")
            assert len(os.listdir(tmp_path / "merged")) == 121
            assert (tmp_path / "merged" / "shared").read_text() == "layer 0"
            (tmp_path / "merged" / "new").write_text("written")
    assert (tmp_path / "upper" / "new").read_text() == "written"
    assert _mount_points() == before
    (tmp_path / "layer-007-long").rename(tmp_path / "gone")
    with pytest.raises(OSError, match=f"create overlay of 120 layers \\(paths relative to "
                                      f"{tmp_path}\\): ENOENT"):
        mounts.overlay(lower, tmp_path / "upper", tmp_path / "work")
    assert _mount_points() == before
