"""NamespacePool: warm network namespaces joined by spawned children, each used once."""

from __future__ import annotations

import os

import pytest

from nsbind import PIPE, NamespacePool, spawn


def _net_and_links(pool: NamespacePool) -> tuple[str, str, str]:
    with spawn(["sh", "-c", "echo $$; readlink /proc/self/ns/net; ip -o link"],
               namespaces=pool, stdout=PIPE) as proc:
        out, _ = proc.communicate(timeout=30)
    assert out is not None and proc.returncode == 0
    pid, net, links = out.decode().split("\n", 2)
    return pid, net, links


def test_children_join_fresh_pooled_namespaces_once_each() -> None:
    with NamespacePool(net=True, pid=True, mnt=True, size=3) as pool:
        assert pool.wait_full(timeout=30)
        seen = set()
        for _ in range(5):  # more than the pool holds: it refills behind
            pid, net, links = _net_and_links(pool)
            assert pid == "1"  # pid namespace made by clone3, as usual
            assert net != os.readlink("/proc/self/ns/net")
            assert links.count("\n") == 1 and "1: lo: <LOOPBACK,UP," in links
            seen.add(net)
        assert len(seen) == 5  # never the same namespace twice


def test_loopback_false_and_close_frees_everything() -> None:
    pool = NamespacePool(net=True, size=2, loopback=False)
    assert pool.wait_full(timeout=30) and pool.ready() == 2
    _, _, links = _net_and_links(pool)
    assert "state DOWN" in links
    pool.close()
    with pytest.raises(ValueError, match="closed"):
        pool.take()


@pytest.mark.unprivileged
def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="net=True"):
        NamespacePool(net=False)
    with pytest.raises(ValueError, match="at least 1"):
        NamespacePool(size=0)
