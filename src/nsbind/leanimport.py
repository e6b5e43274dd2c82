"""nsbind's own modules imported with less work than importlib's path finder does for
them: the commands' launchers install it (a command imports some ninety nsbind modules,
and the path finder's Python code costs a few milliseconds of every runtime call).

The finder answers only for submodules of a package under the root it was given whose
parent has one directory on its ``__path__``, and only when the directory holds a
regular file ``NAME.py`` (and no extension module of that name) or a package
``NAME/__init__.py`` (and no extension ``__init__``); the directories' names are listed
once a process.  Its loader is importlib's ``SourceFileLoader`` (source, resources and
the module's attributes as importlib's), except that ``get_code`` reads the module's
``__pycache__`` file itself when that file is a timestamp-checked one of this
interpreter whose recorded source mtime and size match the source's, as importlib
checks them; the code gets the source's path, as importlib gives it.

Anything else (no or a stale compiled file, a hash-checked one, another magic number)
goes to ``SourceFileLoader.get_code``, which compiles (and writes the compiled file
unless told not to).  A compiled file that is not a regular file (a FIFO would hang
importlib's read) is neither read nor replaced: the source is compiled in memory.
Every other module goes to importlib's finders.  Not installed under ``-O`` or a
``sys.pycache_prefix`` (other file names).  The compiled files are read with os calls,
not through ``io.open_code``: an embedder's open-code hook (PEP 578) does not see them.
"""

from __future__ import annotations

import sys
from _frozen_importlib import ModuleSpec
from _frozen_importlib_external import EXTENSION_SUFFIXES, MAGIC_NUMBER, SourceFileLoader
from _imp import _fix_co_filename  # type: ignore[attr-defined]
from marshal import loads
from posix import O_CLOEXEC, O_NONBLOCK, O_RDONLY, listdir, stat
from posix import close as _close
from posix import fstat as _fstat
from posix import open as _open
from posix import read as _read
from stat import S_ISREG

TYPE_CHECKING = False  # not typing's: see nsbind.gcpause
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import CodeType, ModuleType

__all__ = ["LeanFinder", "install"]

_TAG = sys.implementation.cache_tag
_TIMESTAMP_FLAGS = b"\0\0\0\0"  # a pyc's flags word: neither hash-based nor checked


class _Loader(SourceFileLoader):
    """importlib's source loader, reading the compiled file it was found with."""

    def __init__(self, fullname: str, path: str, cached: str) -> None:
        super().__init__(fullname, path)
        self._cached = cached

    def get_code(self, fullname: str) -> CodeType | None:
        try:  # O_NONBLOCK: a FIFO there must not hang the import
            fd = _open(self._cached, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        except OSError:
            return super().get_code(fullname)
        try:
            st = _fstat(fd)
            if not S_ISREG(st.st_mode):  # compiled from the source, nothing written
                return self.source_to_code(self.get_data(self.path), self.path)
            data = _read(fd, st.st_size)
            source = stat(self.path)  # now, as importlib's get_code reads it
        except OSError:
            return super().get_code(fullname)
        finally:
            _close(fd)
        if (len(data) == st.st_size and len(data) > 16 and data[:4] == MAGIC_NUMBER
                and data[4:8] == _TIMESTAMP_FLAGS
                and int.from_bytes(data[8:12], "little") == int(source.st_mtime) & 0xFFFFFFFF
                and int.from_bytes(data[12:16], "little") == source.st_size & 0xFFFFFFFF):
            try:
                code = loads(memoryview(data)[16:])
            except (EOFError, ValueError, TypeError):
                code = None  # importlib's read says what is wrong with it
            if type(code) is _CODE_TYPE:
                _fix_co_filename(code, self.path)
                return code
        return super().get_code(fullname)


class LeanFinder:
    """The meta path finder described in the module doc, for the packages under one
    root directory."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") + "/"
        self._listings: dict[str, frozenset[str]] = {}

    def _names(self, directory: str) -> frozenset[str] | None:
        names = self._listings.get(directory)
        if names is None:
            try:
                names = self._listings[directory] = frozenset(listdir(directory))
            except OSError:
                return None
        return names

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if path is None or len(path) != 1:
            return None
        directory = path[0]
        if not (directory + "/").startswith(self.root):
            return None
        names = self._names(directory)
        tail = fullname.rpartition(".")[2]
        if names is None or any(tail + suffix in names for suffix in EXTENSION_SUFFIXES):
            return None
        if tail in names:  # a package (or a directory importlib decides about)
            base = f"{directory}/{tail}"
            inside = self._names(base)
            if (inside is None or "__init__.py" not in inside
                    or any("__init__" + suffix in inside for suffix in EXTENSION_SUFFIXES)):
                return None
            origin, cached = f"{base}/__init__.py", f"{base}/__pycache__/__init__.{_TAG}.pyc"
        elif tail + ".py" in names:
            base = ""
            origin = f"{directory}/{tail}.py"
            cached = f"{directory}/__pycache__/{tail}.{_TAG}.pyc"
        else:
            return None
        try:
            st = stat(origin)
        except OSError:
            return None
        if not S_ISREG(st.st_mode):
            return None
        loader = _Loader(fullname, origin, cached)
        spec = ModuleSpec(fullname, loader, origin=origin, is_package=bool(base))
        if base:
            spec.submodule_search_locations = [base]
        spec.has_location = True
        spec.cached = cached
        return spec

    def invalidate_caches(self) -> None:
        """Forget the directory listings (``importlib.invalidate_caches`` calls this)."""
        self._listings.clear()


def install(root: str | None = None) -> LeanFinder | None:
    """Put a :class:`LeanFinder` for ``root`` (nsbind's package directory by default)
    first on ``sys.meta_path``, once; None (nothing installed) under ``-O``, with a
    ``sys.pycache_prefix`` or without a cache tag."""
    if sys.flags.optimize or sys.pycache_prefix is not None or _TAG is None:
        return None
    new = LeanFinder(root if root is not None else __file__.rpartition("/")[0])
    for finder in sys.meta_path:
        if isinstance(finder, LeanFinder) and finder.root == new.root:
            return finder
    sys.meta_path.insert(0, new)
    return new


_CODE_TYPE = type(install.__code__)  # what a compiled module is (types.CodeType)
