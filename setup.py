"""Build glue: setuptools compiles the cffi extension declared in _native/build.py, and
writes the commands' launchers (scripts/launcher.py.in) for the installing interpreter."""

import os
import stat
import sys

from setuptools import Distribution, setup

build_scripts = Distribution().get_command_class("build_scripts")

#: the commands: name, and the module whose main() runs
LAUNCHERS = (("nsbind", "nsbind.cli"), ("nsbind-oci", "nsbind.oci.cli"))
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts",
                        "launcher.py.in")


def shebang(python: str) -> str:
    """``#!PYTHON -S``; through /bin/sh where the kernel cannot read that line (a path
    with blanks, or too long for a #! line)."""
    if len(python) < 120 and not any(c.isspace() for c in python):
        return f"#!{python} -S"
    quoted = "'" + python.replace("'", "'\"'\"'") + "'"
    return f"#!/bin/sh\n''':'\nexec {quoted} -S \"$0\" \"$@\"\n'''"


def render(name: str, module: str, python: str) -> str:
    """The launcher of command ``name`` running ``module``'s main() on ``python``."""
    with open(TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    return (template.replace("@SHEBANG@", shebang(python)).replace("@NAME@", name)
            .replace("@MODULE@", module))


class BuildLaunchers(build_scripts):  # type: ignore[misc,valid-type]
    """Write each launcher for the interpreter running this build (pip runs a build
    with the interpreter it installs for)."""

    def run(self) -> None:
        self.mkpath(self.build_dir)
        for name, module in LAUNCHERS:
            path = os.path.join(self.build_dir, name)
            with open(path, "w", encoding="utf-8") as out:
                out.write(render(name, module, sys.executable))
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


if __name__ == "__main__":
    setup(cffi_modules=["src/nsbind/_native/build.py:ffibuilder"],
          scripts=[os.path.join("scripts", "launcher.py.in")],
          cmdclass={"build_scripts": BuildLaunchers})
