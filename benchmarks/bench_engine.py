"""The ``nsbind`` command against podman: ``run --rm`` warm and cold, and ``exec``.

Run:  python3 -m pytest benchmarks/bench_engine.py --benchmark-only -s
      (NSBIND_BENCH_ROUNDS=N caps every benchmark's rounds at N: a quick check, not a
      measurement; -s shows the summary of medians and ratios at the end)
Issue 15's target: ``nsbind run --rm IMG true`` with the image already stored, timed as
a whole process, in at most half the time of ``podman run --rm IMG true``.  As in
bench_oci.py each compared benchmark is *paired*: every round of nsbind runs right after
one timed round of podman (the reference), and ``extra_info["paired_ratio"]`` is nsbind's
median / podman's median over the same moments (``x_faster`` its inverse).

The image is a busybox-static rootfs (tests/clients.py: build_rootfs, tar_rootfs,
oci_archive; ``true`` is a busybox applet link) in one OCI archive that both load.
nsbind runs with ``--root``/``--runroot`` of its own under a temp dir and the cgroup
parent ``/nsbind-bench-<pid>``; podman with a private storage (tests/clients.py
PodmanStore: ``--root``/``--runroot``/``--tmpdir``, its own containers.conf, cgroupfs
manager, cgroup parent ``/nsbind-bench-<pid>-podman/podman``), ``--network none``.

crun 1.8.1 refuses a hybrid cgroup host ("cgroups in hybrid mode not supported, drop
all controllers from cgroupv2"), and with the v2 hierarchy alone it needs to raise
RLIMIT_MEMLOCK for its device eBPF program (root lacks CAP_SYS_RESOURCE here).  Its
cgroup v1 support needs neither: on a hybrid host podman + crun runs in a mount
namespace of its own where the v2 hierarchy (/sys/fs/cgroup/unified) is unmounted,
which crun takes for a cgroup v1 host - a default ``podman run``, with its cgroup in
every v1 hierarchy and its device rules.  Each call goes through ``nsenter`` into
that namespace; nsenter's own time, measured, is taken off podman's.  On a host crun
takes as it is, podman + crun runs directly.  podman + runc runs as usual.

"run, image stored (warm)"
    ``nsbind run --rm IMG true`` vs ``podman run --rm IMG true`` (runc), each image
    loaded once (``nsbind image load``, ``podman load`` of the same archive).
"run, image stored (warm), podman + crun"
    The same against ``podman run --rm IMG true`` with crun (on a hybrid host in the
    cgroup v1 view above).  Target: ratio <= 0.5.
"run, fresh store (cold)"
    Every round both start from an empty store: ``nsbind run --rm ARCHIVE true`` (the
    archive loaded and unpacked on the way) vs ``podman run --rm oci-archive:ARCHIVE true``
    (podman's one-command equivalent: it copies the image into its fresh storage, then
    runs).  The stores are made and removed between the timed calls, untimed.
"exec"
    ``nsbind exec C true`` vs ``podman exec C true`` into a running ``sleep 600``
    container of each (``run -d``), removed after with ``rm -f``.
"start-up imports"
    ``nsbind ps`` timed whole; extra_info: the nsbind modules ``nsbind ps`` and
    ``nsbind run --rm IMG true`` import and their milliseconds (``-X importtime``), and
    the interpreter's own start (``python -c pass``, ``-S`` without site).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import nsbind
from nsbind.cgrouplayout import cgroup_layout

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from bench_oci import import_cost

import clients

NSBIND = os.path.join(sysconfig.get_path("scripts"), "nsbind")
TAG = f"nsbind-bench-{os.getpid()}"
IMAGE = "localhost/nsbind-bench-busybox:latest"
TARGET = 0.5  # nsbind run / podman run, warm
#: the first line of the module's summary (the ``summary`` fixture reads the test module's)
SUMMARY_TITLE = ("bench_engine (podman + crun on a hybrid host: in a mount namespace "
                 "without the v2 hierarchy, crun's cgroup v1 layout)")


def rounds(n: int) -> int:
    """``n``, capped by $NSBIND_BENCH_ROUNDS (a quick check of the benchmarks)."""
    cap = os.environ.get("NSBIND_BENCH_ROUNDS")
    return min(n, int(cap)) if cap else n


def check(argv: list[str], **kw: Any) -> str:
    proc: subprocess.CompletedProcess[str] = subprocess.run(
        argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, **kw)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def paired(benchmark: BenchmarkFixture, subject: Callable[[], object],
           reference: Callable[[], object], reference_name: str, n: int,
           summary: list[str], prepare: Callable[[], object] = lambda: None,
           subject_name: str = "nsbind") -> None:
    """bench_oci.paired, with ``prepare`` called untimed before each pair (fresh stores):
    one timed round of ``reference``, then one of ``subject`` (pytest-benchmark's).
    Records both medians and their ratio; adds a line to the summary, which calls the
    subject ``subject_name``."""
    ref: list[float] = []

    def setup() -> tuple[tuple[()], dict[str, object]]:
        prepare()
        t = time.perf_counter()
        reference()
        ref.append(time.perf_counter() - t)
        return (), {}

    benchmark.pedantic(subject, setup=setup, rounds=rounds(n),  # type: ignore[no-untyped-call]
                       warmup_rounds=min(2, rounds(n)))
    median = statistics.median(ref[-rounds(n):])  # the warm-up rounds' are not compared
    assert benchmark.stats is not None
    mine = benchmark.stats.stats.median
    ratio = mine / median
    benchmark.extra_info.update(reference=reference_name, reference_median=median,
                                paired_ratio=ratio, x_faster=1 / ratio)
    summary.append(f"{benchmark.group}: {subject_name} {mine * 1e3:.1f} ms, {reference_name} "
                   f"{median * 1e3:.1f} ms, ratio {ratio:.2f} ({len(ref)} pairs "
                   f"incl. warm-up)")


# ------------------------------------------------ fixtures


@pytest.fixture(scope="session", autouse=True)
def compiled() -> None:
    """nsbind's modules compiled, as `pip install .` leaves them (bench_oci.compiled)."""
    import compileall

    compileall.compile_dir(pathlib.Path(nsbind.__file__).parent, quiet=1)


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines printed at the end of the module (medians and ratios), under the test
    module's SUMMARY_TITLE."""
    lines: list[str] = []
    yield lines
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not lines:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        for line in [request.module.SUMMARY_TITLE, *lines]:
            reporter.write_line(line)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """The benchmark's temp dir (short: podman refuses a runroot over 50 characters)."""
    path = tempfile.mkdtemp(prefix="nsb-eng-", dir="/tmp")
    try:
        yield path
    finally:
        clients.remove_tree(path)


@pytest.fixture(scope="module")
def archive(base: str) -> str:
    """The busybox-static image as an OCI archive named IMAGE."""
    root = clients.build_rootfs(os.path.join(base, "image", "rootfs"))
    layer = clients.tar_rootfs(root, os.path.join(base, "image", "layer.tar"))
    return clients.oci_archive(layer, os.path.join(base, "image", "busybox.tar"), IMAGE)


@pytest.fixture(scope="module")
def cgroup_parent() -> Iterator[str]:
    """``/nsbind-bench-<pid>`` in every hierarchy; it and what is below removed at the end."""
    with clients.cgroup_everywhere(TAG) as parent:
        yield parent


class Engine:
    """The ``nsbind`` command on a store and state of its own."""

    def __init__(self, home: str, cgroup_parent: str) -> None:
        self.home = home
        self.cgroup_parent = cgroup_parent
        self.globals = ["--root", os.path.join(home, "store"),
                        "--runroot", os.path.join(home, "state")]

    def argv(self, *args: str) -> list[str]:
        if args and args[0] == "run":
            args = ("run", "--cgroup-parent", self.cgroup_parent, *args[1:])
        return [NSBIND, *self.globals, *args]

    def __call__(self, *args: str) -> str:
        return check(self.argv(*args))

    def close(self) -> None:
        """Every container removed by the engine, then the store and state."""
        with contextlib.suppress(AssertionError):
            ids = self("ps", "-aq").split()
            if ids:
                self("rm", "-f", *ids)
        clients.remove_tree(self.home)


@pytest.fixture(scope="module")
def engine(base: str, archive: str, cgroup_parent: str) -> Iterator[Engine]:
    eng = Engine(os.path.join(base, "nsbind"), cgroup_parent)
    try:
        eng("image", "load", "-q", archive)
        yield eng
    finally:
        eng.close()


class PodmanStore(clients.PodmanStore):
    """tests/clients.py's private podman storage, without its busybox import: the image
    comes by ``podman load`` of the benchmark's archive, or not at all (a cold store)."""

    def setup(self) -> None:
        for d in ("hooks", "net", "root", "runroot", "tmp"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        pathlib.Path(self.base, "containers.conf").write_text(
            clients.CONTAINERS_CONF.format(base=self.base))
        pathlib.Path(self.base, "storage.conf").write_text(
            clients.STORAGE_CONF.format(base=self.base))
        pathlib.Path(self.base, "registries.conf").write_text(
            "unqualified-search-registries = []\n")
        self._made_cgroups = clients.make_cgroup(self.cgroup_parent + "/conmon")

    def argv(self, *args: str) -> list[str]:
        """``podman`` with this storage and runc; ``run`` with the clients' options."""
        if args and args[0] == "run":
            args = ("run", "--network", "none", "--cgroup-parent", self.cgroup_parent,
                    *args[1:])
        return ["podman", *self.flags("runc"), *args]

    def __call__(self, *args: str) -> str:
        # conmon inherits the working directory and leaves an "oom" file there
        return check(self.argv(*args), env=self.env, cwd=self.base)


def new_podman_store(name: str) -> PodmanStore:
    store = PodmanStore(tempfile.mkdtemp(prefix="nsb-pm-", dir="/tmp"), name)
    try:
        store.setup()
    except BaseException:
        store.close()
        raise
    return store


@pytest.fixture(scope="module")
def podman(archive: str) -> Iterator[PodmanStore]:
    clients.need("podman", "conmon")
    clients.need_runtime("runc")
    store = new_podman_store(f"{TAG}-podman")
    try:
        store("load", "-q", "-i", archive)
        yield store
    finally:
        store.close()


def hybrid_cgroups() -> bool:
    """Whether this host has cgroup v1 hierarchies and the v2 one at
    /sys/fs/cgroup/unified (crun refuses that layout)."""
    layout = cgroup_layout()
    return (layout.mode == "hybrid" and layout.unified is not None
            and layout.unified.mountpoint == "/sys/fs/cgroup/unified")


@pytest.fixture(scope="module")
def crun_view(podman: PodmanStore) -> Iterator[list[str]]:
    """The prefix that runs podman where crun takes the cgroup layout: none, or on a
    hybrid host nsenter into a mount namespace where the v2 hierarchy is unmounted
    (crun's cgroup v1 layout), held by a process.  The namespace, and whatever was
    mounted in it, goes with the process at the end."""
    if not hybrid_cgroups():
        yield []
        return
    clients.need("unshare", "nsenter")
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "umount /sys/fs/cgroup/unified && echo ready && exec sleep 3600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline() != b"ready\n":
            pytest.skip("no mount namespace with the cgroup v1 hierarchies alone here")
        yield nsenter(holder.pid, podman.base)
    finally:
        holder.kill()
        holder.wait()


def nsenter(pid: int, cwd: str) -> list[str]:
    """The prefix that runs a command in ``pid``'s mount namespace, in ``cwd``."""
    return ["nsenter", f"--mount=/proc/{pid}/ns/mnt", f"--wd={cwd}"]


# ------------------------------------------------ run, warm and cold


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="run, image stored (warm)")
def test_run_warm(benchmark: BenchmarkFixture, engine: Engine, podman: PodmanStore,
                  summary: list[str]) -> None:
    paired(benchmark, lambda: engine("run", "--rm", IMAGE, "true"),
           lambda: podman("run", "--rm", IMAGE, "true"), "podman_runc_run", 50, summary)


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="run, image stored (warm), podman + crun")
def test_run_warm_crun(benchmark: BenchmarkFixture, engine: Engine, podman: PodmanStore,
                       crun_view: list[str], summary: list[str]) -> None:
    clients.need_runtime("crun")
    crun = [*crun_view, "podman", *podman.flags("crun"), "run", "--rm", "--network", "none",
            "--cgroup-parent", podman.cgroup_parent, IMAGE, "true"]

    def podman_crun() -> str:
        return check(crun, env=podman.env, cwd=podman.base)  # conmon leaves "oom" in cwd

    podman_crun()  # it runs here at all
    paired(benchmark, lambda: engine("run", "--rm", IMAGE, "true"), podman_crun,
           "podman_crun_run", 50, summary)
    info = benchmark.extra_info
    assert benchmark.stats is not None
    ratio = info["paired_ratio"]
    if crun_view:  # what nsenter adds: its own exec and setns (a direct call execs podman)
        enter_ms = (_median_ms([*crun_view, "true"], rounds(20))
                    - _median_ms(["true"], rounds(20)))
        # nsenter's own time off podman's: the ratio against podman alone (a larger one)
        ratio = benchmark.stats.stats.median / (info["reference_median"] - enter_ms / 1e3)
        info.update(nsenter_ms=enter_ms, ratio_without_nsenter=ratio)
        summary.append(f"  nsenter's own {enter_ms:.1f} ms; ratio to podman + crun without "
                       f"it {ratio:.2f}")
    info.update(target_ratio=TARGET, target_met=ratio <= TARGET)
    summary.append(f"  target: ratio <= {TARGET}: {'met' if ratio <= TARGET else 'not met'}")


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="run, fresh store (cold)")
def test_run_cold(benchmark: BenchmarkFixture, base: str, archive: str, cgroup_parent: str,
                  summary: list[str]) -> None:
    clients.need("podman", "conmon")
    clients.need_runtime("runc")
    fresh: dict[str, Any] = {}

    def clean() -> None:
        with contextlib.suppress(KeyError):
            fresh.pop("nsbind").close()
        with contextlib.suppress(KeyError):
            fresh.pop("podman").close()

    def prepare() -> None:
        clean()
        fresh["nsbind"] = Engine(tempfile.mkdtemp(prefix="cold-", dir=base), cgroup_parent)
        fresh["podman"] = new_podman_store(f"{TAG}-cold")

    try:
        paired(benchmark, lambda: fresh["nsbind"]("run", "--rm", archive, "true"),
               lambda: fresh["podman"]("run", "--rm", f"oci-archive:{archive}", "true"),
               "podman_runc_run_oci_archive", 20, summary, prepare=prepare)
    finally:
        clean()


# ------------------------------------------------ exec


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="exec")
def test_exec(benchmark: BenchmarkFixture, engine: Engine, podman: PodmanStore,
              summary: list[str]) -> None:
    mine = theirs = ""
    try:
        mine = engine("run", "-d", IMAGE, "sleep", "600").strip()
        theirs = podman("run", "-d", IMAGE, "sleep", "600").strip()
        assert mine and theirs
        paired(benchmark, lambda: engine("exec", mine, "true"),
               lambda: podman("exec", theirs, "true"), "podman_runc_exec", 50, summary)
    finally:
        if mine:
            engine("rm", "-f", mine)
        if theirs:
            podman("rm", "-f", "-t", "0", theirs)


# ------------------------------------------------ start-up imports


def _median_ms(argv: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


@pytest.mark.timeout(600)
@pytest.mark.benchmark(group="start-up imports")
def test_nsbind_ps_imports(benchmark: BenchmarkFixture, engine: Engine,
                           summary: list[str]) -> None:
    """Informative: ``nsbind ps`` timed whole; extra_info: what ``nsbind ps`` and
    ``nsbind run --rm IMG true`` import of nsbind (``python -X importtime``) and the
    interpreter's own start."""
    ps = engine.argv("ps", "-a")
    benchmark.pedantic(lambda: check(ps), rounds=rounds(30),  # type: ignore[no-untyped-call]
                       warmup_rounds=1)
    info: dict[str, Any] = {}
    for name, argv in (("ps", ps), ("run", engine.argv("run", "--rm", IMAGE, "true"))):
        proc = subprocess.run([sys.executable, "-X", "importtime", *argv],
                              capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr[-2000:]
        modules, self_us, cumulative_us = import_cost(proc.stderr)
        info.update({f"{name}_nsbind_modules": modules, f"{name}_nsbind_self_ms":
                     self_us / 1e3, f"{name}_nsbind_cumulative_ms": cumulative_us / 1e3})
        site_us = sum(int(line.split("|")[1]) for line in proc.stderr.splitlines()
                      if line.startswith("import time:") and line.endswith("| site"))
        info[f"{name}_site_ms"] = site_us / 1e3
    n = rounds(20)
    info.update(python_start_ms=_median_ms([sys.executable, "-c", "pass"], n),
                python_start_no_site_ms=_median_ms([sys.executable, "-S", "-c", "pass"], n))
    benchmark.extra_info.update(info)
    assert benchmark.stats is not None
    summary.append(
        f"start-up: nsbind ps {benchmark.stats.stats.median * 1e3:.1f} ms; nsbind modules "
        f"imported by ps {info['ps_nsbind_modules']} ({info['ps_nsbind_cumulative_ms']:.1f}"
        f" ms), by run {info['run_nsbind_modules']} ({info['run_nsbind_cumulative_ms']:.1f}"
        f" ms); site {info['run_site_ms']:.1f} ms; python -c pass "
        f"{info['python_start_ms']:.1f} ms, with -S {info['python_start_no_site_ms']:.1f} ms")


@pytest.fixture(scope="module", autouse=True)
def run_dirs() -> Iterator[None]:
    """Directories under /run that podman or a runtime made during the module: removed
    at the end when empty (PodmanStore does so for the runtimes' default roots)."""
    before = set(os.listdir("/run"))
    yield
    for name in sorted(set(os.listdir("/run")) - before):
        if name in ("containers", "libpod", "netns", "mount", "runc", "crun"):
            path = os.path.join("/run", name)
            with contextlib.suppress(OSError):
                for dirpath, _dirs, _files in sorted(os.walk(path), reverse=True):
                    os.rmdir(dirpath)  # empty ones only: stops at the first file
