"""Names a package binds on first use (PEP 562 ``__getattr__``), so that importing it
costs only what the caller touches: a runtime process that only reads a state file
does not import the spawn machinery."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing it costs every runtime call ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["import_module", "module_getattr"]


def module_getattr(package: str, table: Mapping[str, str | None],
                   namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``table`` maps each lazy name to the
    module that defines it (relative to ``package`` when it starts with ``.``; None:
    the name is a submodule of ``package``).  The value is stored in ``namespace`` (the
    package's globals) on first use, so the lookup runs once a name."""
    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = table[name]
        if module is None:
            value = import_module(f"{package}.{name}")
        else:
            value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__


def import_module(name: str, package: str | None = None) -> Any:
    """``importlib.import_module`` without the importlib package (it imports warnings):
    the module ``name``, relative to ``package`` when it starts with dots."""
    level = len(name) - len(name.lstrip("."))
    if level:
        if not package:
            raise TypeError(f"the relative import {name!r} needs a package")
        bits = package.rsplit(".", level - 1)
        if len(bits) < level:
            raise ImportError(f"the relative import {name!r} climbs above {package!r}")
        name = f"{bits[0]}.{name[level:]}" if name[level:] else bits[0]
    __import__(name)
    return sys.modules[name]
