"""The commands' launchers (setup.py, scripts/launcher.py.in): the interpreter that
installed nsbind, started with -S (no .pth file of another package runs on a runtime's
every call), nsbind found in site-packages or an editable install's source directory,
and the site module as the fallback."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
import sysconfig
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _setup_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nsbind_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # (setup() runs only as __main__)
    return module


SETUP = _setup_module()

#: what a probe module prints: whether site ran, and where it was imported from
PROBE = """
import sys
def main():
    print(sys.flags.no_site, "site" in sys.modules and hasattr(sys, "__interactivehook__"),
          __file__, sys.argv[1:])
    return 3
"""


def _launcher(tmp_path: pathlib.Path, module: str, python: str = sys.executable
              ) -> pathlib.Path:
    path = tmp_path / "bin" / "probe-cmd"
    path.parent.mkdir(exist_ok=True)
    path.write_text(SETUP.render("probe-cmd", module, python))
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("name", ["nsbind", "nsbind-oci"])
def test_the_installed_commands_run_this_interpreter_without_site(name: str) -> None:
    path = pathlib.Path(sysconfig.get_path("scripts"), name)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#!") and first.endswith(" -S")
    assert os.path.realpath(first[2:-3]) == os.path.realpath(sys.executable)
    proc = subprocess.run([str(path), "--help"], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: "), proc


def test_nsbind_oci_reports_its_version_through_the_launcher() -> None:
    path = pathlib.Path(sysconfig.get_path("scripts"), "nsbind-oci")
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.startswith("nsbind-oci version ")


@pytest.mark.unprivileged
def test_a_module_site_packages_holds_is_run_without_the_site_module(
        tmp_path: pathlib.Path) -> None:
    # nsbind.oci.cli is found without site: site-packages, or this checkout's editable
    # install (its .pth names the source directory)
    code = ("import sys, nsbind.oci.cli as c; print(sys.flags.no_site, "
            "hasattr(sys, '__interactivehook__'), c.__file__)")
    probe = tmp_path / "probe.py"
    probe.write_text(f"def main():\n    {code.replace('; ', chr(10) + '    ')}\n    return 0\n")
    launcher = _launcher(tmp_path, "probe")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([str(launcher)], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout.split()
    import nsbind.oci.cli

    assert out == ["1", "False", nsbind.oci.cli.__file__]


def test_the_launcher_pauses_the_garbage_collector_for_the_command(
        tmp_path: pathlib.Path) -> None:
    """Paused before the first import; the command resumes it (nsbind.gcpause)."""
    probe = tmp_path / "gcprobe.py"
    probe.write_text("import gc\n\ndef main():\n    print(gc.isenabled())\n    return 0\n")
    launcher = _launcher(tmp_path, "gcprobe")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([str(launcher)], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout
    assert out == "False\n"


@pytest.mark.unprivileged
def test_a_module_only_the_site_module_finds_runs_after_it(tmp_path: pathlib.Path) -> None:
    """A user install: the module is in the user site directory, which only
    site.main() adds; the launcher runs it then (exit status and arguments intact)."""
    base = tmp_path / "userbase"
    env = {**os.environ, "PYTHONUSERBASE": str(base)}
    env.pop("PYTHONNOUSERSITE", None)
    user_site = subprocess.run(
        [sys.executable, "-c", "import site; print(site.getusersitepackages())"],
        capture_output=True, text=True, env=env, check=True, timeout=60).stdout.strip()
    pathlib.Path(user_site).mkdir(parents=True)
    pathlib.Path(user_site, "userprobe.py").write_text(PROBE)
    launcher = _launcher(tmp_path, "userprobe")
    proc = subprocess.run([str(launcher), "a b", "c"], capture_output=True, text=True,
                          env=env, check=False, timeout=60)
    assert proc.returncode == 3, proc
    no_site, _hook, where, *args = proc.stdout.strip().split(maxsplit=3)
    assert no_site == "1" and where == str(pathlib.Path(user_site, "userprobe.py"))
    assert args == ["['a b', 'c']"]


@pytest.mark.unprivileged
def test_an_interpreter_path_a_shebang_cannot_hold_goes_through_sh(
        tmp_path: pathlib.Path) -> None:
    spaced = tmp_path / "my python" / "python3"
    spaced.parent.mkdir()
    spaced.symlink_to(sys.executable)
    assert SETUP.shebang(str(spaced)).startswith("#!/bin/sh\n")
    assert SETUP.shebang("/x/" + "p" * 200).startswith("#!/bin/sh\n")
    assert SETUP.shebang(sys.executable) == f"#!{sys.executable} -S"
    (tmp_path / "probe.py").write_text(PROBE)
    launcher = _launcher(tmp_path, "probe", python=str(spaced))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([str(launcher), "x"], capture_output=True, text=True, env=env,
                          check=False, timeout=60)
    assert proc.returncode == 3, proc
    assert proc.stdout.split()[0] == "1" and proc.stdout.split()[-1] == "['x']"
