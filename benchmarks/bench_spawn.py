"""Spawn latency: nsbind.spawn against the C floor and the usual alternatives, in one run.

Run:  python3 -m pytest benchmarks/bench_spawn.py --benchmark-only
      python3 benchmarks/report.py .benchmarks/...json   (table + PNG of the ratios)
Every target execs a static, libc-free `true` built from benchmarks/true.c, so
what is measured is the spawn, not the program.  The machine is shared and its speed
drifts by ±25% between tests of one run, so each compared benchmark is *paired*: every
round of it runs right after one timed round of its group's reference (the C floor,
nsbind's own basic spawn, crun), and `extra_info["paired_ratio"]` is the ratio of the two
medians taken at the same moments.  The report shows that ratio.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import nsbind
from nsbind import CapabilitySets, CgroupFd, CloneFlags, Namespaces, RootFS, mounts, spawn
from nsbind._sys.proc import Capability

HERE = pathlib.Path(__file__).parent
BASIC = CloneFlags.NEWPID | CloneFlags.NEWNS | CloneFlags.NEWUTS | CloneFlags.NEWIPC


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("bench-build")
    subprocess.run(["gcc", "-static", "-nostdlib", "-O2", "-o", out / "true", HERE / "true.c"],
                   check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", out / "floor.so", HERE / "floor.c"],
                   check=True)
    return out


@pytest.fixture(scope="session")
def true_bin(build: pathlib.Path) -> str:
    return str(build / "true")


@pytest.fixture(scope="session")
def floor(build: pathlib.Path) -> ctypes._NamedFuncPointer:
    fn = ctypes.CDLL(str(build / "floor.so")).floor_spawn
    fn.argtypes = (ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def paired(benchmark: BenchmarkFixture, subject: Callable[[], object],
           reference: Callable[[], object], reference_name: str, rounds: int = 1000,
           before: Callable[[], object] | None = None) -> None:
    """Benchmark ``subject``; before each of its rounds (untimed by pytest-benchmark) run
    ``before`` and then one timed round of ``reference``.  Records the reference's median
    and the paired ratio (subject / reference) in extra_info."""
    ref: list[float] = []

    def setup() -> tuple[tuple[()], dict[str, object]]:
        if before is not None:
            before()
        t = time.perf_counter()
        reference()
        ref.append(time.perf_counter() - t)
        return (), {}

    benchmark.pedantic(subject, setup=setup, rounds=rounds, warmup_rounds=10)  # type: ignore
    median = statistics.median(ref)
    assert benchmark.stats is not None
    benchmark.extra_info.update(reference=reference_name, reference_median=median,
                                paired_ratio=benchmark.stats.stats.median / median)


def _spawn(true_bin: str, ns: Namespaces | nsbind.NamespacePool | None = None,
           **kw: object) -> None:
    proc = spawn([true_bin], env={}, namespaces=ns, **kw)  # type: ignore[arg-type]
    if proc.wait() != 0:
        raise AssertionError(f"spawn exited {proc.returncode}")


# ------------------------------------------------ pid+mnt+uts+ipc

BASIC_NS = Namespaces(pid=True, mnt=True, uts=True, ipc=True)


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_floor_basic(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                     true_bin: str) -> None:
    assert benchmark(floor, true_bin.encode(), int(BASIC), 1) == 0


def _floor(floor: ctypes._NamedFuncPointer, true_bin: str, flags: int) -> Callable[[], None]:
    def run() -> None:
        if floor(true_bin.encode(), flags, 1) != 0:
            raise AssertionError("the C floor failed")
    return run


def _basic_vs_floor(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                    true_bin: str) -> None:
    paired(benchmark, lambda: _spawn(true_bin, BASIC_NS), _floor(floor, true_bin, int(BASIC)),
           "floor_basic")


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_nsbind_basic(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                      true_bin: str) -> None:
    _basic_vs_floor(benchmark, floor, true_bin)


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_nsbind_basic_new_arguments(benchmark: BenchmarkFixture,
                                    floor: ctypes._NamedFuncPointer, true_bin: str) -> None:
    """Every spawn with other arguments: no plan of an earlier spawn to start from."""
    counter = iter(range(10**9))

    def run() -> None:
        proc = spawn([true_bin, str(next(counter))], env={}, namespaces=BASIC_NS)
        if proc.wait() != 0:
            raise AssertionError(f"spawn exited {proc.returncode}")

    paired(benchmark, run, _floor(floor, true_bin, int(BASIC)), "floor_basic")


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_unshare_cli_basic(benchmark: BenchmarkFixture, true_bin: str) -> None:
    paired(benchmark, lambda: subprocess.run(["unshare", "-p", "-f", "-m", "-u", "-i", true_bin],
                                             check=True),
           lambda: _spawn(true_bin, BASIC_NS), "nsbind_basic", rounds=300)


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_bwrap_basic(benchmark: BenchmarkFixture, true_bin: str) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bwrap is not installed (Debian package bubblewrap)")
    paired(benchmark, lambda: subprocess.run(["bwrap", "--dev-bind", "/", "/", "--unshare-pid",
                                              "--unshare-uts", "--unshare-ipc", true_bin],
                                             check=True),
           lambda: _spawn(true_bin, BASIC_NS), "nsbind_basic", rounds=300)


# ------------------------------------------------ + net

NET_NS = Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True, loopback=False)


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net")
def test_floor_net(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                   true_bin: str) -> None:
    assert benchmark(floor, true_bin.encode(), int(BASIC | CloneFlags.NEWNET), 1) == 0


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net")
def test_nsbind_net(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                    true_bin: str) -> None:
    paired(benchmark, lambda: _spawn(true_bin, NET_NS),
           _floor(floor, true_bin, int(BASIC | CloneFlags.NEWNET)), "floor_net")


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net")
def test_nsbind_net_loopback_up(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                                true_bin: str) -> None:
    ns = Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True)
    paired(benchmark, lambda: _spawn(true_bin, ns),
           _floor(floor, true_bin, int(BASIC | CloneFlags.NEWNET)), "floor_net")


# ------------------------------------------------ no namespaces, user, cgroup


@pytest.mark.benchmark(group="no namespaces")
def test_floor_plain(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                     true_bin: str) -> None:
    assert benchmark(floor, true_bin.encode(), 0, 1) == 0


@pytest.mark.benchmark(group="no namespaces")
def test_nsbind_plain(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                      true_bin: str) -> None:
    paired(benchmark, lambda: _spawn(true_bin), _floor(floor, true_bin, 0), "floor_plain")


@pytest.mark.benchmark(group="no namespaces")
def test_subprocess_plain(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                          true_bin: str) -> None:
    paired(benchmark, lambda: subprocess.run([true_bin], check=True),
           _floor(floor, true_bin, 0), "floor_plain")


@pytest.mark.benchmark(group="no namespaces")
def test_posix_spawn_plain(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                           true_bin: str) -> None:
    def run() -> None:
        pid = os.posix_spawn(true_bin, [true_bin], {})
        os.waitpid(pid, 0)

    paired(benchmark, run, _floor(floor, true_bin, 0), "floor_plain")


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net+user")
def test_nsbind_user(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                     true_bin: str) -> None:
    ns = Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True, user=True, loopback=False)
    paired(benchmark, lambda: _spawn(true_bin, ns),
           _floor(floor, true_bin, int(BASIC | CloneFlags.NEWNET)), "floor_net")


@pytest.fixture
def bench_cgroup() -> Iterator[CgroupFd]:
    with CgroupFd.open(nsbind.cgroup2_mountpoint()) as root:
        parent = root.mkdir("nsbind-bench", exist_ok=True)
        cg = parent.mkdir("spawn", exist_ok=True)
        try:
            yield cg
        finally:
            cg.close()
            parent.rmdir("spawn")
            parent.close()
            root.rmdir("nsbind-bench")


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_nsbind_basic_into_cgroup(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                                  true_bin: str, bench_cgroup: CgroupFd) -> None:
    paired(benchmark, lambda: _spawn(true_bin, BASIC_NS, cgroup=bench_cgroup),
           _floor(floor, true_bin, int(BASIC)), "floor_basic")


# ------------------------------------------------ a 2 GB parent
# Both paired with the C floor, whose CLONE_VM child does not depend on the parent's size:
# 2 GB parent / small parent = the quotient of their paired ratios.


@pytest.mark.benchmark(group="parent size")
def test_nsbind_small_parent(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                             true_bin: str) -> None:
    _basic_vs_floor(benchmark, floor, true_bin)


@pytest.mark.benchmark(group="parent size")
def test_nsbind_2gb_parent(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                           true_bin: str) -> None:
    ballast = bytearray(2 << 30)
    ballast[::4096] = b"\1" * (len(ballast) // 4096)  # touch every page
    try:
        _basic_vs_floor(benchmark, floor, true_bin)
    finally:
        del ballast


@pytest.mark.benchmark(group="parent size")
def test_fork_recipe_2gb_parent(benchmark: BenchmarkFixture, true_bin: str) -> None:
    """The usual Python recipe: fork, unshare, fork, exec — from the same 2 GB parent."""
    ballast = bytearray(2 << 30)
    ballast[::4096] = b"\1" * (len(ballast) // 4096)

    def recipe() -> None:
        pid = os.fork()
        if pid == 0:
            try:
                nsbind.unshare(BASIC)
                inner = os.fork()
                if inner == 0:
                    os.execv(true_bin, [true_bin])
                os.waitpid(inner, 0)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    try:
        benchmark.pedantic(recipe, rounds=20, iterations=1)  # type: ignore[no-untyped-call]
    finally:
        del ballast


# ------------------------------------------------ the warm namespace pool


@pytest.mark.benchmark(group="warm net pool")
def test_nsbind_pool_without_net(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin, BASIC_NS)


@pytest.mark.benchmark(group="warm net pool")
def test_nsbind_pool_new_net(benchmark: BenchmarkFixture, true_bin: str) -> None:
    ns = Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True)
    paired(benchmark, lambda: _spawn(true_bin, ns), lambda: _spawn(true_bin, BASIC_NS),
           "nsbind_pool_without_net")


@pytest.mark.benchmark(group="warm net pool")
def test_nsbind_pool_pooled_net(benchmark: BenchmarkFixture, true_bin: str) -> None:
    with nsbind.NamespacePool(net=True, pid=True, mnt=True, uts=True, ipc=True,
                              size=64) as pool:
        # the refill is waited for before each round: the spawn is measured, not the
        # helper racing it for the machine's two cores
        paired(benchmark, lambda: _spawn(true_bin, pool),
               lambda: _spawn(true_bin, BASIC_NS), "nsbind_pool_without_net", rounds=300,
               before=lambda: pool.wait_full(timeout=30))


# ------------------------------------------------ a container on a rootfs: crun vs nsbind
#
# One busybox rootfs for crun, runc and nsbind.  The command is the libc-free `true` (as in
# every group above: the spawn is measured, not the program); the last group runs
# busybox's own `true` instead, whose static glibc start-up (CPUID probing, ~0.35 ms under
# this VM) is the same for every runner and only dilutes the ratios.


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, true_bin: str) -> pathlib.Path:
    """An OCI bundle: a busybox rootfs with /bin/true (libc-free) and crun's default spec
    (masks, read-only paths, /dev, mqueue, sysfs, cgroup, caps, no_new_privs, rlimit,
    hostname) with pid+mnt+uts+ipc."""
    busybox = shutil.which("busybox")
    if busybox is None or shutil.which("crun") is None:
        pytest.skip("crun and busybox-static are not installed (scripts/bench.sh installs them)")
    root = tmp_path_factory.mktemp("bundle")
    rootfs = root / "rootfs"
    for d in ("bin", "proc", "dev", "sys"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    shutil.copy(true_bin, rootfs / "bin" / "true")
    os.symlink("busybox", rootfs / "bin" / "sh")
    subprocess.run(["crun", "spec"], cwd=root, check=True)
    config = json.loads((root / "config.json").read_text())
    config["process"].update(args=["/bin/true"], terminal=False)
    config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "mount", "uts", "ipc")]
    config["linux"].pop("resources", None)
    (root / "config.json").write_text(json.dumps(config))
    return root


@contextlib.contextmanager
def _crun(bundle: pathlib.Path) -> Iterator[Callable[[], None]]:
    """A `crun run` of the bundle, as a callable.  crun refuses this host's hybrid cgroup
    layout: it runs without a cgroup manager, in a private mount namespace (of this
    thread) where the v2 hierarchy sits at /sys/fs/cgroup."""
    counter = iter(range(10**9))
    with Namespaces(mnt=True):
        nsbind.mount(nsbind.cgroup2_mountpoint(), "/sys/fs/cgroup", None, nsbind.MountFlags.BIND)

        def run() -> None:
            subprocess.run(["crun", "--cgroup-manager=disabled", "run", "--bundle", str(bundle),
                            f"nsbind-bench-{os.getpid()}-{next(counter)}"], check=True)

        yield run


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_crun_run(benchmark: BenchmarkFixture, bundle: pathlib.Path) -> None:
    with _crun(bundle) as run:
        benchmark.pedantic(run, rounds=200, warmup_rounds=5)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def runc_bundle(bundle: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[pathlib.Path, str]]:
    """The same bundle for runc, with an absolute cgroupsPath under a benchmark-owned
    parent at each hierarchy's root (never inside this process's own cgroup)."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (scripts/bench.sh installs it)")
    root = tmp_path_factory.mktemp("runc-bundle")
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(bundle / "rootfs"), "readonly": True}
    parent = f"nsbind-bench-runc-{os.getpid()}"
    config["linux"]["cgroupsPath"] = f"/{parent}/run"
    (root / "config.json").write_text(json.dumps(config))
    yield root, parent
    for h in nsbind.cgroup_layout().hierarchies:  # runc removed each run's cgroup
        path = h.path_of(f"/{parent}")
        if os.path.isdir(path):
            os.rmdir(path)


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_runc_run(benchmark: BenchmarkFixture, runc_bundle: tuple[pathlib.Path, str],
                  tmp_path: pathlib.Path) -> None:
    bundle_dir, _ = runc_bundle
    counter = iter(range(10**9))

    def run() -> None:
        subprocess.run(["runc", "--root", str(tmp_path / "state"), "run", "--bundle",
                        str(bundle_dir), f"nsbind-bench-{os.getpid()}-{next(counter)}"],
                       check=True)

    benchmark.pedantic(run, rounds=60, warmup_rounds=3)  # type: ignore[no-untyped-call]


def _minimal_root(bundle: pathlib.Path) -> RootFS:
    """The root a plain container needs: proc, a tmpfs /dev, a read-only sysfs."""
    return RootFS(bundle / "rootfs", defaults=False).add(
        mounts.proc(), mounts.tmpfs("/dev", mode=0o755), mounts.sysfs())


def _crun_spec_root(bundle: pathlib.Path) -> RootFS:
    """What `crun spec` mounts: proc, a minimal /dev (pts, shm), mqueue, a read-only sysfs
    and cgroup2, and the OCI masked and read-only paths."""
    return RootFS(bundle / "rootfs").add(mounts.proc(), mounts.dev(), mounts.mqueue(),
                                         mounts.sysfs(), mounts.cgroup2(readonly=True))


def _crun_spec_spawn(root: RootFS, argv: list[str]) -> Callable[[], None]:
    """The rest of `crun spec`: three capabilities, no_new_privs, RLIMIT_NOFILE 1024 and a
    hostname."""
    caps = frozenset({Capability.AUDIT_WRITE, Capability.KILL, Capability.NET_BIND_SERVICE})

    def run() -> None:
        proc = spawn(argv, env={}, namespaces=BASIC_NS, rootfs=root, hostname="box",
                     capabilities=CapabilitySets(permitted=caps), no_new_privs=True,
                     rlimits={resource.RLIMIT_NOFILE: (1024, 1024)})
        if proc.wait() != 0:
            raise AssertionError(f"spawn exited {proc.returncode}")

    return run


def _rootfs_spawn(root: RootFS, argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        proc = spawn(argv, env={}, namespaces=BASIC_NS, rootfs=root, hostname="box")
        if proc.wait() != 0:
            raise AssertionError(f"spawn exited {proc.returncode}")

    return run


def _against_crun(benchmark: BenchmarkFixture, bundle: pathlib.Path,
                  subject: Callable[[], None], name: str = "crun_run") -> None:
    with _crun(bundle) as crun:
        paired(benchmark, subject, crun, name, rounds=200)


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_nsbind_rootfs(benchmark: BenchmarkFixture, bundle: pathlib.Path) -> None:
    _against_crun(benchmark, bundle, _rootfs_spawn(_minimal_root(bundle), ["/bin/true"]))


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_nsbind_rootfs_prepared(benchmark: BenchmarkFixture, bundle: pathlib.Path) -> None:
    with _minimal_root(bundle).prepare() as root:
        _against_crun(benchmark, bundle, _rootfs_spawn(root, ["/bin/true"]))


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_nsbind_rootfs_as_crun_spec(benchmark: BenchmarkFixture, bundle: pathlib.Path) -> None:
    _against_crun(benchmark, bundle, _crun_spec_spawn(_crun_spec_root(bundle), ["/bin/true"]))


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_nsbind_rootfs_as_crun_spec_prepared(benchmark: BenchmarkFixture,
                                             bundle: pathlib.Path) -> None:
    with _crun_spec_root(bundle).prepare() as root:
        _against_crun(benchmark, bundle, _crun_spec_spawn(root, ["/bin/true"]))


# ------------------------------------------------ the same with busybox's own `true`

BUSYBOX_TRUE = ["/bin/busybox", "true"]


@pytest.fixture
def busybox_bundle(bundle: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """The same bundle, running busybox's `true` (config.json only; the rootfs is shared)."""
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(bundle / "rootfs")}
    config["process"]["args"] = BUSYBOX_TRUE
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.benchmark(group="container, busybox's glibc true")
def test_crun_run_busybox_true(benchmark: BenchmarkFixture, busybox_bundle: pathlib.Path) -> None:
    with _crun(busybox_bundle) as run:
        benchmark.pedantic(run, rounds=200, warmup_rounds=5)  # type: ignore[no-untyped-call]


@pytest.mark.benchmark(group="container, busybox's glibc true")
def test_nsbind_rootfs_busybox_true(benchmark: BenchmarkFixture, bundle: pathlib.Path,
                                    busybox_bundle: pathlib.Path) -> None:
    _against_crun(benchmark, busybox_bundle, _rootfs_spawn(_minimal_root(bundle), BUSYBOX_TRUE),
                  "crun_run_busybox_true")


@pytest.mark.benchmark(group="container, busybox's glibc true")
def test_nsbind_rootfs_as_crun_spec_busybox_true(benchmark: BenchmarkFixture,
                                                 bundle: pathlib.Path,
                                                 busybox_bundle: pathlib.Path) -> None:
    _against_crun(benchmark, busybox_bundle,
                  _crun_spec_spawn(_crun_spec_root(bundle), BUSYBOX_TRUE),
                  "crun_run_busybox_true")
