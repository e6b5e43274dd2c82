"""OCI container start: nsbind.oci against crun and runc, alone and under podman and ctr.

Run:  python3 -m pytest benchmarks/bench_oci.py --benchmark-only
      (NSBIND_BENCH_ROUNDS=N caps every benchmark's rounds at N: a quick check, not a
      measurement)
Every container runs a static, libc-free `true` (benchmarks/true.c), so what is measured
is the runtime, not the program.  As in bench_spawn.py each compared benchmark is
*paired*: each of its rounds runs right after one timed round of the group's reference,
and ``extra_info["paired_ratio"]`` is subject median / reference median taken at the same
moments (``extra_info["x_faster"]`` is its inverse).

"OCI default config, in-process"
    The bundle is ``nsbind.oci.default_spec_json()`` (what ``runc spec`` writes: masks,
    read-only paths, /dev, capabilities, no_new_privs, rlimits; pid, mount, uts, ipc and
    network namespaces) running /true, plus the seccomp profile podman sends, converted
    from /usr/share/containers/seccomp.json for the spec's capabilities on this
    architecture.  nsbind in-process (converted once; the root built every round, or
    prepared once) against ``crun --cgroup-manager=disabled run`` of the same bundle,
    neither in a cgroup.  Target: nsbind at least 8 times as fast as crun.
"whole process"
    ``nsbind-oci run`` against ``runc run`` (the reference) of that bundle with a
    cgroupsPath under a benchmark-owned parent, and crun against runc.  Target:
    nsbind-oci faster than runc.  Also the import cost of ``nsbind-oci state``: the
    nsbind modules it imports and their microseconds (``-X importtime``); and the calls a
    client makes for one container (create, state, start, state, delete), each a
    process, paired with runc's, each call's median in extra_info.
"through the clients"
    ``podman run --rm`` and ``ctr run --rm`` of a tiny image holding /true, with
    nsbind-oci against runc (the reference) as the runtime.  Target: nsbind-oci faster.

crun refuses this host's hybrid cgroup layout: it runs without a cgroup manager from a
thread of its own in a private mount namespace where the v2 hierarchy sits at
/sys/fs/cgroup (the thread hand-off, some tens of µs, is in crun's time).
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import nsbind
import nsbind.oci
from nsbind import Namespaces
from nsbind.oci.run import build_root

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import clients

HERE = pathlib.Path(__file__).parent
SECCOMP_JSON = "/usr/share/containers/seccomp.json"
NSBIND_OCI = os.path.join(sysconfig.get_path("scripts"), "nsbind-oci")
RUNC, CRUN = "/usr/sbin/runc", "/usr/bin/crun"
TAG = f"nsbind-bench-oci-{os.getpid()}"


def rounds(n: int) -> int:
    """``n``, capped by $NSBIND_BENCH_ROUNDS (a quick check of the benchmarks)."""
    cap = os.environ.get("NSBIND_BENCH_ROUNDS")
    return min(n, int(cap)) if cap else n


def paired(benchmark: BenchmarkFixture, subject: Callable[[], object],
           reference: Callable[[], object], reference_name: str, n: int) -> None:
    """bench_spawn.paired: one timed round of ``reference`` before each round of
    ``subject`` (untimed by pytest-benchmark); records both medians and their ratio."""
    ref: list[float] = []

    def setup() -> tuple[tuple[()], dict[str, object]]:
        t = time.perf_counter()
        reference()
        ref.append(time.perf_counter() - t)
        return (), {}

    benchmark.pedantic(subject, setup=setup, rounds=rounds(n),  # type: ignore[no-untyped-call]
                       warmup_rounds=min(3, rounds(n)))
    median = statistics.median(ref[-rounds(n):])  # the warm-up rounds' are not compared
    assert benchmark.stats is not None
    ratio = benchmark.stats.stats.median / median
    benchmark.extra_info.update(reference=reference_name, reference_median=median,
                                paired_ratio=ratio, x_faster=1 / ratio)


def run(argv: list[str], **kw: Any) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}: {proc.stderr[-2000:]}"


_counter = iter(range(10**9))


def new_id() -> str:
    return f"{TAG}-{next(_counter)}"


# ------------------------------------------------ the bundle


@pytest.fixture(scope="session", autouse=True)
def compiled() -> None:
    """nsbind's modules compiled, as `pip install .` leaves them: an editable install
    under PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module in every
    runtime process the benchmarks start."""
    import compileall

    compileall.compile_dir(pathlib.Path(nsbind.__file__).parent, quiet=1)


@pytest.fixture(scope="session")
def true_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bench-oci-build") / "true"
    run(["gcc", "-static", "-nostdlib", "-O2", "-o", str(out), str(HERE / "true.c")])
    return str(out)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, true_bin: str) -> pathlib.Path:
    """runc's default config running /true (not on a terminal) with podman's seccomp
    profile, on a root holding /true and the mount points."""
    if not os.path.exists(SECCOMP_JSON):
        pytest.skip(f"{SECCOMP_JSON} is missing (Debian package golang-github-containers-"
                    "common): no podman seccomp profile to send")
    root = tmp_path_factory.mktemp("bench-oci-bundle")
    for d in ("proc", "dev", "sys"):
        (root / "rootfs" / d).mkdir(parents=True)
    shutil.copy(true_bin, root / "rootfs" / "true")
    config = nsbind.oci.default_spec_json()
    config["process"].update(terminal=False, args=["/true"])
    config["linux"]["namespaces"] = [{"type": t}
                                     for t in ("pid", "mount", "uts", "ipc", "network")]
    caps = set(config["process"]["capabilities"]["bounding"])
    config["linux"]["seccomp"] = clients.podman_seccomp(json.loads(pathlib.Path(SECCOMP_JSON)
                                                           .read_text()), caps)
    (root / "config.json").write_text(json.dumps(config))
    return root


class Crun:
    """``crun --cgroup-manager=disabled run`` of a bundle, called from here but started
    by a thread in a private mount namespace with the v2 hierarchy at /sys/fs/cgroup
    (crun refuses the hybrid layout; runc and nsbind still see the host's)."""

    def __init__(self, state: pathlib.Path) -> None:
        self.state = str(state)
        self.jobs: queue.Queue[list[str] | None] = queue.Queue()
        self.done: queue.Queue[BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self._reply()

    def _serve(self) -> None:
        try:
            with Namespaces(mnt=True):
                nsbind.mount(nsbind.cgroup2_mountpoint(), "/sys/fs/cgroup", None,
                             nsbind.MountFlags.BIND)
                self.done.put(None)
                while (argv := self.jobs.get()) is not None:
                    try:
                        run(argv)
                        self.done.put(None)
                    except BaseException as exc:
                        self.done.put(exc)
        except BaseException as exc:
            self.done.put(exc)

    def _reply(self) -> None:
        exc = self.done.get(timeout=120)
        if exc is not None:
            raise exc

    def runner(self, bundle: pathlib.Path) -> Callable[[], None]:
        def call() -> None:
            self.jobs.put([CRUN, "--cgroup-manager=disabled", "--root", self.state, "run",
                           "--bundle", str(bundle), new_id()])
            self._reply()
        return call

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def crun(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crun]:
    if not os.access(CRUN, os.X_OK):
        pytest.skip(f"{CRUN} is not installed")
    server = Crun(tmp_path_factory.mktemp("crun-state"))
    try:
        yield server
    finally:
        server.close()


# ------------------------------------------------ OCI default config, in-process


@pytest.fixture(scope="session")
def spawn_args(bundle: pathlib.Path) -> nsbind.oci.SpawnArgs:
    config = json.loads((bundle / "config.json").read_text())
    return nsbind.oci.to_spawn(nsbind.oci.parse_spec(config, bundle=str(bundle)),
                               cgroup_parent="")


def _spawn_in(args: nsbind.oci.SpawnArgs, root: nsbind.RootFS) -> None:
    proc = nsbind.spawn(list(args.args), rootfs=root, init=False,
                        **args.spawn_kwargs)  # type: ignore[arg-type]
    if proc.wait() != 0:
        raise AssertionError(f"the container exited {proc.returncode}")


@pytest.mark.timeout(600)
@pytest.mark.benchmark(group="OCI default config, in-process")
def test_nsbind_inprocess(benchmark: BenchmarkFixture, bundle: pathlib.Path, crun: Crun,
                          spawn_args: nsbind.oci.SpawnArgs) -> None:
    def subject() -> None:
        with build_root(spawn_args, "/") as root:
            _spawn_in(spawn_args, root)

    paired(benchmark, subject, crun.runner(bundle), "crun_run", 300)


@pytest.mark.timeout(600)
@pytest.mark.benchmark(group="OCI default config, in-process")
def test_nsbind_inprocess_prepared(benchmark: BenchmarkFixture, bundle: pathlib.Path,
                                   crun: Crun, spawn_args: nsbind.oci.SpawnArgs) -> None:
    with build_root(spawn_args, "/").prepare() as root:
        paired(benchmark, lambda: _spawn_in(spawn_args, root), crun.runner(bundle),
               "crun_run", 300)


# ------------------------------------------------ whole process


def _remove_cgroups(rel: str) -> None:
    """Every cgroup directory at and below ``rel`` in every hierarchy (their processes
    killed: only what a runtime left of ours can be there), deepest first."""
    clients.remove_cgroups_below(rel)
    clients.remove_cgroup_dirs(clients.cgroup_dirs(rel))


@pytest.fixture(scope="session")
def cg_bundle(bundle: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[pathlib.Path]:
    """The bundle (its config; the rootfs shared) with an absolute cgroupsPath under a
    benchmark-owned parent at each hierarchy's root, removed at the end."""
    for path in (RUNC, CRUN):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is not installed")
    root = tmp_path_factory.mktemp("bench-oci-cg-bundle")
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = str(bundle / "rootfs")
    config["linux"]["cgroupsPath"] = f"/{TAG}/run"
    (root / "config.json").write_text(json.dumps(config))
    try:
        yield root
    finally:
        _remove_cgroups(TAG)


def _runtime(binary: str, state: pathlib.Path, bundle: pathlib.Path) -> Callable[[], None]:
    def call() -> None:
        run([binary, "--root", str(state), "run", "--bundle", str(bundle), new_id()])
    return call


@pytest.fixture
def states(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A state root per runtime, checked empty at the end (every run deleted its
    container; nsbind-oci's cache of compiled seccomp profiles, .seccomp-cache, stays)."""
    yield tmp_path
    left = [str(p) for d in tmp_path.iterdir() if d.is_dir() for p in d.iterdir()
            if not p.name.startswith(".")]
    assert not left, f"state left behind: {left}"


@pytest.mark.timeout(900)
@pytest.mark.benchmark(group="whole process")
def test_nsbind_oci_run(benchmark: BenchmarkFixture, cg_bundle: pathlib.Path,
                        states: pathlib.Path) -> None:
    paired(benchmark, _runtime(NSBIND_OCI, states / "nsbind-oci", cg_bundle),
           _runtime(RUNC, states / "runc", cg_bundle), "runc_run", 200)


@pytest.mark.timeout(900)
@pytest.mark.benchmark(group="whole process")
def test_crun_run(benchmark: BenchmarkFixture, cg_bundle: pathlib.Path, crun: Crun,
                  states: pathlib.Path) -> None:
    (states / "runc").mkdir()
    paired(benchmark, crun.runner(cg_bundle), _runtime(RUNC, states / "runc", cg_bundle),
           "runc_run", 200)


def import_cost(stderr: str, package: str = "nsbind") -> tuple[int, int, int]:
    """From ``-X importtime`` output: how many ``package`` modules were imported, their
    own microseconds summed, and the cumulative microseconds of the outermost ones (those
    no other module of ``package`` imported)."""
    entries: list[tuple[int, str, int, int]] = []  # (depth, name, self µs, cumulative µs)
    for line in stderr.splitlines():  # in import-completion order
        if not line.startswith("import time:") or "|" not in line[12:]:
            continue
        own_us, total_us, module = line[12:].split("|")
        if not own_us.strip().isdigit():
            continue  # the header
        depth = (len(module) - len(module.lstrip())) // 2
        entries.append((depth, module.strip(), int(own_us), int(total_us)))
    mine = [e for e in entries if e[1].split(".")[0] == package]
    outer_us, stack = 0, list[tuple[int, bool]]()  # reversed: a module's importers come before it
    for depth, name, _own, cumulative in reversed(entries):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        inside = any(is_mine for _, is_mine in stack)
        is_mine = name.split(".")[0] == package
        if is_mine and not inside:
            outer_us += cumulative
        stack.append((depth, is_mine))
    return len(mine), sum(e[2] for e in mine), outer_us


@pytest.mark.benchmark(group="whole process")
def test_nsbind_oci_state_imports(benchmark: BenchmarkFixture, tmp_path: pathlib.Path) -> None:
    """Informative: ``nsbind-oci state x`` (no such container: exit 1), timed whole, and
    what it imports of nsbind (``python3 -X importtime``) in extra_info."""
    argv = [NSBIND_OCI, "--root", str(tmp_path), "state", "x"]

    def call() -> None:
        subprocess.run(argv, capture_output=True, check=False)

    benchmark.pedantic(call, rounds=rounds(50), warmup_rounds=1)  # type: ignore[no-untyped-call]
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 1 and "x" in proc.stderr, proc.stderr[-2000:]
    modules, self_us, cumulative_us = import_cost(proc.stderr)
    benchmark.extra_info.update(nsbind_modules=modules, nsbind_self_us=self_us,
                                nsbind_cumulative_us=cumulative_us)


#: the calls a client makes for one container, in order (the container's /true exits
#: after start: the second state reads "stopped", delete removes a stopped container)
LIFECYCLE = ("create", "state", "start", "state2", "delete")


def _lifecycle(binary: str, state: pathlib.Path, bundle: pathlib.Path,
               times: dict[str, list[float]]) -> Callable[[], None]:
    """One container's create, state, start, state and delete, each call timed into
    ``times`` (as a client makes them: a process each, stdin from /dev/null).  Before the
    delete, as a client that has seen the exit (conmon, the shim), the container's
    process is waited for, untimed: a delete of a running container is refused."""
    def stopped(cid: str) -> bool:
        out = subprocess.run([binary, "--root", str(state), "state", cid], check=True,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout
        return bool(json.loads(out)["status"] == "stopped")

    def call() -> None:
        cid = new_id()
        argvs = {"create": ["create", "--bundle", str(bundle), cid], "state": ["state", cid],
                 "start": ["start", cid], "state2": ["state", cid], "delete": ["delete", cid]}
        for name in LIFECYCLE:
            if name == "delete":
                assert clients.wait_until(lambda: stopped(cid), timeout=10, interval=0.005)
            t = time.perf_counter()
            subprocess.run([binary, "--root", str(state), *argvs[name]], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            times.setdefault(name, []).append(time.perf_counter() - t)
    return call


@pytest.mark.timeout(900)
@pytest.mark.benchmark(group="whole process")
def test_nsbind_oci_lifecycle(benchmark: BenchmarkFixture, cg_bundle: pathlib.Path,
                              states: pathlib.Path) -> None:
    """The calls podman and containerd's shim make for a container, each a process:
    nsbind-oci's whole lifecycle paired with runc's; each call's median in extra_info
    (``<call>_ms`` and ``runc_<call>_ms``)."""
    mine: dict[str, list[float]] = {}
    runc: dict[str, list[float]] = {}
    paired(benchmark, _lifecycle(NSBIND_OCI, states / "nsbind-oci", cg_bundle, mine),
           _lifecycle(RUNC, states / "runc", cg_bundle, runc), "runc_lifecycle", 60)
    for name in LIFECYCLE:
        benchmark.extra_info[f"{name}_ms"] = statistics.median(mine[name]) * 1e3
        benchmark.extra_info[f"runc_{name}_ms"] = statistics.median(runc[name]) * 1e3


# ------------------------------------------------ through the clients

PODMAN_TRUE = "localhost/nsbind-bench-true:latest"
CTR_TRUE = "docker.io/library/nsbind-bench-true:latest"


def true_layer(base: str, true_bin: str) -> str:
    """A layer of one static /true and the mount points a runtime needs."""
    rootfs = os.path.join(base, "true-image", "rootfs")
    for d in ("proc", "dev", "sys", "etc", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy(true_bin, os.path.join(rootfs, "true"))
    return clients.tar_rootfs(rootfs, os.path.join(base, "true-image", "layer.tar"))


@pytest.fixture(scope="module")
def podman_store(true_bin: str) -> Iterator[clients.PodmanStore]:
    """A private podman storage (tests/clients.py) with the /true image; removed at the
    end with its containers, images, cgroups and mounts.  In /tmp itself: podman refuses
    a runroot longer than 50 characters."""
    clients.need("podman", "conmon")
    clients.need_runtime("runc")
    store = clients.PodmanStore(tempfile.mkdtemp(prefix="nsb-bench-", dir="/tmp"),
                                f"{TAG}-podman")
    try:
        store.setup()
        layer = true_layer(store.base, true_bin)
        clients.check(store.podman("runc", "import", layer, PODMAN_TRUE, timeout=60))
        yield store
    finally:
        store.close()


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="through the clients")
def test_podman_nsbind_oci(benchmark: BenchmarkFixture,
                           podman_store: clients.PodmanStore) -> None:
    runners = {name: clients.Podman(podman_store, name) for name in clients.RUNTIMES}

    def podman(name: str) -> Callable[[], None]:
        def call() -> None:
            clients.check(runners[name].run(*runners[name].run_options(), PODMAN_TRUE,
                                            "/true"))
        return call

    try:
        paired(benchmark, podman("nsbind-oci"), podman("runc"), "podman_runc", 30)
    finally:
        for runner in runners.values():
            runner.cleanup()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory,
               true_bin: str) -> Iterator[clients.Containerd]:
    """A private containerd (tests/clients.py) with the /true image; stopped at the end,
    its shims, state, cgroups and mounts removed."""
    clients.need("containerd", "ctr", "containerd-shim-runc-v2")
    clients.need_runtime("runc")
    daemon = clients.Containerd(str(tmp_path_factory.mktemp("bench-ctr")), f"{TAG}-ctr")
    try:
        daemon.setup()
        archive = clients.oci_archive(true_layer(daemon.base, true_bin),
                                      os.path.join(daemon.base, "true-image", "image.tar"),
                                      name=CTR_TRUE)
        clients.check(daemon.ctr("images", "import", archive, timeout=60))
        yield daemon
    finally:
        daemon.close()


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="through the clients")
def test_ctr_nsbind_oci(benchmark: BenchmarkFixture, containerd: clients.Containerd) -> None:
    runners = {name: clients.Ctr(containerd, name) for name in clients.RUNTIMES}

    def ctr(name: str) -> Callable[[], None]:
        def call() -> None:
            c = runners[name]
            cid = c.new_id("bench")
            clients.check(c(*c.run_args(cid), CTR_TRUE, cid, "/true"))
        return call

    try:
        paired(benchmark, ctr("nsbind-oci"), ctr("runc"), "ctr_runc", 30)
    finally:
        for runner in runners.values():
            runner.cleanup()
