"""nsbind.leanimport, the launchers' finder for nsbind's own modules, against importlib:
the same modules with the same attributes; a compiled file it cannot vouch for (stale,
hash-checked, of another magic number, from another path) left to importlib; and what
is not a plain source module (extension modules, namespace packages) too."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import py_compile
import stat
import subprocess
import sys
import sysconfig

import pytest

import nsbind
from nsbind.leanimport import LeanFinder, install

PACKAGE = os.path.dirname(nsbind.__file__)

#: what a child prints for each module: the attributes importlib sets, and the loader
ATTRS = """
import importlib, json, sys
from importlib.machinery import SourceFileLoader
names = sys.argv[2:]
if sys.argv[1] == "lean":
    from nsbind.leanimport import LeanFinder, install
    install()
    assert isinstance(sys.meta_path[0], LeanFinder)
before = set(sys.modules)  # imported before the finder was there
out = {}
for name in names:
    m = importlib.import_module(name)
    s = m.__spec__
    out[name] = [m.__name__, m.__file__, m.__cached__, m.__package__,
                 getattr(m, "__path__", None), s.origin, s.cached, s.parent,
                 s.has_location, s.submodule_search_locations,
                 isinstance(m.__loader__, SourceFileLoader), m.__loader__.name,
                 m.__loader__.path,
                 name in before or type(m.__loader__).__name__ != "SourceFileLoader"]
print(json.dumps(out))
"""


#: the children's environment: this interpreter's path, none of the variables that change
#: which compiled files are written or read
ENV = {k: v for k, v in os.environ.items()
       if k not in ("SOURCE_DATE_EPOCH", "PYTHONOPTIMIZE", "PYTHONPYCACHEPREFIX")}
ENV["PYTHONPATH"] = os.pathsep.join(sys.path)
TIMESTAMP = py_compile.PycInvalidationMode.TIMESTAMP


def _modules() -> list[str]:
    names = []
    for path in sorted(pathlib.Path(PACKAGE).rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts and parts[-1] != "__main__":
            names.append(".".join(["nsbind", *parts]))
    return names


def _attrs(mode: str, names: list[str]) -> dict[str, list[object]]:
    proc = subprocess.run([sys.executable, "-S", "-c", ATTRS, mode, *names],
                          capture_output=True, text=True, check=True, timeout=120,
                          env=ENV)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.unprivileged
def test_every_nsbind_module_gets_what_importlib_gives_it() -> None:
    names = _modules()
    assert len(names) > 100 and "nsbind.oci.spec" in names
    lean, plain = _attrs("lean", names), _attrs("plain", names)
    for name in names:
        assert lean[name][:-1] == plain[name][:-1], name
    # every one of them came through the finder (but those imported before it)
    assert all(lean[name][-1] for name in names)


def _package(tmp_path: pathlib.Path, source: str = "VALUE = 1\n") -> pathlib.Path:
    root = tmp_path / "root"
    (root / "leanpkg" / "sub").mkdir(parents=True)
    (root / "leanpkg" / "__init__.py").write_text("")
    (root / "leanpkg" / "sub" / "__init__.py").write_text("")
    (root / "leanpkg" / "mod.py").write_text(source)
    return root


#: imports leanpkg.mod through a finder for ``root`` and prints what it found
CHILD = """
import sys
root = sys.argv[1]
sys.path.insert(0, root)
sys.dont_write_bytecode = True
if sys.argv[2:] != ["plain"]:
    from nsbind.leanimport import install
    install(root + "/leanpkg")
try:
    import leanpkg.mod as m
except Exception as exc:
    print("raised", type(exc).__name__)
    raise SystemExit(0)
print(m.VALUE, type(m.__loader__).__name__, m.__spec__.loader is m.__loader__,
      m.f.__code__.co_filename if hasattr(m, "f") else "-")
"""


def _child(root: pathlib.Path, *mode: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-S", "-c", CHILD, str(root), *mode],
                          capture_output=True, text=True, check=True, timeout=60,
                          env=ENV)
    return proc.stdout.split()


@pytest.mark.unprivileged
def test_a_stale_compiled_file_is_compiled_again_from_the_source(
        tmp_path: pathlib.Path) -> None:
    root = _package(tmp_path)
    mod = root / "leanpkg" / "mod.py"
    py_compile.compile(str(mod), doraise=True, invalidation_mode=TIMESTAMP)
    assert _child(root)[:3] == ["1", "_Loader", "True"]
    # the same size, another mtime: the recorded mtime no longer matches
    mod.write_text("VALUE = 2\n")
    st = mod.stat()
    os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    assert _child(root)[0] == "2"
    # the same mtime (as recorded), another size
    py_compile.compile(str(mod), doraise=True, invalidation_mode=TIMESTAMP)
    st = mod.stat()
    mod.write_text("VALUE = 333\n")
    os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _child(root)[0] == "333"


@pytest.mark.unprivileged
@pytest.mark.parametrize("case", ["missing", "hash", "magic", "truncated", "not code"])
def test_a_compiled_file_it_cannot_vouch_for_goes_to_importlib(
        tmp_path: pathlib.Path, case: str) -> None:
    """importlib compiles the source again, or refuses the file (truncated, not code):
    the finder's loader does what importlib does.  The compiled files hold another
    value than the source: one read in spite of its header would show."""
    root = _package(tmp_path, "VALUE = 8\n")
    mod = root / "leanpkg" / "mod.py"
    cached = pathlib.Path(importlib.util.cache_from_source(str(mod)))
    if case != "missing":
        py_compile.compile(str(mod), doraise=True, invalidation_mode=(
            py_compile.PycInvalidationMode.CHECKED_HASH if case == "hash" else TIMESTAMP))
    st = mod.stat()
    mod.write_text("VALUE = 7\n")  # the same size and mtime: only a hash tells
    os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns))
    data = cached.read_bytes() if cached.exists() else b""
    if case == "magic":
        cached.write_bytes(b"\0\0\r\n" + data[4:])
    elif case == "truncated":
        cached.write_bytes(data[:16])
    elif case == "not code":  # a valid header over a marshalled int, not a code object
        import marshal

        cached.write_bytes(data[:16] + marshal.dumps(42))
    lean, plain = _child(root), _child(root, "plain")
    if case in ("missing", "hash", "magic"):  # compiled again from the source
        assert lean[0] == plain[0] == "7" and lean[1] == "_Loader"
    else:  # refused (EOFError, ImportError) as importlib refuses it
        assert lean == plain and lean[0] == "raised"


@pytest.mark.unprivileged
def test_a_fifo_for_a_compiled_file_is_neither_read_nor_replaced(
        tmp_path: pathlib.Path) -> None:
    """importlib would block reading it (and then rename a new file over it); the
    finder compiles the source in memory and leaves the FIFO as it is."""
    root = _package(tmp_path, "VALUE = 5\n")
    cached = pathlib.Path(importlib.util.cache_from_source(str(root / "leanpkg" / "mod.py")))
    cached.parent.mkdir()
    os.mkfifo(cached)
    assert _child(root)[:2] == ["5", "_Loader"]
    assert stat.S_ISFIFO(cached.lstat().st_mode)


@pytest.mark.unprivileged
def test_a_tree_compiled_elsewhere_reports_the_source_where_it_is(
        tmp_path: pathlib.Path) -> None:
    """importlib gives the code the source's path (the tree may have moved since it was
    compiled); so does the finder."""
    root = _package(tmp_path, "VALUE = 1\ndef f():\n    pass\n")
    mod = root / "leanpkg" / "mod.py"
    py_compile.compile(str(mod), dfile="/elsewhere/mod.py", doraise=True,
                       invalidation_mode=TIMESTAMP)
    value, loader, _same, filename = _child(root)
    assert (value, loader, filename) == ("1", "_Loader", str(mod))


@pytest.mark.unprivileged
def test_extension_modules_and_namespace_packages_are_importlibs(
        tmp_path: pathlib.Path) -> None:
    finder = LeanFinder(PACKAGE)
    native = os.path.join(PACKAGE, "_native")
    assert any(n.startswith("_nsbind.") and n.endswith(".so") for n in os.listdir(native))
    assert finder.find_spec("nsbind._native._nsbind", [native]) is None
    (tmp_path / "pkg" / "nons").mkdir(parents=True)  # a directory without __init__.py
    (tmp_path / "pkg" / "extpkg").mkdir()  # an extension __init__ beside a source one
    (tmp_path / "pkg" / "extpkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "extpkg" / f"__init__{importlib.machinery.EXTENSION_SUFFIXES[0]}"
     ).write_text("")
    os.mkfifo(tmp_path / "pkg" / "fifo.py")  # not a regular file: importlib's to judge
    (tmp_path / "pkg" / "both.py").write_text("")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / "pkg" / f"both{suffix}").write_text("")  # importlib prefers this one
    local = LeanFinder(str(tmp_path))
    assert local.find_spec("pkg.nons", [str(tmp_path / "pkg")]) is None
    assert local.find_spec("pkg.extpkg", [str(tmp_path / "pkg")]) is None
    assert local.find_spec("pkg.fifo", [str(tmp_path / "pkg")]) is None
    assert local.find_spec("pkg.both", [str(tmp_path / "pkg")]) is None
    assert local.find_spec("pkg.absent", [str(tmp_path / "pkg")]) is None
    # outside its root, for a top-level name, or a parent with two directories: not its
    assert finder.find_spec("os", None) is None
    assert finder.find_spec("x.y", [str(tmp_path)]) is None
    assert finder.find_spec("nsbind.oci", [PACKAGE, str(tmp_path)]) is None
    spec = finder.find_spec("nsbind.oci", [PACKAGE])
    assert spec is not None and spec.submodule_search_locations == [
        os.path.join(PACKAGE, "oci")]


@pytest.mark.unprivileged
def test_install_adds_one_finder_and_none_where_file_names_differ() -> None:
    code = ("import sys; from nsbind.leanimport import install, LeanFinder; "
            "a = install(); b = install(); "
            "print(a is b, sum(isinstance(f, LeanFinder) for f in sys.meta_path), "
            "a is not None)")
    env = ENV
    plain = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                           text=True, check=True, timeout=60, env=env).stdout.split()
    assert plain == ["True", "1", "True"]
    optimized = subprocess.run([sys.executable, "-S", "-O", "-c", code], capture_output=True,
                               text=True, check=True, timeout=60, env=env).stdout.split()
    assert optimized == ["True", "0", "False"]
    prefixed = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                              text=True, check=True, timeout=60,
                              env={**env, "PYTHONPYCACHEPREFIX": "/nonexistent"}
                              ).stdout.split()
    assert prefixed == ["True", "0", "False"]


def test_the_commands_import_nsbind_through_it() -> None:
    """The installed launcher installs the finder before the command's module: the
    modules a command imports come through it, compiled files read as they stand."""
    import compileall

    # not in the unprivileged pass: it writes the compiled files, as an install leaves
    # them (timestamp-checked, whatever the environment asks)
    assert compileall.compile_dir(PACKAGE, quiet=1, invalidation_mode=TIMESTAMP)
    launcher = pathlib.Path(sysconfig.get_path("scripts"), "nsbind-oci")
    proc = subprocess.run([sys.executable, "-S", "-v", str(launcher), "--version"],
                          capture_output=True, text=True, check=True, timeout=60, env=ENV)
    assert proc.stdout.startswith("nsbind-oci version ")
    through_importlib = [line for line in proc.stderr.splitlines()
                         if line.startswith("# code object from ") and PACKAGE in line]
    # only the package (and what it imports) and the finder's own module come the
    # usual way
    allowed = {os.path.join(PACKAGE, "__pycache__", f"{name}.{sys.implementation.cache_tag}"
                            ".pyc") for name in ("__init__", "lazyimport", "gcpause",
                                                 "leanimport")}
    paths = {line.split("'")[1] for line in through_importlib}
    assert paths <= allowed, through_importlib
    assert install.__module__ == "nsbind.leanimport"
