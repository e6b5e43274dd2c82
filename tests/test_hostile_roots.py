"""Hostile roots and hostile containers: a root path swapped while spawns run (it is
resolved once, by the RootFS, and the child uses fds from then on), and a container
process reaching for what its PID 1 holds through /proc/1/fd (nsbind's init keeps no
fd at all)."""

from __future__ import annotations

import collections
import errno
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from helpers import busybox_root
from nsbind import (
    MountFd,
    MountStep,
    Namespaces,
    Process,
    RootFS,
    SpawnError,
    mounts,
    open_tree,
    spawn,
)
from nsbind.errors import NsbindError
from nsbind.flags import AtFlags, OpenTreeFlags
from nsbind.frozen import replace_fields
from nsbind.mountstep import MountOpt

NS = Namespaces(pid=True, mnt=True)

#: spawns per race; each must see the real root or be refused, within the time bound
SPAWNS = 200
RACE_SECONDS = 120.0

# ------------------------------------------------------------------ the swapper

_SWAP = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (p.encode() for p in sys.argv[1:3])
if libc.renameat2(-100, a, -100, b, 2) != 0:  # RENAME_EXCHANGE
    sys.exit(f"renameat2: errno {ctypes.get_errno()}")
sys.stdout.write("swapping\n")
sys.stdout.flush()
while True:
    libc.renameat2(-100, a, -100, b, 2)
"""


class Swapper:
    """A process exchanging two paths (renameat2 RENAME_EXCHANGE: a directory with a
    directory or with a symlink) as fast as it can, until stopped; ready once it has
    swapped them once."""

    def __init__(self, a: pathlib.Path, b: pathlib.Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _SWAP, str(a), str(b)],
                                     stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != b"swapping\n":
            self.stop()
            raise AssertionError("the swapper did not start")

    def stop(self) -> None:
        """Kill it (by its pid: ours) and reap it."""
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def swapping() -> Iterator[Callable[[pathlib.Path, pathlib.Path], Swapper]]:
    """Start swappers; every one is stopped and joined at the end, whatever happens."""
    started: list[Swapper] = []

    def start(a: pathlib.Path, b: pathlib.Path) -> Swapper:
        started.append(Swapper(a, b))
        return started[-1]

    yield start
    for swapper in started:
        swapper.stop()


# ------------------------------------------------------------------ two roots


def _image(path: pathlib.Path, marker: str) -> dict[str, int]:
    """A busybox root at ``path`` with /marker; the inode numbers a container of it shows."""
    busybox_root(path)
    (path / "marker").write_text(marker)
    return {"busybox": os.stat(path / "bin" / "busybox").st_ino,
            "marker": os.stat(path / "marker").st_ino}


#: what a container shows of its root: the marker, whose files /bin/busybox and /marker
#: are, whether the in-root tmpfs step landed in the root it runs in, and what the
#: mkdir step made there
_PROBE = ("cat /marker; echo; stat -c %i /bin/busybox /marker; stat -f -c %T /tmp; "
          "ls -d /made")


def _classify(out: str, real: dict[str, int]) -> str:
    """'real', 'decoy' (the other root whole) or 'mix: ...' (parts of both)."""
    lines = out.split("\n")
    whole = lines[1:5] == [str(real["busybox"]), str(real["marker"]), "tmpfs", "/made"]
    if lines[0] == "real" and whole:
        return "real"
    if lines[0] == "decoy" and lines[3:5] == ["tmpfs", "/made"] and \
            str(real["busybox"]) not in lines[1:3]:
        return "decoy"
    return f"mix: {out!r}"


def _race(root: RootFS, real: dict[str, int], swapper: Swapper, path: str,
          refusals: tuple[int, ...], spawns: int = SPAWNS,
          before_each: Callable[[int], None] | None = None) -> collections.Counter[str]:
    """``spawns`` spawns of ``root`` while ``swapper`` runs: each must see the real
    root whole, or be refused with an error naming ``path`` (one of ``refusals``)."""
    seen: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + RACE_SECONDS
    try:
        for i in range(spawns):
            assert time.monotonic() < deadline, f"{i} spawns took over {RACE_SECONDS}s"
            if before_each is not None:
                before_each(i)
            try:
                with spawn(["/bin/sh", "-c", _PROBE], namespaces=NS, rootfs=root,
                           env={"PATH": "/bin"}, stdout=-1, stderr=-2) as proc:
                    out, _ = proc.communicate(timeout=30)
            except NsbindError as exc:  # a SpawnError, or prepare()'s own
                assert exc.errno in refusals, exc
                assert path in str(exc) and "refused" in str(exc), exc
                seen["refused"] += 1
                continue
            assert out is not None
            seen[_classify(out.decode(), real)] += 1
    finally:
        swapper.stop()
    return seen


def _two_roots(tmp_path: pathlib.Path, real: str, decoy: str
               ) -> tuple[dict[str, int], pathlib.Path, pathlib.Path]:
    real_dir, decoy_dir = tmp_path / real, tmp_path / decoy
    found = _image(real_dir, "real")
    _image(decoy_dir, "decoy")
    return found, real_dir, decoy_dir


def _root(path: pathlib.Path) -> RootFS:
    return RootFS(path, defaults=False).add(mounts.tmpfs("/tmp", size="1m"),
                                            mounts.mkdir("/made"))


def _assert_only_real(seen: collections.Counter[str], *paths: pathlib.Path,
                      refused: bool = True) -> None:
    """Only the real root, and (at ``paths``, which the swapper left in either order)
    no step ever ran in the decoy."""
    assert set(seen) <= {"real", "refused"}, seen  # never the decoy, never a mix
    assert seen["real"] > 0, seen  # the real root is spawned, not refused always
    if refused:  # the swapper did race the spawns (about every other one is refused)
        assert seen["refused"] > 0, seen
    decoys = {os.path.realpath(p) for p in paths
              if (p / "marker").exists() and (p / "marker").read_text() == "decoy"}
    assert len(decoys) == 1 and not os.path.exists(os.path.join(decoys.pop(), "made"))


@pytest.mark.slow
def test_a_root_swapped_with_a_decoy_during_spawns_is_refused_never_entered(
        tmp_path: pathlib.Path, swapping: Callable[[pathlib.Path, pathlib.Path], Swapper]
        ) -> None:
    """renameat2(RENAME_EXCHANGE) of the root directory and a decoy, as fast as a process
    can, while 200 spawns run: each sees the real root whole or is refused with a
    SpawnError naming the root (ESTALE: not the directory the RootFS opened)."""
    real, real_dir, decoy_dir = _two_roots(tmp_path, "root", "decoy")
    root = _root(real_dir)
    seen = _race(root, real, swapping(real_dir, decoy_dir), str(real_dir), (errno.ESTALE,))
    _assert_only_real(seen, real_dir, decoy_dir)


@pytest.mark.slow
def test_a_parent_directory_swapped_during_spawns_is_refused_never_entered(
        tmp_path: pathlib.Path, swapping: Callable[[pathlib.Path, pathlib.Path], Swapper]
        ) -> None:
    """The same with a parent component of the root's path exchanged with a directory
    holding a decoy root of the same name."""
    real, real_dir, decoy_dir = _two_roots(tmp_path, "a/root", "b/root")
    root = _root(real_dir)
    seen = _race(root, real, swapping(tmp_path / "a", tmp_path / "b"), str(real_dir),
                 (errno.ESTALE,))
    _assert_only_real(seen, real_dir, decoy_dir)


@pytest.mark.slow
def test_a_parent_directory_swapped_for_a_symlink_is_never_followed(
        tmp_path: pathlib.Path, swapping: Callable[[pathlib.Path, pathlib.Path], Swapper]
        ) -> None:
    """A parent component exchanged with a symlink to the decoy's directory: the child
    resolves the root's real path without following any symlink (ELOOP)."""
    real, real_dir, decoy_dir = _two_roots(tmp_path, "a/root", "b/root")
    os.symlink("b", tmp_path / "link")
    root = _root(real_dir)
    seen = _race(root, real, swapping(tmp_path / "a", tmp_path / "link"), str(real_dir),
                 (errno.ELOOP,))
    _assert_only_real(seen, real_dir, decoy_dir)


@pytest.mark.slow
def test_a_symlink_named_as_the_root_is_resolved_once_when_the_rootfs_is_made(
        tmp_path: pathlib.Path, swapping: Callable[[pathlib.Path, pathlib.Path], Swapper]
        ) -> None:
    """RootFS(symlink) follows the symlink the caller named, then: repointing it (two
    symlinks exchanged) changes nothing for the spawns of that RootFS."""
    real, real_dir, decoy_dir = _two_roots(tmp_path, "a", "b")
    os.symlink("a", tmp_path / "current")
    os.symlink("b", tmp_path / "next")
    root = _root(tmp_path / "current")
    assert root.path == str(real_dir)  # the real path, no symlink in it
    seen = _race(root, real, swapping(tmp_path / "current", tmp_path / "next"),
                 str(real_dir), (), spawns=SPAWNS // 4)
    _assert_only_real(seen, real_dir, decoy_dir, refused=False)


@pytest.mark.slow
def test_an_overlay_mount_point_swapped_during_spawns_is_refused_never_entered(
        tmp_path: pathlib.Path, swapping: Callable[[pathlib.Path, pathlib.Path], Swapper]
        ) -> None:
    """An overlay root on a mount point the caller named, exchanged with a directory
    holding a decoy root: the root is the overlay the step attached (by fd), and the
    mount point must be the directory the RootFS opened."""
    low, top = tmp_path / "low", tmp_path / "top"
    real = _image(low, "real")
    (low / "tmp").mkdir()  # a read-only overlay: the steps' targets are in the image
    (low / "made").mkdir()
    top.mkdir()
    mountpoint, decoy_dir = tmp_path / "mnt", tmp_path / "decoy"
    mountpoint.mkdir()
    _image(decoy_dir, "decoy")
    with RootFS.overlay([top, low], mountpoint=mountpoint, defaults=False) as root:
        root.add(mounts.tmpfs("/tmp", size="1m"), mounts.mkdir("/made"))
        seen = _race(root, real, swapping(mountpoint, decoy_dir), str(mountpoint),
                     (errno.ESTALE,))
    _assert_only_real(seen, mountpoint, decoy_dir)


@pytest.mark.slow
def test_a_root_prepared_again_and_again_while_swapped_is_never_the_decoy(
        tmp_path: pathlib.Path, swapping: Callable[[pathlib.Path, pathlib.Path], Swapper]
        ) -> None:
    """RootFS.prepare() resolves the root's path in its own mount namespace and pivots
    into that fd: each preparation (a change makes the next spawn prepare again) gets
    the real root or refuses naming it."""
    real, real_dir, decoy_dir = _two_roots(tmp_path, "root", "decoy")

    def change(i: int) -> None:
        root.mask(f"/nothing{i}")  # the next spawn prepares the root again

    with _root(real_dir).prepare() as root:
        seen = _race(root, real, swapping(real_dir, decoy_dir), str(real_dir),
                     (errno.ESTALE,), spawns=SPAWNS // 2, before_each=change)
    _assert_only_real(seen, real_dir, decoy_dir)


@pytest.mark.unprivileged
def test_a_missing_or_non_directory_root_is_refused_when_the_rootfs_is_made(
        tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match=rf"^open the root directory {tmp_path}/no"):
        RootFS(tmp_path / "no")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=rf"^open the root directory {tmp_path}/file"):
        RootFS(tmp_path / "file")


def test_a_root_replaced_after_the_rootfs_was_made_is_refused_naming_it(
        tmp_path: pathlib.Path) -> None:
    """No race needed: the directory moved away and another one put in its place."""
    _, real_dir, decoy_dir = _two_roots(tmp_path, "root", "decoy")
    root = _root(real_dir)
    os.rename(real_dir, tmp_path / "moved")
    os.rename(decoy_dir, real_dir)
    with pytest.raises(SpawnError) as info:
        spawn(["/bin/true"], namespaces=NS, rootfs=root)
    assert info.value.errno == errno.ESTALE
    assert str(info.value).startswith(f"bind {real_dir} onto itself as the root: ESTALE")
    assert f"refused: {real_dir} is no longer the directory it was pinned to" in \
        str(info.value)
    assert not (real_dir / "made").exists()


# ------------------------------------------------------------------ PID 1's fds

#: as PID 2 (the command): what PID 1 holds, what the command holds, and a write into
#: every directory PID 1 could lead to (errors go nowhere: stderr is /dev/null)
_PID1_PROBE = ("ls /proc/1/fd; echo ---; ls /proc/$$/fd; echo ---; "
               "for f in /proc/1/fd/*; do echo pwned > $f/pwned; done; echo $$")


def _userns_holder() -> Process:
    """A process in a user namespace whose fd an idmapped mount takes."""
    return spawn(["sleep", "60"], namespaces=Namespaces(
        user=True, uid_map=[(0, 100000, 65536)], gid_map=[(0, 100000, 65536)]))


def _host_dirs(tmp_path: pathlib.Path, *names: str) -> list[pathlib.Path]:
    made = []
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text(name)
        made.append(tmp_path / name)
    return made


def _writable_overlay(tmp_path: pathlib.Path) -> tuple[MountFd, pathlib.Path]:
    """A detached overlay with an upper layer (writable), and that upper directory: the
    volume a container gets read-only - a clone of it - while its fd stays writable."""
    low1, low2, upper, work = _host_dirs(tmp_path, "low1", "low2", "upper", "work")
    os.unlink(work / "f")
    return mounts.overlay([low1, low2], upper, work), upper


def _attach_as_is(tree: MountFd, target: str) -> MountStep:
    """A bind step that attaches ``tree`` (a detached tree made for it) as it is."""
    step = mounts.bind(tree, target, readonly=True)
    return replace_fields(step, opts=step.opts | MountOpt.ATTACH_FD)


def _watched(dirs: list[pathlib.Path]) -> dict[pathlib.Path, list[str]]:
    return {d: sorted(os.listdir(d)) for d in dirs}


@pytest.mark.parametrize("prepared", [False, True], ids=["plain", "prepared"])
def test_pid_1_keeps_no_fd_for_the_container_to_reach(tmp_path: pathlib.Path,
                                                      prepared: bool) -> None:
    """init=True: PID 1 is nsbind's init, which never execs.  With every kind of step
    fd in play - a writable detached overlay bound read-only (the reported attack: its
    fd led to the host-side upper directory), a read-only volume (opened on the host as
    a detached tree for a prepared root), an idmapped bind and its user namespace, a
    detached tree attached as it is, a prepared root's mount namespace and /dev/null -
    the command (PID 2) finds nothing in /proc/1/fd, its own fds are exactly 0-2, and
    nothing it writes there reaches a host directory."""
    volume, idmapped, detached = _host_dirs(tmp_path, "volume", "idmapped", "detached")
    ovl, upper = _writable_overlay(tmp_path)
    watched = [volume, idmapped, detached, upper]
    before = _watched(watched)
    root = RootFS(busybox_root(tmp_path / "root")).add(
        mounts.proc(), mounts.bind(volume, "/vol", readonly=True),
        mounts.bind(ovl, "/ovl", readonly=True))
    root.mask("/proc/kcore")
    holder = _userns_holder()
    try:
        with ovl, open(f"/proc/{holder.pid}/ns/user", "rb") as userns, \
                open_tree(detached, OpenTreeFlags.CLONE | AtFlags.RECURSIVE) as tree:
            root.add(mounts.bind(idmapped, "/idm", idmap=userns.fileno()))
            if prepared:
                root.prepare()
            else:
                root.add(_attach_as_is(tree, "/det"))
            with root, spawn(["/bin/sh", "-c", _PID1_PROBE], namespaces=NS, rootfs=root,
                             init=True, env={"PATH": "/bin"}, stdout=-1,
                             stderr=subprocess.DEVNULL) as proc:
                out, _ = proc.communicate(timeout=30)
    finally:
        holder.kill()
        holder.wait()
    assert _watched(watched) == before  # no "pwned" in the overlay's upper directory
    assert proc.returncode == 0, out
    pid1, pid2, me = (out or b"").decode().split("---\n")
    assert (pid1, me) == ("", "2\n")  # PID 1 holds no fd at all; we are its command
    assert pid2.split() == ["0", "1", "2"]


def test_pid_1_closes_stdio_and_passed_fds_and_the_command_keeps_them(
        tmp_path: pathlib.Path) -> None:
    """Without a root: pipes, a passed fd, a writable detached overlay bound read-only
    and a detached tree attached as it is.  The command has its stdio and the passed
    fd; init keeps none of them."""
    (detached,) = _host_dirs(tmp_path, "detached")
    ovl, upper = _writable_overlay(tmp_path)
    targets = _host_dirs(tmp_path, "t1", "t2")
    before = _watched([detached, upper])
    with ovl, open(tmp_path / "passed", "w") as passed, \
            open_tree(detached, OpenTreeFlags.CLONE) as tree:
        steps = [mounts.bind(ovl, targets[0], readonly=True),
                 _attach_as_is(tree, str(targets[1])), mounts.proc()]
        fd = passed.fileno()
        probe = _PID1_PROBE + f"; echo x > /proc/self/fd/{fd}"
        with spawn(["sh", "-c", probe], namespaces=NS, mounts=steps, init=True, stdin=-1,
                   stdout=-1, stderr=subprocess.DEVNULL, pass_fds=[fd]) as proc:
            out, _ = proc.communicate(timeout=30)
    assert _watched([detached, upper]) == before
    assert proc.returncode == 0, out
    pid1, pid2, me = (out or b"").decode().split("---\n")
    assert (pid1, me) == ("", "2\n")
    assert sorted(pid2.split(), key=int) == ["0", "1", "2", str(fd)]
    assert (tmp_path / "passed").read_text() == "x\n"
