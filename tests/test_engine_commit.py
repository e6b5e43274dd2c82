"""``nsbind commit``: a container's changes as a new image, end to end through the
installed command (real overlayfs upper directories, real freezer), and the pieces
under it: the layer writer on hostile trees and the ``--change`` instructions."""

from __future__ import annotations

import io
import json
import os
import pathlib
import stat
import tarfile
import time
from collections.abc import Iterator

import pytest

from clients import build_rootfs, oci_archive, tar_rootfs
from enginecli import Engine
from nsbind.image import ImageConfig, ImageError
from nsbind.image.changes import apply_changes
from nsbind.image.layertar import layer_tar

IMG = "localhost/base:1"


@pytest.fixture(scope="module")
def base_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    """busybox with /data/{old1,old2} and /gone, to be changed by the containers."""
    base = tmp_path_factory.mktemp("commit-image")
    root = build_rootfs(base / "rootfs")
    os.mkdir(os.path.join(root, "data"))
    for name in ("data/old1", "data/old2", "gone"):
        pathlib.Path(root, name).write_text(name)
    layer = tar_rootfs(root, str(base / "layer.tar"))
    return oci_archive(layer, str(base / "base.tar"), IMG,
                       config={"Env": ["PATH=/bin", "KEEP=1"], "Cmd": ["sh"]})


@pytest.fixture
def engine(tmp_path: pathlib.Path, cgroup_parent: str, base_archive: str) -> Iterator[Engine]:
    eng = Engine(tmp_path, cgroup_parent)
    eng("image", "load", "-q", base_archive)
    yield eng
    for record in eng.containers():
        eng("rm", "-f", record["Id"], check=False)
    assert eng.left() == []


def _images(engine: Engine) -> list[str]:
    return engine("image", "ls", "--store", engine.store).stdout.splitlines()[1:]  # header


CHANGES = ("rm /gone; rm -rf /data; mkdir /data; echo new > /data/new; echo hi > /new; "
           "ln /new /hard; ln -s /etc/shadow /link; mkfifo /fifo; chmod 4750 /new; "
           "echo 'edited hosts' >> /etc/hosts")


def test_commit_stores_the_changes_as_one_layer_on_the_image(engine: Engine) -> None:
    engine("run", "--name", "c1", IMG, "sh", "-c", CHANGES)
    digest = engine("commit", "--change", "ENV COMMITTED=yes",
                    "--change", 'CMD ["cat", "/data/new"]', "c1", "localhost/done:1"
                    ).stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71
    assert any("localhost/done:1" in line and "2 layers" in line for line in _images(engine))
    # the image's command and environment: the base's, changed
    assert engine("run", "--rm", "localhost/done:1").stdout == "new\n"
    out = engine("run", "--rm", "localhost/done:1", "sh", "-c",
                 "echo $KEEP $COMMITTED; ls /data; test -e /gone || echo gone; "
                 "stat -c '%a %h %F' /new; readlink /link; stat -c %F /fifo; "
                 "grep -c edited /etc/hosts; true").stdout.split("\n")
    assert out[:2] == ["1 yes", "new"]  # /data was replaced: opaque, old1/old2 hidden
    assert out[2] == "gone"  # deleted: a whiteout
    assert out[3] == "4750 2 regular file"  # the mode and the hard link kept
    assert out[4] == "/etc/shadow"  # the symlink kept as a link, never followed
    assert out[5] == "fifo"  # a FIFO written as an entry, never opened
    assert out[6] == "0"  # /etc/hosts is the engine's file: not committed
    engine("rm", "c1")


def test_commit_of_a_running_container_freezes_it_and_resumes_it(engine: Engine) -> None:
    engine("run", "-d", "--name", "live", IMG, "sh", "-c",
           "echo during > /state; exec sleep 60")
    cid = json.loads(engine("inspect", "live").stdout)[0]["Id"]
    upper = pathlib.Path(engine.store, "containers", cid, "upper")
    for _ in range(500):
        if (upper / "state").exists():
            break
        time.sleep(0.02)
    engine("commit", "live", "localhost/live:1")
    assert json.loads(engine("inspect", "live").stdout)[0]["State"]["Status"] == "running"
    assert engine("run", "--rm", "localhost/live:1", "cat", "/state").stdout == "during\n"
    engine("rm", "-f", "live")


def test_a_tag_moves_to_the_newer_commit(engine: Engine) -> None:
    engine("run", "--name", "ca", IMG, "sh", "-c", "echo 1 > /v")
    first = engine("commit", "ca", "localhost/moving:1").stdout.strip()
    engine("run", "--name", "cb", IMG, "sh", "-c", "echo 2 > /v")
    second = engine("commit", "cb", "localhost/moving:1").stdout.strip()
    assert first != second
    listed = {line.split()[0]: line for line in _images(engine)}
    assert "<none>" in listed[first[7:19]] and "moving:1" in listed[second[7:19]]
    assert engine("run", "--rm", "localhost/moving:1", "cat", "/v").stdout == "2\n"
    # the same change on the same image is the same image
    assert engine("commit", "cb").stdout.strip() == second
    engine("rm", "ca", "cb")


@pytest.mark.parametrize("args, words", [
    (["nope", "x:1"], "nope"),
    (["cc", "--change", "FROM scratch"], "FROM is not one of"),
    (["cc", "--change", "CMD [1]"], "not a JSON array of strings"),
    (["cc", "localhost/x@sha256:" + "0" * 64], "not a tag"),
    (["cc", "Bad:Name"], "must be lowercase"),
])
def test_bad_input_is_one_line_and_stores_nothing(engine: Engine, args: list[str],
                                                  words: str) -> None:
    engine("run", "--name", "cc", IMG, "true")
    before = _images(engine)
    proc = engine("commit", *args, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("nsbind commit: ") and proc.stderr.count("\n") == 1
    assert words in proc.stderr
    assert _images(engine) == before
    assert os.listdir(os.path.join(engine.store, "tmp")) == []
    engine("rm", "cc")


def test_a_container_without_an_image_is_refused(engine: Engine,
                                                 tmp_path: pathlib.Path) -> None:
    root = build_rootfs(tmp_path / "plain")
    engine("run", "--name", "rr", "--rootfs", root, "true")
    proc = engine("commit", "rr", "x:1", check=False)
    assert proc.returncode == 1 and "not an image" in proc.stderr
    engine("rm", "rr")


# ------------------------------------------------------------- the layer writer


def _entries(tree: pathlib.Path, max_entries: int = 1000, max_depth: int = 100,
             max_bytes: int = 1 << 20) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    layer_tar(str(tree), buf, label="t", max_entries=max_entries, max_depth=max_depth,
              max_bytes=max_bytes)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_layer_tar_writes_overlay_markers_as_whiteouts(tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "upper"
    (tree / "dir").mkdir(parents=True)
    (tree / "dir" / "f").write_text("x")
    os.setxattr(tree / "dir", "trusted.overlay.opaque", b"y")
    os.mknod(tree / "deleted", stat.S_IFCHR | 0o600, 0)
    os.mkfifo(tree / "fifo")
    os.symlink("/etc/shadow", tree / "link")
    found = _entries(tree)
    assert sorted(found) == [".wh.deleted", "dir", "dir/.wh..wh..opq", "dir/f", "fifo", "link"]
    assert found["fifo"].isfifo() and found["link"].linkname == "/etc/shadow"
    assert "SCHILY.xattr.trusted.overlay.opaque" not in found["dir"].pax_headers


@pytest.mark.parametrize("key", ["trusted.overlay.redirect", "trusted.overlay.metacopy"])
def test_layer_tar_refuses_partial_overlay_entries(tmp_path: pathlib.Path, key: str) -> None:
    (tmp_path / "upper" / "moved").mkdir(parents=True)
    os.setxattr(tmp_path / "upper" / "moved", key, b"/elsewhere" if "redirect" in key else b"")
    with pytest.raises(ImageError, match="moved is an overlayfs"):
        _entries(tmp_path / "upper")


def test_layer_tar_caps_a_tree(tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "upper"
    deep = tree.joinpath(*["d"] * 6)
    deep.mkdir(parents=True)
    with pytest.raises(ImageError, match="deeper than 3 levels"):
        _entries(tree, max_depth=3)
    with pytest.raises(ImageError, match="more than 4 entries"):
        _entries(tree, max_entries=4)
    (tree / "big").write_bytes(b"x" * 5000)
    with pytest.raises(ImageError, match="more than 4096 bytes"):
        _entries(tree, max_bytes=4096)


# ------------------------------------------------------------- --change


@pytest.mark.unprivileged
def test_changes_apply_as_a_dockerfile_would() -> None:
    base = ImageConfig(env=("PATH=/bin", "A=1"), cmd=("sh",), working_dir="/srv")
    got = apply_changes(base, [
        "ENV A=2 B='two words'", "ENV C three words", "EXPOSE 80 53/udp", "LABEL a=b c=d",
        "USER 1000:1000", "WORKDIR app", "VOLUME /data /cache", 'ENTRYPOINT ["/init"]',
        "STOPSIGNAL SIGINT", "cmd echo hi"])
    assert got.env == ("PATH=/bin", "A=2", "B=two words", "C=three words")
    assert got.exposed_ports == ("80/tcp", "53/udp") and got.labels == {"a": "b", "c": "d"}
    assert (got.user, got.working_dir, got.volumes) == ("1000:1000", "/srv/app",
                                                        ("/data", "/cache"))
    assert got.entrypoint == ("/init",) and got.stop_signal == "SIGINT"
    assert got.cmd == ("/bin/sh", "-c", "echo hi")
    assert apply_changes(base, ['ENTRYPOINT ["/x"]']).cmd == ()  # as a Dockerfile drops it


@pytest.mark.parametrize("change, words", [
    ("RUN make", "RUN is not one of"), ("", "an empty change"), ("ENV", "needs a value"),
    ("EXPOSE 70000", "PORT"), ("EXPOSE 80/icmp", "PORT"), ("LABEL novalue", "KEY=VALUE"),
    ("VOLUME data", "absolute"), ('CMD ["a", 1]', "JSON array"), ("USER a\0b", "NUL"),
    ("ENV A='unclosed", "closing quotation"),
])
@pytest.mark.unprivileged
def test_changes_refused_name_the_change(change: str, words: str) -> None:
    with pytest.raises(ImageError, match=words):
        apply_changes(ImageConfig(), [change])
