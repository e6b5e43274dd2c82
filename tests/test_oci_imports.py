"""nsbind-oci's start path imports only what its command uses: every client call pays
for the imports of its runtime process (podman and containerd make three to five a
container).  Checked with ``python -X importtime`` on the real command."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

#: modules the light commands (state, kill, start, delete of an unknown id) must not load
HEAVY = ("nsbind.process", "nsbind.spawnplan", "nsbind.oci.spec", "nsbind.oci.convert",
         "nsbind.seccomp", "nsbind.rootfs", "nsbind.image.store", "nsbind.cgroups")


#: what the light commands must not load either: the standard library's heavier corners
#: (argparse with gettext and locale, typing, shutil with bz2 and lzma, datetime), and the
#: compiled core (cffi)
HEAVY_STDLIB = ("argparse", "typing", "shutil", "datetime", "_cffi_backend", "signal")

LAUNCHER = os.path.join(sysconfig.get_path("scripts"), "nsbind-oci")


def _imported(*args: str) -> set[str]:
    """The modules the installed command imports (run as its launcher runs it: -S)."""
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", LAUNCHER, *args],
                          capture_output=True, text=True, timeout=60, check=False)
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.mark.parametrize("args", [
    ["--root", "/nonexistent-nsbind-root", "state", "nope"],
    ["--root", "/nonexistent-nsbind-root", "kill", "nope", "KILL"],
    ["--root", "/nonexistent-nsbind-root", "start", "nope"],
    ["--root", "/nonexistent-nsbind-root", "delete", "--force", "nope"],
], ids=["state", "kill", "start", "delete"])
def test_light_commands_do_not_import_the_spawn_machinery(args: list[str]) -> None:
    modules = _imported(*args)
    assert "nsbind.oci.lifecycle" in modules  # the command ran
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    light = set(HEAVY_STDLIB) - ({"signal"} if "kill" in args else set())
    assert not modules & light, sorted(modules & light)


def test_a_failing_create_imports_no_image_store_or_decompressors(tmp_path: object) -> None:
    modules = _imported("--root", "/nonexistent-nsbind-root", "create", "--bundle",
                        "/nonexistent-nsbind-bundle", "c1")
    assert "nsbind.oci.spec" in modules
    assert not modules & {"nsbind.image.store", "nsbind.image.unpack", "zstandard", "cffi"}
