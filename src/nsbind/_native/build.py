"""cffi build script for nsbind's native core (out-of-line API mode).

``setup.py`` names ``src/nsbind/_native/build.py:ffibuilder`` in ``cffi_modules``;
``pip install .`` compiles ``nsbind._native._nsbind`` from the real C sources beside
this file.  ``cdef`` gets the kernel constants and structs from ``constants.h``
(values taken from the system headers at build time) and the types and function
prototypes from the marked section of each header in ``HEADERS``, so nothing is
declared twice.
"""

from __future__ import annotations

import os
import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent


def _prototypes(name: str) -> str:
    header = (HERE / name).read_text()
    match = re.search(r"/\* ---- cdef-begin ---- \*/(.*)/\* ---- cdef-end ---- \*/", header, re.S)
    if match is None:
        raise RuntimeError(f"{name} lacks the cdef-begin/cdef-end markers")
    return match.group(1)


HEADERS = ("nsbind.h", "mountsteps.h", "spawn.h", "pyclone.h", "seccompload.h")

ffibuilder = FFI()
ffibuilder.cdef((HERE / "constants.h").read_text() + "".join(_prototypes(h) for h in HEADERS))
ffibuilder.set_source(
    "nsbind._native._nsbind",
    "".join(f'#include "{h}"\n' for h in HEADERS),
    # setuptools wants source paths relative to setup.py's directory (the cwd).
    sources=[os.path.relpath(HERE / n)
             for n in ("nsbind.c", "inroot.c", "mountsteps.c", "init.c", "gate.c", "terminal.c",
                       "spawn.c", "spawnparent.c", "pyclone.c", "seccompload.c")],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    libraries=["dl"],  # dlopen of libseccomp (in libc itself from glibc 2.34)
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
