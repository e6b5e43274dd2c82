"""The feature probes answer what the kernel then does: each is checked against a real
attempt at the feature, as root and (where it matters) unprivileged."""

from __future__ import annotations

import pathlib

import pytest

from helpers import drop_to_nobody, forked
from nsbind import CgroupFd, Namespaces, NsbindError, features, fsopen, spawn


def _clear() -> None:
    for name in features.__all__:
        probe = getattr(features, name)
        if hasattr(probe, "cache_clear"):
            probe.cache_clear()


@pytest.mark.unprivileged
def test_probe_all_names_every_probe_with_a_bool() -> None:
    found = features.probe_all()
    assert set(found) == set(features.__all__) - {"probe_all"}
    assert all(isinstance(v, bool) for v in found.values())


def test_lowerdir_plus_agrees_with_an_overlay_context(tmp_path: pathlib.Path) -> None:
    for d in ("l1", "l2"):
        (tmp_path / d).mkdir()
    with fsopen("overlay") as ctx:
        try:
            ctx.set_string("lowerdir+", str(tmp_path / "l1"))
            ctx.set_string("lowerdir+", str(tmp_path / "l2"))
            ctx.create()
            works = True
        except NsbindError:
            works = False
    assert features.lowerdir_plus() is works


@pytest.mark.unprivileged
def test_clone_into_cgroup_agrees_with_a_spawn(test_cgroup: CgroupFd) -> None:
    try:
        with spawn(["true"], cgroup=test_cgroup) as proc:
            works = proc.wait() == 0
    except NsbindError:
        works = False
    assert features.clone_into_cgroup() is works


def test_time_namespaces_agree_with_a_spawn() -> None:
    try:
        with spawn(["true"], namespaces=Namespaces(time=True)) as proc:
            works = proc.wait() == 0
    except NsbindError:
        works = False
    assert features.time_namespaces() is works


@forked
def test_probes_as_an_unprivileged_user_say_what_it_may_do() -> None:
    """Without CAP_SYS_ADMIN an idmapped mount cannot be made (False, not an error);
    pidfd setns is still known to the kernel; root's cgroup tree is not delegated."""
    kernel_has_idmap = features.idmapped_mounts()
    _clear()
    drop_to_nobody()
    assert features.idmapped_mounts() is False
    assert features.pidfd_setns() is True
    assert features.cgroup2_delegated() is False
    assert features.lowerdir_plus() in (True, False)  # answered, not raised
    assert isinstance(kernel_has_idmap, bool)


@pytest.mark.unprivileged
def test_probes_leave_nothing_behind() -> None:
    """Probed afresh: no fd, mount or process remains (the leak guard checks)."""
    _clear()
    assert isinstance(features.probe_all(), dict)


@pytest.mark.unprivileged
@pytest.mark.parametrize("name", sorted(set(features.__all__) - {"probe_all"}))
def test_each_probe_is_cached(name: str) -> None:
    probe = getattr(features, name)
    assert probe() is probe()
    assert probe.cache_info().hits >= 1
