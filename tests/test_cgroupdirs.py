"""nsbind.cgroupdirs: a cgroup's directories (Cgroup.directories) recorded, then removed
by rmdir when empty and still theirs; busy ones reported, replaced ones left alone (real
cgroups under the test parent, in every hierarchy of this host)."""

from __future__ import annotations

import os
import subprocess
import sys

from nsbind.cgroupdirs import remove_empty
from nsbind.cgroups import Cgroup


def _dirs(cg: Cgroup) -> list[str]:
    return [h.path_of(cg.path) for h in cg.layout.hierarchies if h.holds_cgroups]


def test_empty_cgroup_directories_are_removed(cgroup_parent: str) -> None:
    cg = Cgroup.create(f"dirs-{os.getpid()}", parent=cgroup_parent)
    try:
        recorded: list[list[str | int]] = [list(d) for d in cg.directories()]
        assert [r[0] for r in recorded] == _dirs(cg) and recorded
        assert remove_empty(recorded)
        assert not any(os.path.exists(str(r[0])) for r in recorded)
        assert remove_empty(recorded)  # gone already: nothing to do
    finally:
        cg.close()
        if any(os.path.exists(d) for d in _dirs(cg)):
            Cgroup.open(cg.path).remove()


def test_a_cgroup_with_a_member_is_busy_and_a_replaced_one_is_left(cgroup_parent: str
                                                                    ) -> None:
    name = f"dirs-busy-{os.getpid()}"
    cg = Cgroup.create(name, parent=cgroup_parent)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cg.attach(proc.pid)
        recorded: list[list[str | int]] = [list(d) for d in cg.directories()]
        assert not remove_empty(recorded)  # the kernel refuses: it has a member
        assert all(os.path.isdir(str(r[0])) for r in recorded)
        cg.remove()  # kills the member, removes the directories
        proc.wait(timeout=10)
        again = Cgroup.create(name, parent=cgroup_parent)  # another cgroup, same path
        try:
            assert remove_empty(recorded)  # not the one recorded: left alone
            assert all(os.path.isdir(d) for d in _dirs(again))
        finally:
            again.remove()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cg.close()


def test_the_directories_are_those_the_cgroup_holds(cgroup_parent: str) -> None:
    cg = Cgroup.create(f"dirs-held-{os.getpid()}", parent=cgroup_parent)
    try:
        held = cg.directories()
        assert [d[0] for d in held] == _dirs(cg)
        for path, dev, ino in held:
            st = os.stat(path)
            assert (st.st_dev, st.st_ino) == (dev, ino)
    finally:
        cg.remove()
