"""``nsbind run --userns auto``: root's containers in user namespaces of their own, each
with a range of the subordinate ids /etc/subuid and /etc/subgid give the user
``containers`` (podman's), the image's shared layers idmapped below the overlay.  The
tests add that user's ranges and restore both files byte for byte afterwards."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator

import pytest

from clients import build_rootfs, oci_archive, tar_rootfs
from enginecli import Engine
from testuser import free_subid_base, kept

IMG = "localhost/busybox:test"
RANGE = 3 * 65536  # room for three containers of the default size


@pytest.fixture(scope="module")
def image_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("userns-image")
    root = build_rootfs(base / "rootfs")
    os.mkdir(os.path.join(root, "owned"))
    os.chown(os.path.join(root, "owned"), 1000, 1000)  # an owner inside the image other than root
    return oci_archive(tar_rootfs(root, str(base / "layer.tar")), str(base / "bb.tar"), IMG)


@pytest.fixture
def subids() -> Iterator[int]:
    """The first subordinate uid (and gid) of ``containers``: RANGE ids."""
    with kept("/etc/subuid", "/etc/subgid"):
        start = free_subid_base(os.getpid())
        for path in ("/etc/subuid", "/etc/subgid"):
            with open(path, "a") as f:
                f.write(f"containers:{start}:{RANGE}\n")
        yield start


@pytest.fixture
def engine(cgroup_parent: str, image_archive: str) -> Iterator[Engine]:
    """An engine whose store the containers' roots can pass through (pytest's own
    directories are mode 0700: see test_a_store_they_cannot_reach_is_refused)."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="nsbind-userns-"))
    os.chmod(base, 0o755)
    try:
        eng = Engine(base, cgroup_parent)
        eng("image", "load", "-q", image_archive)
        yield eng
        for record in eng.containers():
            eng("rm", "-f", record["Id"], check=False)
        assert eng.left() == []
    finally:
        shutil.rmtree(base)


def _status(pid: int) -> dict[str, str]:
    lines = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _store_files(engine: Engine) -> list[tuple[str, int, int]]:
    """Every file of the image store's layers, with its owner: what no container may
    change (its idmapped mounts are gone before its storage is removed)."""
    layers = pathlib.Path(engine.store, "layers")
    return sorted((str(p.relative_to(layers)), p.lstat().st_uid, p.lstat().st_gid)
                  for p in layers.rglob("*"))


def test_auto_gives_each_container_its_own_range_and_the_image_keeps_its_owners(
        engine: Engine, subids: int) -> None:
    image_files = _store_files(engine)
    assert len(image_files) > 200  # busybox and its links
    out = engine("run", "--rm", "--userns", "auto", IMG, "sh", "-c",
                 "id -u; cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /bin "
                 "/owned /etc/hosts; echo hi > /made && stat -c %u /made; "
                 "echo 127.0.0.1 more >> /etc/hosts && echo hosts").stdout.split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", str(subids), "65536"]
    assert out[2].split() == ["0", str(subids), "65536"]
    assert out[3:6] == ["0:0", "1000:1000", "0:0"]  # the layer's owners, the engine's file
    assert out[6:8] == ["0", "hosts"]
    assert _store_files(engine) == image_files  # removed with --rm: the layer untouched
    # two at once: disjoint ranges; root inside is an unprivileged id outside
    first = engine("run", "-d", "--userns", "auto", IMG, "sleep", "60").stdout.strip()
    second = engine("run", "-d", "--userns", "auto:size=1024", IMG, "sleep",
                    "60").stdout.strip()
    pids = [json.loads(engine("inspect", c).stdout)[0]["State"]["Pid"] for c in (first,
                                                                                  second)]
    uids = [_status(p)["Uid"].split()[0] for p in pids]
    assert uids == [str(subids), str(subids + 65536)]
    assert os.readlink(f"/proc/{pids[0]}/ns/user") != os.readlink("/proc/self/ns/user")
    assert _status(pids[0])["CapEff"] != "0000000000000000"  # inside its own namespace
    # what the container writes is stored under its host ids
    assert engine("exec", first, "sh", "-c", "mkdir /data && touch /data/f").returncode == 0
    upper = pathlib.Path(engine.store, "containers", first, "upper")
    assert (upper / "data" / "f").stat().st_uid == subids
    assert engine("exec", second, "cat", "/proc/self/uid_map").stdout.split() == [
        "0", str(subids + 65536), "1024"]
    # a third of the default size fits in the range left; a fourth does not
    third = engine("run", "-d", "--userns", "auto", IMG, "sleep", "60").stdout.strip()
    pid3 = json.loads(engine("inspect", third).stdout)[0]["State"]["Pid"]
    assert _status(pid3)["Uid"].split()[0] == str(subids + 65536 + 1024)
    full = engine("run", "--rm", "--userns", "auto", IMG, "true", check=False)
    assert full.returncode == 125 and "no 65536 free ids" in full.stderr
    assert full.stderr.count("\n") == 1
    # a removed container's range is free again
    engine("rm", "-f", second)
    again = engine("run", "--rm", "--userns", "auto:size=1024", IMG, "cat",
                   "/proc/self/uid_map").stdout.split()
    assert again == ["0", str(subids + 65536), "1024"]
    engine("rm", "-f", first, third)
    assert _store_files(engine) == image_files


def test_commit_stores_the_containers_ids_not_the_hosts(engine: Engine, subids: int) -> None:
    cid = engine("run", "-d", "--userns", "auto", IMG, "sh", "-c",
                 "mkdir /data && touch /data/root && chown 1000:1000 /data && "
                 "exec sleep 60").stdout.strip()
    for _ in range(100):  # the container writes before it sleeps
        if engine("exec", cid, "stat", "-c", "%u", "/data/root",
                  check=False).returncode == 0:
            break
        time.sleep(0.05)
    engine("commit", cid, "localhost/committed:1")
    out = engine("run", "--rm", "localhost/committed:1", "stat", "-c", "%u:%g %n",
                 "/data", "/data/root").stdout.split("\n")
    assert out[:2] == ["1000:1000 /data", "0:0 /data/root"]
    engine("rm", "-f", cid)


def test_small_namespaces_rootfs_and_storage_modes(engine: Engine, subids: int) -> None:
    """Fewer than 6 ids (no tty group 5: devpts without gid=5) still run; --rootfs is
    refused (a directory is not idmapped); the container's storage is 0710 with the
    group of its root, so no other host user reaches its files (CVE-2021-41091)."""
    out = engine("run", "--rm", "--userns", "auto:size=3", IMG, "sh", "-c",
                 "cat /proc/self/uid_map; ls /dev/pts/ptmx").stdout.split()
    assert out == ["0", str(subids), "3", "/dev/pts/ptmx"]
    proc = engine("run", "--rm", "--userns", "auto", "--rootfs", "/", "true", check=False)
    assert proc.returncode == 125 and "--rootfs / is used as it is" in proc.stderr
    cid = engine("run", "-d", "--userns", "auto", IMG, "sleep", "60").stdout.strip()
    storage = pathlib.Path(engine.store, "containers", cid)
    st = storage.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o710, 0, subids)
    assert stat.S_IMODE(storage.parent.stat().st_mode) == 0o711
    engine("rm", "-f", cid)


def test_a_damaged_record_range_is_named_not_reissued(engine: Engine, subids: int) -> None:
    """A record whose idmap is not what nsbind writes (a string, a bool, a float, out
    of range) stops the allocation naming the container: its range is never handed out
    again while its files may still hold it."""
    cid = engine("run", "-d", "--userns", "auto", IMG, "sleep", "60").stdout.strip()
    path = pathlib.Path(engine.state, "containers", cid, "record.json")
    record = json.loads(path.read_text())
    for bad in ({"uid": str(subids), "gid": subids, "size": 65536},
                {"uid": True, "gid": subids, "size": 65536},
                {"uid": float(subids), "gid": subids, "size": 65536},
                {"uid": 0, "gid": 0, "size": 65536},
                {"uid": subids, "gid": subids, "size": -1}):
        path.write_text(json.dumps({**record, "idmap": bad}))
        proc = engine("run", "--rm", "--userns", "auto", IMG, "true", check=False)
        assert proc.returncode == 125 and f"container {cid}: its record's idmap" in (
            proc.stderr), (bad, proc.stderr)
        assert proc.stderr.count("\n") == 1
    path.write_text(json.dumps(record))
    engine("rm", "-f", cid)


@pytest.mark.parametrize("value,why", [
    ("keep-id", "rootless containers always run in the user's own user namespace"),
    ("ns:/proc/1/ns/user", "host or auto[:size=N] expected"),
    ("auto:size=0", "size 0 is not in 1..65536"),
    ("auto:size=65537", "size 65537 is not in 1..65536"),
    ("auto:uidmapping=0:1:2", "unknown option"),
])
def test_bad_userns_values_are_refused_and_leave_nothing(engine: Engine, value: str,
                                                         why: str) -> None:
    proc = engine("run", "--rm", "--userns", value, IMG, "true", check=False)
    assert proc.returncode == 125 and why in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_auto_without_subordinate_ranges_is_refused_and_leaves_nothing(
        engine: Engine) -> None:
    with kept("/etc/subuid", "/etc/subgid"):
        for path in ("/etc/subuid", "/etc/subgid"):
            if os.path.exists(path):
                lines = pathlib.Path(path).read_text().splitlines(keepends=True)
                pathlib.Path(path).write_text(
                    "".join(li for li in lines if not li.startswith("containers:")))
        proc = engine("run", "--rm", "--userns", "auto", IMG, "true", check=False)
    assert proc.returncode == 125 and "no subordinate range" in proc.stderr, proc.stderr
    assert "containers:1000000:1000000 to /etc/subuid" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_hostile_subid_files_are_refused_or_skipped(engine: Engine,
                                                    tmp_path: pathlib.Path) -> None:
    """A FIFO in place of /etc/subuid does not hang the run; lines out of range are
    skipped, never truncated into a range."""
    with kept("/etc/subuid", "/etc/subgid"):
        if os.path.exists("/etc/subuid"):
            os.unlink("/etc/subuid")
        os.mkfifo("/etc/subuid")
        try:
            proc = engine("run", "--rm", "--userns", "auto", IMG, "true", check=False,
                          timeout=30)
        finally:
            assert stat.S_ISFIFO(os.stat("/etc/subuid").st_mode)
            os.unlink("/etc/subuid")
        assert proc.returncode == 125 and "/etc/subuid: not a regular file" in proc.stderr
        pathlib.Path("/etc/subuid").write_text(
            "containers:4294967295:65536\ncontainers:-5:65536\ncontainers:0:65536\n"
            "containers:99999999999999999999:1\n")
        pathlib.Path("/etc/subgid").write_text("containers:100000:65536\n")
        proc = engine("run", "--rm", "--userns", "auto", IMG, "true", check=False)
        assert proc.returncode == 125 and "/etc/subuid gives the user 'containers' no" in (
            proc.stderr)


def _doctor_row(engine: Engine) -> dict[str, object]:
    rows = json.loads(engine("doctor", "--json", check=False).stdout)
    return next(r for r in rows if r["name"] == "subordinate ids")


def test_doctor_shows_the_ranges_auto_takes_or_how_to_add_them(engine: Engine,
                                                                subids: int) -> None:
    row = _doctor_row(engine)
    assert row["ok"] is True and f"{subids}+{RANGE}" in str(row["detail"])
    assert "--userns auto" in str(row["detail"])
    with kept("/etc/subuid", "/etc/subgid"):
        for path in ("/etc/subuid", "/etc/subgid"):
            lines = pathlib.Path(path).read_text().splitlines(keepends=True)
            pathlib.Path(path).write_text(
                "".join(li for li in lines if not li.startswith("containers:")))
        row = _doctor_row(engine)
    assert row["ok"] is None and "--userns auto is refused" in str(row["detail"])
    assert "containers:" in str(row["fix"]) and "/etc/subuid" in str(row["fix"])


def test_dry_run_shows_the_maps_it_would_take(engine: Engine, subids: int) -> None:
    spec = json.loads(engine("run", "--dry-run", "--userns", "auto:size=4096", IMG,
                             "true").stdout)
    assert {"type": "user"} in spec["linux"]["namespaces"]
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": subids,
                                             "size": 4096}]
    assert engine.containers() == []


def test_host_network_binds_sys_instead_of_mounting_sysfs(engine: Engine,
                                                          subids: int) -> None:
    out = engine("run", "--rm", "--userns", "auto", "--net", "host", IMG, "sh", "-c",
                 "cat /proc/self/uid_map; ls /sys/class/net | grep -c lo").stdout.split()
    assert out == ["0", str(subids), "65536", "1"]


def test_a_store_they_cannot_reach_is_refused(tmp_path: pathlib.Path, cgroup_parent: str,
                                              image_archive: str, subids: int) -> None:
    """The container's root resolves its root directory itself: a store below a
    directory other users may not pass (pytest's, mode 0700) is refused naming it."""
    eng = Engine(tmp_path, cgroup_parent)
    eng("image", "load", "-q", image_archive)
    proc = eng("run", "--rm", "--userns", "auto", IMG, "true", check=False)
    assert proc.returncode == 125 and "may not be passed by other users" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert eng.left() == []
