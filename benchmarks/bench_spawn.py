"""Spawn latency: nsbind.spawn against the C floor and the usual alternatives, in one run.

Run:  python3 -m pytest benchmarks/bench_spawn.py --benchmark-only
      python3 benchmarks/report.py .benchmarks/...json   (table + PNG of the ratios)
Every target execs a static, libc-free `true` built from benchmarks/true.c, so
what is measured is the spawn, not the program.  The machine is shared: compare
ratios within one run, not absolute times.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import nsbind
from nsbind import CgroupFd, CloneFlags, Namespaces, spawn

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


def _spawn(true_bin: str, ns: Namespaces | None = None, **kw: object) -> None:
    proc = spawn([true_bin], env={}, namespaces=ns, **kw)  # type: ignore[arg-type]
    if proc.wait() != 0:
        raise AssertionError(f"spawn exited {proc.returncode}")


# ------------------------------------------------ pid+mnt+uts+ipc


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_floor_basic(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                     true_bin: str) -> None:
    assert benchmark(floor, true_bin.encode(), int(BASIC), 1) == 0


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_nsbind_basic(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True))


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_unshare_cli_basic(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(subprocess.run, ["unshare", "-p", "-f", "-m", "-u", "-i", true_bin], check=True)


@pytest.mark.benchmark(group="pid+mnt+uts+ipc")
def test_bwrap_basic(benchmark: BenchmarkFixture, true_bin: str) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bwrap is not installed (Debian package bubblewrap)")
    benchmark(subprocess.run, ["bwrap", "--dev-bind", "/", "/", "--unshare-pid",
                               "--unshare-uts", "--unshare-ipc", true_bin], check=True)


# ------------------------------------------------ + net


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net")
def test_floor_net(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                   true_bin: str) -> None:
    assert benchmark(floor, true_bin.encode(), int(BASIC | CloneFlags.NEWNET), 1) == 0


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net")
def test_nsbind_net(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True,
                                           loopback=False))


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net")
def test_nsbind_net_loopback_up(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True))


# ------------------------------------------------ no namespaces, user, cgroup


@pytest.mark.benchmark(group="no namespaces")
def test_floor_plain(benchmark: BenchmarkFixture, floor: ctypes._NamedFuncPointer,
                     true_bin: str) -> None:
    assert benchmark(floor, true_bin.encode(), 0, 1) == 0


@pytest.mark.benchmark(group="no namespaces")
def test_nsbind_plain(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin)


@pytest.mark.benchmark(group="no namespaces")
def test_subprocess_plain(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(subprocess.run, [true_bin], check=True)


@pytest.mark.benchmark(group="no namespaces")
def test_posix_spawn_plain(benchmark: BenchmarkFixture, true_bin: str) -> None:
    def run() -> None:
        pid = os.posix_spawn(true_bin, [true_bin], {})
        os.waitpid(pid, 0)

    benchmark(run)


@pytest.mark.benchmark(group="pid+mnt+uts+ipc+net+user")
def test_nsbind_user(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True,
                                           user=True, loopback=False))


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
def test_nsbind_basic_into_cgroup(benchmark: BenchmarkFixture, true_bin: str,
                                  bench_cgroup: CgroupFd) -> None:
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True),
              cgroup=bench_cgroup)


# ------------------------------------------------ a 2 GB parent


@pytest.mark.benchmark(group="parent size")
def test_nsbind_small_parent(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True))


@pytest.mark.benchmark(group="parent size")
def test_nsbind_2gb_parent(benchmark: BenchmarkFixture, true_bin: str) -> None:
    ballast = bytearray(2 << 30)
    ballast[::4096] = b"\1" * (len(ballast) // 4096)  # touch every page
    try:
        benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True))
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
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True))


@pytest.mark.benchmark(group="warm net pool")
def test_nsbind_pool_new_net(benchmark: BenchmarkFixture, true_bin: str) -> None:
    benchmark(_spawn, true_bin, Namespaces(pid=True, mnt=True, uts=True, ipc=True, net=True))


@pytest.mark.benchmark(group="warm net pool")
def test_nsbind_pool_pooled_net(benchmark: BenchmarkFixture, true_bin: str) -> None:
    with nsbind.NamespacePool(net=True, pid=True, mnt=True, uts=True, ipc=True,
                              size=64) as pool:

        def setup() -> tuple[tuple[str, nsbind.NamespacePool], dict[str, object]]:
            pool.wait_full(timeout=30)  # measure the spawn, not the refill racing it
            return (true_bin, pool), {}

        def run(binary: str, p: nsbind.NamespacePool) -> None:
            proc = spawn([binary], env={}, namespaces=p)
            if proc.wait() != 0:
                raise AssertionError("spawn failed")

        benchmark.pedantic(run, setup=setup, rounds=300)  # type: ignore[no-untyped-call]


# ------------------------------------------------ a container on a rootfs: crun vs nsbind


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """An OCI bundle: a busybox rootfs and crun's default spec with pid+mnt+uts+ipc."""
    busybox = shutil.which("busybox")
    if busybox is None or shutil.which("crun") is None:
        pytest.skip("crun and busybox-static are not installed (scripts/bench.sh installs them)")
    root = tmp_path_factory.mktemp("bundle")
    rootfs = root / "rootfs"
    for d in ("bin", "proc", "dev", "sys"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    os.symlink("busybox", rootfs / "bin" / "true")
    subprocess.run(["crun", "spec"], cwd=root, check=True)
    config = json.loads((root / "config.json").read_text())
    config["process"].update(args=["/bin/true"], terminal=False)
    config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "mount", "uts", "ipc")]
    config["linux"].pop("resources", None)
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_crun_run(benchmark: BenchmarkFixture, bundle: pathlib.Path) -> None:
    # crun refuses this host's hybrid cgroup layout: run it without a cgroup manager, in a
    # private mount namespace where the v2 hierarchy sits at /sys/fs/cgroup.
    counter = iter(range(10**9))
    with Namespaces(mnt=True):
        nsbind.mount(nsbind.cgroup2_mountpoint(), "/sys/fs/cgroup", None, nsbind.MountFlags.BIND)

        def run() -> None:
            subprocess.run(["crun", "--cgroup-manager=disabled", "run", "--bundle", str(bundle),
                            f"nsbind-bench-{os.getpid()}-{next(counter)}"], check=True)

        benchmark(run)


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

    benchmark(run)


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_nsbind_rootfs_as_crun_spec(benchmark: BenchmarkFixture, bundle: pathlib.Path) -> None:
    """What `crun spec` asks for, with nsbind: a root with /proc, a minimal /dev (pts, shm,
    mqueue), a read-only /sys, the OCI masked and read-only paths, three capabilities,
    no_new_privs, RLIMIT_NOFILE 1024 and a hostname."""
    import resource

    from nsbind import CapabilitySets, RootFS, mounts
    from nsbind._sys.proc import Capability

    root = RootFS(bundle / "rootfs").add(mounts.proc(), mounts.dev(), mounts.mqueue(),
                                         mounts.sysfs())
    caps = frozenset({Capability.AUDIT_WRITE, Capability.KILL, Capability.NET_BIND_SERVICE})
    benchmark(_spawn, "/bin/true", Namespaces(pid=True, mnt=True, uts=True, ipc=True),
              rootfs=root, hostname="box", capabilities=CapabilitySets(permitted=caps),
              no_new_privs=True, rlimits={resource.RLIMIT_NOFILE: (1024, 1024)})


@pytest.mark.benchmark(group="container on a busybox rootfs")
def test_nsbind_rootfs(benchmark: BenchmarkFixture, bundle: pathlib.Path) -> None:
    rootfs = str(bundle / "rootfs")
    flags = nsbind.MountFlags
    mounts = [nsbind.MountStep(rootfs, rootfs, None, flags.BIND | flags.REC),
              nsbind.MountStep("proc", f"{rootfs}/proc", "proc",
                               flags.NOSUID | flags.NODEV | flags.NOEXEC),
              nsbind.MountStep("tmpfs", f"{rootfs}/dev", "tmpfs", flags.NOSUID, "mode=755"),
              nsbind.MountStep("sysfs", f"{rootfs}/sys", "sysfs",
                               flags.NOSUID | flags.NODEV | flags.NOEXEC | flags.RDONLY)]
    benchmark(_spawn, "/bin/true", Namespaces(pid=True, mnt=True, uts=True, ipc=True),
              mounts=mounts, pivot_root=rootfs, hostname="box")
