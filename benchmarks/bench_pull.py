"""Pull of a multi-layer image from a registry: ``nsbind pull`` against ``podman pull``.

Run:  python3 -m pytest benchmarks/bench_pull.py --benchmark-only -s
      (NSBIND_BENCH_ROUNDS=N caps every benchmark's rounds at N: a quick check, not a
      measurement; -s shows the summary of medians and ratios at the end)
Issue 16's target: a pull of a multi-layer image (>= 100 MB unpacked) from the local
registry into an empty store, until it is ready to run, at most as long as ``podman
pull`` of the same reference into empty storage (nsbind / podman <= 1.0).  As in
bench_engine.py each benchmark is *paired*: every round of nsbind runs right after one
timed round of ``podman pull`` (the reference), and ``extra_info["paired_ratio"]`` is
nsbind's median / podman's median over the same moments (``x_faster`` its inverse).
Every pair starts from empty stores, made and removed (then ``sync``) untimed.

The image (built here, the same bytes every run): the busybox-static rootfs of
tests/clients.py (build_rootfs, tar_rootfs: ``sh`` runs) and 4 layers of about 30 MB,
each 10 files of 2.5 MiB and 400 of 1-16 KiB, half pseudo-random bytes and half bytes
of a 16-letter alphabet (gzip gets them to about 3/4), and an /etc/bench-layer that
each layer replaces; gzipped (level 6, as Go's default) into an OCI archive
(clients.oci_archive) that skopeo pushes once to Debian's docker-registry on
127.0.0.1:<free port>, plain HTTP (clients.Registry; ``--tls-verify=false`` for every
client).  The stored blobs stay in the page cache, so the figures are the clients' work
(HTTP, digests, gunzip, unpacking, their stores), not this VM's disk reads.

"pull, empty store (>= 100 MB, 5 gzip layers)"
    ``nsbind --root STORE pull -q --tls-verify=false REF``, the installed command timed
    as a whole process, vs ``podman pull -q --tls-verify=false REF`` (the reference)
    into an empty private storage (clients.PodmanStore: ``--root``/``--runroot``/
    ``--tmpdir`` and a containers.conf, storage.conf and registries.conf of its own;
    the **overlay** driver, what users have; blobs staged in its own tmp dir through
    ``image_copy_tmp_dir``, not /var/tmp).  Target: ratio <= 1.0.  After the rounds
    the last stores are checked: ``nsbind run`` of REF prints the top layer's
    /etc/bench-layer, and podman lists REF.
    Then ``skopeo copy docker://REF oci:DIR`` and ``nsbind --root STORE image load -q
    DIR`` of that layout into an empty store, timed together (the two parts' medians in
    extra_info), against the same ``podman pull``: informative.

podman and skopeo each run in a mount namespace of their own (``unshare --mount``, one
bind mount; the cost, a few ms, is in their times and in extra_info as
``sandbox_ms``): there, the module's temp dir is over /var/lib/containers/cache, where
containers/image keeps its blob-info cache for root, so the host's cache is neither
read nor written, and the overlay driver's private bind mount of its graphroot goes
with the namespace.  Credentials: an empty $REGISTRY_AUTH_FILE of the module's for
every client.  The module checks at the end that no mount, process, nor entry in /run,
/var/tmp or /var/lib/containers is left over.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import random
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
# compiled: bench_engine's autouse fixture (nsbind's modules compiled, as pip leaves them)
import bench_engine
from bench_engine import Engine, check, compiled, paired, rounds  # noqa: F401

import clients

summary = bench_engine.summary  # the fixture: its lines under SUMMARY_TITLE

TAG = f"nsbind-bench-pull-{os.getpid()}"
REPO = "bench/pull:v1"
TARGET = 1.0  # nsbind pull / podman pull
SUMMARY_TITLE = "bench_pull (podman: overlay driver; podman and skopeo in a mount namespace)"
#: containers/image's blob-info cache for root (podman 4.3 and skopeo 1.9 both use it)
BLOB_INFO_CACHE = "/var/lib/containers/cache"
DATA_LAYERS = 4


# ------------------------------------------------ the image


def _data_layer(out: str, index: int) -> str:
    """Layer ``index``: /opt/bench/<index>/ with 10 files of 2.5 MiB and 400 of 1-16 KiB,
    half random bytes and half a 16-letter alphabet's, and /etc/bench-layer; a tar
    (numeric owners, time 0) the same every time."""
    rnd = random.Random(index)
    letters = bytes.maketrans(bytes(range(256)), b"abcdefghijklmnop" * 16)

    def content(n: int) -> bytes:
        half = n // 2
        return rnd.randbytes(half) + rnd.randbytes(n - half).translate(letters)

    def entry(name: str, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
        info = tarfile.TarInfo(name)
        info.uname = info.gname = ""
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            info.size, info.mode = len(data), 0o644
        return info, data

    top = f"opt/bench/{index}"
    entries = [entry(d) for d in ("etc", "opt", "opt/bench", top, f"{top}/lib", f"{top}/share")]
    entries.append(entry("etc/bench-layer", f"{index}\n".encode()))
    entries += [entry(f"{top}/lib/lib{i}.so", content(5 << 19)) for i in range(10)]
    entries += [entry(f"{top}/share/file{i}.txt", content(rnd.randint(1024, 16384)))
                for i in range(400)]
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return out


def _unpacked_bytes(layer_tar: str) -> int:
    with tarfile.open(layer_tar) as tar:
        return sum(m.size for m in tar if m.isreg())


class Image:
    """The benchmark's image: its OCI archive, unpacked and compressed sizes, layers."""

    def __init__(self, base: str) -> None:
        d = os.path.join(base, "image")
        os.makedirs(d)
        root = clients.build_rootfs(os.path.join(d, "rootfs"))
        tars = [clients.tar_rootfs(root, os.path.join(d, "layer0.tar"))]
        clients.remove_tree(root)
        tars += [_data_layer(os.path.join(d, f"layer{i}.tar"), i)
                 for i in range(1, DATA_LAYERS + 1)]
        self.unpacked = sum(_unpacked_bytes(t) for t in tars)
        self.layers = len(tars)
        self.archive = clients.oci_archive(tars, os.path.join(d, "image.tar"),
                                           "localhost/bench/pull:v1", compress=True)
        for t in tars:
            os.unlink(t)
        with tarfile.open(self.archive) as tar:
            self.compressed = sum(m.size for m in tar if m.name.startswith("blobs/"))
        assert self.unpacked >= 100e6, f"the image holds only {self.unpacked} bytes"


# ------------------------------------------------ fixtures


def _host_state() -> dict[str, Any]:
    """What must be the same after the module as before it: the mounts, the entries of
    the directories the clients could write outside their stores, the processes whose
    command line names a benchmark temp dir, this process's children."""
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(f)
    listings = {}
    for top in ("/run", "/var/tmp", "/var/lib/containers"):
        found = []
        for dirpath, dirs, files in os.walk(top):
            found += [os.path.join(dirpath, n) for n in dirs + files]
        listings[top] = sorted(found)
    procs = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = pathlib.Path(f"/proc/{name}/cmdline").read_bytes()
            stat = pathlib.Path(f"/proc/{name}/stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
            if b"/tmp/nsb-pull-" in argv or ppid == os.getpid():
                procs.append(f"{name}: {argv.decode(errors='replace')}")
    return {"mounts": mounts, "listings": listings, "processes": procs}


@pytest.fixture(scope="module", autouse=True)
def leaves_nothing() -> Iterator[None]:
    """The host as before, checked after every other fixture of the module is gone."""
    before = _host_state()
    yield
    after = _host_state()
    for key in before:
        assert after[key] == before[key], f"{key} changed: {before[key]} -> {after[key]}"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """The module's temp dir (short: podman refuses a runroot over 50 characters), with
    an empty credentials file, a registries.conf without search registries (both in the
    environment of every client) and the blob-info cache the sandbox puts in place."""
    path = tempfile.mkdtemp(prefix="nsb-pull-", dir="/tmp")
    try:
        pathlib.Path(path, "auth.json").write_text('{"auths": {}}\n')
        pathlib.Path(path, "registries.conf").write_text("unqualified-search-registries = []\n")
        os.mkdir(os.path.join(path, "cache"))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("REGISTRY_AUTH_FILE", os.path.join(path, "auth.json"))
            mp.setenv("CONTAINERS_REGISTRIES_CONF", os.path.join(path, "registries.conf"))
            yield path
    finally:
        clients.remove_tree(path)


@pytest.fixture(scope="module")
def sandbox(base: str) -> list[str]:
    """The argv prefix that runs a command in a mount namespace of its own where
    ``base``/cache is mounted over the blob-info cache dir (or its deepest existing
    parent: then the client makes the missing part in ``base``/cache)."""
    target = BLOB_INFO_CACHE
    while not os.path.isdir(target):
        target = os.path.dirname(target)
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount -n --bind "$0" "$1" && shift && exec "$@"', os.path.join(base, "cache"),
            target]


@pytest.fixture(scope="module")
def image(base: str) -> Image:
    return Image(base)


@pytest.fixture(scope="module")
def ref(base: str, image: Image, sandbox: list[str]) -> Iterator[str]:
    """The image pushed to a registry of the module's own: its reference."""
    for tool in ("docker-registry", "skopeo", "podman", "unshare"):
        clients.need(tool)
    os.mkdir(os.path.join(base, "registry"))
    reg = clients.Registry(pathlib.Path(base, "registry"))
    try:
        name = f"{reg.host}/{REPO}"
        tmp = os.path.join(base, "skopeo-tmp")  # oci-archive: unpacked there, not /var/tmp
        os.mkdir(tmp)
        clients.skopeo("--tmpdir", tmp, "copy", "--dest-tls-verify=false",
                       f"oci-archive:{image.archive}", f"docker://{name}", prefix=sandbox,
                       timeout=300)
        os.rmdir(tmp)
        yield name
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def cgroup_parent() -> Iterator[str]:
    """``/nsbind-bench-pull-<pid>`` in every hierarchy (the check's ``nsbind run``)."""
    with clients.cgroup_everywhere(TAG) as parent:
        yield parent


class PodmanStore(clients.PodmanStore):
    """tests/clients.py's private podman storage (overlay driver), empty: no image, no
    cgroups (a pull runs nothing); podman runs in the sandbox; big blobs are staged in
    the store's tmp dir (``image_copy_tmp_dir``, else /var/tmp)."""

    def __init__(self, base: str, sandbox: list[str]) -> None:
        super().__init__(base, TAG)
        self.sandbox = sandbox

    def setup(self) -> None:
        for d in ("hooks", "net", "root", "runroot", "tmp"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        conf = clients.CONTAINERS_CONF.format(base=self.base)
        assert "\n[engine]\n" in conf
        conf = conf.replace("\n[engine]\n", f'\n[engine]\nimage_copy_tmp_dir = "{self.base}/tmp"\n')
        pathlib.Path(self.base, "containers.conf").write_text(conf)
        pathlib.Path(self.base, "storage.conf").write_text(
            clients.STORAGE_CONF.format(base=self.base))
        pathlib.Path(self.base, "registries.conf").write_text(
            "unqualified-search-registries = []\n")

    def __call__(self, *args: str) -> str:
        # in the store's dir, as tests/clients.py's podman runs
        return check([*self.sandbox, "podman", *self.flags("runc"), *args], env=self.env,
                     cwd=self.base)

    def close(self) -> None:
        clients.remove_tree(self.base)


def new_podman_store(base: str, sandbox: list[str]) -> PodmanStore:
    store = PodmanStore(tempfile.mkdtemp(prefix="pm-", dir=base), sandbox)
    try:
        store.setup()
    except BaseException:
        store.close()
        raise
    return store


class Fresh:
    """The stores of one pair, made empty before it and removed after (untimed)."""

    def __init__(self, base: str, sandbox: list[str], cgroup_parent: str) -> None:
        self.base, self.sandbox, self.cgroup_parent = base, sandbox, cgroup_parent
        self.nsbind: Engine | None = None
        self.podman: PodmanStore | None = None
        self.layout = os.path.join(base, "layout")

    def clean(self) -> None:
        if self.nsbind is not None:
            self.nsbind.close()
            self.nsbind = None
        if self.podman is not None:
            self.podman.close()
            self.podman = None
        clients.remove_tree(self.layout)
        os.sync()  # the removals and whatever else is dirty hit the disk now, not in a pair

    def prepare(self) -> None:
        self.clean()
        self.nsbind = Engine(tempfile.mkdtemp(prefix="ns-", dir=self.base), self.cgroup_parent)
        self.podman = new_podman_store(self.base, self.sandbox)


@pytest.fixture
def fresh(base: str, sandbox: list[str], cgroup_parent: str) -> Iterator[Fresh]:
    stores = Fresh(base, sandbox, cgroup_parent)
    try:
        yield stores
    finally:
        stores.clean()


def _median_ms(argv: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        check(argv)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _describe(benchmark: BenchmarkFixture, image: Image, sandbox: list[str]) -> None:
    version = check(["podman", "--version"]).split()[-1]
    benchmark.extra_info.update(
        unpacked_mb=image.unpacked / 1e6, compressed_mb=image.compressed / 1e6,
        layers=image.layers, podman_version=version, podman_driver="overlay",
        sandbox_ms=_median_ms([*sandbox, "true"], rounds(10)))


# ------------------------------------------------ pull


GROUP = "pull, empty store (>= 100 MB, 5 gzip layers)"


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group=GROUP)
def test_nsbind_pull(benchmark: BenchmarkFixture, image: Image, ref: str, fresh: Fresh,
                     sandbox: list[str], summary: list[str]) -> None:
    """``nsbind pull`` vs ``podman pull`` (the target), then the last stores checked."""

    def nsbind() -> None:
        assert fresh.nsbind is not None
        fresh.nsbind("pull", "-q", "--tls-verify=false", ref)

    def podman() -> None:
        assert fresh.podman is not None
        fresh.podman("pull", "-q", "--tls-verify=false", ref)

    paired(benchmark, nsbind, podman, "podman_overlay_pull", 9, summary,
           prepare=fresh.prepare)
    ratio = benchmark.extra_info["paired_ratio"]
    assert benchmark.stats is not None
    benchmark.extra_info.update(target_ratio=TARGET, target_met=ratio <= TARGET,
                                nsbind_mb_per_s=image.unpacked / 1e6 /
                                benchmark.stats.stats.median)
    _describe(benchmark, image, sandbox)
    assert fresh.nsbind is not None and fresh.podman is not None
    assert fresh.nsbind("run", "--rm", ref, "cat", "/etc/bench-layer") == f"{DATA_LAYERS}\n"
    assert ref in fresh.podman("images", "--format", "{{.Repository}}:{{.Tag}}").split()


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group=GROUP)
def test_skopeo_copy_nsbind_load(benchmark: BenchmarkFixture, image: Image, ref: str,
                                 fresh: Fresh, sandbox: list[str],
                                 summary: list[str]) -> None:
    """``skopeo copy docker://REF oci:DIR`` + ``nsbind image load DIR`` vs ``podman pull``
    (informative); the two parts' medians in extra_info."""
    parts: dict[str, list[float]] = {"skopeo_copy": [], "nsbind_load": []}

    def copy_and_load() -> None:
        assert fresh.nsbind is not None
        t0 = time.perf_counter()
        clients.skopeo("copy", "--src-tls-verify=false", f"docker://{ref}",
                       f"oci:{fresh.layout}:v1", prefix=sandbox, timeout=300)
        t1 = time.perf_counter()
        fresh.nsbind("image", "load", "-q", fresh.layout)
        t2 = time.perf_counter()
        parts["skopeo_copy"].append(t1 - t0)
        parts["nsbind_load"].append(t2 - t1)

    def podman() -> None:
        assert fresh.podman is not None
        fresh.podman("pull", "-q", "--tls-verify=false", ref)

    lines: list[str] = []
    paired(benchmark, copy_and_load, podman, "podman_overlay_pull", 9, lines,
           prepare=fresh.prepare)
    n = rounds(9)  # the warm-up rounds' are left out, as paired leaves podman's
    medians = {k: statistics.median(v[-n:]) for k, v in parts.items()}
    benchmark.extra_info.update({f"{k}_median": v for k, v in medians.items()})
    _describe(benchmark, image, sandbox)
    summary += [line.replace(": nsbind ", ": skopeo copy + nsbind image load ", 1)  # subject
                for line in lines]
    summary.append(f"  of which skopeo copy {medians['skopeo_copy'] * 1e3:.1f} ms, "
                   f"nsbind image load {medians['nsbind_load'] * 1e3:.1f} ms (medians)")
