"""Hostile layers: caps that count what lands on disk (sparse files, entries, depth),
modes that keep an image's setuid files and devices from local users, malformed tar
metadata (always an ImageError naming the member), and a fuzzed tar parser.

Layers are built here, byte by byte where tarfile would refuse to write them, or with
GNU tar (the sparse formats).  Every bomb is small enough to be harmless if its cap
failed (a 64 MiB sparse file against a 1 MiB cap), and bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pathlib
import resource
import stat
import subprocess
import sys
import tarfile
import tempfile
import traceback
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import drop_to_nobody, run_forked, tree
from nsbind.image import (
    Image,
    ImageError,
    Layer,
    Store,
    extract_layer,
    flatten,
    host_platform,
    load,
    unpack_tar,
)
from nsbind.image.tree import remove_path
from nsbind.image.unpack import MAX_LAYER_DEPTH, MAX_LAYER_ENTRIES

Records = Sequence[tuple[str | bytes, str | bytes]]

# ------------------------------------------------------------ building layers


def _b(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def _num(value: int | bytes, width: int) -> bytes:
    """A numeric field: octal, base-256 when it does not fit (or is negative), or raw."""
    if isinstance(value, bytes):
        return value.ljust(width, b"\0")[:width]
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    if value >= 0:
        return b"\x80" + value.to_bytes(width - 1, "big")
    return value.to_bytes(width, "big", signed=True)


def header(name: str | bytes, kind: bytes = b"0", *, size: int | bytes = 0,
           mode: int | bytes = 0o644, uid: int | bytes = 0, gid: int | bytes = 0,
           mtime: int | bytes = 1_600_000_000, link: str | bytes = b"",
           major: int | bytes = 0, minor: int | bytes = 0, magic: bytes = b"ustar\x0000",
           extra: dict[int, bytes] | None = None, checksum: int | None = None) -> bytes:
    """One 512-byte tar header with a correct checksum (unless ``checksum`` is given)."""
    b = bytearray(512)
    b[0:100] = _b(name)[:100].ljust(100, b"\0")
    b[100:108] = _num(mode, 8)
    b[108:116] = _num(uid, 8)
    b[116:124] = _num(gid, 8)
    b[124:136] = _num(size, 12)
    b[136:148] = _num(mtime, 12)
    b[156:157] = kind
    b[157:257] = _b(link)[:100].ljust(100, b"\0")
    b[257:265] = magic
    b[329:337] = _num(major, 8)
    b[337:345] = _num(minor, 8)
    for pos, raw in (extra or {}).items():
        b[pos:pos + len(raw)] = raw
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % (sum(b) if checksum is None else checksum)
    return bytes(b)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def record(key: str | bytes, value: str | bytes) -> bytes:
    body = b" " + _b(key) + b"=" + _b(value) + b"\n"
    length = len(body) + len(str(len(body)))
    length += len(str(length)) - len(str(len(body)))
    return str(length).encode() + body


def pax(records: Records, kind: bytes = b"x") -> bytes:
    body = b"".join(record(k, v) for k, v in records)
    return header("PaxHeaders/x", kind, size=len(body)) + pad(body)


def member(name: str | bytes, kind: bytes = b"0", data: bytes = b"",
           records: Records = (), **fields: int | bytes | str) -> bytes:
    out = pax(records) if records else b""
    fields.setdefault("size", len(data))
    return out + header(name, kind, **fields) + pad(data)  # type: ignore[arg-type]


def archive(*members: bytes, end: bool = True) -> bytes:
    return b"".join(members) + (bytes(1024) if end else b"")


def as_layer(data: bytes, compression: str | None = None) -> Layer:
    """A Layer of an uncompressed tar, stored gzip/zstd-compressed or as it is."""
    stored = data
    media = "application/vnd.oci.image.layer.v1.tar"
    if compression == "gzip":
        stored, media = gzip.compress(data, mtime=0), media + "+gzip"
    elif compression == "zstd":
        import zstandard
        stored, media = zstandard.ZstdCompressor().compress(data), media + "+zstd"
    return Layer(media_type=media, size=len(stored),
                 digest="sha256:" + hashlib.sha256(stored).hexdigest(),
                 diff_id="sha256:" + hashlib.sha256(data).hexdigest(),
                 open=lambda: io.BytesIO(stored))


def stored_layer(stored: bytes, compression: str, diff_id: str | None = None) -> Layer:
    """A Layer of already compressed bytes (possibly damaged)."""
    media = "application/vnd.oci.image.layer.v1.tar+" + compression
    return Layer(media_type=media, size=len(stored),
                 digest="sha256:" + hashlib.sha256(stored).hexdigest(),
                 diff_id=diff_id or "sha256:" + "0" * 64, open=lambda: io.BytesIO(stored))


def oci_image(root: pathlib.Path, *layers: bytes) -> Image:
    """An OCI image layout of gzip layers, written to ``root`` and loaded (tag "t")."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    os_name, arch = host_platform()
    config = {"architecture": arch, "os": os_name, "config": {},
              "rootfs": {"type": "layers", "diff_ids": [
                  "sha256:" + hashlib.sha256(data).hexdigest() for data in layers]}}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **blob(json.dumps(config).encode())},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            **blob(gzip.compress(data, mtime=0))} for data in layers]}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "annotations": {"org.opencontainers.image.ref.name": "t"},
                            **blob(json.dumps(manifest).encode())}]}
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps(index))
    return load(str(root), tag="t")


def named(path: str, kind: bytes = b"0", data: bytes = b"", **fields: int) -> bytes:
    """A member whose name goes in a PAX record when ustar's 100 bytes are too few."""
    if len(path) < 100:
        return member(path, kind, data, (), **fields)
    return member("long", kind, data, records=[("path", path)], **fields)


def deep_layer(depth: int, top: str = "a") -> bytes:
    """``depth`` nested directories ``top/d/d/.../d``, a file ``f`` at the bottom."""
    dirs = [top + "/d" * level for level in range(depth)]
    return archive(*(named(d, b"5", mode=0o755) for d in dirs),
                   named(dirs[-1] + "/f", data=b"bottom"))


def unpack(tmp_path: pathlib.Path, *layers: bytes, mode: str = "apply",
           **caps: int) -> pathlib.Path:
    dest = tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    for data in layers:
        unpack_tar(io.BytesIO(data), str(dest), whiteouts=mode,  # type: ignore[arg-type]
                   label="hostile", **caps)
    return dest


def gnu_tar(tmp_path: pathlib.Path, src: pathlib.Path, *options: str) -> bytes:
    out = tmp_path / "gnu.tar"
    subprocess.run(["tar", *options, "-C", str(src), "-cf", str(out), "."], check=True,
                   capture_output=True, timeout=60)
    data = out.read_bytes()
    out.unlink()
    return data


def sparse_source(tmp_path: pathlib.Path, size: int) -> pathlib.Path:
    """A directory with ``big``: ``size`` bytes, nearly all holes, 3 islands of data."""
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.truncate(size)
        for offset, data in ((0, b"head"), (size // 3, b"middle" * 1000), (size - 5, b"tail")):
            f.seek(offset)
            f.write(data)
    return src


SPARSE_FORMATS = {"old GNU 'S' (gnu)": ("--format=gnu",),
                  "old GNU 'S' (oldgnu)": ("--format=oldgnu",),
                  "PAX 0.0": ("--format=pax", "--sparse-version=0.0"),
                  "PAX 0.1": ("--format=pax", "--sparse-version=0.1"),
                  "PAX 1.0": ("--format=pax", "--sparse-version=1.0")}


# ------------------------------------------------------------ caps: sparse members


@pytest.mark.unprivileged
@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", list(SPARSE_FORMATS))
def test_sparse_member_counts_at_its_full_size(tmp_path: pathlib.Path, fmt: str) -> None:
    src = sparse_source(tmp_path, 64 << 20)
    data = gnu_tar(tmp_path, src, "--sparse", *SPARSE_FORMATS[fmt])
    assert len(gzip.compress(data)) < 20_000  # a 10 KB layer, 64 MiB once written
    store = Store(str(tmp_path / "store"))
    with pytest.raises(ImageError, match=r"refused '\./big': the size of the layer's files once "
                                         r"written passes 1048576 bytes"):
        store.unpack_layer(as_layer(data, "gzip"), label="sparse", max_bytes=1 << 20)
    assert os.listdir(tmp_path / "store" / "tmp") == []
    assert not os.listdir(tmp_path / "store" / "layers" / "sha256")


@pytest.mark.unprivileged
@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", list(SPARSE_FORMATS))
def test_sparse_member_is_written_exactly_with_its_holes(tmp_path: pathlib.Path,
                                                         fmt: str) -> None:
    src = sparse_source(tmp_path, 8 << 20)
    data = gnu_tar(tmp_path, src, "--sparse", *SPARSE_FORMATS[fmt])
    (tmp_path / "dest").mkdir()
    stats = extract_layer(as_layer(data), str(tmp_path / "dest"), whiteouts="apply",
                          label="sparse", max_bytes=8 << 20)
    assert stats.written == 8 << 20 and stats.bytes < 64 << 10
    got = tmp_path / "dest" / "big"
    assert got.read_bytes() == (src / "big").read_bytes()
    assert os.stat(got).st_blocks * 512 < 1 << 20  # the holes stayed holes


SPARSE_PAX = [("GNU.sparse.size", "100"), ("GNU.sparse.numblocks", "2")]
BAD_SPARSE: dict[str, tuple[bytes, str]] = {
    "overlapping regions": (member("s", data=bytes(20), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "0,10,5,10")]), "out of order or overlapping"),
    "regions out of order": (member("s", data=bytes(20), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "50,10,0,10")]), "out of order or overlapping"),
    "a negative offset": (member("s", data=bytes(10), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "-5,10")]), "out of order or overlapping"),
    "a region past the real size": (member("s", data=bytes(20), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "0,10,95,10")]), "past the file's size 100"),
    "more map than data": (member("s", data=bytes(10), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "0,10,20,10")]), "20 bytes for 10 bytes of data"),
    "more data than map": (member("s", data=bytes(30), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "0,10")]), "10 bytes for 30 bytes of data"),
    "an odd map": (member("s", data=bytes(10), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "0,10,20")]), "a sparse map of 3 numbers"),
    "a map that is not numbers": (member("s", data=bytes(10), records=[
        *SPARSE_PAX, ("GNU.sparse.map", "0,1e3")]), "is not a decimal number"),
    "too many regions": (member("s", records=[
        ("GNU.sparse.size", "1"), ("GNU.sparse.map", ",".join(["0,0"] * 70_000))]),
        "a sparse map of 140000 numbers"),
    "no real size": (member("s", data=bytes(10), records=[("GNU.sparse.map", "0,10")]),
                     "without its real size"),
    "0.0 records out of turn": (member("s", data=bytes(10), records=[
        *SPARSE_PAX, ("GNU.sparse.numbytes", "10"), ("GNU.sparse.offset", "0")]),
        "out of turn"),
    "sparse format 2.0": (member("s", data=bytes(512), records=[
        ("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0"),
        ("GNU.sparse.realsize", "10")]), "GNU sparse format b'2'.b'0': not supported"),
    "a 1.0 map that does not end": (member("GNUSparseFile.0/s", data=b"7" * 1024, records=[
        ("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "s"),
        ("GNU.sparse.realsize", "10")]), "a GNU sparse 1.0 map that does not end"),
    "a 1.0 map of a billion regions": (member("GNUSparseFile.0/s", data=pad(b"1000000000\n"),
                                              records=[
        ("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"), ("GNU.sparse.name", "s"),
        ("GNU.sparse.realsize", "10")]), "a sparse map of 1000000000 regions"),
    "old GNU 'S' past its real size": (header(
        "s", b"S", size=10, magic=b"ustar  \x00",
        extra={386: _num(95, 12) + _num(10, 12), 483: _num(100, 12)}) + pad(bytes(10)),
        "past the file's size 100"),
    "old GNU 'S' whose data disagrees": (header(
        "s", b"S", size=512, magic=b"ustar  \x00",
        extra={386: _num(0, 12) + _num(10, 12), 483: _num(100, 12)}) + pad(bytes(512)),
        "10 bytes for 512 bytes of data"),
}


@pytest.mark.unprivileged
@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(BAD_SPARSE))
def test_malformed_sparse_maps_are_refused(tmp_path: pathlib.Path, victim: pathlib.Path,
                                           case: str) -> None:
    data, why = BAD_SPARSE[case]
    with pytest.raises(ImageError, match=r"malformed tar member 's': .*" + why.replace(
            "(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        unpack(tmp_path, archive(data))


# ------------------------------------------------------------ caps: entries


def empty_files(count: int) -> bytes:
    """``count`` empty files in directories of 1,000 (headers only: a tiny gzip)."""
    return b"".join(header(f"d{i // 1000}/f{i}") for i in range(count)) + bytes(1024)


@pytest.mark.unprivileged
@pytest.mark.timeout(60)
def test_inode_bomb_stops_at_max_entries_and_leaves_nothing(tmp_path: pathlib.Path) -> None:
    layer = as_layer(empty_files(5_000), "gzip")
    assert layer.size is not None and layer.size < 40_000
    store = Store(str(tmp_path / "store"), max_layer_entries=1_000)
    with pytest.raises(ImageError, match=r"refused 'd1/f1000': the layer has more than 1000 "
                                         r"entries \(an inode bomb\?"):
        store.unpack_layer(layer, label="bomb")
    assert os.listdir(tmp_path / "store" / "tmp") == []
    path, stats = store.unpack_layer(layer, label="big", max_entries=5_000)  # raised per call
    assert stats is not None and stats.entries == 5_000 and len(os.listdir(path)) == 5


@pytest.mark.unprivileged
@pytest.mark.timeout(60)
def test_the_default_entry_cap_counts_whiteouts_too(tmp_path: pathlib.Path) -> None:
    """Whiteouts of nothing make no inode: the default cap, cheaply."""
    data = b"".join(header(f".wh.gone{i}") for i in range(MAX_LAYER_ENTRIES + 1))
    with pytest.raises(ImageError, match=rf"'.wh.gone{MAX_LAYER_ENTRIES}': the layer has more "
                                         rf"than {MAX_LAYER_ENTRIES} entries"):
        unpack(tmp_path, data + bytes(1024))


@pytest.fixture
def fast_dir(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A directory on tmpfs (/dev/shm) when there is one: 100,000 inodes take seconds
    there, and a minute on a busy disk."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    path = pathlib.Path(tempfile.mkdtemp(prefix="nsbind-test-", dir="/dev/shm"))
    yield path
    remove_path(str(path))


@pytest.mark.unprivileged
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_reported_inode_bomb_is_stopped_by_the_defaults(fast_dir: pathlib.Path) -> None:
    """The attack as reported: a 1.2 MB gzip layer of 200,000 empty files."""
    layer = as_layer(empty_files(200_000), "gzip")
    assert layer.size is not None and layer.size < 1_500_000
    store = Store(str(fast_dir / "store"))
    with pytest.raises(ImageError, match=f"more than {MAX_LAYER_ENTRIES} entries"):
        store.unpack_layer(layer, label="bomb")
    assert os.listdir(fast_dir / "store" / "tmp") == []


# ------------------------------------------------------------ caps: depth, iterative walks


@pytest.mark.unprivileged
@pytest.mark.timeout(60)
def test_deep_layer_is_refused_by_default_and_leaves_nothing(tmp_path: pathlib.Path) -> None:
    store = Store(str(tmp_path / "store"))
    with pytest.raises(ImageError, match=rf"a path {MAX_LAYER_DEPTH + 1} directories deep "
                                         rf"\(at most {MAX_LAYER_DEPTH}: raise max_depth\)"):
        store.unpack_layer(as_layer(deep_layer(1_200), "gzip"), label="deep")
    assert os.listdir(tmp_path / "store" / "tmp") == []


def _deep_flatten_gc_and_failure(base: str) -> list[str]:
    """In a child whose recursion limit leaves 100 frames: a 1,200-deep layer flattened
    with a whiteout over it, stored and collected, and a failed flatten after it."""
    sys.setrecursionlimit(len(traceback.extract_stack()) + 100)
    root = pathlib.Path(base)
    deep, gone = deep_layer(1_200), archive(member(".wh.a"), member("kept", data=b"k"))
    with oci_image(root / "img", deep, gone) as img:
        flatten(img, str(root / "flat"), max_depth=2_000)
    with oci_image(root / "img2", deep) as img:
        store = Store(str(root / "store"), max_layer_depth=2_000)
        (path,) = store.unpack(img)
        assert os.path.isfile(os.path.join(path, "a", *["d"] * 1_199, "f"))
        store.remove("t")
        assert store.gc() == [img.layers[0].diff_id]
    bad = archive(member("../escape", data=b"x"))
    with oci_image(root / "img3", deep, bad) as img:
        with pytest.raises(ImageError, match=r"'\.\.' in the member name"):
            flatten(img, str(root / "flat2"), max_depth=2_000)
    return sorted(os.listdir(root)) + sorted(os.listdir(root / "flat")) + \
        os.listdir(root / "store" / "tmp") + os.listdir(root / "store" / "layers" / "sha256")


@pytest.mark.unprivileged
@pytest.mark.timeout(120)
def test_deep_trees_flatten_whiteout_gc_and_fail_without_recursion(
        tmp_path: pathlib.Path) -> None:
    assert run_forked(_deep_flatten_gc_and_failure, str(tmp_path)) == [
        "flat", "img", "img2", "img3", "store", "kept"]


def _remove_with_few_fds(path: str) -> bool:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    remove_path(path)
    return os.path.exists(path)


@pytest.mark.timeout(60)
def test_remove_tree_takes_any_depth_with_a_few_fds(tmp_path: pathlib.Path) -> None:
    """3,000 levels (a path of 9,000 bytes, past PATH_MAX), files at each level,
    symlinks to / and side directories, a 0000 directory: removed under RLIMIT_NOFILE
    64, never following a link."""
    top = tmp_path / "deep"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(3_000):
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd))
        if level % 100 == 0:
            os.symlink("/", "link", dir_fd=fd)
            os.mkdir("side", dir_fd=fd)
        os.mkdir("dd", 0o000 if level == 1_500 else 0o755, dir_fd=fd)
        nfd = os.open("dd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)
    assert run_forked(_remove_with_few_fds, str(top)) is False
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------ modes


DANGEROUS = archive(member("bin/", b"5", mode=0o755),
                    member("bin/su", data=b"\x7fELF", mode=0o4755),
                    member("dev/", b"5", mode=0o755),
                    member("dev/loop0", b"4", mode=0o666, major=7, minor=0),
                    member("dev/mem", b"3", mode=0o666, major=1, minor=1))


def _reach_as_nobody(paths: list[str]) -> list[str]:
    """What uid/gid 65534 gets trying to reach each path (stat: never opens a device)."""
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    out = []
    for path in paths:
        try:
            os.stat(path)
            out.append(f"{path}: reached")
        except PermissionError:
            out.append("denied")
    return out


@pytest.fixture
def public_dir() -> Iterator[pathlib.Path]:
    """A directory every local user may enter (pytest's tmp_path is 0700)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="nsbind-modes-"))
    os.chmod(path, 0o755)
    yield path
    remove_path(str(path))


@pytest.mark.timeout(60)
def test_flattened_root_is_0700_out_of_other_users_reach(public_dir: pathlib.Path) -> None:
    with oci_image(public_dir / "img", DANGEROUS) as img:
        flatten(img, str(public_dir / "rootfs"))
    root = public_dir / "rootfs"
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    su, loop = os.stat(root / "bin" / "su"), os.lstat(root / "dev" / "loop0")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_uid == 0  # faithful for root
    assert stat.S_ISBLK(loop.st_mode) and stat.S_IMODE(loop.st_mode) == 0o666
    paths = [str(root / p) for p in ("bin/su", "dev/loop0", "dev/mem", "bin")]
    assert run_forked(_reach_as_nobody, paths) == ["denied"] * 4


@pytest.mark.timeout(60)
def test_stored_layers_are_out_of_other_users_reach(public_dir: pathlib.Path) -> None:
    store = Store(str(public_dir / "store"))
    path, _ = store.unpack_layer(as_layer(DANGEROUS, "gzip"), label="dangerous")
    for sub in ("layers", "layers/sha256", "tmp", "images", "locks"):
        assert stat.S_IMODE(os.stat(public_dir / "store" / sub).st_mode) == 0o700, sub
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755  # the overlay's root
    paths = [os.path.join(path, p) for p in ("bin/su", "dev/loop0", "dev/mem")]
    assert run_forked(_reach_as_nobody, paths) == ["denied"] * 3


# read-only and unsearchable directories, a 0000 one (listed again on top), a 0444 file
# with an xattr: without root, modes must wait until the members are in
LOCKED = archive(member("ro/", b"5", mode=0o555), member("ro/f", data=b"f"),
                 member("ro/sub/", b"5", mode=0o555), member("ro/sub/g", data=b"g"),
                 member("a/b/", b"5"), member("a/", b"5"),  # both 0644, the child first
                 member("z/", b"5", mode=0o000), member("z/h", data=b"h"),
                 member("x", data=b"x", mode=0o444, records=[("SCHILY.xattr.user.a", "v")]))
LOCKED_TOP = archive(member("ro/", b"5", mode=0o555), member("ro/new", data=b"n"),
                     member("ro/.wh.f"), member("z/", b"5", mode=0o000),
                     member("z/h2", data=b"h"))


def _locked_as_nobody(base: str, remove: bool) -> list[str]:
    """As uid 65534: flatten LOCKED under LOCKED_TOP and store LOCKED; or remove both."""
    drop_to_nobody()
    root = pathlib.Path(base)
    store = Store(str(root / "store"))
    if remove:
        gone = store.gc()  # the layer is in no image
        remove_path(str(root / "flat"))
        return gone + os.listdir(root / "store" / "layers" / "sha256") + \
            os.listdir(root / "store" / "tmp") + sorted(os.listdir(root))
    with oci_image(root / "img", LOCKED, LOCKED_TOP) as img:
        flatten(img, str(root / "flat"))
    return [store.unpack_layer(as_layer(LOCKED, "gzip"), label="locked")[0]]


@pytest.mark.timeout(60)
def test_unprivileged_unpack_fills_read_only_directories_and_removes_them(
        public_dir: pathlib.Path) -> None:
    """GNU tar's delayed directory modes: 'ro/f' goes into a 0555 'ro/', 'a/b/' into a
    0644 'a/'; every mode is the layer's at the end, and gc and remove_path take it all."""
    os.chmod(public_dir, 0o777)
    (layer,) = run_forked(_locked_as_nobody, str(public_dir), False)
    flat = public_dir / "flat"
    modes = {"ro": 0o555, "ro/sub": 0o555, "a": 0o644, "a/b": 0o644, "z": 0o000, "x": 0o444}
    for top, names in ((flat, modes), (pathlib.Path(layer), modes)):
        for name, mode in names.items():
            st = os.lstat(top / name)
            assert (name, stat.S_IMODE(st.st_mode), st.st_uid) == (name, mode, 65534)
            assert st.st_mtime_ns == 1_600_000_000 * 10 ** 9, name
        assert os.getxattr(top / "x", "user.a") == b"v"
    assert sorted(tree(flat)) == ["a", "a/b", "ro", "ro/new", "ro/sub", "ro/sub/g", "x", "z",
                                  "z/h", "z/h2"]
    assert sorted(tree(layer)) == ["a", "a/b", "ro", "ro/f", "ro/sub", "ro/sub/g", "x", "z",
                                   "z/h"]
    diff_id = "sha256:" + hashlib.sha256(LOCKED).hexdigest()
    assert run_forked(_locked_as_nobody, str(public_dir), True) == [diff_id, "img", "store"]


@pytest.mark.unprivileged
def test_a_store_made_with_open_modes_is_closed_when_opened(tmp_path: pathlib.Path) -> None:
    for sub in ("layers/sha256", "tmp", "images", "locks"):
        (tmp_path / "store" / sub).mkdir(parents=True, mode=0o755)
        os.chmod(tmp_path / "store" / sub, 0o755)
    os.chmod(tmp_path / "store" / "layers", 0o755)
    Store(str(tmp_path / "store"))
    modes = {sub: stat.S_IMODE(os.stat(tmp_path / "store" / sub).st_mode)
             for sub in ("layers", "layers/sha256", "tmp", "images", "locks")}
    assert set(modes.values()) == {0o700}


# ------------------------------------------------------------ malformed metadata


def _long(n: int) -> str:
    return "/".join(["p" * 199] * n)


MALFORMED: dict[str, tuple[bytes, str, str]] = {
    # (the layer, the member named, what is said)
    **{f"PAX mtime {v!r}": (member("m", records=[("mtime", v)]), "m", "PAX mtime")
       for v in ("nan", "inf", "-inf", "1e400", "", "1.2.3", "0x10", " 1")},
    "PAX mtime huge": (member("m", records=[("mtime", "9" * 30)]), "m", "mtime out of range"),
    "base-256 mtime huge": (member("m", mtime=1 << 80), "m", "mtime out of range"),
    **{f"PAX {k} {v}": (member("i", records=[(k, v)]), "i", msg)
       for k in ("uid", "gid")
       for v, msg in (("4294967295", "out of range"), ("4294967296", "out of range"),
                      ("-1", "out of range"), ("9" * 40, "not a decimal"),
                      ("abc", "not a decimal"), ("", "not a decimal"))},
    "base-256 negative uid": (member("i", uid=-1), "i", "uid -1 is out of range"),
    "base-256 huge gid": (member("i", gid=1 << 40), "i", "out of range"),
    "NUL in a PAX path": (member("x", records=[("path", b"a\0b")]), "a\0b", "a NUL byte"),
    "NUL in a PAX symlink target": (member("l", b"2", records=[("linkpath", b"t\0/x")]), "l",
                                    "a NUL byte in its link target"),
    "NUL in a PAX hardlink target": (archive(member("t"), member(
        "h", b"1", records=[("linkpath", b"t\0")]), end=False), "h", "a NUL byte"),
    "empty xattr name": (member("x", records=[("SCHILY.xattr.", "v")]), "x",
                         "an xattr name the kernel refuses: b''"),
    "NUL in an xattr name": (member("x", records=[(b"SCHILY.xattr.user.a\0b", "v")]), "x",
                             "an xattr name the kernel refuses"),
    "xattr namespace foo.": (member("x", records=[("SCHILY.xattr.foo.bar", "v")]), "x",
                             "an xattr name the kernel refuses: b'foo.bar'"),
    "xattr namespace only": (member("x", records=[("SCHILY.xattr.user.", "v")]), "x",
                             "the kernel refuses: b'user.'"),
    "xattr name over 255 bytes": (member("x", records=[("SCHILY.xattr.user." + "n" * 251,
                                                        "v")]), "x", "the kernel refuses"),
    "xattr value over 64 KiB": (member("x", records=[("SCHILY.xattr.user.big", "v" * 65537)]),
                                "x", "has 65537 bytes"),
    "LIBARCHIVE xattr not base64": (member("x", records=[("LIBARCHIVE.xattr.user.a", "!!")]),
                                    "x", "is not base64"),
    "a capability the kernel refuses": (member("x", records=[
        ("SCHILY.xattr.security.capability", "garbage")]), "x",
        "the filesystem refused its xattr 'security.capability': Invalid argument"),
    "an ACL the kernel refuses": (member("x", records=[
        ("SCHILY.xattr.system.posix_acl_access", b"\x02\0\0\0\x01")]), "x",
        "the filesystem refused its xattr 'system.posix_acl_access'"),
    "hardlink to a directory": (archive(member("d/", b"5"), member("h", b"1", link="d"),
                                        end=False), "h", "a hardlink to 'd', a directory"),
    "name component over 255 bytes": (member("x", records=[("path", "a/" + "n" * 256)]),
                                       "a/" + "n" * 256, "a name component over 255 bytes"),
    "path of PATH_MAX bytes": (member("x", records=[("path", _long(21))]), _long(21),
                               "a path of 4199 bytes"),
    "symlink target of 4096 bytes": (member("l", b"2", records=[("linkpath", "t" * 4096)]),
                                     "l", "a symlink target of 4096 bytes"),
    "empty symlink target": (member("l", b"2"), "l", "a symlink target of 0 bytes"),
    "size larger than the data": (archive(member("f", data=b"0123456789", size=5000),
                                          end=False), "f", "truncated"),
    "data on a zero-size file": (archive(member("f", data=b"text " * 100, size=0)),
                                 "f", "is not a tar header"),
    "negative size": (member("f", size=-5), "f", "a size of -5"),
    "PAX size over the header's": (archive(member("f", data=b"abc", records=[
        ("size", "2000")])), "f", "truncated"),
    "data on a directory": (member("d", b"5", data=b"x"), "d", "a dir entry with 1 bytes"),
    "data on a symlink": (member("l", b"2", data=b"x", link="t"), "l", "a symlink entry"),
    "device major 4096": (member("c", b"3", major=4096), "c", "device number 4096:0"),
    "device minor 2**20": (member("b", b"4", minor=1 << 20), "b", "out of range"),
    "device major 2**50": (member("b", b"4", major=1 << 50), "b", "out of range"),
    "negative device minor": (member("c", b"3", minor=-1), "c", "out of range"),
    "a bad checksum": (header("c", checksum=12345), "c", "checksum mismatch"),
    "a mode that is not octal": (member("m", mode=b"12x"), "m", "mode field"),
    "a uid that is not octal": (member("m", uid=b"9"), "m", "uid field"),
    **{f"type {t!r}": (member("t", t), "t", "unsupported tar entry type")
       for t in (b"V", b"M", b"D", b"N", b"Z", b"8")},
    "PAX record with a wrong length": (header("p", b"x", size=20) + pad(b"99 path=abcdefghij\n"),
                                       "p", "has a wrong length"),
    "PAX record without '='": (header("p", b"x", size=9) + pad(b"9 pathab\n"), "p", "no key"),
    "PAX record with an empty key": (header("p", b"x", size=5) + pad(b"5 =a\n"), "p", "no key"),
    "PAX record without a length": (header("p", b"x", size=8) + pad(b"x path=\n"), "p",
                                    "no length"),
    "PAX header of 2 MiB": (header("p", b"x", size=2 << 20), "p",
                            "an extended header of 2097152 bytes"),
    "GNU long name of 2 MiB": (header("././@LongLink", b"L", size=2 << 20), "././@LongLink",
                               "an extended header of 2097152 bytes"),
    "global header malformed": (header("g", b"g", size=4) + pad(b"junk"), "g", "no length"),
    "PAX header with no member": (pax([("path", "x")]), "after the start",
                                  "an extended header after the start has no member"),
}


def _member_shown(name: str) -> str:
    return repr(name)[1:-1]


@pytest.mark.unprivileged
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["apply", "overlay"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_metadata_is_an_image_error_naming_the_member(
        tmp_path: pathlib.Path, victim: pathlib.Path, case: str, mode: str) -> None:
    data, name, why = MALFORMED[case]
    if not data.endswith(bytes(1024)):
        data = archive(data)
    with pytest.raises(ImageError) as info:
        unpack(tmp_path, data, mode=mode)
    message = str(info.value)
    assert type(info.value) is ImageError
    assert why in message and _member_shown(name) in message, message


@pytest.mark.unprivileged
def test_hardlink_to_a_whiteout_is_refused(tmp_path: pathlib.Path) -> None:
    data = archive(member(".wh.gone"), member("h", b"1", link="gone"))
    with pytest.raises(ImageError, match=r"refused 'h': a hardlink to 'gone', a whiteout"):
        unpack(tmp_path, data, mode="overlay")


TRUNCATED: dict[str, tuple[bytes, str]] = {
    "inside a header": (member("f", data=b"x")[:300], "ends inside a header after the start"),
    "inside the data": (member("f", data=b"x" * 2000)[:1000], "'f': the archive ends inside "
                        "it (truncated)"),
    "before the end block": (member("f", data=b"x"), "ends without its end-of-archive block "
                             "after 'f' (truncated)"),
    "inside a PAX header": (pax([("path", "p" * 700)])[:800], "'PaxHeaders/x': the archive "
                            "ends inside it"),
    "empty": (b"", "ends without its end-of-archive block after the start"),
    "data after the end block": (bytes(512) + member("f", data=b"x"),
                                 "data after the end-of-archive block"),
}


@pytest.mark.unprivileged
@pytest.mark.parametrize("case", list(TRUNCATED))
def test_truncated_and_trailing_tar_streams(tmp_path: pathlib.Path, case: str) -> None:
    data, why = TRUNCATED[case]
    with pytest.raises(ImageError, match=why.replace("(", r"\(").replace(")", r"\)")):
        unpack(tmp_path, data)


@pytest.mark.unprivileged
def test_well_formed_edges_are_kept(tmp_path: pathlib.Path) -> None:
    """Exact PAX times (ns, before 1970), the largest id, base-256 numbers, a GNU long
    name, a LIBARCHIVE xattr (base64, %-name), a lone end block, 1 extra zero block;
    overlayfs' markers among a layer's xattrs are dropped.  (Unprivileged, owners are
    not set: the files stay the caller's.)"""
    data = b"".join([
        member("t", records=[("mtime", "1600000000.123456789")]),
        member("old", records=[("mtime", "-1.5")]),
        member("ids", uid=4_294_967_294, gid=70_000_000),  # both base-256
        header("././@LongLink", b"L", size=201) + pad(b"L" * 200 + b"\0"), header("ignored"),
        member("x", records=[("LIBARCHIVE.xattr.user.a%20b", "aGk"),
                             ("SCHILY.xattr.user.overlay.opaque", "y"),
                             ("SCHILY.xattr.trusted.overlay.redirect", "/etc")]),
        bytes(512)])
    dest = unpack(tmp_path, data)
    assert os.stat(dest / "t").st_mtime_ns == 1_600_000_000_123_456_789
    assert os.stat(dest / "old").st_mtime_ns == -1_500_000_000
    ids = os.stat(dest / "ids")
    owner = (4_294_967_294, 70_000_000) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    assert (ids.st_uid, ids.st_gid) == owner
    assert (dest / ("L" * 200)).exists() and not (dest / "ignored").exists()
    assert os.listxattr(dest / "x") == ["user.a b"] and os.getxattr(dest / "x", "user.a b") == \
        b"hi"


# ------------------------------------------------------------ compressed streams


def _zstd(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


STREAMS: dict[str, tuple[str, bytes, str | None]] = {
    # (compression, stored bytes of the tar "f" = b"x", what is said or None if it unpacks)
    "gzip, trailing junk": ("gzip", gzip.compress(archive(member("f", data=b"x"))) + b"junk",
                            "trailing data after the gzip data"),
    "gzip, trailing zeros": ("gzip", gzip.compress(archive(member("f", data=b"x"))) +
                             bytes(4096), None),
    "gzip, two members": ("gzip", gzip.compress(member("f", data=b"x")) +
                          gzip.compress(bytes(1024)), None),
    "gzip, a second member truncated": ("gzip", gzip.compress(member("f", data=b"x")) +
                                        gzip.compress(bytes(1024))[:15],
                                        "ends inside a member"),
    "gzip, truncated": ("gzip", gzip.compress(archive(member("f", data=b"x")))[:-6],
                        "the gzip data ends inside a member"),
    "gzip, corrupt": ("gzip", b"\x1f\x8b\x08\0" + bytes(6) + b"\xff" * 40,
                      "the gzip data is corrupt: .*invalid block type"),
    "zstd, trailing junk": ("zstd", _zstd(archive(member("f", data=b"x"))) + b"junk",
                            "trailing data after the zstd data"),
    "zstd, trailing zeros": ("zstd", _zstd(archive(member("f", data=b"x"))) + bytes(100), None),
    "zstd, zeros then junk": ("zstd", _zstd(archive(member("f", data=b"x"))) + bytes(10) +
                              b"j", "trailing data after the zstd data"),
    "zstd, two frames and a skippable one": (
        "zstd", _zstd(member("f", data=b"x")) + b"\x50\x2a\x4d\x18\x02\x00\x00\x00hi" +
        _zstd(bytes(1024)), None),
    "zstd, truncated": ("zstd", _zstd(archive(member("f", data=b"x")))[:-3],
                        "the zstd data ends inside a frame"),
    "zstd, corrupt": ("zstd", _zstd(archive(member("f", data=b"x")))[:8] + b"\xff" * 40,
                      "zstd"),
}


@pytest.mark.unprivileged
@pytest.mark.parametrize("case", list(STREAMS))
def test_compressed_streams_end_where_their_data_ends(tmp_path: pathlib.Path,
                                                      case: str) -> None:
    compression, stored, why = STREAMS[case]
    dest = tmp_path / "dest"
    dest.mkdir()
    layer = stored_layer(stored, compression)
    if why is None:
        with pytest.raises(ImageError, match="diff_id mismatch"):  # every byte went through
            extract_layer(layer, str(dest), whiteouts="apply", label="L")
        assert (dest / "f").read_bytes() == b"x"
    else:
        with pytest.raises(ImageError, match=why):
            extract_layer(layer, str(dest), whiteouts="apply", label="L")


# ------------------------------------------------------------ fuzzing


def _fuzz_once(tmp_path: pathlib.Path, victim: pathlib.Path, data: bytes,
               compression: str | None = None) -> None:
    """Extract ``data`` into a fresh directory with small caps: ImageError is the only
    exception allowed out, and nothing outside the directory changes."""
    work = tmp_path / "work"
    work.mkdir()
    before = tree(victim)
    try:
        for mode in ("apply", "overlay"):
            dest = work / mode
            dest.mkdir()
            with contextlib.suppress(ImageError):
                if compression is None:
                    unpack_tar(io.BytesIO(data), str(dest), whiteouts=mode,
                               label="fuzz", max_bytes=1 << 20, max_entries=200, max_depth=16)
                else:
                    extract_layer(stored_layer(data, compression), str(dest),
                                  whiteouts=mode, label="fuzz", max_bytes=1 << 20, max_entries=200,
                                  max_depth=16)
            assert sorted(os.listdir(work)) == ["apply", "overlay"][:len(os.listdir(work))]
            assert tree(victim) == before
            assert (victim / "passwd").read_text() == "root:x:0:0\n"
    finally:
        remove_path(str(work))


def _seed_tar() -> bytes:
    """A small valid layer of every kind of entry, written by Python's tarfile (PAX)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in (("d", tarfile.DIRTYPE, ""), ("d/f", tarfile.REGTYPE, ""),
                                  ("l" * 120, tarfile.SYMTYPE, "d/f"),
                                  ("h", tarfile.LNKTYPE, "d/f"), ("p", tarfile.FIFOTYPE, ""),
                                  ("c", tarfile.CHRTYPE, ""), (".wh.x", tarfile.REGTYPE, ""),
                                  ("d/.wh..wh..opq", tarfile.REGTYPE, "")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = kind, extra, 1_600_000_000.25
            info.devmajor, info.devminor = 1, 3
            payload = b"data" * 40 if name == "d/f" else b""
            info.size = len(payload)
            if name == "d/f":
                info.pax_headers = {"SCHILY.xattr.user.k": "v", "uid": "1000"}
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


SEED = _seed_tar()
SPARSE_SEED = archive(member("GNUSparseFile.0/s", data=pad(b"2\n0\n3\n100\n3\n") + b"abcdef",
                             records=[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
                                      ("GNU.sparse.name", "s"),
                                      ("GNU.sparse.realsize", "200")], size=518),
                      header("o", b"S", size=3, magic=b"ustar  \x00",
                             extra={386: _num(10, 12) + _num(3, 12), 483: _num(50, 12)})
                      + pad(b"xyz"))
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _mutate(seed: bytes, flips: list[tuple[int, int]], cut: int | None,
            insert: tuple[int, bytes] | None, fix: bool = False) -> bytes:
    """Bytes changed, inserted, cut; with ``fix``, the headers' checksums made right again
    (so that the fields behind them are fuzzed, not only the checksum test)."""
    data = bytearray(seed)
    for pos, value in flips:
        data[pos % len(data)] = value
    if insert is not None:
        pos = insert[0] % len(data)
        data[pos:pos] = insert[1]
    if fix:
        for start in range(0, len(data) - 511, 512):
            if data[start + 257:start + 262] == b"ustar":
                data[start + 148:start + 156] = b" " * 8
                data[start + 148:start + 156] = b"%06o\0 " % sum(data[start:start + 512])
    return bytes(data[:cut] if cut is not None else data)


MUTATIONS = dict(flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
                                max_size=8),
                 cut=st.none() | st.integers(0, 6000),
                 insert=st.none() | st.tuples(st.integers(0, 1 << 16), st.binary(max_size=64)))

# generated members: names, links and PAX values that have broken unpackers before
NAMES = st.sampled_from(["a", "a/b", "d", "d/", "d/f", "l", "l/x", "l/../x", "../x", "/abs",
                         "/../x", "./a", "a/../../x", ".wh.a", ".wh..wh..opq", "d/.wh.f",
                         ".wh..", ".wh.", "h", "x" * 256, "\udcff", "a//b", "l/VICTIM"])
LINKS = st.sampled_from(["", "a", "d", "d/f", "l", "..", "../victim", "/", "VICTIM",
                         "VICTIM/passwd", "/etc", "l/x", "h", "/../../x", "."])
VALUES = st.sampled_from(["0", "1", "-1", "nan", "1e9", "4294967295", "4294967294",
                          "99999999999999999999", "0,10", "0,1,1,1", "1", "0", "", "x",
                          "d/f", "../x", "/abs", "VICTIM/passwd", "aGk="]) | st.text(max_size=8)
KEYS = st.sampled_from(["path", "linkpath", "size", "uid", "gid", "mtime", "GNU.sparse.map",
                        "GNU.sparse.size", "GNU.sparse.name", "GNU.sparse.major",
                        "GNU.sparse.minor", "GNU.sparse.realsize", "GNU.sparse.offset",
                        "GNU.sparse.numbytes", "SCHILY.xattr.user.a",
                        "SCHILY.xattr.trusted.overlay.opaque", "LIBARCHIVE.xattr.user.b",
                        "SCHILY.xattr.security.capability", "hdrcharset"])
MEMBERS = st.lists(st.tuples(
    NAMES, st.sampled_from(list(b"0000111222555567SLKxgV\0")), LINKS,
    st.lists(st.tuples(KEYS, VALUES), max_size=3), st.binary(max_size=40),
    st.sampled_from([None] * 6 + [0, 1, 600, 1 << 40])), max_size=8)


@pytest.mark.unprivileged
@pytest.mark.timeout(120)
@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes(tmp_path: pathlib.Path, victim: pathlib.Path,
                              data: bytes) -> None:
    _fuzz_once(tmp_path, victim, data)


@pytest.mark.unprivileged
@pytest.mark.timeout(120)
@FUZZ
@given(seed=st.sampled_from([SEED, SPARSE_SEED]), fix=st.booleans(), **MUTATIONS)
def test_fuzz_mutated_valid_tars(tmp_path: pathlib.Path, victim: pathlib.Path, seed: bytes,
                                 flips: list[tuple[int, int]], cut: int | None,
                                 insert: tuple[int, bytes] | None, fix: bool) -> None:
    _fuzz_once(tmp_path, victim, _mutate(seed, flips, cut, insert, fix))


@pytest.mark.unprivileged
@pytest.mark.timeout(120)
@FUZZ
@given(compression=st.sampled_from(["gzip", "zstd"]), **MUTATIONS)
def test_fuzz_mutated_compressed_layers(tmp_path: pathlib.Path, victim: pathlib.Path,
                                        compression: str, flips: list[tuple[int, int]],
                                        cut: int | None,
                                        insert: tuple[int, bytes] | None) -> None:
    stored = gzip.compress(SEED, mtime=0) if compression == "gzip" else _zstd(SEED)
    _fuzz_once(tmp_path, victim, _mutate(stored, flips, cut, insert), compression)


@pytest.mark.unprivileged
@pytest.mark.timeout(120)
@FUZZ
@given(members=MEMBERS)
def test_fuzz_generated_members(tmp_path: pathlib.Path, victim: pathlib.Path,
                                members: list[tuple[str, int, str, list[tuple[str, str]],
                                                    bytes, int | None]]) -> None:
    """Layers of well-formed headers holding hostile names, links, types and PAX records."""
    out = []
    for name, kind, link, records, data, size in members:
        if size is None and kind not in b"07\0S":
            data = b""  # data only where the type has some, unless the size says so
        fix = [(k, v.replace("VICTIM", str(victim))) for k, v in records]
        out.append(member(name.replace("VICTIM", str(victim)), bytes([kind]), data,
                          records=fix, link=link.replace("VICTIM", str(victim))[:100],
                          size=len(data) if size is None else size, major=1, minor=3))
    _fuzz_once(tmp_path, victim, archive(*out))
