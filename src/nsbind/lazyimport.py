"""Names a package binds on first use (PEP 562 ``__getattr__``), so that importing it
costs only what the caller touches: a runtime process that only reads a state file
does not import the spawn machinery."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing it costs every runtime call ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["module_getattr"]


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
            value = importlib.import_module(f"{package}.{name}")
        else:
            value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
