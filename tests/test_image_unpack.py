"""Layer extraction, the layer store and flattening: real images written by other
projects, and the layer attacks of SECURITY.md built here with tarfile."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pathlib
import shutil
import stat
import tarfile
import tempfile

import pytest

from helpers import forked, run_forked, tree
from nsbind import Namespaces, features, mounts
from nsbind.image import (
    ImageError,
    Layer,
    Store,
    extract_layer,
    flatten,
    load,
    unpack_tar,
)

IMAGES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "images"


def image_file(name: str) -> str:
    path = IMAGES / name
    if not path.exists():
        pytest.skip(f"{path} is missing (the shared test images)")
    return str(path)


Entry = tuple[str, str, object]  # (name, kind, data/target)


def make_tar(*entries: Entry, gz: bool = False) -> bytes:
    """A layer tar: ("f", "file", b"data"), ("d", "dir", None), ("l", "sym", "target"),
    ("h", "link", "target"), ("c", "chr", (1, 3)), ("p", "fifo", None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            info.mode = 0o755 if kind == "dir" else 0o644
            payload = None
            if kind == "file":
                assert isinstance(data, bytes)
                payload = io.BytesIO(data)
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("sym", "link"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                assert isinstance(data, str)
                info.linkname = data
            elif kind in ("chr", "blk"):
                info.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                assert isinstance(data, tuple)
                info.devmajor, info.devminor = data
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "xattr":
                assert isinstance(data, dict)
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in data.items()}
                payload = io.BytesIO(b"x")
                info.size = 1
            tar.addfile(info, payload)
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


def layer_of(data: bytes, *, gz: bool = False, diff_id: str | None = None) -> Layer:
    raw = gzip.decompress(data) if gz else data
    return Layer(media_type="application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""),
                 size=len(data), digest="sha256:" + hashlib.sha256(data).hexdigest(),
                 diff_id=diff_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
                 open=lambda: io.BytesIO(data))


def opaque_xattr() -> str:
    """The xattr an overlay-form unpack marks an opaque directory with: trusted.* needs
    CAP_SYS_ADMIN, so without root the user.* form (overlayfs' "userxattr")."""
    return "trusted.overlay.opaque" if os.geteuid() == 0 else "user.overlay.opaque"


def extract(tmp_path: pathlib.Path, *layers: bytes, mode: str = "apply") -> pathlib.Path:
    dest = tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    for data in layers:
        unpack_tar(io.BytesIO(data), str(dest), whiteouts=mode, label="test layer")  # type: ignore[arg-type]
    return dest


# ------------------------------------------------------------ real images


EXPECTED = {
    ("ggcr-test_image_1.tar", None): {"bar": "-r-xr-xr-x", "foo": "-r-xr-xr-x"},
    ("ggcr-whiteout_image.tar", None): {"bar.txt": "-r-xr-xr-x"},
    ("ggcr-overwritten_file.tar", None): {"bar.txt": "-r-xr-xr-x",
                                          "foo.txt": "lrwxrwxrwx -> bar.txt"},
    ("ggcr-whiteout_dir.tar", None): {"a": "drwxr-xr-x", "a/baz": "-rw-r--r--",
                                      "b": "drwxr-xr-x", "b/bar": "-rw-r--r--"},
    ("ggcr-test_link.tar", "bazel/v1/tarball:test_image_3"): {
        "bar": "-r-xr-xr-x", "foo": "-r-xr-xr-x", "test": "-rw-r-----"},
    ("ggcr-hello-world-v25.tar", None): {"hello": "-rwxr-xr-x"},
    ("regclient-testrepo", "v3"): {"base.txt": "-rw-r--r--", "dir": "drwxr-xr-x",
                                   "dir/layer.tar": "-rw-r--r--", "layer1": "-rw-r--r--",
                                   "layer2": "-rw-r--r--", "layer3": "-rw-r--r--"},
}


def _shape(entries: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, desc in entries.items():
        fields = desc.split()
        out[name] = fields[0] + (" -> " + fields[-1] if "->" in fields else "")
    return out


@pytest.mark.unprivileged
@pytest.mark.parametrize(("name", "tag"), list(EXPECTED))
def test_real_images_flatten_to_the_expected_rootfs(tmp_path: pathlib.Path, name: str,
                                                    tag: str | None) -> None:
    with load(image_file(name), tag=tag) as img:
        flatten(img, str(tmp_path / "rootfs"))
    assert _shape(tree(tmp_path / "rootfs")) == EXPECTED[(name, tag)]
    assert [p.name for p in tmp_path.iterdir()] == ["rootfs"]  # the temp dir is gone


@forked
def test_store_layers_as_an_overlay_equal_the_flattened_rootfs(tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "store"))
    for (name, tag), _ in EXPECTED.items():
        with load(image_file(name), tag=tag) as img:
            dirs = store.unpack(img)
            flatten(img, str(tmp_path / "flat"))
            if len(dirs) > 1 and not features.lowerdir_plus():  # one lowerdir= string
                dirs = [store.short_path(layer.diff_id) for layer in img.layers]
        merged = tmp_path / "merged"
        merged.mkdir()
        with Namespaces(mnt=True):
            if len(dirs) == 1:
                mounts.apply([mounts.bind(dirs[0], merged, readonly=True)])
            else:
                mounts.apply([mounts.overlay_step(merged, list(reversed(dirs)))])
            assert tree(merged) == tree(tmp_path / "flat"), name
        merged.rmdir()
        shutil.rmtree(tmp_path / "flat")


@forked
def test_a_store_root_of_40_layers_before_lowerdir_plus(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Store.rootfs on a kernel without lowerdir+ (forced here; the 6.1 guest's own):
    40 layers named by their short links (l/<4 hex>) fit fsconfig's 255 bytes, where
    their 64-hex directories would need 2.6 KB; gc removes the links of removed layers."""
    from clients import build_rootfs, oci_archive, tar_rootfs
    from nsbind import spawn

    monkeypatch.setattr(features, "lowerdir_plus", lambda: False)
    tars = [tar_rootfs(build_rootfs(tmp_path / "base"), str(tmp_path / "base.tar"))]
    for i in range(1, 40):
        path = tmp_path / f"layer{i}.tar"
        with tarfile.open(path, "w") as tar:
            for name, text in ((f"f{i}", str(i)), ("shared", f"layer {i}")):
                info = tarfile.TarInfo(name)
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text.encode()))
        tars.append(str(path))
    archive = oci_archive(tars, str(tmp_path / "img.tar"), "localhost/forty:1")
    store = Store(str(tmp_path / "store"))
    for d in ("upper", "work"):
        (tmp_path / d).mkdir()
    with load(archive) as img:
        root = store.rootfs(img, tmp_path / "upper", tmp_path / "work")
        digest = img.config_digest
    links = sorted(os.listdir(tmp_path / "store" / "l"))
    assert len(links) == 40 and all(len(n) >= 4 for n in links)
    with root, spawn(["/bin/sh", "-c", "cat /shared /f1 /f39"], rootfs=root,
                     namespaces=Namespaces(mnt=True, pid=True), stdout=-1) as proc:
        out, _ = proc.communicate(timeout=30)
    assert out == b"layer 39139"  # the top layer's file wins
    store.remove(digest)
    store.gc()
    assert os.listdir(tmp_path / "store" / "l") == []


@pytest.mark.unprivileged
def test_bare_regclient_layers_in_both_forms(tmp_path: pathlib.Path) -> None:
    with open(image_file("regclient-layer.tar"), "rb") as f:
        base = f.read()
    with open(image_file("regclient-layer-wh.tar"), "rb") as f:
        wh = f.read()
    flat = extract(tmp_path, base, wh)
    assert sorted(tree(flat)) == ["exdir", "layer1.txt", "layer3.txt"]
    # numeric ids, not "bmitch"; without root no owner is set: the files stay the caller's
    assert os.stat(flat / "layer1.txt").st_uid == (1000 if os.geteuid() == 0 else os.geteuid())
    upper = tmp_path / "upper"
    upper.mkdir()
    unpack_tar(io.BytesIO(wh), str(upper), whiteouts="overlay", label="wh")
    st = os.lstat(upper / "layer2.txt")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(upper / "exdir", opaque_xattr()) == b"y"


@pytest.mark.unprivileged
def test_second_image_unpacks_only_its_new_layers(tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "store"))
    calls: list[tuple[int, bool]] = []
    with load(image_file("ggcr-test_link.tar"), tag="bazel/v1/tarball:test_image_1") as img:
        first = store.unpack(img, on_layer=lambda i, _, done: calls.append((i, done)))
    assert calls == [(0, True)]
    calls.clear()
    with load(image_file("ggcr-test_link.tar"), tag="bazel/v1/tarball:test_image_3") as img:
        second = store.unpack(img, on_layer=lambda i, _, done: calls.append((i, done)))
    assert calls == [(0, False), (1, True)]  # the shared bottom layer was not unpacked again
    assert second[0] == first[0]
    assert [i.tags for i in store.images()] == [("bazel/v1/tarball:test_image_1",),
                                                 ("bazel/v1/tarball:test_image_3",)]


@pytest.mark.unprivileged
def test_remove_and_gc(tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "store"))
    for tag in ("bazel/v1/tarball:test_image_1", "bazel/v1/tarball:test_image_3"):
        with load(image_file("ggcr-test_link.tar"), tag=tag) as img:
            store.unpack(img)
    stale = tmp_path / "store" / "tmp" / (64 * "a" + ".crashed")
    stale.mkdir()
    (stale / "half").write_text("x")
    store.remove("bazel/v1/tarball:test_image_3")
    removed = store.gc()
    assert len(removed) == 1  # the top layer only the removed image used
    assert not stale.exists()
    assert [i.tags for i in store.images()] == [("bazel/v1/tarball:test_image_1",)]
    with pytest.raises(ImageError, match="no image 'nope'"):
        store.remove("nope")


def _unpack_in_child(store_path: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with load(image_file("regclient-testrepo"), tag="v3") as img:
                Store(store_path).unpack(img)
            code = 0
        finally:
            os._exit(code)
    return pid


@pytest.mark.unprivileged
def test_concurrent_unpacks_of_the_same_image_are_safe(tmp_path: pathlib.Path) -> None:
    store = str(tmp_path / "store")
    Store(store)
    pids = [_unpack_in_child(store) for _ in range(4)]
    assert [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids] == [0] * 4
    assert len(os.listdir(os.path.join(store, "layers", "sha256"))) == 5
    assert os.listdir(os.path.join(store, "tmp")) == []


@pytest.mark.unprivileged
def test_wrong_digest_leaves_no_layer_in_the_store(tmp_path: pathlib.Path) -> None:
    data = make_tar(("f", "file", b"x"))
    store = Store(str(tmp_path / "store"))
    bad = layer_of(data, diff_id="sha256:" + "0" * 64)
    with pytest.raises(ImageError, match=r"diff_id mismatch: expected sha256:0{64}, got sha256:"):
        store.unpack_layer(bad, label="bad layer")
    assert not store.has_layer(bad.diff_id)
    assert os.listdir(tmp_path / "store" / "tmp") == []


@pytest.mark.unprivileged
def test_cve_2014_9357_gzip_bomb_hits_the_size_cap(tmp_path: pathlib.Path) -> None:
    data = make_tar(("zeros", "file", bytes(32 << 20)), gz=True)
    assert len(data) < 100_000
    store = Store(str(tmp_path / "store"), max_layer_bytes=8 << 20)
    with pytest.raises(ImageError, match=r"passes 8388608 bytes \(a decompression bomb"):
        store.unpack_layer(layer_of(data, gz=True), label="bomb")
    assert os.listdir(tmp_path / "store" / "tmp") == []


def test_metadata_is_preserved(tmp_path: pathlib.Path) -> None:
    cap = bytes.fromhex("0000000200200000000000000000000000000000")  # cap_net_bind_service
    data = make_tar(("d", "dir", None), ("d/f", "file", b"data"), ("l", "sym", "d/f"),
                    ("h", "link", "d/f"), ("null", "chr", (1, 3)), ("p", "fifo", None),
                    ("cap", "xattr", {"security.capability": cap.decode("latin-1"),
                                      "user.note": "hi"}))
    dest = extract(tmp_path, data)
    t = tree(dest)
    assert t["d"].startswith("drwxr-xr-x 0:0") and t["l"].endswith("-> d/f")
    assert os.stat(dest / "h").st_ino == os.stat(dest / "d" / "f").st_ino
    assert t["null"] == "crw-r--r-- 0:0 1:3" and t["p"].startswith("prw-r--r--")
    assert os.stat(dest / "d" / "f").st_mtime == 1_600_000_000
    assert os.stat(dest / "d").st_mtime == 1_600_000_000  # set after its children
    assert os.getxattr(dest / "cap", "user.note") == b"hi"
    assert os.getxattr(dest / "cap", "security.capability")[:4] == cap[:4]


# ------------------------------------------------------------ layer attacks


ATTACKS: dict[str, tuple[list[Entry], str]] = {
    "dotdot member": ([("../victim/dotdot", "file", b"x")], "'..' in the member name"),
    "absolute dotdot member": ([("/../victim/slash-dotdot", "file", b"x")],
                               "absolute member name"),
    "write through an escaping symlink": (
        [("link", "sym", "../victim"), ("link/passwd", "file", b"pwned")],
        "reached through a symlink that points outside"),
    "write through a chained escaping symlink": (
        [("a", "sym", "b/../.."), ("b", "dir", None), ("a/victim/passwd", "file", b"x")],
        "reached through a symlink that points outside"),
    "symlink then a file of the same name": (
        [("passwd", "sym", "../victim/passwd"), ("passwd", "file", b"pwned")],
        "a duplicate entry"),
    "hardlink outside": ([("h", "link", "../../victim/passwd")], "'..' in the hardlink target"),
    "hardlink through a symlink": (
        [("loop", "sym", "../victim"), ("h", "link", "loop/passwd")],
        "reached through a symlink that points outside"),
    "entry under a regular file": ([("f", "file", b"x"), ("f/x", "file", b"y")],
                                   "not a directory"),
    "whiteout of dot-dot": ([(".wh..", "file", b"")], "a whiteout of '.' or '..'"),
    "hardlink to a missing target": ([("h", "link", "nothere")], "not in the layer"),
}


@pytest.mark.unprivileged
@pytest.mark.parametrize("mode", ["apply", "overlay"])
@pytest.mark.parametrize("case", list(ATTACKS))
def test_cve_2014_6407_and_2014_9356_layer_attacks_are_refused(
        tmp_path: pathlib.Path, victim: pathlib.Path, case: str, mode: str) -> None:
    entries, why = ATTACKS[case]
    with pytest.raises(ImageError, match=why) as info:
        extract(tmp_path, make_tar(*entries), mode=mode)
    assert "nothing was written outside the layer" in str(info.value)


@pytest.mark.unprivileged
def test_absolute_symlinks_resolve_inside_the_layer(tmp_path: pathlib.Path,
                                                    victim: pathlib.Path) -> None:
    """containerd's TestBreakouts: `localetc -> /etc`, then a write to localetc/unbroken."""
    dest = extract(tmp_path, make_tar(("etc", "dir", None), ("localetc", "sym", "/etc"),
                                      ("localetc/unbroken", "file", b"inside"),
                                      ("rel", "sym", f"{victim}"),
                                      ("rel/passwd", "file", b"inside too")))
    assert (dest / "etc" / "unbroken").read_text() == "inside"
    assert (dest / victim.relative_to("/") / "passwd").read_text() == "inside too"


@pytest.mark.unprivileged
def test_cve_2021_32760_metadata_never_goes_through_a_symlink(
        tmp_path: pathlib.Path, victim: pathlib.Path) -> None:
    """A lower layer's symlink to a host file, replaced by an upper layer's directory
    and file entries: the link is replaced, the target keeps its mode and owner."""
    lower = make_tar(("s", "sym", str(victim / "passwd")), ("t", "sym", str(victim)))
    upper = make_tar(("s", "dir", None), ("t", "file", b"new"))
    dest = extract(tmp_path, lower, upper)
    assert stat.S_ISDIR(os.lstat(dest / "s").st_mode)
    assert (dest / "t").read_text() == "new"


@pytest.mark.unprivileged
def test_whiteout_edges(tmp_path: pathlib.Path) -> None:
    lower = make_tar(("a", "file", b"1"), ("d", "dir", None), ("d/x", "file", b"2"))
    # opaque marker at the root; a whiteout whose target no lower layer has (and whose
    # parent does not exist); a whiteout of this layer's own entry does nothing
    upper = make_tar(("new", "file", b"3"), (".wh..wh..opq", "file", b""),
                     ("missing/.wh.ghost", "file", b""), ("new2", "file", b""),
                     (".wh.new2", "file", b""))
    flat = extract(tmp_path, lower, upper)
    assert sorted(tree(flat)) == ["missing", "new", "new2"]
    ovl = tmp_path / "ovl"
    ovl.mkdir()
    unpack_tar(io.BytesIO(upper), str(ovl), whiteouts="overlay", label="upper")
    assert os.getxattr(ovl, opaque_xattr()) == b"y"
    assert os.lstat(ovl / "missing" / "ghost").st_rdev == 0
    assert stat.S_ISREG(os.lstat(ovl / "new2").st_mode)


def _unpack_as_nobody(dest: str) -> list[str]:
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    layer = layer_of(make_tar(("null", "chr", (1, 3)), ("f", "file", b"x"),
                              ("d/.wh..wh..opq", "file", b""), (".wh.gone", "file", b"")))
    stats = extract_layer(layer, dest, whiteouts="overlay", label="devices")
    return stats.skipped


def test_unprivileged_unpack_skips_devices_and_writes_user_overlay_markers() -> None:
    dest = tempfile.mkdtemp(prefix="nsbind-test-")  # /tmp: reachable for nobody
    try:
        os.chmod(dest, 0o777)
        assert run_forked(_unpack_as_nobody, dest) == ["null: device nodes need CAP_MKNOD"]
        assert sorted(os.listdir(dest)) == ["d", "f", "gone"]
        assert os.stat(os.path.join(dest, "f")).st_uid == 65534
        assert os.lstat(os.path.join(dest, "gone")).st_rdev == 0  # a whiteout, unprivileged
        assert os.getxattr(os.path.join(dest, "d"), "user.overlay.opaque") == b"y"
    finally:
        shutil.rmtree(dest)
