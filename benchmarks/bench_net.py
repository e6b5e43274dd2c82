"""A container's network: bridged ``nsbind run`` against ``--network none``, the bring-up
alone through ``nsbind.net``, and a container started in a pooled namespace wired ahead.

Run:  python3 -m pytest benchmarks/bench_net.py --benchmark-only -s
      (NSBIND_BENCH_ROUNDS=N caps every benchmark's rounds at N: a quick check, not a
      measurement; -s shows the summary of medians, ratios and shares at the end)
Issue 17's target: a container on a bridge network starts within 2x of one with
``--network none``.  As in bench_engine.py each compared benchmark is *paired*: every
round of the subject runs right after one timed round of its reference, and
``extra_info["paired_ratio"]`` is the subject's median / the reference's median over the
same moments.  The helpers, the image and the fixtures are bench_engine.py's (imported):
a busybox-static image loaded with ``nsbind image load``, ``--root``/``--runroot`` of its
own under a temp dir, the cgroup parent ``/nsbind-bench-<pid>``.

"run, bridged vs none"
    ``nsbind run --rm --network NET IMG true`` vs ``nsbind run --rm --network none IMG
    true`` (the reference), the installed command timed as a whole process, the image
    stored.  NET is a network of the benchmark's own (``nsbind network create --subnet
    10.251.0.0/24 nsbind-bench-<pid>``); ``$NSBIND_NFT_TABLE`` puts its NAT rules in the
    table ``inet nsbind-bench-<pid>``.  A bridged start pays: the IPAM, the veth pair,
    address, route and links up, the network's masquerade and isolation rules (rewritten
    at every start), the /etc/hosts of the others, and at ``--rm`` the veth and address
    released; and its process imports nsbind.net and pyroute2, which a ``none`` run never
    does (extra_info: both runs' import costs, from one ``-X importtime`` run each).
    Target: ratio <= 2.0.  One untimed bridged run first makes the bridge and
    checks that the container has its address and default route.  At the end the network
    is removed (``nsbind network rm``: bridge and nftables table), and the machine is
    checked: no table, no bridge, no veth on it; ``net.ipv4.ip_forward`` (which the first
    bridged start turns on) is put back as it was.
"network bring-up alone (library)"
    ``nsbind.net.attach`` of a fresh network namespace to a bridge (veth pair made with its
    peer inside the namespace, address from an IPAM, ``eth0`` and ``lo`` up, default
    route) then ``Attachment.detach``, vs making the namespace alone (``Namespaces(net=True)``
    and an nsfs fd on it, as NamespacePool makes its own; the fd closed).  The bridge lives
    in a network namespace of the benchmark's own standing in for the host's (entered by
    this thread for the test), so nothing reaches the host's links even if the run is
    killed.  extra_info: attach's and detach's own medians, the bring-up's share of a
    bridged and of a ``none`` start (group 1's medians, when it ran), and the NAT step the
    engine adds to every bridged start (``Nat.add_network`` with the bridge: masquerade and
    isolation rules, in that namespace).
"container start, pre-wired pooled netns vs fresh"
    A container through the OCI lifecycle in-process (``nsbind.oci.create``, ``start``, the
    exit reaped: the lifecycle ``nsbind run`` drives, without the process start-up and the
    overlay) on a busybox root (read-only, OCI default config, ``/bin/true``), in the same
    namespace of the benchmark's own, deleted untimed.  Reference: as the engine starts a
    bridged container, a new network namespace from clone3, ``attach`` to the bridge while
    the process is parked, then start.  Subject: the network namespace taken from a
    ``NamespacePool`` and wired (``attach``) ahead of time, untimed, the pool refilled;
    the spec joins it (``linux.namespaces[].path`` = ``/proc/self/fd/N`` of the taken fd).
    One untimed container of each kind first checks its address and default route.
    The public API lets a caller do this (``take()`` is a NamespaceFd, ``attach`` takes
    one, a spec or ``Namespaces.joining(net=fd)`` joins it); what it lacks is said in the
    test's docstring.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import bench_engine  # first: it puts tests/ on sys.path, for clients
import pytest
from bench_engine import IMAGE, TAG, Engine, paired, rounds
from bench_oci import import_cost
from pytest_benchmark.fixture import BenchmarkFixture

import clients
import nsbind
import nsbind.oci
from nsbind.net import Attachment, Bridge, Ipam, attach, delete_link, link_info, link_names
from nsbind.net.nat import Nat, ip_forward, list_tables, set_ip_forward

# bench_engine's fixtures, bound here so that pytest finds them for this module's tests
archive = bench_engine.archive
base = bench_engine.base
cgroup_parent = bench_engine.cgroup_parent
compiled = bench_engine.compiled  # autouse: nsbind's modules compiled, as an install has them
engine = bench_engine.engine
summary = bench_engine.summary

SUMMARY_TITLE = "bench_net (issue 17: bridged start within 2x of --network none)"
TARGET = 2.0  # nsbind run --network NET / nsbind run --network none
NETWORK = TAG  # nsbind-bench-<pid>: the network, and the nftables table of its NAT
SUBNET = "10.251.0.0/24"
LAB_BRIDGE = "nsbbench0"  # groups 2 and 3: inside the benchmark's own network namespace
LAB_SUBNET = "10.252.0.0/24"
#: group 1's medians (seconds), for group 2's shares
MEDIANS: dict[str, float] = {}


def _tail_median(values: list[float], n: int) -> float:
    """The median of the last ``rounds(n)`` values (the warm-up rounds' left out)."""
    return statistics.median(values[-rounds(n):])


# ------------------------------------------------ run, bridged vs none


@pytest.fixture(scope="module")
def network(engine: Engine) -> Iterator[str]:
    """The benchmark's network, its NAT in the table ``inet <NETWORK>``; removed at the end,
    and the machine checked (and put right, then failed) for its table, bridge, veths and
    ``net.ipv4.ip_forward``."""
    forwarding = ip_forward()
    saved = os.environ.get("NSBIND_NFT_TABLE")
    os.environ["NSBIND_NFT_TABLE"] = NETWORK  # read by every nsbind command started below
    bridge = ""
    try:
        engine("network", "create", "--subnet", SUBNET, NETWORK)
        bridge = json.loads(engine("network", "inspect", NETWORK))[0]["bridge"]
        yield NETWORK
    finally:
        problems = _remove_network(engine, bridge)
        set_ip_forward(forwarding)
        if saved is None:
            del os.environ["NSBIND_NFT_TABLE"]
        else:
            os.environ["NSBIND_NFT_TABLE"] = saved
    assert problems == [], problems
    assert ip_forward() == forwarding


def _remove_network(engine: Engine, bridge: str) -> list[str]:
    """Every container gone, then the network; what had to be removed by hand, or is
    still there, as messages."""
    problems = []
    with contextlib.suppress(AssertionError):
        ids = engine("ps", "-aq").split()
        if ids:
            problems.append(f"containers left: {ids}")
            engine("rm", "-f", *ids)
    if bridge and bridge in link_names():
        index = link_info(bridge).index
        for name in link_names():
            with contextlib.suppress(OSError):
                if name != bridge and link_info(name).master == index:
                    problems.append(f"link {name} left on bridge {bridge}")
                    delete_link(name, missing_ok=True)
    with contextlib.suppress(AssertionError):
        engine("network", "rm", NETWORK)
    if bridge and delete_link(bridge, missing_ok=True):
        problems.append(f"bridge {bridge} left by network rm")
    if Nat(NETWORK).delete_table():
        problems.append(f"nftables table inet {NETWORK} left by network rm")
    if ("inet", NETWORK) in list_tables() or (bridge and bridge in link_names()):
        problems.append(f"table inet {NETWORK} or bridge {bridge} still there")
    return problems


def _imports_ms(argv: list[str]) -> dict[str, float]:
    """``argv`` (a Python script) run once under ``-X importtime``: the cumulative ms of
    its outermost nsbind imports and of its outermost pyroute2 ones (bench_oci.import_cost;
    pyroute2 shows as a top-level import of its own, not under nsbind.net.links)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {package: import_cost(proc.stderr, package)[2] / 1e3
            for package in ("nsbind", "pyroute2")}


@pytest.mark.timeout(1800)
@pytest.mark.benchmark(group="run, bridged vs none")
def test_run_bridged_vs_none(benchmark: BenchmarkFixture, engine: Engine, network: str,
                             summary: list[str]) -> None:
    bridged = ("run", "--rm", "--network", network, IMAGE)
    none = ("run", "--rm", "--network", "none", IMAGE)
    # the container is on the network (and the bridge is made before the timed rounds)
    out = engine(*bridged, "sh", "-c", "ip -4 -o addr show eth0; ip route")
    assert f" {SUBNET.rsplit('.', 1)[0]}." in out and "default via" in out, out
    paired(benchmark, lambda: engine(*bridged, "true"), lambda: engine(*none, "true"),
           "nsbind_run_network_none", 150, summary, subject_name="bridged")
    ratio = benchmark.extra_info["paired_ratio"]
    assert benchmark.stats is not None
    MEDIANS.update(bridged=benchmark.stats.stats.median,
                   none=benchmark.extra_info["reference_median"])
    imports = {"bridged": _imports_ms(engine.argv(*bridged, "true")),
               "none": _imports_ms(engine.argv(*none, "true"))}
    benchmark.extra_info.update(
        target_ratio=TARGET, target_met=ratio <= TARGET,
        **{f"{run}_import_{package}_ms": ms for run, found in imports.items()
           for package, ms in found.items()})
    summary.append(f"  bridged - none: {(MEDIANS['bridged'] - MEDIANS['none']) * 1e3:.1f} "
                   f"ms; target ratio <= {TARGET}: {'met' if ratio <= TARGET else 'not met'}")
    summary.append("  imports of one run (-X importtime, outermost cumulative): bridged: "
                   + ", ".join(f"{k} {v:.0f} ms" for k, v in imports["bridged"].items())
                   + "; none: " + ", ".join(f"{k} {v:.0f} ms" for k, v in
                                            imports["none"].items()))


# ------------------------------------------------ the library: bring-up alone


@dataclasses.dataclass
class Lab:
    """A bridge with its IPAM in the benchmark's own network namespace (the "host")."""

    bridge: Bridge
    ipam: Ipam
    ids: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def owner(self) -> str:
        """A new owner (an IPAM owner, a veth's name, a container id)."""
        return f"nsbench{os.getpid()}-{next(self.ids)}"

    def attach(self, target: nsbind.net.NetnsTarget, owner: str) -> Attachment:
        return attach(target, self.bridge, self.ipam, owner)


@pytest.fixture
def lab(base: str) -> Iterator[Lab]:
    """This thread in a new network namespace (left at the end: it and every link in it
    go when the last fd on it is closed), with the bridge LAB_BRIDGE on LAB_SUBNET."""
    state = tempfile.mkdtemp(prefix="ipam-", dir=base)
    try:
        with nsbind.Namespaces(net=True), Bridge.create(
                LAB_BRIDGE, address=LAB_SUBNET.replace(".0/", ".1/")) as bridge:
            yield Lab(bridge, Ipam(state, LAB_SUBNET))
            assert sorted(link_names()) == sorted(["lo", LAB_BRIDGE])  # every veth gone
    finally:
        clients.remove_tree(state)


def new_netns() -> nsbind.NamespaceFd:
    """A new network namespace (``lo`` up) held by an nsfs fd, as NamespacePool makes one."""
    with nsbind.Namespaces(net=True):
        return nsbind.open_namespace("/proc/thread-self/ns/net", nsbind.Namespace.NET)


def _nat_step_ms(n: int) -> float:
    """Median ms of the NAT step the engine runs at every bridged start
    (``Nat.add_network`` with the bridge: list the table, replace the network's masquerade
    and isolation rules), in the lab's namespace; its table deleted after."""
    nat = Nat(f"{TAG}-lab")
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            nat.add_network("lab", LAB_SUBNET, bridge=LAB_BRIDGE)
            times.append(time.perf_counter() - t)
    finally:
        nat.delete_table()
    return statistics.median(times) * 1e3


@pytest.mark.timeout(900)
@pytest.mark.benchmark(group="network bring-up alone (library)")
def test_bring_up_alone(benchmark: BenchmarkFixture, lab: Lab, summary: list[str]) -> None:
    n = 300
    up: list[float] = []
    down: list[float] = []

    def subject() -> None:
        with new_netns() as ns:
            t0 = time.perf_counter()
            att = lab.attach(ns, lab.owner())
            t1 = time.perf_counter()
            att.detach()
            up.append(t1 - t0)
            down.append(time.perf_counter() - t1)

    paired(benchmark, subject, lambda: new_netns().close(), "new_netns_alone", n, summary,
           subject_name="new netns + attach + detach")
    attach_s, detach_s = _tail_median(up, n), _tail_median(down, n)
    info: dict[str, Any] = {"attach_median": attach_s, "detach_median": detach_s,
                            "nat_add_network_ms": _nat_step_ms(rounds(30))}
    line = (f"  attach (bring-up) {attach_s * 1e3:.2f} ms, detach {detach_s * 1e3:.2f} ms; "
            f"the engine's NAT step per start {info['nat_add_network_ms']:.2f} ms")
    if MEDIANS:
        info.update(share_of_bridged_start=attach_s / MEDIANS["bridged"],
                    share_of_none_start=attach_s / MEDIANS["none"],
                    share_of_bridged_overhead=attach_s / (MEDIANS["bridged"] - MEDIANS["none"]))
        line += (f"; attach is {info['share_of_bridged_start']:.1%} of a bridged start, "
                 f"{info['share_of_none_start']:.1%} of a none start, "
                 f"{info['share_of_bridged_overhead']:.0%} of bridged - none")
    benchmark.extra_info.update(info)
    summary.append(line)


# ------------------------------------------------ container start in a pre-wired pooled netns


@pytest.fixture
def bundle(base: str) -> Iterator[str]:
    """An OCI bundle: runc's default config (pid, network, ipc, uts, mount namespaces; the
    root read-only) running busybox's ``/bin/true``, not on a terminal."""
    path = tempfile.mkdtemp(prefix="bundle-", dir=base)
    try:
        root = clients.build_rootfs(os.path.join(path, "rootfs"))
        config = nsbind.oci.default_spec_json()
        config["process"].update(terminal=False, args=["/bin/true"])
        config["root"] = {"path": root, "readonly": True}
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        yield path
    finally:
        clients.remove_tree(path)


class Starts:
    """Containers through the OCI lifecycle in-process, each deleted (and its attachment
    undone, its pooled namespace closed) by :meth:`clean` before the next pair."""

    def __init__(self, bundle: str, state: str, cgroup_parent: str, lab: Lab) -> None:
        self.bundle = bundle
        self.state = state
        self.cgroup_parent = cgroup_parent
        self.lab = lab
        with open(os.path.join(bundle, "config.json")) as f:
            self.config: dict[str, Any] = json.load(f)
        self.attach_s: list[float] = []
        self.cleanups: list[Callable[[], object]] = []

    def spec(self, netns: nsbind.NamespaceFd | None = None,
             args: list[str] | None = None) -> nsbind.oci.Spec:
        """The bundle's spec; its network namespace ``netns`` (joined by its fd's path)
        when given, else a new one; its command ``args`` when given."""
        config = copy.deepcopy(self.config)
        if args is not None:
            config["process"]["args"] = args
        for ns in config["linux"]["namespaces"]:
            if ns["type"] == "network" and netns is not None:
                ns["path"] = f"/proc/self/fd/{netns.fileno()}"
        return nsbind.oci.parse_spec(config, bundle=self.bundle)

    def prewired(self, pool: nsbind.NamespacePool) -> tuple[str, nsbind.NamespaceFd]:
        """A namespace from ``pool`` attached to the bridge, and its owner's name."""
        netns = pool.take()
        self.cleanups.append(netns.close)
        owner = self.lab.owner()
        self.cleanups.insert(0, self.lab.attach(netns, owner).detach)
        return owner, netns

    def run(self, spec: nsbind.oci.Spec, owner: str, wire: bool) -> None:
        """Create (parked), attach its fresh namespace with ``wire``, start, reap."""
        pid = int(nsbind.oci.create(self.bundle, owner, root=self.state,
                                    cgroup_parent=self.cgroup_parent, spec=spec)["pid"])
        self.cleanups.append(lambda: nsbind.oci.delete(self.state, owner, force=True))
        if wire:
            t = time.perf_counter()
            self.cleanups.append(self.lab.attach(pid, owner).detach)
            self.attach_s.append(time.perf_counter() - t)
        nsbind.oci.start(self.state, owner)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, f"{owner} exited {status:#x}"

    def clean(self) -> None:
        while self.cleanups:
            self.cleanups.pop(0)()


#: run in the container: its eth0 has a lab address and it routes by default
CHECK = ["/bin/sh", "-c", f"ip -4 -o addr show eth0 | grep -q ' {LAB_SUBNET.rsplit('.', 1)[0]}.'"
         " && ip route | grep -q '^default via'"]


@pytest.mark.timeout(900)
@pytest.mark.benchmark(group="container start, pre-wired pooled netns vs fresh")
def test_start_in_prewired_pooled_netns(benchmark: BenchmarkFixture, lab: Lab, bundle: str,
                                        base: str, cgroup_parent: str,
                                        summary: list[str]) -> None:
    """What the public API lacks for a pre-wired pool: NamespacePool cannot wire its
    namespaces itself (no hook run on each one it makes), so the caller takes one and
    attaches it in its own time; ``spawn(namespaces=pool)`` joins an unwired one and
    cannot be told to take a given one (a pool joins nothing else), so the wired fd goes
    in by ``Namespaces.joining(net=fd)`` or a spec's namespace path instead.  And the
    engine cannot use any of it: ``nsbind run`` is one process per container (no warm
    pool outlives it) and its ``--network`` joins no given namespace (podman's
    ``ns:PATH``), so a ``nsbind run`` start cannot be measured this way."""
    n = 150
    starts = Starts(bundle, tempfile.mkdtemp(prefix="oci-", dir=base), cgroup_parent, lab)
    fresh = starts.spec()
    ready: dict[str, Any] = {}

    def prepare() -> None:
        """Untimed: the last pair's containers gone; a pooled namespace wired."""
        starts.clean()
        owner, netns = starts.prewired(pool)
        ready.update(owner=owner, spec=starts.spec(netns))
        pool.wait_full(30)  # refilled before the timed rounds, as a pool big enough is

    with nsbind.NamespacePool(net=True, size=4) as pool:
        try:
            # both ways, the container has its network before its command runs
            starts.run(starts.spec(args=CHECK), lab.owner(), wire=True)
            owner, netns = starts.prewired(pool)
            starts.run(starts.spec(netns, CHECK), owner, wire=False)
            pool.wait_full(30)
            paired(benchmark, lambda: starts.run(ready["spec"], ready["owner"], wire=False),
                   lambda: starts.run(fresh, lab.owner(), wire=True),
                   "fresh_netns_attached_at_start", n, summary, prepare=prepare,
                   subject_name="pre-wired pooled")
        finally:
            starts.clean()
    attach_s = _tail_median(starts.attach_s, n)
    benchmark.extra_info.update(attach_at_start_median=attach_s)
    summary.append(f"  attach while the fresh container is parked: {attach_s * 1e3:.2f} ms")
    assert os.listdir(starts.state) == []
