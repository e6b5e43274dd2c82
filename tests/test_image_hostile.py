"""Hostile image metadata and files: docker saves (as tar and as a directory) and OCI
layouts built here with real FIFOs, device nodes and malformed JSON.  Loading
either works or raises an ImageError naming the file and the field; nothing blocks,
nothing but a regular file is opened, and hypothesis fuzzes the parsers."""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import pathlib
import socket
import tarfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import forked, private_mount_ns
from nsbind import image, mounts
from nsbind.image import ImageConfig, ImageError, Layer, cli
from nsbind.image.cli import describe
from nsbind.image.model import MAX_JSON_BYTES, MAX_JSON_DEPTH

AMD64 = ("linux", "amd64")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
TAR = "application/vnd.oci.image.layer.v1.tar"
REF = "org.opencontainers.image.ref.name"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def enc(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


LAYER = layer_tar()


def config_doc() -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": None,
                       "WorkingDir": "/", "User": "app", "ExposedPorts": {"80/tcp": {}},
                       "Volumes": {"/data": {}}, "Labels": {"a": "b"}},
            "rootfs": {"type": "layers", "diff_ids": [sha(LAYER)]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD x"}]}


def docker_manifest() -> list[dict[str, Any]]:
    return [{"Config": "config.json", "RepoTags": ["x:1"], "Layers": ["l1/layer.tar"]}]


def write(root: pathlib.Path, files: dict[str, Any]) -> pathlib.Path:
    """Files under ``root``: bytes, JSON values, or a callable making the node."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(value):
            value(path)
        else:
            path.write_bytes(enc(value))
    return root


def docker_dir(root: pathlib.Path, **over: Any) -> pathlib.Path:
    files: dict[str, Any] = {"manifest.json": docker_manifest(), "config.json": config_doc(),
                             "l1/layer.tar": LAYER}
    files.update({k.replace("__", "/").replace("_json", ".json"): v for k, v in over.items()})
    return write(root, files)


DEFAULT: Any = object()


def oci_dir(root: pathlib.Path, *, config: Any = DEFAULT, manifest: Any = DEFAULT,
            index: Any = DEFAULT, layout: Any = DEFAULT, layer: bytes = LAYER) -> pathlib.Path:
    """An OCI layout; ``config``/``manifest`` replace the documents (their blobs are
    stored under their real digests, and the parent points at them)."""
    cfg = enc(config_doc() if config is DEFAULT else config)
    if manifest is DEFAULT:
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": sha(cfg), "size": len(cfg)},
                    "layers": [{"mediaType": TAR, "digest": sha(layer), "size": len(layer)}]}
    man = enc(manifest)
    if index is DEFAULT:
        index = {"schemaVersion": 2, "manifests": [
            {"mediaType": MANIFEST, "digest": sha(man), "size": len(man),
             "annotations": {REF: "v1"}}]}
    blobs = {f"blobs/sha256/{sha(b)[7:]}": b for b in (cfg, man, layer)}
    return write(root, {"oci-layout": {"imageLayoutVersion": "1.0.0"} if layout is DEFAULT
                        else layout, "index.json": index, **blobs})


def as_tar(directory: pathlib.Path, dest: pathlib.Path,
           extra: tuple[tarfile.TarInfo, ...] = ()) -> pathlib.Path:
    with tarfile.open(dest, "w") as t:
        for info in extra:
            t.addfile(info)
        for path in sorted(directory.rglob("*")):
            name = str(path.relative_to(directory))
            if path.is_file() and name not in {i.name for i in extra}:
                t.add(path, name, recursive=False)
    return dest


def load(path: pathlib.Path, **kw: Any) -> image.Image:
    img = image.load(str(path), **kw)
    img.close()
    return img


def refused(path: pathlib.Path, match: str, **kw: Any) -> ImageError:
    with pytest.raises(ImageError, match=match) as info:
        load(path, **kw)
    return info.value


@pytest.mark.unprivileged
def test_the_builders_make_loadable_images(tmp_path: pathlib.Path) -> None:
    for img in (load(docker_dir(tmp_path / "d")),
                load(as_tar(docker_dir(tmp_path / "d"), tmp_path / "d.tar")),
                load(oci_dir(tmp_path / "o"), platform=AMD64),
                load(as_tar(oci_dir(tmp_path / "o"), tmp_path / "o.tar"), platform=AMD64)):
        assert img.config.cmd == ("sh",) and img.layers[0].diff_id == sha(LAYER)
    with image.load(str(oci_dir(tmp_path / "o")), platform=AMD64) as img:
        img.verify()


# ---- files that are not files -----------------------------------------------------------


def fifo(path: pathlib.Path) -> None:
    os.mkfifo(path)


def zero(path: pathlib.Path) -> None:
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))


def kmsg(path: pathlib.Path) -> None:
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 11))


def sock(path: pathlib.Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


def directory(path: pathlib.Path) -> None:
    path.mkdir()


NODES: dict[str, tuple[Callable[[pathlib.Path], None], str]] = {
    "fifo": (fifo, "a FIFO"), "zero": (zero, "a character device"),
    "kmsg": (kmsg, "a character device"), "socket": (sock, "a socket"),
    "dir": (directory, "a directory")}
DEVICES = ("zero", "kmsg")  # made with mknod: CAP_MKNOD


def nodes(names: list[str]) -> list[Any]:
    """``names`` as parameters; all but the device nodes also run unprivileged."""
    return [n if n in DEVICES else pytest.param(n, marks=pytest.mark.unprivileged)
            for n in names]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("node", nodes(sorted(NODES)))
def test_image_path_that_is_not_a_file_or_directory(tmp_path: pathlib.Path, node: str) -> None:
    make, label = NODES[node]
    if node == "dir":
        refused(tmp_path, "no manifest.json")  # an empty directory: not a FIFO read
        return
    make(tmp_path / "img")
    refused(tmp_path / "img", rf"img is {label}, not an image \(a tar file or a directory\)")
    os.symlink(tmp_path / "img", tmp_path / "link")
    refused(tmp_path / "link", f"is {label}, not an image")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("node", nodes(sorted(NODES)))
@pytest.mark.parametrize("victim", ["manifest.json", "config.json", "l1/layer.tar"])
def test_docker_save_directory_with_a_node_for_a_file(tmp_path: pathlib.Path, node: str,
                                                      victim: str) -> None:
    make, label = NODES[node]
    root = docker_dir(tmp_path / "d")
    (root / victim).unlink()
    make(root / victim)
    if victim == "manifest.json" and node == "dir":
        refused(root, "manifest.json is a directory, not a regular file")
        return
    refused(root, rf"{victim} is {label}, not a regular file: refused")


@pytest.mark.timeout(10)
@pytest.mark.parametrize("node", nodes(["fifo", "zero", "kmsg", "dir"]))
@pytest.mark.parametrize("victim", ["oci-layout", "index.json", "manifest", "config", "layer"])
def test_oci_layout_with_a_node_for_a_file(tmp_path: pathlib.Path, node: str,
                                           victim: str) -> None:
    make, label = NODES[node]
    root = oci_dir(tmp_path / "o")
    with image.load(str(root), platform=AMD64) as img:
        layer_digest = img.layers[0].digest
        config_digest = img.config_digest
    assert layer_digest is not None
    index = json.loads((root / "index.json").read_bytes())
    paths = {"oci-layout": "oci-layout", "index.json": "index.json",
             "manifest": "blobs/sha256/" + index["manifests"][0]["digest"][7:],
             "config": "blobs/sha256/" + config_digest[7:],
             "layer": "blobs/sha256/" + layer_digest[7:]}
    (root / paths[victim]).unlink()
    make(root / paths[victim])
    error = refused(root, rf"is {label}, not a regular file: refused", platform=AMD64)
    assert paths[victim] in str(error)


@pytest.mark.unprivileged
@pytest.mark.timeout(10)
def test_a_layer_swapped_for_a_fifo_after_loading_is_refused_before_streaming(
        tmp_path: pathlib.Path) -> None:
    root = oci_dir(tmp_path / "o")
    with image.load(str(root), platform=AMD64) as img:
        digest = img.layers[0].digest
        assert digest is not None
        blob = root / "blobs" / "sha256" / digest[7:]
        blob.unlink()
        os.mkfifo(blob)
        with pytest.raises(ImageError, match="is a FIFO, not a regular file"):
            img.layers[0].open()
        with pytest.raises(ImageError, match="is a FIFO, not a regular file"):
            img.verify()
        with pytest.raises(ImageError, match="is a FIFO, not a regular file"):
            image.Store(str(tmp_path / "store")).unpack(img)


@pytest.mark.timeout(20)
@forked
def test_without_proc_files_are_opened_again_and_checked(tmp_path: pathlib.Path) -> None:
    docker = as_tar(docker_dir(tmp_path / "d"), tmp_path / "d.tar")
    oci = oci_dir(tmp_path / "o")
    private_mount_ns()
    mounts.apply([mounts.tmpfs("/proc", size="1m")])
    assert not os.path.exists("/proc/self/fd")
    with image.load(str(docker)) as img:
        img.verify()
    with image.load(str(oci), platform=AMD64) as img:
        img.verify()
    (oci / "index.json").unlink()
    os.mkfifo(oci / "index.json")
    refused(oci, "index.json is a FIFO, not a regular file", platform=AMD64)


@pytest.mark.unprivileged
@pytest.mark.timeout(10)
@pytest.mark.parametrize("target", ["/dev/zero", "/dev/kmsg", "../../../../../dev/zero",
                                    "/etc/passwd"])
def test_symlinks_out_of_an_image_directory_are_refused(tmp_path: pathlib.Path,
                                                        target: str) -> None:
    root = docker_dir(tmp_path / "d")
    (root / "l1" / "layer.tar").unlink()
    os.symlink(target, root / "l1" / "layer.tar")
    refused(root, "cannot open l1/layer.tar: .*EXDEV")
    (root / "l1" / "layer.tar").unlink()
    os.symlink("../l1/../l1/real.tar", root / "l1" / "layer.tar")  # inside: followed
    (root / "l1" / "real.tar").write_bytes(LAYER)
    assert load(root).layers[0].diff_id == sha(LAYER)


@pytest.mark.unprivileged
@pytest.mark.parametrize(("kind", "label"), [(tarfile.FIFOTYPE, "fifo"),
                                             (tarfile.CHRTYPE, "chr"), (tarfile.DIRTYPE, "dir"),
                                             (tarfile.BLKTYPE, "blk")])
@pytest.mark.parametrize("victim", ["manifest.json", "config.json", "l1/layer.tar"])
def test_tar_members_that_are_not_files_are_refused(tmp_path: pathlib.Path, kind: bytes,
                                                    label: str, victim: str) -> None:
    node = tarfile.TarInfo(victim)
    node.type = kind
    archive = as_tar(docker_dir(tmp_path / "d"), tmp_path / "d.tar", (node,))
    refused(archive, rf"{victim} is not a regular file in the archive")


@pytest.mark.unprivileged
def test_truncated_tar_is_an_image_error(tmp_path: pathlib.Path) -> None:
    archive = as_tar(docker_dir(tmp_path / "d"), tmp_path / "d.tar")
    data = archive.read_bytes()
    for cut in (data.index(b"ustar") + 600, data.index(LAYER) + 100):
        archive.write_bytes(data[:cut])
        refused(archive, "d.tar: not a readable tar archive: (empty header|unexpected end)")
    archive.write_bytes(data)
    with image.load(str(archive)) as img:
        os.truncate(archive, data.index(LAYER) + 100)  # shrinks under the open archive
        with pytest.raises(ImageError, match=r"d.tar: l1/layer.tar: cannot read: unexpected "
                                             "end of data"):
            img.verify()


@pytest.mark.unprivileged
@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "", "a\0b", "l1/../../x",
                                  "l1/layer.tar/..", "."])
def test_config_and_layer_paths_cannot_leave_the_image(tmp_path: pathlib.Path,
                                                       path: str) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    for fmt in ("dir", "tar"):
        for field in ("Config", "Layers"):
            entry = docker_manifest()[0]
            entry[field] = [path] if field == "Layers" else path
            root = docker_dir(tmp_path / f"in-{fmt}-{field}", manifest_json=[entry])
            target = root if fmt == "dir" else as_tar(root, tmp_path / f"{fmt}-{field}.tar")
            with pytest.raises(ImageError):
                load(target)


# ---- malformed metadata -------------------------------------------------------------------


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def mutated(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


DOCKER_MANIFEST_CASES = [
    (deep(100_000), "manifest.json: JSON nested more than 64 deep"),
    (deep(MAX_JSON_DEPTH + 1), "manifest.json: JSON nested more than 64 deep"),
    ({"a": 1}, "manifest.json must be a non-empty list of images, not an object"),
    (5, "must be a non-empty list of images, not a number"),
    ("x", "not a string"), ([], "not an empty list"),
    ([5], r"manifest.json entry 0 must be a JSON object, not a number"),
    ([[]], r"manifest.json entry 0 must be a JSON object, not a list"),
    (b"\xff\xfe[]", "manifest.json is not UTF-8"), (b"\xef\xbb\xbf[]", "is not valid JSON"),
    ("[]".encode("utf-16"), "is not UTF-8"),
    (b'[{"Config": "config.json", "Config": "x"}]', "duplicate key 'Config'"),
    (b"[NaN]", "NaN is not JSON"), (b"[-Infinity]", "-Infinity is not JSON"),
    (b"[" + b"1" * 5000 + b"]", "is not valid JSON"), (b"[1,", "is not valid JSON"),
    (b"", "is not valid JSON"), (b"[{}] x", "is not valid JSON"),
    (mutated(docker_manifest(), (0, "Layers"), [5]), r"'Layers' item 0 must be a string, not a "
                                                     "number"),
    (mutated(docker_manifest(), (0, "Layers"), [{"a": 1}]), "item 0 must be a string"),
    (mutated(docker_manifest(), (0, "Layers"), "l1/layer.tar"), "'Layers' must be a list"),
    (mutated(docker_manifest(), (0, "Layers"), [""]), "'Layers' has an empty path"),
    (mutated(docker_manifest(), (0, "RepoTags"), "x:1"), "'RepoTags' must be a list of strings"),
    (mutated(docker_manifest(), (0, "RepoTags"), [1]), "'RepoTags' item 0 must be a string"),
    (mutated(docker_manifest(), (0, "RepoTags"), {"x": 1}), "'RepoTags' must be a list"),
    (mutated(docker_manifest(), (0, "Config"), None), "'Config' must be a string, not null"),
    (mutated(docker_manifest(), (0, "Config"), 7), "'Config' must be a string, not a number"),
    (mutated(docker_manifest(), (0, "Config"), "missing.json"), "no missing.json|cannot open"),
    (mutated(docker_manifest(), (0, "LayerSources"), []), "'LayerSources' must be an object"),
    (mutated(docker_manifest(), (0, "LayerSources"), {"sha256:../../x": {}}),
     "key 'sha256:../../x' is not a sha256 digest"),
    (mutated(docker_manifest(), (0, "LayerSources"), {sha(LAYER): 5}), "must be a JSON object"),
]


@pytest.mark.unprivileged
@pytest.mark.parametrize("fmt", ["dir", "tar"])
@pytest.mark.parametrize(("manifest", "message"), DOCKER_MANIFEST_CASES)
def test_malformed_docker_manifest(tmp_path: pathlib.Path, fmt: str, manifest: Any,
                                   message: str) -> None:
    root = docker_dir(tmp_path / "d", manifest_json=manifest)
    refused(root if fmt == "dir" else as_tar(root, tmp_path / "d.tar"), message)


@pytest.mark.unprivileged
def test_oversized_metadata_is_refused(tmp_path: pathlib.Path) -> None:
    root = docker_dir(tmp_path / "d", manifest_json=b" " * MAX_JSON_BYTES + b"[]")
    refused(root, rf"manifest.json is larger than {MAX_JSON_BYTES} bytes")
    root = oci_dir(tmp_path / "o", index=b"{}" + b" " * MAX_JSON_BYTES)
    refused(root, rf"index.json is larger than {MAX_JSON_BYTES} bytes")


def hybrid(root: pathlib.Path, source: dict[str, Any]) -> pathlib.Path:
    """A Docker >= 25 save: the layer under blobs/sha256/, described in LayerSources."""
    digest = sha(LAYER)
    entry = {"Config": "config.json", "RepoTags": ["x:1"], "Layers": [f"blobs/sha256/{digest[7:]}"],
             "LayerSources": {digest: source}}
    return docker_dir(root, manifest_json=[entry], **{f"blobs__sha256__{digest[7:]}": LAYER})


@pytest.mark.unprivileged
@pytest.mark.parametrize(("field", "value", "message"), [
    ("mediaType", "application/x-evil", r"layer 0 \(blobs/sha256/[0-9a-f]+\): layer sha256:"
                                         r"[0-9a-f]+: media type 'application/x-evil' is not a "
                                         "filesystem layer"),
    ("mediaType", 5, "'mediaType' must be a string, not a number"),
    ("mediaType", None, "'mediaType' must be a string, not null"),
    ("size", -1, "'size' -1 is out of range"), ("size", 1.5, "'size' must be an integer"),
    ("size", True, "'size' must be an integer, not a boolean"), ("size", "5", "not a string"),
    ("size", 2**64, "'size' 18446744073709551616 is out of range"),
    ("digest", "sha256:" + "0" * 64, "'digest' is not sha256:[0-9a-f]+, the blob"),
    ("digest", "sha512:" + "0" * 128, "unsupported digest algorithm"),
    ("digest", None, "'digest' must be a digest string, not null"),
])
def test_malformed_layer_sources(tmp_path: pathlib.Path, field: str, value: Any,
                                 message: str) -> None:
    source = {"mediaType": TAR, "size": len(LAYER), "digest": sha(LAYER)}
    assert load(hybrid(tmp_path / "ok", source)).layers[0].size == len(LAYER)
    source[field] = value
    refused(hybrid(tmp_path / "d", source), message)


BAD_DIGESTS = ["sha256:../../../../etc/passwd", "sha256:" + "A" * 64, "sha256:" + "0" * 63,
               "sha256:" + "0" * 65, "sha256:" + "0" * 64 + "\n", "sha256:", "", "sha256",
               "../../x", 5, None, ["sha256:" + "0" * 64], "sha256:" + "g" * 64,
               " sha256:" + "0" * 64]

CONFIG_CASES = [
    (deep(100_000), "config config.json: JSON nested more than 64 deep"),
    ([], "config config.json must be a JSON object, not a list"),
    (5, "must be a JSON object, not a number"), ("cfg", "not a string"),
    (b"\x80{}", "config config.json is not UTF-8"),
    (b'{"os": "linux", "os": "windows"}', "duplicate key 'os'"),
    (mutated(config_doc(), ("os",), 5), "'os' must be a string"),
    (mutated(config_doc(), ("architecture",), ["amd64"]), "'architecture' must be a string"),
    (mutated(config_doc(), ("variant",), {}), "'variant' must be a string"),
    (mutated(config_doc(), ("config",), []), "field 'config' must be a JSON object, not a list"),
    (mutated(config_doc(), ("config", "Env"), "PATH=/bin"), "'Env' must be a list of strings"),
    (mutated(config_doc(), ("config", "Env"), [None]), "'Env' item 0 must be a string, not null"),
    (mutated(config_doc(), ("config", "Env"), ["A=\0"]), "'Env' item 0 contains a NUL"),
    (mutated(config_doc(), ("config", "Cmd"), 5), "'Cmd' must be a list of strings"),
    (mutated(config_doc(), ("config", "Cmd"), ["a", 5]), "'Cmd' item 1 must be a string"),
    (mutated(config_doc(), ("config", "Entrypoint"), {"a": 1}), "'Entrypoint' must be a list"),
    (mutated(config_doc(), ("config", "User"), 0), "'User' must be a string, not a number"),
    (mutated(config_doc(), ("config", "User"), "app\0"), "'User' contains a NUL"),
    (mutated(config_doc(), ("config", "WorkingDir"), []), "'WorkingDir' must be a string"),
    (mutated(config_doc(), ("config", "Labels"), {"a": 1}), "'Labels': 'a' must be a string"),
    (mutated(config_doc(), ("config", "Labels"), ["a=b"]), "'Labels' must be an object"),
    (mutated(config_doc(), ("config", "ExposedPorts"), ["80"]), "'ExposedPorts' must be an obj"),
    (mutated(config_doc(), ("config", "Volumes"), "/data"), "'Volumes' must be an object"),
    (mutated(config_doc(), ("history",), {}), "'history' must be a list"),
    (mutated(config_doc(), ("history",), [5]), "'history' item 0 must be a JSON object"),
    (mutated(config_doc(), ("history", 0, "created"), 5), "'created' must be a string"),
    (mutated(config_doc(), ("history", 0, "created_by"), []), "'created_by' must be a string"),
    (mutated(config_doc(), ("history", 0, "empty_layer"), "yes"),
     "'empty_layer' must be true or false"),
    (mutated(config_doc(), ("rootfs",), []), "'rootfs' must be an object"),
    (mutated(config_doc(), ("rootfs", "type"), "tarballs"), "'type' must be 'layers'"),
    (mutated(config_doc(), ("rootfs", "diff_ids"), sha(LAYER)), "'diff_ids' must be a list"),
    (mutated(config_doc(), ("rootfs", "diff_ids"), []), "1 layers but 0 diff_ids"),
    *((mutated(config_doc(), ("rootfs", "diff_ids"), [d]), "'diff_ids' item 0")
      for d in BAD_DIGESTS),
]


@pytest.mark.unprivileged
@pytest.mark.parametrize(("config", "message"), CONFIG_CASES)
def test_malformed_config_in_both_formats(tmp_path: pathlib.Path, config: Any,
                                          message: str) -> None:
    refused(docker_dir(tmp_path / "d", config_json=config), message)
    oci_message = message.replace("config config.json", r"config sha256:[0-9a-f]{64}")
    refused(oci_dir(tmp_path / "o", config=config), oci_message, platform=AMD64)


@pytest.mark.unprivileged
def test_docker_quirks_that_are_accepted(tmp_path: pathlib.Path) -> None:
    """Docker's Cmd and Entrypoint may be one string; null is an absent field; fields
    nsbind does not use may hold anything (nested below the depth limit)."""
    config = config_doc()
    config["config"].update(Cmd="sh -c x", Entrypoint=None, Env=None, Labels=None)
    config["history"].append({"created": None, "empty_layer": True})
    config["extra"] = json.loads(deep(MAX_JSON_DEPTH - 1))
    img = load(docker_dir(tmp_path / "d", config_json=config))
    assert img.config == ImageConfig(cmd=("sh -c x",), working_dir="/", user="app",
                                     exposed_ports=("80/tcp",), volumes=("/data",))
    info = describe(img)
    assert info["history"][1] == {"created": "", "created_by": "", "empty_layer": True}


def oci_manifest(cfg: bytes, layer_desc: Any = None) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": sha(cfg), "size": len(cfg)},
            "layers": [layer_desc or {"mediaType": TAR, "digest": sha(LAYER),
                                      "size": len(LAYER)}]}


def index_of(entry: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "manifests": [entry]}


def good_entry() -> dict[str, Any]:
    man = enc(oci_manifest(enc(config_doc())))
    return {"mediaType": MANIFEST, "digest": sha(man), "size": len(man),
            "annotations": {REF: "v1"}}


INDEX_CASES = [
    (deep(100_000), "index.json: JSON nested more than 64 deep"),
    ([], "index.json must be a JSON object, not a list"),
    ({"manifests": {}}, "'manifests' must be a list"),
    ({"manifests": []}, "index.json lists no images"), ({}, "index.json lists no images"),
    (index_of(5), r"'manifests' item 0 must be a JSON object, not a number"),
    *((index_of(mutated(good_entry(), ("digest",), d)), r"'manifests' item 0: field 'digest'")
      for d in BAD_DIGESTS),
    (index_of({"mediaType": MANIFEST, "size": 5}), "'digest' must be a digest string, not null"),
    *((index_of(mutated(good_entry(), ("size",), s)), m)
      for s, m in ((-1, "'size' -1 is out of range"), (1.0, "'size' must be an integer"),
                   (False, "not a boolean"), (2**63, "out of range"), ("1", "not a string"),
                   (MAX_JSON_BYTES + 1, "more than the 16777216 read for metadata"),
                   (3, "size mismatch: expected 3"))),
    (index_of(mutated(good_entry(), ("mediaType",), 5)), "'mediaType' must be a string"),
    (index_of(mutated(good_entry(), ("annotations",), [])), "'annotations' must be an object"),
    (index_of(mutated(good_entry(), ("annotations",), {REF: 5})), f"'{REF}' must be a string"),
    (index_of(mutated(good_entry(), ("platform",), "linux/amd64")), "'platform' must be an obj"),
    (index_of(mutated(good_entry(), ("platform",), {"os": "linux"})),
     "'architecture' must be a string, not null"),
    (index_of(mutated(good_entry(), ("platform",), {"os": 1, "architecture": "amd64"})),
     "'os' must be a string, not a number"),
    (index_of(mutated(good_entry(), ("platform",), {"os": "linux", "architecture": "amd64",
                                                   "os.features": "x"})),
     "'os.features' must be a list of strings"),
    ({"manifests": [good_entry(), mutated(good_entry(), ("digest",), sha(b"other"))]},
     "index.json tags two different images 'v1'"),
]


@pytest.mark.unprivileged
@pytest.mark.parametrize(("index", "message"), INDEX_CASES)
def test_malformed_index(tmp_path: pathlib.Path, index: Any, message: str) -> None:
    refused(oci_dir(tmp_path / "o", index=index), message, platform=AMD64, tag="v1")


@pytest.mark.unprivileged
@pytest.mark.parametrize(("layout", "message"), [
    ([], "oci-layout must be a JSON object, not a list"), (deep(10_000), "nested more than"),
    ({"imageLayoutVersion": "2.0.0"}, "unsupported OCI layout version '2.0.0'"),
    ({"imageLayoutVersion": ["1.0.0"]}, "unsupported OCI layout version"),
    (b"\xc3(", "oci-layout is not UTF-8"),
])
def test_malformed_oci_layout_file(tmp_path: pathlib.Path, layout: Any, message: str) -> None:
    refused(oci_dir(tmp_path / "o", layout=layout), message, platform=AMD64)


MANIFEST_CASES: list[tuple[Any, str]] = [
    (deep(100_000), r"blob sha256:[0-9a-f]{64}: JSON nested more than 64 deep"),
    ([], "blob sha256:[0-9a-f]{64} must be a JSON object, not a list"),
    ({"mediaType": MANIFEST}, "field 'config' is missing"),
    ({"mediaType": MANIFEST, "config": []}, "field 'config' must be a JSON object, not a list"),
    ({"mediaType": "application/x-thing"}, "neither an image manifest nor an index"),
    ({"mediaType": 5}, "'mediaType' must be a string"),
    (mutated(oci_manifest(enc(config_doc())), ("layers",), {}), "'layers' must be a list"),
    (mutated(oci_manifest(enc(config_doc())), ("layers",), [5]), "'layers' item 0 must be a "
                                                                 "JSON object"),
    (mutated(oci_manifest(enc(config_doc())), ("layers", 0, "mediaType"), "application/x-evil"),
     "has media type application/x-evil, which is not a filesystem layer"),
    (mutated(oci_manifest(enc(config_doc())), ("layers", 0, "mediaType"), None),
     "has media type None, which is not a filesystem layer"),
    (mutated(oci_manifest(enc(config_doc())), ("layers", 0, "digest"), "sha256:../../x"),
     "'digest' 'sha256:../../x' is not a sha256 digest"),
    (mutated(oci_manifest(enc(config_doc())), ("layers", 0, "digest"), sha(b"absent")),
     "cannot open blobs/sha256/"),
    (mutated(oci_manifest(enc(config_doc())), ("layers", 0, "size"), -5), "out of range"),
    (mutated(oci_manifest(enc(config_doc())), ("config", "digest"), "sha256:" + "0" * 64),
     "cannot open blobs/sha256/0000"),
    (mutated(oci_manifest(enc(config_doc())), ("config", "mediaType"), None),
     "this is an artifact"),
    # an index inside: each child needs a sound platform
    ({"mediaType": INDEX, "manifests": [{"mediaType": MANIFEST, "digest": sha(b"x"), "size": 1,
                                         "platform": ["linux", "amd64"]}]},
     "'platform' must be an object, not a list"),
    ({"mediaType": INDEX, "manifests": [{"mediaType": MANIFEST, "digest": sha(b"x"), "size": 1,
                                         "platform": {"os": "linux", "architecture": 64}}]},
     "'architecture' must be a string, not a number"),
    ({"mediaType": INDEX, "manifests": [{"digest": sha(b"x")}]},
     r"no image for linux/amd64 in the index \(it has: \(no platform\)\)"),
    ({"mediaType": INDEX, "manifests": "all"}, "'manifests' must be a list"),
]


@pytest.mark.unprivileged
@pytest.mark.parametrize(("manifest", "message"), MANIFEST_CASES)
def test_malformed_manifest_blob(tmp_path: pathlib.Path, manifest: Any, message: str) -> None:
    refused(oci_dir(tmp_path / "o", manifest=manifest), message, platform=AMD64)


@pytest.mark.unprivileged
def test_a_chain_of_indexes_stops(tmp_path: pathlib.Path) -> None:
    """Indexes nested six deep (a loop cannot be built from digests, but a chain can)."""
    root = oci_dir(tmp_path / "o")
    man = (root / "index.json").read_bytes()
    chain = json.loads(man)["manifests"][0]
    for _ in range(6):
        doc = enc({"mediaType": INDEX, "manifests": [
            {**chain, "platform": {"os": "linux", "architecture": "amd64"}}]})
        write(root, {f"blobs/sha256/{sha(doc)[7:]}": doc})
        chain = {"mediaType": INDEX, "digest": sha(doc), "size": len(doc)}
    write(root, {"index.json": index_of(chain)})
    refused(root, "indexes nested too deep", platform=AMD64)


@pytest.mark.unprivileged
@pytest.mark.parametrize("kw", [{"media_type": "application/x-evil"}, {"media_type": 5},
                                {"size": -1}, {"size": True}, {"size": 1.5},
                                {"digest": "sha256:../../x"}, {"diff_id": "sha256:abc"},
                                {"diff_id": None}])
def test_a_layer_is_checked_when_made(kw: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"media_type": TAR, "size": 1, "digest": sha(b"x"),
                              "diff_id": sha(b"y"), "open": lambda: io.BytesIO(b"")}
    fields.update(kw)
    with pytest.raises(ImageError):
        Layer(**fields)


@pytest.mark.unprivileged
def test_inspect_escapes_control_characters(tmp_path: pathlib.Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = mutated(config_doc(), ("config", "Labels"), {"\x1b[2J": "\x1b]0;pwned\x07"})
    config["history"][0]["created_by"] = "RUN \x1b[31mred\r"
    root = docker_dir(tmp_path / "d", config_json=config,
                      manifest_json=mutated(docker_manifest(), (0, "RepoTags"), ["x\x1b[1A:1"]))
    args = argparse.Namespace(image_command="inspect", image=str(root), tag=None, platform=None,
                              json=False)
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "\\x1b[2J=\\x1b]0;pwned\\x07" in out and "x\\x1b[1A:1" in out
    for bad in ("linux", "linux/", "/amd64", "a/b/c/d"):
        args.platform = bad
        assert cli.run(args) == 1
    assert "expected os/arch[/variant]" in capsys.readouterr().err


# ---- fuzzing --------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
_SPECIAL: st.SearchStrategy[Any] = st.sampled_from([
    None, 0, -1, 2**64, 1.5, True, "", "sha256:../../x", [], {}, "sha256:" + "0" * 64,
    sha(LAYER), TAR, "l1/layer.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
    "../config.json"])
VALUE = st.one_of(JSON, _SPECIAL)


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``doc`` a value could be replaced or a key added."""
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += paths_of(value, (*prefix, index))
    return found


@st.composite
def mutations(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with up to three places replaced or deleted, or keys added."""
    for _ in range(draw(st.integers(0, 3))):
        places = paths_of(doc)
        if not places:
            return draw(VALUE)
        path = draw(st.sampled_from(places))
        doc = copy.deepcopy(doc)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(VALUE)
        else:
            parent[path[-1]] = draw(VALUE)
    return doc


def attempt(path: pathlib.Path, **kw: Any) -> None:
    """Load; only an ImageError may come out, and a loaded image is fully usable."""
    try:
        img = image.load(str(path), **kw)
    except ImageError as exc:
        assert str(exc) and isinstance(exc, ValueError)
        return
    with img:
        info = describe(img)
        json.dumps(info)
        for layer in img.layers:
            assert layer.compression in (None, "gzip", "zstd")


FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.mark.unprivileged
@FUZZ
@given(data=st.data())
def test_fuzz_docker_save_documents(tmp_path: pathlib.Path, data: st.DataObject) -> None:
    manifest = data.draw(mutations(docker_manifest()))
    config = data.draw(mutations(config_doc()))
    attempt(docker_dir(tmp_path / "d", manifest_json=manifest, config_json=config))


@pytest.mark.unprivileged
@FUZZ
@given(data=st.data())
def test_fuzz_oci_documents(tmp_path: pathlib.Path, data: st.DataObject) -> None:
    config = enc(data.draw(mutations(config_doc())))
    manifest = enc(data.draw(mutations(oci_manifest(config))))
    entry = {"mediaType": MANIFEST, "digest": sha(manifest), "size": len(manifest),
             "annotations": {REF: "v1"}}
    if data.draw(st.booleans()):  # through a platform index
        child = {**entry, "platform": {"os": "linux", "architecture": "amd64"}}
        nested = enc(data.draw(mutations({"mediaType": INDEX, "manifests": [child]})))
        write(tmp_path / "o", {f"blobs/sha256/{sha(nested)[7:]}": nested})
        entry = {"mediaType": INDEX, "digest": sha(nested), "size": len(nested),
                 "annotations": {REF: "v1"}}
    index = data.draw(mutations(index_of(entry)))
    root = oci_dir(tmp_path / "o", config=config, manifest=manifest, index=index)
    attempt(root, platform=AMD64, tag=data.draw(st.sampled_from([None, "v1"])))


@pytest.mark.unprivileged
@FUZZ
@given(value=JSON, which=st.sampled_from(["manifest.json", "config.json", "oci-layout",
                                          "index.json"]))
def test_fuzz_any_json_for_any_document(tmp_path: pathlib.Path, value: Any, which: str) -> None:
    if which in ("manifest.json", "config.json"):
        attempt(docker_dir(tmp_path / "d", **{which.replace(".json", "_json"): value}))
    else:
        attempt(oci_dir(tmp_path / "o", **{which.replace(".json", "").replace("oci-", ""): value}),
                platform=AMD64)


@pytest.mark.unprivileged
@FUZZ
@given(raw=st.one_of(st.binary(max_size=200),
                     st.builds(lambda v, cut: json.dumps(v).encode()[:cut], JSON,
                               st.integers(0, 200))),
       which=st.sampled_from(["manifest.json", "config.json", "oci-layout", "index.json",
                              "manifest", "config"]))
def test_fuzz_bytes_for_any_document(tmp_path: pathlib.Path, raw: bytes, which: str) -> None:
    if which in ("manifest.json", "config.json"):
        attempt(docker_dir(tmp_path / "d", **{which.replace(".json", "_json"): raw}))
    else:
        key = {"oci-layout": "layout", "index.json": "index"}.get(which, which)
        attempt(oci_dir(tmp_path / "o", **{key: raw}), platform=AMD64)
