"""mount, umount2, pivot_root, the new mount API, mount_setattr and openat2."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest

import nsbind
from helpers import drop_to_nobody, forked, fstype_of, mount_at, private_mount_ns
from nsbind import (
    AtFlags,
    MountAttr,
    MountFlags,
    OpenTreeFlags,
    Propagation,
    ResolveFlags,
    UmountFlags,
    features,
)
from nsbind._native import lib
from nsbind._sys.mount import AT_FDCWD
from nsbind.errors import Busy, InvalidArgument, NsbindError

# ---------------------------------------------------------------- mount / umount2


@forked
def test_mount_tmpfs_is_visible_and_umount_removes_it(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    target = str(tmp_path)
    nsbind.mount("tmpfs", target, "tmpfs", MountFlags.NOSUID, "size=1m,mode=0700")
    fields = mount_at(target)
    assert fields is not None and fstype_of(fields) == "tmpfs"
    assert "size=1024k" in fields[-1] and "mode=700" in fields[-1]
    assert "nosuid" in fields[5]
    with open(os.path.join(target, "f"), "w") as f:
        f.write("x")
    fd = os.open(target, os.O_RDONLY)
    try:
        assert nsbind.fstatfs_type(fd) == lib.TMPFS_MAGIC
    finally:
        os.close(fd)
    nsbind.umount2(target)
    assert mount_at(target) is None
    assert not os.path.exists(os.path.join(target, "f"))


@forked
def test_mount_bind_and_readonly_remount(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "hello").write_text("hi")
    nsbind.mount(src, dst, None, MountFlags.BIND)
    assert (dst / "hello").read_text() == "hi"
    nsbind.mount(None, dst, None, MountFlags.BIND | MountFlags.REMOUNT | MountFlags.RDONLY)
    with pytest.raises(OSError) as info:
        (dst / "new").write_text("no")
    assert info.value.errno == errno.EROFS
    nsbind.umount2(dst, UmountFlags.DETACH)


@forked
def test_mount_propagation_change_shows_in_mountinfo(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    nsbind.mount("tmpfs", tmp_path, "tmpfs")
    nsbind.mount(None, tmp_path, None, MountFlags.SHARED)
    fields = mount_at(str(tmp_path))
    assert fields is not None and any(f.startswith("shared:") for f in fields[6:])
    nsbind.mount(None, tmp_path, None, MountFlags.PRIVATE)
    fields = mount_at(str(tmp_path))
    assert fields is not None and not any(f.startswith("shared:") for f in fields[6:])


@forked
def test_mount_errors_name_operation_and_target(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    with pytest.raises(FileNotFoundError, match=r"^mount proc on /nonexistent/x: ENOENT"):
        nsbind.mount("proc", "/nonexistent/x", "proc")
    with pytest.raises(NsbindError, match=rf"^mount nosuchfs on {tmp_path}: ENODEV"):
        nsbind.mount("none", tmp_path, "nosuchfs")
    with pytest.raises(FileNotFoundError, match=rf"^bind mount /nonexistent on {tmp_path}: ENOENT"):
        nsbind.mount("/nonexistent", tmp_path, None, MountFlags.BIND)
    drop_to_nobody()
    with pytest.raises(PermissionError, match=r"^mount tmpfs on /tmp: EPERM"):
        nsbind.mount("tmpfs", "/tmp", "tmpfs")


@forked
def test_umount2_errors(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    with pytest.raises(InvalidArgument, match=rf"^umount {tmp_path}: EINVAL"):
        nsbind.umount2(tmp_path)  # not a mount point
    nsbind.mount("tmpfs", tmp_path, "tmpfs")
    fd = os.open(tmp_path / ".", os.O_RDONLY)
    os.chdir(tmp_path)
    try:
        with pytest.raises(Busy, match=rf"^umount {tmp_path}: EBUSY"):
            nsbind.umount2(tmp_path)
    finally:
        os.chdir("/")
        os.close(fd)
    nsbind.umount2(tmp_path)


# ---------------------------------------------------------------- pivot_root


@forked
def test_pivot_root_onto_tmpfs(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    nsbind.mount("tmpfs", tmp_path, "tmpfs")
    (tmp_path / "marker").write_text("new root")
    os.chdir(tmp_path)
    nsbind.pivot_root(".", ".")
    nsbind.umount2(".", UmountFlags.DETACH)
    os.chdir("/")
    assert os.listdir("/") == ["marker"]
    with open("/marker") as f:
        assert f.read() == "new root"
    assert not os.path.exists("/proc/self/mountinfo")  # gone with the old root


@forked
def test_pivot_root_errors(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    # not a mount point: it is on the current root's mount, which the kernel calls busy
    # (6.1 calls it invalid: new_root must be a mount point)
    with pytest.raises((Busy, InvalidArgument),
                       match=rf"^pivot_root to {tmp_path} \(old root at {tmp_path}\): "
                             "(EBUSY|EINVAL)"):
        nsbind.pivot_root(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^pivot_root to /nonexistent"):
        nsbind.pivot_root("/nonexistent", "/nonexistent")


# ---------------------------------------------------------------- the new mount API


@forked
def test_fsopen_fsconfig_fsmount_move_mount_tmpfs(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    with nsbind.fsopen("tmpfs") as ctx:
        ctx.set_string("size", "2m")
        ctx.set_string("mode", "0711")
        ctx.create()
        with ctx.mount(MountAttr.NODEV | MountAttr.NOEXEC) as mnt:
            (mnt_dir := tmp_path / "m").mkdir()
            mnt.attach(mnt_dir)
    fields = mount_at(str(tmp_path / "m"))
    assert fields is not None and fstype_of(fields) == "tmpfs"
    assert "size=2048k" in fields[-1] and "mode=711" in fields[-1]
    assert {"nodev", "noexec"} <= set(fields[5].split(","))


@forked
def test_detached_mount_is_usable_by_fd_and_absent_from_mountinfo() -> None:
    private_mount_ns()
    before = pathlib.Path("/proc/self/mountinfo").read_text()
    with nsbind.fsopen("tmpfs") as ctx:
        ctx.create()
        with ctx.mount() as mnt:
            fd = os.open("inside", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=mnt.fileno())
            os.close(fd)
            assert os.listdir(f"/proc/self/fd/{mnt.fileno()}") == ["inside"]
            assert pathlib.Path("/proc/self/mountinfo").read_text() == before
        assert mnt.closed


def test_fsopen_unknown_filesystem_is_enodev() -> None:
    with pytest.raises(NsbindError, match=r"^fsopen nosuchfs: ENODEV") as info:
        nsbind.fsopen("nosuchfs")
    assert info.value.errno == errno.ENODEV


def test_fsconfig_bad_option_carries_the_kernels_message() -> None:
    with nsbind.fsopen("tmpfs") as ctx, pytest.raises(InvalidArgument) as info:
        ctx.set_string("nosuchoption", "1")
    assert str(info.value).startswith("fsconfig tmpfs nosuchoption=1: EINVAL")
    assert "nosuchoption" in (info.value.detail or "")


def test_fsconfig_overlay_missing_lowerdir_names_the_path() -> None:
    if not features.lowerdir_plus():
        pytest.skip("this kernel's overlayfs parses its options at mount time (a legacy "
                    "fs context, before Linux 6.5): no per-option error to name the path")
    with nsbind.fsopen("overlay") as ctx, pytest.raises(FileNotFoundError) as info:
        ctx.set_string("lowerdir", "/nonexistent-lower")
        ctx.create()
    assert "/nonexistent-lower" in str(info.value)


@pytest.mark.unprivileged
def test_fsconfig_raw_bad_fd_is_ebadf() -> None:
    from nsbind.flags import FsconfigCmd

    with pytest.raises(NsbindError, match=r"^fsconfig SET_FLAG ro: EBADF"):
        nsbind.fsconfig(999, FsconfigCmd.SET_FLAG, "ro")


def test_fsmount_before_create_is_einval() -> None:
    with nsbind.fsopen("tmpfs") as ctx, pytest.raises(InvalidArgument, match=r"^fsmount tmpfs"):
        ctx.mount()


@forked
def test_move_mount_to_missing_target_is_enoent() -> None:
    private_mount_ns()
    with nsbind.fsopen("tmpfs") as ctx:
        ctx.create()
        with ctx.mount() as mnt, pytest.raises(
            FileNotFoundError, match=r"^attach tmpfs on /nonexistent: ENOENT"
        ):
            mnt.attach("/nonexistent")


@forked
def test_open_tree_clone_and_mount_setattr_readonly(tmp_path: pathlib.Path) -> None:
    private_mount_ns()
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("data")
    with nsbind.open_tree(src, OpenTreeFlags.CLONE | AtFlags.RECURSIVE) as tree:
        tree.setattr(attr_set=MountAttr.RDONLY | MountAttr.NOSUID, recursive=True)
        tree.attach(dst)
    assert (dst / "f").read_text() == "data"
    with pytest.raises(OSError) as info:
        (dst / "g").write_text("no")
    assert info.value.errno == errno.EROFS
    (src / "g").write_text("source stays writable")
    nsbind.mount_setattr(AT_FDCWD, dst, attr_clr=MountAttr.RDONLY)
    (dst / "h").write_text("writable again")
    nsbind.mount_setattr(AT_FDCWD, dst, propagation=Propagation.SHARED)
    fields = mount_at(str(dst))
    assert fields is not None and any(f.startswith("shared:") for f in fields[6:])


def test_open_tree_missing_path_is_enoent() -> None:
    with pytest.raises(FileNotFoundError, match=r"^open_tree /nonexistent: ENOENT"):
        nsbind.open_tree("/nonexistent", OpenTreeFlags.CLONE)


def test_mount_setattr_unknown_attribute_is_einval(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidArgument, match=rf"^mount_setattr {tmp_path}: EINVAL"):
        nsbind.mount_setattr(AT_FDCWD, tmp_path, attr_set=0x40000000)


# ---------------------------------------------------------------- openat2


@pytest.fixture
def jail(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory with escape attempts inside, and a victim file beside it."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("inside")
    (tmp_path / "victim").write_text("outside")
    os.symlink("/etc", root / "abs")  # absolute symlink
    os.symlink("../../victim", root / "etc" / "up")  # relative symlink leaving the root
    return root


def _read_at(dirfd: int, path: str, resolve: int) -> str:
    with nsbind.openat2(dirfd, path, os.O_RDONLY, resolve=resolve) as fd:
        return os.read(fd.fileno(), 100).decode()


@pytest.mark.unprivileged
def test_openat2_in_root_keeps_dotdot_and_absolute_symlinks_inside(jail: pathlib.Path) -> None:
    dirfd = os.open(jail, os.O_PATH | os.O_DIRECTORY)
    try:
        # "/etc/hostname", "../../etc/hostname" and "abs/hostname" all land in jail/etc
        assert _read_at(dirfd, "/etc/hostname", ResolveFlags.IN_ROOT) == "inside"
        assert _read_at(dirfd, "../../../etc/hostname", ResolveFlags.IN_ROOT) == "inside"
        assert _read_at(dirfd, "abs/hostname", ResolveFlags.IN_ROOT) == "inside"
        # the relative symlink that points at ../../victim resolves to jail/victim: absent
        with pytest.raises(FileNotFoundError, match=r"^openat2 etc/up: ENOENT"):
            _read_at(dirfd, "etc/up", ResolveFlags.IN_ROOT)
    finally:
        os.close(dirfd)


@pytest.mark.unprivileged
def test_openat2_beneath_refuses_escapes_with_exdev(jail: pathlib.Path) -> None:
    dirfd = os.open(jail, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("../victim", "etc/up", "abs/passwd"):
            with pytest.raises(NsbindError, match=rf"^openat2 {path}: EXDEV"):
                _read_at(dirfd, path, ResolveFlags.BENEATH)
        with pytest.raises(NsbindError, match=r"^openat2 abs: ELOOP"):
            _read_at(dirfd, "abs", ResolveFlags.NO_SYMLINKS)
    finally:
        os.close(dirfd)


@pytest.mark.unprivileged
def test_openat2_fd_is_cloexec_and_missing_path_is_enoent(jail: pathlib.Path) -> None:
    with nsbind.openat2(AT_FDCWD, jail / "etc" / "hostname") as fd:
        assert not os.get_inheritable(fd.fileno())
    with pytest.raises(FileNotFoundError, match=r"^openat2 .*/nope: ENOENT"):
        nsbind.openat2(AT_FDCWD, jail / "nope")


@pytest.mark.unprivileged
def test_openat2_returns_an_owned_fd_closed_by_with(jail: pathlib.Path) -> None:
    """README: every fd nsbind opens is owned by an object with fileno(), close() and
    ``with``."""
    with nsbind.openat2(AT_FDCWD, jail / "etc" / "hostname") as fd:
        number = fd.fileno()
        assert os.readlink(f"/proc/self/fd/{number}") == str(jail / "etc" / "hostname")
    assert fd.closed
    with pytest.raises(ValueError, match="closed"):
        fd.fileno()
    assert not os.path.exists(f"/proc/self/fd/{number}")  # closed, not merely forgotten
    fd.close()  # idempotent
    kept = nsbind.openat2(AT_FDCWD, jail / "etc" / "hostname")
    number = kept.detach()  # handed over: the caller closes it
    with os.fdopen(number, "rb") as f:
        assert f.read() == b"inside"
