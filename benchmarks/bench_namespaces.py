"""Cost of entering and leaving namespaces in-thread, and of a call_in round trip.

Run: python3 -m pytest benchmarks/bench_namespaces.py --benchmark-only
Compare within one run: the machine is shared and noisy, ratios are what count.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from nsbind import Namespaces, call_in, start_zygote


def _enter_exit(namespaces: Callable[[], Namespaces]) -> None:
    with namespaces():
        pass


@pytest.mark.benchmark(group="namespaces enter+exit")
def test_enter_exit_net(benchmark: BenchmarkFixture) -> None:
    benchmark(_enter_exit, lambda: Namespaces(net=True))


@pytest.mark.benchmark(group="namespaces enter+exit")
def test_enter_exit_net_without_loopback(benchmark: BenchmarkFixture) -> None:
    benchmark(_enter_exit, lambda: Namespaces(net=True, loopback=False))


@pytest.mark.benchmark(group="namespaces enter+exit")
def test_enter_exit_uts_ipc(benchmark: BenchmarkFixture) -> None:
    benchmark(_enter_exit, lambda: Namespaces(uts=True, ipc=True))


@pytest.mark.benchmark(group="namespaces enter+exit")
def test_enter_exit_mnt(benchmark: BenchmarkFixture) -> None:
    benchmark(_enter_exit, lambda: Namespaces(mnt=True))


@pytest.mark.benchmark(group="call_in round trip")
def test_call_in_no_new_namespace(benchmark: BenchmarkFixture) -> None:
    start_zygote()
    benchmark(call_in, Namespaces(), os.getpid)


@pytest.mark.benchmark(group="call_in round trip")
def test_call_in_net(benchmark: BenchmarkFixture) -> None:
    start_zygote()
    benchmark(call_in, Namespaces(net=True), os.getpid)


@pytest.mark.benchmark(group="call_in round trip")
def test_call_in_user_pid(benchmark: BenchmarkFixture) -> None:
    start_zygote()
    benchmark(call_in, Namespaces(user=True, pid=True), os.getpid)
