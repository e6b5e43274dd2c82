"""Image tarball to a running, limited, isolated process: the blocks fit together.

An image made by the real tools (umoci builds the OCI layout with a busybox layer
and a second layer that deletes a file, skopeo turns it into a docker save
tarball), loaded and verified by nsbind, unpacked into the store, assembled with
overlayfs, given /proc and /dev, and run in new namespaces under a cgroup.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from helpers import BUSYBOX
from nsbind import PIPE, Cgroup, Namespaces, mounts, spawn
from nsbind.cgroups import usable_controllers
from nsbind.image import Store, load

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("umoci", "skopeo")) or not os.path.exists(BUSYBOX),
    reason="umoci, skopeo and busybox-static are needed (scripts/test.sh installs them)")


def run(*args: str | pathlib.Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)


def test_docker_save_tarball_to_a_limited_isolated_process(tmp_path: pathlib.Path,
                                                           cgroup_parent: str) -> None:
    layout, bundle = tmp_path / "oci", tmp_path / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:app")
    run("umoci", "unpack", "--image", f"{layout}:app", bundle)
    rootfs = bundle / "rootfs"
    for d in ("bin", "etc", "proc", "dev", "tmp"):
        (rootfs / d).mkdir()
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "cat", "hostname", "ls", "id"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc" / "motd").write_text("from layer 1\n")
    (rootfs / "etc" / "secret").write_text("deleted by layer 2\n")
    run("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:app", bundle)
    os.unlink(rootfs / "etc" / "secret")
    run("umoci", "repack", "--image", f"{layout}:app", bundle)
    run("umoci", "config", "--image", f"{layout}:app", "--config.cmd", "/bin/sh",
        "--config.env", "GREETING=hello")
    tarball = tmp_path / "app.tar"
    run("skopeo", "copy", f"oci:{layout}:app", f"docker-archive:{tarball}:e2e/app:1")
    shutil.rmtree(bundle)

    store = Store(str(tmp_path / "store"))
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    with load(str(tarball)) as img:
        img.check_platform()
        root_of_image = store.rootfs(img, upper, work)  # layers in overlayfs's order
        env = dict(var.split("=", 1) for var in img.config.env)
        cmd = list(img.config.cmd)
    script = ("cat /etc/motd; ls /etc; echo $GREETING; hostname; echo pid $$; "
              "ls /proc | grep -c '^[0-9]'; id -u; echo x > /dev/null && echo devnull")
    with root_of_image as root, \
            Cgroup.create("e2e", parent=cgroup_parent, pids_max=16,
                          memory_max="64M" if "memory" in usable_controllers() else None) as cg:
        root.add(mounts.proc(), mounts.dev())
        with spawn([*cmd, "-c", script], env=env, rootfs=root, cgroup=cg, hostname="app",
                   namespaces=Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True),
                   stdout=PIPE, stderr=PIPE) as proc:
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out is not None
    assert out.decode().split("\n") == ["from layer 1", "motd", "hello", "app", "pid 1",
                                        out.decode().split("\n")[5], "0", "devnull", ""]
    assert int(out.decode().split("\n")[5]) <= 3  # sh, ls, grep at most: a fresh pid ns
    assert os.listdir(upper) == [] or set(os.listdir(upper)) <= {"dev", "proc"}
