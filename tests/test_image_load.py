"""Loading and verifying real images written by other projects (../shared/testdata/images)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pathlib
import shutil
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from nsbind import image
from nsbind.image import ImageError

IMAGES = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "images"

Loader = Callable[..., image.Image]

pytestmark = [pytest.mark.skipif(not IMAGES.is_dir(), reason=f"no test images at {IMAGES}"),
              pytest.mark.unprivileged]


@pytest.fixture
def load() -> Iterator[Loader]:
    """image.load for the shared test images; every loaded image is closed afterwards."""
    opened: list[image.Image] = []

    def _load(name: str, **kw: Any) -> image.Image:
        img = image.load(str(IMAGES / name), **kw)
        opened.append(img)
        return img

    yield _load
    for img in opened:
        img.close()


def test_classic_docker_save(load: Loader) -> None:
    img = load("ggcr-test_image_1.tar")
    img.verify()
    assert img.tags == ("bazel/v1/tarball:test_image_1",)
    assert img.platform == "linux/amd64"
    assert len(img.layers) == 1 and img.layers[0].compression is None


def test_bundle_needs_a_tag_and_selects_by_it(load: Loader) -> None:
    with pytest.raises(ImageError, match="holds 2 images; choose one by tag"):
        load("ggcr-test_bundle.tar")
    for tag in ("test_image_1", "test_image_2"):
        assert load("ggcr-test_bundle.tar", tag=tag).tags[0] == tag
    with pytest.raises(ImageError, match="no image tagged 'nope'"):
        load("ggcr-test_bundle.tar", tag="nope")


def test_layer_that_is_a_symlink_inside_the_archive(load: Loader) -> None:
    with tarfile.open(IMAGES / "ggcr-test_link.tar") as t:
        member = t.extractfile("manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
    for entry in manifest:
        img = load("ggcr-test_link.tar", tag=entry["RepoTags"][0])
        img.verify()  # the linked layer.tar is followed inside the archive, and hashes right


def test_gzip_layers_and_a_config_named_with_a_colon(load: Loader) -> None:
    img = load("ggcr-whiteout_dir.tar")
    img.verify()
    assert [layer.compression for layer in img.layers] == ["gzip"] * 4


def test_docker_25_hybrid_save_for_arm64_is_refused_up_front(load: Loader) -> None:
    img = load("ggcr-hello-world-v25.tar")
    img.verify()
    assert img.platform == "linux/arm64"
    assert img.layers[0].digest is not None and img.layers[0].size is not None
    with pytest.raises(ImageError, match="is for linux/arm64, this host is linux/amd64"):
        img.check_platform(("linux", "amd64"))


@pytest.mark.parametrize(("name", "message"), [
    ("ggcr-null_manifest.tar", "manifest.json must be a non-empty list of images, not null"),
    ("ggcr-no_manifest.tar", "no manifest.json: this is a legacy docker save"),
])
def test_malformed_docker_saves_give_clean_errors(load: Loader, name: str,
                                                   message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load(name)


def test_oci_layout_multi_platform_selects_the_host_and_others(load: Loader) -> None:
    img = load("regclient-testrepo", tag="v3", platform=("linux", "amd64"))
    img.verify()
    assert "v3" in img.tags and len(img.layers) == 5
    assert img.platform == "linux/amd64"
    arm = load("regclient-testrepo", tag="v3", platform=("linux", "arm64"))
    assert arm.architecture == "arm64"
    with pytest.raises(ImageError, match=r"no image for linux/s390x in the index \(it has: "):
        load("regclient-testrepo", tag="v3", platform=("linux", "s390x"))


def test_oci_layout_refuses_artifacts_and_needs_a_tag(load: Loader) -> None:
    with pytest.raises(ImageError, match="choose one by tag"):
        load("regclient-testrepo")
    with pytest.raises(ImageError, match="not a filesystem layer"):
        load("regclient-testrepo", tag="a-docker")


def test_tampered_layer_is_refused_naming_both_digests(load: Loader,
                                                       tmp_path: pathlib.Path) -> None:
    layout = tmp_path / "layout"
    shutil.copytree(IMAGES / "regclient-testrepo", layout)
    with image.load(str(layout), tag="v1", platform=("linux", "amd64")) as img:
        digest = img.layers[0].digest
    assert digest is not None
    victim = layout / "blobs" / "sha256" / digest.split(":")[1]
    data = gzip.decompress(victim.read_bytes())
    victim.chmod(0o644)  # the copy keeps the test image's read-only mode
    victim.write_bytes(gzip.compress(data + b"\0" * 512))
    with pytest.raises(ImageError, match=r"blob digest mismatch: expected sha256:[0-9a-f]{64}, "
                                         r"got sha256:[0-9a-f]{64}"):
        load(str(layout), tag="v1", platform=("linux", "amd64")).verify()


def test_tampered_uncompressed_layer_fails_on_diff_id(load: Loader, tmp_path: pathlib.Path) -> None:
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    layer = body.getvalue()
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [wrong]}}).encode()
    archive = tmp_path / "save.tar"
    with tarfile.open(archive, "w") as t:
        for name, data in (("layer.tar", layer), ("config.json", config),
                           ("manifest.json", json.dumps([{"Config": "config.json",
                                                          "Layers": ["layer.tar"],
                                                          "RepoTags": ["x:y"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageError, match=rf"layer 0: diff_id mismatch: expected {wrong}"):
        load(str(archive)).verify()


def test_links_leaving_the_archive_are_refused(load: Loader, tmp_path: pathlib.Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as t:
        link = tarfile.TarInfo("manifest.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../etc/passwd"
        t.addfile(link)
    with pytest.raises(ImageError, match="links outside the archive"):
        load(str(archive))
