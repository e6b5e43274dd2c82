"""``nsbind image save`` and ``nsbind image import``, checked against skopeo and podman."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator

import pytest

import nsbind.image
from clients import build_rootfs, need, oci_archive, tar_rootfs
from nsbind.image import Store

NAME = "docker.io/library/nsbind-save:latest"


def cli(*args: str, code: int = 0) -> str:
    proc = subprocess.run([sys.executable, "-m", "nsbind", "image", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    return proc.stdout if code == 0 else proc.stderr


def tree_of(root: str) -> dict[str, tuple[object, ...]]:
    """Every entry below ``root``: type and mode, owner, and content (or link target)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            what: object = None
            if stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(pathlib.Path(full).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            out[os.path.relpath(full, root)] = (st.st_mode, st.st_uid, st.st_gid, what)
    return out


def image_tree(path: str, store: str) -> dict[str, tuple[object, ...]]:
    """The one layer of the image at ``path``, unpacked into ``store``."""
    with nsbind.image.load(path) as img:
        dirs = Store(store).unpack(img)
    assert len(dirs) == 1
    return tree_of(dirs[0])


@pytest.fixture
def stored(tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    """(store, original image archive): the busybox image loaded into a new store."""
    rootfs = build_rootfs(tmp_path / "rootfs")
    layer = tar_rootfs(rootfs, str(tmp_path / "layer.tar"))
    config = {"Env": ["PATH=/bin", "A=b"], "Cmd": ["sh", "-c", "echo hi"],
              "WorkingDir": "/tmp", "User": "1000", "Labels": {"x": "y"}}
    archive = oci_archive(layer, str(tmp_path / "image.tar"), NAME, config=config)
    store = str(tmp_path / "store")
    cli("load", archive, "--store", store, "--quiet")
    yield store, archive


@pytest.mark.unprivileged
def test_save_reads_back_in_nsbind_and_skopeo(stored: tuple[str, str],
                                               tmp_path: pathlib.Path) -> None:
    store, archive = stored
    out = str(tmp_path / "saved.tar")
    cli("save", "nsbind-save", "-o", out, "--store", store)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert names == sorted(names) and {"manifest.json", "index.json", "oci-layout",
                                           "repositories"} <= set(names)
        assert all(m.mtime == 0 and m.uid == m.gid == 0 and not m.uname for m in tar)
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["nsbind-save:latest"]
    with nsbind.image.load(out) as back, nsbind.image.load(archive) as orig:
        assert back.config == orig.config and back.platform == orig.platform
        assert back.tags == ("nsbind-save:latest",)
    original = image_tree(archive, str(tmp_path / "s1"))
    assert image_tree(out, str(tmp_path / "s2")) == original
    need("skopeo")
    info = json.loads(subprocess.run(["skopeo", "inspect", f"docker-archive:{out}"],
                                     capture_output=True, text=True, check=True,
                                     timeout=60).stdout)
    assert info["Env"] == ["PATH=/bin", "A=b"] and len(info["Layers"]) == 1
    oci = str(tmp_path / "oci")
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{out}", f"oci:{oci}:copied"],
                   capture_output=True, check=True, timeout=60)
    assert image_tree(oci, str(tmp_path / "s3")) == original
    info = json.loads(subprocess.run(["skopeo", "inspect", f"oci-archive:{out}"],
                                     capture_output=True, text=True, check=True,
                                     timeout=60).stdout)
    assert info["Labels"] == {"x": "y"}


@pytest.mark.unprivileged
def test_save_is_reproducible_and_replaces_a_file(stored: tuple[str, str],
                                                  tmp_path: pathlib.Path) -> None:
    store, _ = stored
    one, two = str(tmp_path / "one.tar"), str(tmp_path / "two.tar")
    cli("save", NAME, "-o", one, "--store", store)
    pathlib.Path(two).write_text("old")
    cli("save", "nsbind-save:latest", "-o", two, "--store", store)
    assert pathlib.Path(one).read_bytes() == pathlib.Path(two).read_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted(["one.tar", "two.tar", "rootfs", "layer.tar",
                                                   "image.tar", "store"])


@pytest.mark.unprivileged
def test_import_a_directory_then_save_and_load(tmp_path: pathlib.Path) -> None:
    rootfs = build_rootfs(tmp_path / "rootfs")
    store = str(tmp_path / "store")
    digest = cli("import", rootfs, "imported:v1", "--store", store).strip()
    assert digest.startswith("sha256:")
    assert "imported:v1" in cli("ls", "--store", store)
    out = str(tmp_path / "imported.tar")
    cli("save", "imported:v1", "-o", out, "--store", store)
    with nsbind.image.load(out) as img:
        assert img.config_digest == digest  # layer_tar is reproducible: the same config
        assert img.tags == ("imported:v1",) and img.platform.startswith("linux/")
    stored_tree = tree_of(Store(store).layer_path(img.layers[0].diff_id))
    assert image_tree(out, str(tmp_path / "s2")) == stored_tree
    assert tree_of(rootfs).keys() == stored_tree.keys()
    # a tarball of it, through the store's unpacker
    layer = tar_rootfs(rootfs, str(tmp_path / "rootfs.tar"))
    cli("import", layer, "fromtar", "--store", store)
    out2 = str(tmp_path / "fromtar.tar")
    cli("save", "fromtar", "-o", out2, "--store", store)
    assert image_tree(out2, str(tmp_path / "s3")).keys() == stored_tree.keys()


def test_podman_loads_a_saved_image(stored: tuple[str, str], tmp_path: pathlib.Path) -> None:
    need("podman")
    store, _ = stored
    out = str(tmp_path / "saved.tar")
    cli("save", "nsbind-save", "-o", out, "--store", store)
    base = os.path.realpath(tempfile.mkdtemp(prefix="pm-"))  # podman: runroot < 50 chars
    pathlib.Path(base, "containers.conf").write_text(
        f'[engine]\nevents_logger = "file"\nevents_logfile_path = "{base}/events.log"\n'
        f'lock_type = "file"\nstatic_dir = "{base}/root/libpod"\n'
        f'volume_path = "{base}/root/volumes"\n[network]\nnetwork_config_dir = "{base}/net"\n')
    pathlib.Path(base, "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{base}/runroot"\ngraphroot = "{base}/root"\n')
    env = dict(os.environ, CONTAINERS_CONF=f"{base}/containers.conf",
               CONTAINERS_STORAGE_CONF=f"{base}/storage.conf",
               CONTAINERS_REGISTRIES_CONF=os.devnull)
    flags = ["--root", f"{base}/root", "--runroot", f"{base}/runroot", "--tmpdir",
             f"{base}/tmp", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
             "--events-backend", "file"]
    watched = ("/run", "/run/containers", "/var/lib/containers")
    before = {d: set(os.listdir(d)) if os.path.isdir(d) else None for d in watched}
    try:
        proc = subprocess.run(["podman", *flags, "load", "-i", out], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "nsbind-save:latest" in proc.stdout
        listed = subprocess.run(["podman", *flags, "images", "--format", "{{.Repository}}"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert "docker.io/library/nsbind-save" in listed.stdout
    finally:
        subprocess.run(["podman", *flags, "rmi", "-af"], env=env, capture_output=True,
                       timeout=60)
        shutil.rmtree(base, ignore_errors=True)
        for d, names in before.items():  # what podman made there, gone
            if names is None:
                shutil.rmtree(d, ignore_errors=True)
            elif os.path.isdir(d):
                for name in set(os.listdir(d)) - names:
                    shutil.rmtree(os.path.join(d, name), ignore_errors=True)


@pytest.mark.unprivileged
def test_bad_input_is_one_line_and_writes_nothing(stored: tuple[str, str],
                                                  tmp_path: pathlib.Path) -> None:
    store, _ = stored
    out = tmp_path / "out.tar"
    err = cli("save", "nsbind-save", "nope", "-o", str(out), "--store", store, code=1)
    assert err.startswith("nsbind image save: ") and err.count("\n") == 1 and "nope" in err
    err = cli("save", "nsbind-save", "-o", str(tmp_path / "missing" / "x.tar"),
                 "--store", store, code=1)
    assert err.count("\n") == 1 and "does not exist" in err
    os.mkdir(out)
    err = cli("save", "nsbind-save", "-o", str(out), "--store", store, code=1)
    assert err.count("\n") == 1 and "not a regular file" in err
    os.rmdir(out)
    err = cli("import", str(tmp_path / "absent"), "x", "--store", store, code=1)
    assert err.startswith("nsbind image import: ") and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["image.tar", "layer.tar", "rootfs", "store"]
    assert os.listdir(os.path.join(store, "tmp")) == []
