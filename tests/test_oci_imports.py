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
#: (argparse with gettext and locale, typing, shutil with bz2 and lzma, datetime; json,
#: which imports re, and re enum; contextlib with collections and functools; signal,
#: which imports enum; importlib, which imports warnings), and the compiled core (cffi)
HEAVY_STDLIB = ("argparse", "typing", "shutil", "datetime", "_cffi_backend", "signal", "json",
                "re", "enum", "contextlib", "collections", "functools", "importlib")

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
    assert not modules & set(HEAVY_STDLIB), sorted(modules & set(HEAVY_STDLIB))


def test_a_failing_create_imports_no_image_store_or_decompressors(tmp_path: object) -> None:
    modules = _imported("--root", "/nonexistent-nsbind-root", "create", "--bundle",
                        "/nonexistent-nsbind-bundle", "c1")
    assert "nsbind.oci.spec" in modules
    assert not modules & {"nsbind.image.store", "nsbind.image.unpack", "zstandard", "cffi"}


#: the modules of a container's start: the command line, the engine, the container layer
#: and spawn (what ``nsbind run`` and ``nsbind-oci create`` import)
START_PATH = ("nsbind.cli", "nsbind.engine.cli", "nsbind.engine.runner", "nsbind.engine.launch",
              "nsbind.engine.runopts", "nsbind.engine.etcfiles", "nsbind.engine.images",
              "nsbind.oci.cli", "nsbind.oci.runcmd", "nsbind.oci.createop", "nsbind.process",
              "nsbind.image.store")

_COMPILES_AT_IMPORT = """
import re, sys
compiled = []
real = re.compile
def counting(pattern, flags=0):
    compiled.append(sys._getframe(1).f_globals.get("__name__", "?"))
    return real(pattern, flags)
re.compile = counting
for name in sys.argv[1:]:
    __import__(name)
print(" ".join(sorted({m for m in compiled if m.startswith("nsbind")})))
print(" ".join(sorted(m for m in ("typing", "shutil", "dataclasses", "importlib")
                      if m in sys.modules)))
"""


def test_the_start_path_compiles_no_pattern_and_imports_no_typing_or_shutil() -> None:
    """Importing what a container's start imports compiles none of nsbind's regular
    expressions (nsbind.lazyre: each on its first use) and loads neither typing, shutil
    (bz2 and lzma), dataclasses nor importlib: milliseconds of every ``nsbind run`` and
    ``nsbind-oci create``."""
    proc = subprocess.run([sys.executable, "-S", "-c", _COMPILES_AT_IMPORT, *START_PATH],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    compiled, stdlib = [*proc.stdout.split("\n"), "", ""][:2]
    assert compiled == "", f"compiled a pattern at import: {compiled}"
    assert stdlib == "", f"imported: {stdlib}"
