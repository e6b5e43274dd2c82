"""Typed mount helpers and overlayfs assembly, applied on the real kernel."""

from __future__ import annotations

import errno
import os
import pathlib
from typing import Any

import pytest

from helpers import forked, fstype_of, make_layers, mount_at
from nsbind import MountFlags, Namespaces, Propagation, features, mounts, spawn
from nsbind._native import ffi, lib
from nsbind.errors import NsbindError
from nsbind.flags import MountAttr
from nsbind.frozen import replace_fields
from nsbind.mountstep import PHASE_WORDS, MountKind, MountPhase, MountStep, run


def _enclosing_mount(path: pathlib.Path) -> list[str]:
    """The mountinfo fields of the mount ``path`` lies on (the nearest mount point up)."""
    for candidate in (path, *path.parents):
        found = mount_at(str(candidate))
        if found is not None:
            return found
    raise AssertionError(f"no mount holds {path}")


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
            "ro": fstype_of(_enclosing_mount(tmp_path))}
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
    lower = make_layers(tmp_path, 120, "l{i:03d}")  # top layer first
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
    named = (r"^fsconfig overlay lowerdir\+=/nonexistent-layer: " if features.lowerdir_plus()
             else r"^create overlay lowerdir=/nonexistent-layer:/tmp: ")  # before 6.8
    with pytest.raises(NsbindError, match=named):
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


@forked
def test_readonly_bind_covers_submounts(tmp_path: pathlib.Path) -> None:
    src, sub, dst = tmp_path / "src", tmp_path / "src" / "sub", tmp_path / "dst"
    for d in (src, sub, dst):
        d.mkdir()
    with Namespaces(mnt=True):
        mounts.apply([mounts.tmpfs(sub, size="1m"),
                      mounts.bind(src, dst, readonly=True)])
        (sub / "w").write_text("the source stays writable")
        for path in (dst / "x", dst / "sub" / "x"):
            with pytest.raises(OSError) as info:
                path.write_text("no")
            assert info.value.errno == errno.EROFS
        assert (dst / "sub" / "w").read_text() == "the source stays writable"


@pytest.mark.unprivileged
def test_classic_steps_are_refused_inside_a_root() -> None:
    with pytest.raises(ValueError, match=r"classic mount.*host paths only"):
        mounts.propagation("/x", Propagation.PRIVATE).in_root()


@forked
def test_fs_step_errors_carry_the_kernel_message(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m").mkdir()
    with Namespaces(mnt=True):
        with pytest.raises(NsbindError) as info:
            mounts.apply([mounts.tmpfs(tmp_path / "m", size="lots")])
        assert str(info.value).startswith(f"mount tmpfs on {tmp_path}/m: EINVAL")
        assert "configure the filesystem; kernel: tmpfs: Bad value for 'size'" in str(info.value)
        with pytest.raises(NsbindError) as info:
            mounts.apply([mounts.overlay_step(tmp_path / "m", ["/nonexistent-a", "/tmp"])])
        assert str(info.value).startswith(f"mount overlay on {tmp_path}/m: ENOENT")
    assert mount_at(str(tmp_path / "m")) is None


@forked
def test_idmapped_bind_mount_shows_owners_through_the_user_namespace(
        tmp_path: pathlib.Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "root-owned").write_text("x")
    os.chown(src / "root-owned", 0, 0)
    # a user namespace whose root is host uid 100000: its fd comes from a sleeper
    userns = Namespaces(user=True, uid_map=[(0, 100000, 65536)], gid_map=[(0, 100000, 65536)])
    with spawn(["sleep", "30"], namespaces=userns) as holder:
        try:
            with open(f"/proc/{holder.pid}/ns/user", "rb") as ns, Namespaces(mnt=True):
                mounts.apply([mounts.bind(src, dst, idmap=ns.fileno())])
                st = os.stat(dst / "root-owned")
                assert (st.st_uid, st.st_gid) == (100000, 100000)
                assert os.stat(src / "root-owned").st_uid == 0
        finally:
            holder.kill()


def test_detached_overlay_bound_into_a_spawned_child(tmp_path: pathlib.Path) -> None:
    for d in ("l1", "l2", "m"):
        (tmp_path / d).mkdir()
    (tmp_path / "l1" / "one").write_text("1")
    (tmp_path / "l2" / "two").write_text("2")
    with mounts.overlay([tmp_path / "l1", tmp_path / "l2"]) as ovl:
        for _ in range(2):  # each child gets its own clone of the detached tree
            with spawn(["ls", str(tmp_path / "m")], namespaces=Namespaces(mnt=True),
                       stdout=-1, mounts=[mounts.bind(ovl, tmp_path / "m")]) as proc:
                out, _ = proc.communicate(timeout=30)
            assert (out, proc.returncode) == (b"one\ntwo\n", 0)
    assert os.listdir(tmp_path / "m") == []


def test_overlay_fallback_without_lowerdir_plus_uses_short_relative_paths(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-6.8 path, forced on this kernel: one lowerdir string, at most 255 bytes
    through fsconfig, made to fit by naming the layers relative to their parent."""
    monkeypatch.setattr(features, "lowerdir_plus", lambda: False)
    lower = []
    for i in range(40):  # top first
        layer = tmp_path / f"{i}"
        layer.mkdir()
        (layer / f"f{i}").write_text(str(i))
        lower.append(layer)
    assert len(":".join(map(str, lower))) > 255
    (tmp_path / "m").mkdir()
    step = mounts.overlay_step(tmp_path / "m", lower)
    assert step.cwd == str(tmp_path) and step.options[0].startswith("lowerdir=0:1:2:")
    with spawn(["ls", str(tmp_path / "m")], namespaces=Namespaces(mnt=True), stdout=-1,
               mounts=[step], cwd="/") as proc:
        out, _ = proc.communicate(timeout=30)
    assert out is not None and (len(out.split()), proc.returncode) == (40, 0)
    with mounts.overlay(lower) as detached:  # through mount(2): tests/test_mountclone.py
        assert detached.label == "overlay of 40 layers"
    too_many = [tmp_path / f"{i}" for i in range(200)]
    with pytest.raises(ValueError, match=r"200 overlay layers need a \d+-byte lowerdir"):
        mounts.overlay_step(tmp_path / "m", too_many)


@forked
def test_volatile_overlay(tmp_path: pathlib.Path) -> None:
    for d in ("l1", "l2", "upper", "work", "m"):
        (tmp_path / d).mkdir()
    with Namespaces(mnt=True):
        mounts.apply([mounts.overlay_step(tmp_path / "m", [tmp_path / "l1", tmp_path / "l2"],
                                          tmp_path / "upper", tmp_path / "work",
                                          volatile=True)])
        fields = mount_at(str(tmp_path / "m"))
        assert fields is not None and "volatile" in fields[-1]
        (tmp_path / "m" / "f").write_text("no fsync needed")
    assert (tmp_path / "upper" / "f").read_text() == "no fsync needed"


# ------------------------------------------------------------------ kinds and phases


def _c_enum(prefix: str, *, skip: tuple[str, ...] = ()) -> dict[str, int]:
    return {n[len(prefix):]: getattr(lib, n) for n in dir(lib)
            if n.startswith(prefix) and n not in skip}


@pytest.mark.unprivileged
def test_kinds_and_phases_are_the_c_enums_and_every_phase_has_words() -> None:
    kinds = _c_enum("NSB_MNT_", skip=("NSB_MNT_KIND_COUNT",))
    assert {k.name: k.value for k in MountKind} == kinds
    assert sorted(kinds.values()) == list(range(lib.NSB_MNT_KIND_COUNT))
    phases = _c_enum("NSB_PH_", skip=("NSB_PH_COUNT",))
    assert {p.name: p.value for p in MountPhase} == phases
    assert sorted(phases.values()) == list(range(lib.NSB_PH_COUNT))
    assert set(PHASE_WORDS) == set(MountPhase)
    assert MountPhase.of(lib.NSB_PH_COUNT) is None


@pytest.mark.unprivileged
def test_a_kind_outside_the_dispatch_table_is_einval_in_the_mount_phase() -> None:
    for bad in (lib.NSB_MNT_KIND_COUNT, -1):
        step: Any = ffi.new("struct nsb_mount_step *", {"kind": bad, "target": ffi.NULL})
        ctx: Any = ffi.new("struct nsb_mount_ctx *")
        report: Any = ffi.new("struct nsb_mount_report *")
        lib.nsb_mount_ctx_init(ctx)
        try:
            assert lib.nsb_mount_steps(step, 1, ctx, report) == -1
        finally:
            lib.nsb_mount_ctx_close(ctx)
        assert (report.index, report.err, report.phase) == (0, errno.EINVAL, lib.NSB_PH_MOUNT)


def _root(path: pathlib.Path) -> MountStep:
    return MountStep(None, str(path), kind=MountKind.ROOT)


@forked
def test_each_kind_of_step_names_the_phase_it_failed_in(tmp_path: pathlib.Path) -> None:
    """One failure per kind (and per phase a kind can fail in): the error names the
    step, the errno the kernel gave, and the phase's words from PHASE_WORDS."""
    root, host_dir, target = tmp_path / "root", tmp_path / "dir", tmp_path / "verify"
    for d in (root, host_dir, target):
        d.mkdir()
    (tmp_path / "file").write_text("x")
    (root / "file").write_text("x")
    os.symlink("/", root / "link")
    missing = tmp_path / "missing"
    words = PHASE_WORDS
    cases: list[tuple[list[MountStep], int, str | None]] = [
        # CLASSIC: the mount itself; the errno says it all
        ([MountStep("none", str(host_dir), "nsbind-no-such-fs")], errno.ENODEV, None),
        # FS: resolve, configure, verify
        ([mounts.tmpfs(missing)], errno.ENOENT, words[MountPhase.RESOLVE]),
        ([mounts.tmpfs(host_dir, size="lots")], errno.EINVAL,
         f"{words[MountPhase.CONFIG]}; kernel: tmpfs: Bad value for 'size'"),
        ([replace_fields(mounts.tmpfs(target), fs_magic=lib.PROC_SUPER_MAGIC)],
         errno.EXDEV, f"{words[MountPhase.VERIFY]}; {target} does not show the tmpfs just mounted"),
        # BIND: the source, its attributes
        ([mounts.bind(missing, host_dir)], errno.ENOENT, words[MountPhase.SOURCE]),
        ([MountStep(str(host_dir), str(host_dir), kind=MountKind.BIND, flags=0x1000)],
         errno.EINVAL, words[MountPhase.SETATTR]),
        # ROOT: not a directory; then the in-root rule (no root; a symlink target)
        ([_root(tmp_path / "file")], errno.ENOTDIR, words[MountPhase.RESOLVE]),
        ([mounts.mkdir("/x").in_root()], errno.EBADF, "no root set for an in-root step"),
        ([_root(root), mounts.tmpfs("/link").in_root()], errno.ELOOP,
         "refused: /link is a symlink in the root (targets are never followed)"),
        # MKDIR, DEVICE, SYMLINK: creating inside the root
        ([_root(root), mounts.mkdir("/file/sub").in_root()], errno.ENOTDIR,
         words[MountPhase.CREATE]),
        ([_root(root), mounts.device("/file/null", 1, 3).in_root()], errno.ENOTDIR,
         words[MountPhase.CREATE]),
        ([_root(root), mounts.symlink("/file", "elsewhere").in_root()], errno.EEXIST,
         words[MountPhase.CREATE]),
        # MASK, READONLY: a target that must exist
        ([MountStep(None, str(missing), kind=MountKind.MASK)], errno.ENOENT,
         words[MountPhase.RESOLVE]),
        ([MountStep(None, str(missing), kind=MountKind.READONLY)], errno.ENOENT,
         words[MountPhase.RESOLVE]),
        # PROPAGATION, SETATTR: mount_setattr wants the root of a mount
        ([MountStep(None, str(host_dir), flags=MountFlags.PRIVATE,
                    kind=MountKind.PROPAGATION)], errno.EINVAL, words[MountPhase.SETATTR]),
        ([MountStep(None, str(host_dir), flags=MountAttr.RDONLY, kind=MountKind.SETATTR)],
         errno.EINVAL, words[MountPhase.SETATTR]),
    ]
    assert {int(s[-1].kind) for s, _, _ in cases} == set(range(lib.NSB_MNT_KIND_COUNT))
    with Namespaces(mnt=True):
        for steps, err, detail in cases:
            with pytest.raises(NsbindError) as info:
                run(steps)
            assert info.value.errno == err, (steps[-1].describe(), info.value)
            assert str(info.value).startswith(
                f"{steps[-1].describe()}: {errno.errorcode[err]}"), info.value
            assert info.value.detail == detail, (steps[-1].describe(), info.value)
        # MASK's own check: a file mask binds only the real /dev/null (CVE-2025-31133)
        fake_null = tmp_path / "fake-null"
        fake_null.write_text("")
        mounts.apply([MountStep(str(fake_null), "/dev/null", None, MountFlags.BIND)])
        with pytest.raises(NsbindError) as info:
            run([MountStep(None, str(tmp_path / "file"), kind=MountKind.MASK)])
        assert info.value.errno == errno.ENODEV
        assert info.value.detail == (f"{words[MountPhase.VERIFY]}; "
                                     "the caller's /dev/null is not the 1:3 character device")


def test_spawned_mount_failure_carries_phase_and_kernel_message(tmp_path: pathlib.Path) -> None:
    """The child's report copies the mount report whole: the step, phase and message."""
    with pytest.raises(NsbindError) as info:
        spawn(["true"], namespaces=Namespaces(mnt=True),
              mounts=[mounts.tmpfs(tmp_path, size="1m"), mounts.tmpfs(tmp_path, size="lots")])
    assert str(info.value).startswith(f"mount tmpfs on {tmp_path}: EINVAL")
    assert info.value.detail == (f"{PHASE_WORDS[MountPhase.CONFIG]}; "
                                 "kernel: tmpfs: Bad value for 'size'")
