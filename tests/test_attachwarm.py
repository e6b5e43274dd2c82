"""nsbind.attachwarm: the cgroup v1 attach lock held warm while a container is made."""

from __future__ import annotations

import os
import signal
import time

import pytest

from helpers import SLOWDOWN
from nsbind import attachwarm
from nsbind.attachwarm import PERIOD, warm_attach
from nsbind.cgroups import cgroup_layout
from nsbind.frozen import replace_fields


def _v1_layout() -> None:
    """Skip unless warm_attach has a v1 hierarchy whose own cgroup.procs it may write."""
    if not any(h.version == 1 and h.own is not None and os.access(
            os.path.join(h.path_of(h.own), "cgroup.procs"), os.W_OK)
            for h in cgroup_layout().hierarchies):
        pytest.skip("no cgroup v1 hierarchy whose cgroup.procs this process may write "
                    "(a pure cgroup v2 host, or a read-only cgroupfs): nothing to warm")


def own_cgroups() -> str:
    with open("/proc/self/cgroup") as f:
        return f.read()


def test_a_warmup_writes_until_stopped_and_moves_nothing() -> None:
    _v1_layout()
    before = own_cgroups()
    warmup = warm_attach(cgroup_layout())
    assert warmup is not None
    try:
        assert warmup.path.endswith("/cgroup.procs")
        deadline = time.monotonic() + 5 * SLOWDOWN
        while warmup.writes < 3 and time.monotonic() < deadline:
            time.sleep(PERIOD)
        assert warmup.writes >= 3  # held: written again, not once
        # no signal reaches it (one would not wake the main thread's waitpid)
        with open(f"/proc/self/task/{warmup.tid}/status") as f:
            blocked = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGWINCH):
            assert blocked & (1 << (sig - 1)), sig
        assert not signal.pthread_sigmask(signal.SIG_BLOCK, []) & {signal.SIGINT}  # ours: as it was
    finally:
        warmup.stop()
    assert warmup.wait(5 * SLOWDOWN)
    stopped_at = warmup.writes
    time.sleep(10 * PERIOD)
    assert warmup.writes == stopped_at
    warmup.stop()  # again: nothing happens
    assert own_cgroups() == before  # the process stayed where it was


def test_a_warmup_nobody_stops_ends_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    _v1_layout()
    monkeypatch.setattr(attachwarm, "MAX_HOLD", 0.05)
    begun = time.monotonic()
    warmup = warm_attach()  # this process's layout, read now
    assert warmup is not None
    assert warmup.wait(5 * SLOWDOWN)
    assert time.monotonic() - begun >= 0.05  # held that long, then ended
    assert warmup.writes >= 2


def test_nothing_to_warm_without_a_v1_hierarchy() -> None:
    layout = cgroup_layout()
    v2_only = replace_fields(
        layout, hierarchies=tuple(h for h in layout.hierarchies if h.version == 2))
    assert warm_attach(v2_only) is None
