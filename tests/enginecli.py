"""The ``nsbind`` command as the engine tests drive it: a store, state directories and
a cgroup parent of the test's own."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sysconfig
from typing import Any

from helpers import SLOWDOWN

NSBIND = os.path.join(sysconfig.get_path("scripts"), "nsbind")


class Engine:
    """The ``nsbind`` command with this test's store, state and cgroup parent."""

    def __init__(self, base: pathlib.Path, cgroup_parent: str) -> None:
        self.store, self.state = str(base / "store"), str(base / "state")
        self.cgroup_parent = f"/{cgroup_parent}"

    def argv(self, *args: str) -> list[str]:
        argv = [NSBIND, "--root", self.store, "--runroot", self.state, *args]
        if args and args[0] == "run":
            argv[5:6] = ["run", "--cgroup-parent", self.cgroup_parent]
        return argv

    def __call__(self, *args: str, check: bool = True, timeout: float = 60,
                 **kwargs: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout * SLOWDOWN, stdin=subprocess.DEVNULL, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args}: exit {proc.returncode}: {proc.stderr}")
        return proc

    def containers(self) -> list[dict[str, Any]]:
        return list(json.loads(self("ps", "-a", "--format", "json").stdout))

    def left(self) -> list[str]:
        """What this engine still has: records, storage and state directories."""
        found = [r["Names"] for r in self.containers()]
        storage = pathlib.Path(self.store, "containers")
        if storage.is_dir():
            found += [p.name for p in storage.iterdir()]
        # (the runtime's caches, such as compiled seccomp profiles, are named with a
        # leading dot, which no container id has: kept on purpose)
        found += [p.name for p in pathlib.Path(self.state, "oci").iterdir()
                  if pathlib.Path(self.state, "oci").is_dir() and not p.name.startswith(".")]
        found += [p.name for p in pathlib.Path(self.state, "names").iterdir()
                  if pathlib.Path(self.state, "names").is_dir()]
        found += [f"address {p.parent.name}/{p.name}" for p in self.addresses()]
        return found

    def addresses(self) -> list[pathlib.Path]:
        """The IPAM state: one file per address a container holds, per network."""
        import ipaddress

        out = []
        for net in sorted(pathlib.Path(self.state, "net").glob("*/")):
            for entry in sorted(net.iterdir()):
                try:
                    ipaddress.ip_address(entry.name)
                except ValueError:
                    continue  # the lock, the last-handed-out marker
                out.append(entry)
        return out
