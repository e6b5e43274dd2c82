"""Images made by the real producers (umoci, skopeo from Debian) load and unpack in
nsbind exactly as ``umoci unpack`` unpacks them: names, types, modes, owners, sizes,
content hashes and link targets, file by file."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from helpers import forked, tree
from nsbind import Namespaces, mounts
from nsbind.image import Store, flatten, load

pytestmark = pytest.mark.skipif(
    shutil.which("umoci") is None or shutil.which("skopeo") is None,
    reason="umoci and skopeo are missing (Debian packages umoci, skopeo)")


def run(*args: str | pathlib.Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True, timeout=120)


def _populate(root: pathlib.Path) -> None:
    """Layer 1: every kind of entry umoci writes."""
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("box\n")
    (root / "etc" / "secret").write_text("s")
    os.chmod(root / "etc" / "secret", 0o600)
    (root / "bin").mkdir()
    (root / "bin" / "suid").write_bytes(b"\x7fELF" + bytes(100))
    os.chmod(root / "bin" / "suid", 0o4755)
    os.link(root / "bin" / "suid", root / "bin" / "hardlink")
    os.symlink("/etc/hostname", root / "abs-link")
    os.symlink("../etc/hostname", root / "bin" / "rel-link")
    (root / "owned").write_text("owned")
    os.chown(root / "owned", 1234, 5678)
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o20666, os.makedev(1, 3))
    (root / "empty-dir").mkdir(mode=0o750)
    (root / "gone" / "sub").mkdir(parents=True)
    (root / "gone" / "sub" / "f").write_text("deleted in layer 2")
    (root / "xattr").write_text("x")
    os.setxattr(root / "xattr", "user.nsbind", b"value")
    (root / "big").write_bytes(os.urandom(1 << 20))


def _change(root: pathlib.Path) -> None:
    """Layer 2: deletions (whiteouts), a replaced file, a type change, additions."""
    shutil.rmtree(root / "gone")
    os.unlink(root / "etc" / "secret")
    (root / "etc" / "hostname").write_text("changed\n")
    os.unlink(root / "abs-link")
    (root / "abs-link").mkdir()
    (root / "abs-link" / "inside").write_text("now a directory")
    (root / "new").write_text("new in layer 2")


@pytest.fixture(scope="module")
def umoci_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """An OCI layout made by umoci (2 layers) and umoci's own unpacked rootfs."""
    base = tmp_path_factory.mktemp("umoci")
    layout, bundle = base / "oci", base / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:test")
    run("umoci", "unpack", "--image", f"{layout}:test", bundle)
    _populate(bundle / "rootfs")
    run("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:test", bundle)
    _change(bundle / "rootfs")
    run("umoci", "repack", "--image", f"{layout}:test", bundle)
    run("umoci", "config", "--image", f"{layout}:test", "--config.cmd", "/bin/sh",
        "--config.env", "A=1")
    run("umoci", "unpack", "--image", f"{layout}:test", base / "ref")
    yield base
    shutil.rmtree(base)


def test_umoci_layout_flattens_exactly_as_umoci_unpacks(umoci_image: pathlib.Path,
                                                        tmp_path: pathlib.Path) -> None:
    with load(str(umoci_image / "oci"), tag="test") as img:
        assert (img.config.cmd, img.config.env[-1], len(img.layers)) == (("/bin/sh",), "A=1", 2)
        img.verify()
        flatten(img, str(tmp_path / "rootfs"))
    expected = tree(umoci_image / "ref" / "rootfs")
    assert "gone" not in expected and "abs-link/inside" in expected  # the whiteouts acted
    assert tree(tmp_path / "rootfs") == expected
    assert os.getxattr(tmp_path / "rootfs" / "xattr", "user.nsbind") == b"value"


@forked
def test_umoci_layers_in_the_store_as_an_overlay(umoci_image: pathlib.Path,
                                                 tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "store"))
    with load(str(umoci_image / "oci"), tag="test") as img:
        dirs = store.unpack(img)
    merged = tmp_path / "merged"
    merged.mkdir()
    with Namespaces(mnt=True):
        mounts.apply([mounts.overlay_step(merged, list(reversed(dirs)))])
        assert tree(merged) == tree(umoci_image / "ref" / "rootfs")


def test_skopeo_docker_archive_flattens_exactly_as_umoci_unpacks(
        umoci_image: pathlib.Path, tmp_path: pathlib.Path) -> None:
    archive = tmp_path / "img.tar"
    run("skopeo", "copy", f"oci:{umoci_image / 'oci'}:test",
        f"docker-archive:{archive}:nsbind/test:1")
    with load(str(archive)) as img:
        assert img.tags == ("docker.io/nsbind/test:1",) and len(img.layers) == 2
        flatten(img, str(tmp_path / "rootfs"))
    assert tree(tmp_path / "rootfs") == tree(umoci_image / "ref" / "rootfs")
