"""OCI mounts nsbind-oci makes as runc does: ``tmpcopyup`` tmpfs mounts.

A ``tmpcopyup`` tmpfs (podman --read-only sends them for /run, /tmp and /var/tmp) starts
with a copy of what the root holds at its destination; the copy is made by the spawning
process in a detached tmpfs, reading the root through fds resolved inside it, and the
child attaches it.
"""

from __future__ import annotations

import os
import pathlib
import stat
from typing import Any

import pytest

from nsbind import fsopen
from nsbind.oci import SpecError, load_spec, mountconv, to_spawn
from test_oci_run import make_bundle, run_nsbind, run_runc

COPYUP = ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]
LIST = ("cd /opt/data && for f in a sub sub/b sub/deep sub/deep/c evil rel; do "
        "stat -c '%n %a %u %g %F' $f; done; readlink evil; readlink rel; cat a sub/b; "
        "grep ' /opt/data ' /proc/self/mountinfo | cut -d' ' -f5,6,9; ")
TIMES = "stat -c '%n %Y' /opt/data/a /opt/data/sub/b /opt/data/evil; "
WRITE = "echo changed > /opt/data/new && cat /opt/data/new"


def _tree(rootfs: pathlib.Path, secret: pathlib.Path, special: bool) -> None:
    """/opt/data: files, a subdirectory tree, symlinks (one to a host file), with
    ``special`` a FIFO and a device node, with owners, modes and times of their own."""
    data = rootfs / "opt" / "data"
    (data / "sub" / "deep").mkdir(parents=True)
    (data / "a").write_text("file a\n")
    (data / "sub" / "b").write_text("file b\n")
    (data / "sub" / "deep" / "c").write_bytes(b"")
    os.symlink(str(secret), data / "evil")  # a host path: copied as a link, not read
    os.symlink("../a", data / "sub" / "rel")
    os.symlink("sub/rel", data / "rel")
    if special:
        os.mkfifo(data / "fifo", 0o640)  # opened, it would block the copy
        os.mknod(data / "nul", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.chown(data / "a", 1234, 5678)
    os.chmod(data / "a", 0o4644)
    os.chmod(data / "sub", 0o750)
    os.chown(data / "sub" / "b", 42, 43)
    os.lchown(data / "evil", 7, 8)
    for p in (data / "a", data / "sub" / "b"):
        os.utime(p, (1_000_000_000, 1_000_000_000))
    os.utime(data / "evil", (1_100_000_000, 1_100_000_000), follow_symlinks=False)
    os.utime(data, (1_200_000_000, 1_200_000_000))


def _bundle(tmp_path: pathlib.Path, cgroup_parent: str, script: str,
            options: list[str] | None = None, special: bool = True) -> pathlib.Path:
    secret = tmp_path / "secret"
    secret.write_text("host secret\n")

    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": "/opt/data", "type": "tmpfs",
                                 "source": "tmpfs", "options": options or COPYUP})

    bundle = make_bundle(tmp_path, cgroup_parent, edit, ["sh", "-c", script])
    _tree(bundle / "rootfs", secret, special)
    return bundle


def test_tmpcopyup_same_as_runc(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    """The tmpfs holds the same tree as the root's /opt/data (types, modes, owners,
    symlink targets, contents), as under runc; writes land in the tmpfs only.  (runc
    1.1.5 fails on a FIFO in the tree: see test_tmpcopyup_special_files.)"""
    bundle = _bundle(tmp_path, cgroup_parent, LIST + WRITE, special=False)
    runc = run_runc(bundle, cgroup_parent=cgroup_parent)
    ours = run_nsbind(bundle, cgroup_parent)
    assert ours == runc
    lines = ours[1].splitlines()
    assert lines[:7] == [
        "a 4644 1234 5678 regular file", "sub 750 0 0 directory",
        "sub/b 644 42 43 regular file", "sub/deep 755 0 0 directory",
        "sub/deep/c 644 0 0 regular empty file", "evil 777 7 8 symbolic link",
        "rel 777 0 0 symbolic link"]
    assert lines[7:9] == [str(tmp_path / "secret"), "sub/rel"]
    assert "host secret" not in ours[1]
    assert lines[9:11] + lines[-1:] == ["file a", "file b", "changed"]
    assert lines[-2] == "/opt/data rw,nosuid,nodev,relatime tmpfs"
    rootfs = bundle / "rootfs" / "opt" / "data"
    assert (rootfs / "a").read_text() == "file a\n"
    assert not (rootfs / "new").exists()
    assert (tmp_path / "secret").read_text() == "host secret\n"


def test_tmpcopyup_special_files_and_times(tmp_path: pathlib.Path,
                                           cgroup_parent: str) -> None:
    """A FIFO and a device node are made again (never opened: the FIFO would block);
    times are kept, the tmpfs root's too."""
    script = (TIMES + "stat -c '%a %Y' /opt/data; cd /opt/data; "
              "stat -c '%n %a %F %t:%T' fifo nul")
    bundle = _bundle(tmp_path, cgroup_parent, script)
    code, out = run_nsbind(bundle, cgroup_parent)
    assert code == 0, out
    assert out.splitlines() == [
        "/opt/data/a 1000000000", "/opt/data/sub/b 1000000000", "/opt/data/evil 1100000000",
        "755 1200000000", "fifo 640 fifo 0:0", "nul 600 character special file 1:3"]


def test_tmpcopyup_read_only(tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    """With ``ro`` the tmpfs is filled first, then attached read-only."""
    bundle = _bundle(tmp_path, cgroup_parent, "cat /opt/data/a; touch /opt/data/x",
                     ["ro", "nosuid", "nodev", "tmpcopyup"])
    code, out = run_nsbind(bundle, cgroup_parent)
    assert code == 1
    assert out == "file a\n"


def test_tmpcopyup_missing_or_symlinked_destination(tmp_path: pathlib.Path,
                                                    cgroup_parent: str) -> None:
    """A missing destination: an empty tmpfs (made in the root).  A destination whose
    parent is a symlink to a host directory resolves inside the root: what the root
    holds at that path is copied, not the host directory's files."""
    host = tmp_path / "hostdir"
    (host / "data").mkdir(parents=True)
    (host / "data" / "secret").write_text("host secret\n")

    def edit(config: dict[str, Any]) -> None:
        config["root"]["readonly"] = False
        for dest in ("/missing", "/escape/data"):
            config["mounts"].append({"destination": dest, "type": "tmpfs",
                                     "source": "tmpfs", "options": COPYUP})

    bundle = make_bundle(tmp_path, cgroup_parent, edit,
                         ["sh", "-c", "ls -A /missing /escape/data; echo end"])
    os.symlink(str(host), bundle / "rootfs" / "escape")
    inside = bundle / "rootfs" / str(host).lstrip("/") / "data"
    inside.mkdir(parents=True)
    (inside / "inside").write_text("in the root\n")
    code, out = run_nsbind(bundle, cgroup_parent)
    assert code == 0, out
    assert out.split() == ["/escape/data:", "inside", "/missing:", "end"]
    assert (host / "data" / "secret").read_text() == "host secret\n"


def test_copy_up_caps(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Too many entries or bytes: refused naming the target and entry."""
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    for i in range(5):
        (root / "d" / f"f{i}").write_bytes(b"x" * 100)
    for cap, value, words in (("COPYUP_MAX_ENTRIES", 3, "more than 3 entries"),
                              ("COPYUP_MAX_BYTES", 250, "more than 250 bytes")):
        with monkeypatch.context() as patch:
            patch.setattr(mountconv, cap, value)
            ctx = fsopen("tmpfs")
            with ctx:
                ctx.create()
                mnt = ctx.mount()
            with mnt, pytest.raises(OSError, match=f"tmpcopyup: copy /d/f.*{words}"):
                mountconv.copy_up(str(root), "/d", mnt)


@pytest.mark.unprivileged
def test_tmpcopyup_only_for_tmpfs(tmp_path: pathlib.Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": "/x", "type": "bind", "source": "/tmp",
                                 "options": ["rbind", "tmpcopyup"]})

    with pytest.raises(SpecError, match=r"mounts\[7\]\.options\[1\] 'tmpcopyup'"):
        to_spawn(load_spec(make_bundle(tmp_path, "unused", edit)), cgroup_parent="P")


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
def test_idmapped_bind_shows_owners_through_its_mappings(tmp_path: pathlib.Path,
                                                        cgroup_parent: str,
                                                        option: str) -> None:
    """mounts[].uidMappings/gidMappings: files of the host directory appear inside with
    their owners mapped (host root as 100000 here); the host's files are unchanged."""
    from nsbind import features

    if not features.idmapped_mounts():
        pytest.skip("this kernel has no idmapped mounts (MOUNT_ATTR_IDMAP, Linux 5.12)")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "root-owned").write_text("x")
    os.chown(shared / "root-owned", 0, 0)
    (shared / "user-owned").write_text("y")
    os.chown(shared / "user-owned", 1000, 1000)
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]

    def edit(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": "/data", "type": "bind", "source": str(shared),
                                 "options": ["rbind", option], "uidMappings": maps,
                                 "gidMappings": maps})

    bundle = make_bundle(tmp_path, cgroup_parent, edit,
                         ["sh", "-c", "stat -c '%n %u %g' /data/root-owned /data/user-owned"])
    code, out = run_nsbind(bundle, cgroup_parent)
    assert code == 0, out
    assert out.split("\n")[:2] == ["/data/root-owned 100000 100000",
                                   "/data/user-owned 101000 101000"]
    assert (os.stat(shared / "root-owned").st_uid, os.stat(shared / "user-owned").st_uid) \
        == (0, 1000)


def test_idmapped_bind_of_a_tmpfs_works_or_names_the_kernel_it_needs(
        tmp_path: pathlib.Path, cgroup_parent: str) -> None:
    """tmpfs can be idmapped from Linux 6.3 only: there the container sees the mapped
    owners; before it the runtime refuses the mount up front, naming the filesystem
    and the release, instead of the child's bare EINVAL.  Which one happens is the
    kernel's answer to the runtime's own probe (a detached clone of the source's mount
    idmapped with the mount's namespace), asked here first."""
    import nsbind
    from nsbind import features
    from nsbind.errors import Unsupported
    from nsbind.oci.idmapmount import IdmapBind

    if not features.idmapped_mounts():
        pytest.skip("this kernel has no idmapped mounts (MOUNT_ATTR_IDMAP, Linux 5.12)")
    shm = tmp_path / "shm"
    shm.mkdir()
    nsbind.mount("tmpfs", str(shm), "tmpfs", 0, "mode=755,size=1m")
    try:
        (shm / "owned").write_text("x")
        os.chown(shm / "owned", 1000, 1000)
        maps = ((0, 100000, 65536),)
        refusal = None
        try:
            _step, userns = IdmapBind(str(shm), "/data", False, 0, maps, maps).make()
            userns.close()
        except Unsupported as exc:
            refusal = str(exc)
        mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]

        def edit(config: dict[str, Any]) -> None:
            config["mounts"].append({"destination": "/data", "type": "bind",
                                     "source": str(shm), "options": ["bind", "idmap"],
                                     "uidMappings": mapping, "gidMappings": mapping})

        bundle = make_bundle(tmp_path, cgroup_parent, edit,
                             ["stat", "-c", "%u %g", "/data/owned"])
        if refusal is None:
            code, out = run_nsbind(bundle, cgroup_parent)
            assert (code, out.split("\n")[0]) == (0, "101000 101000")
        else:
            assert "its filesystem (tmpfs) cannot be idmapped on this kernel (idmapped " \
                "tmpfs mounts: Linux 6.3)" in refusal
            with pytest.raises(Unsupported, match=r"idmapped tmpfs mounts: Linux 6\.3"):
                run_nsbind(bundle, cgroup_parent)
        assert os.stat(shm / "owned").st_uid == 1000  # the host's file unchanged
    finally:
        nsbind.umount2(str(shm))


@pytest.mark.unprivileged
def test_idmapped_mount_needs_both_maps_and_a_bind(tmp_path: pathlib.Path) -> None:
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    for mount, message in (
            ({"destination": "/d", "type": "bind", "source": "/tmp", "options": ["rbind"],
              "uidMappings": maps}, "uidMappings and gidMappings go together"),
            ({"destination": "/d", "type": "tmpfs", "source": "tmpfs", "uidMappings": maps,
              "gidMappings": maps}, "only a bind mount can be idmapped")):
        with pytest.raises(SpecError, match=message):
            mountconv.convert_mounts((load_spec(_spec_with(tmp_path, mount)).mounts or ())[-1:],
                                     str(tmp_path))


def _spec_with(tmp_path: pathlib.Path, mount: dict[str, Any]) -> bytes:
    import json

    from nsbind.oci import default_spec_json

    config = default_spec_json()
    config["mounts"].append(mount)
    return json.dumps(config).encode()
