"""The pure cgroup v2 path, really tested: the cgroup tests run again in a qemu guest
booted with ``cgroup_no_v1=all`` on Debian's (older) kernel, where the v2 hierarchy
carries memory, pids, cpu, io, cpuset and hugetlb (see tests/vm_v2.py)."""

from __future__ import annotations

import os
import platform
import shutil

import pytest

import vm_v2


@pytest.mark.timeout(1800)
def test_cgroup_tests_pass_in_a_pure_cgroup_v2_guest() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the guest is an x86_64 Debian kernel")
    for tool in ("qemu-system-x86_64", "apt-get", "dpkg-deb", "losetup"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (Debian: qemu-system-x86, apt, dpkg, mount)")
    if not os.path.exists(vm_v2.BUSYBOX):
        pytest.skip(f"{vm_v2.BUSYBOX} is missing (Debian: busybox-static)")
    code, console = vm_v2.run(echo=False)
    tail = "\n".join(console.splitlines()[-60:])
    assert code == 0, f"guest pytest exit status {code}:\n{tail}"
    assert "cgroup2 controllers: cpuset cpu io memory hugetlb pids" in console
    summary = [line for line in console.splitlines() if " passed" in line][-1]
    assert " failed" not in summary, summary
