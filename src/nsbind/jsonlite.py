"""JSON for the runtime's light commands, without importing the json package.

``import json`` imports re, and re imports enum, functools and the regular expression
compiler: some 8 ms of a ``state``, ``start`` or ``delete`` call that otherwise takes
about 15, and podman and containerd make several such calls a container.  Here
:func:`loads` runs json's own C scanner (the ``_json`` accelerator, what
``json.loads`` runs), and :func:`dumps` writes what ``json.dumps`` writes with its
default options (ASCII, ``", "`` and ``": "`` separators, NaN and infinities as
JavaScript's), or with ``indent``.  Without the accelerator (another Python), both are
json's own.

Errors are json's: ``loads`` raises ``json.JSONDecodeError`` (a ValueError; the json
package is imported then), ``dumps`` a TypeError for a value JSON has no form for, or
a ValueError for a container that holds itself."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see nsbind.lazyimport
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython has it
    _json = None  # type: ignore[assignment]

__all__ = ["dumps", "loads"]

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_MAX_DEPTH = 200  # nesting dumps follows (json.dumps stops at the recursion limit)


class _Decoder:
    """What the C scanner reads of a ``json.JSONDecoder``: json.loads's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan: Callable[[str, int], tuple[Any, int]] | None = (
    _json.make_scanner(_Decoder()) if _json is not None else None)  # type: ignore[arg-type]


def _error(message: str, text: str, at: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(message, text, at)


def loads(text: str) -> Any:
    """The JSON value ``text`` holds (whitespace around it allowed), as ``json.loads``."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise _error("Expecting value", text, stop.value) from None
    end = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if end != len(text):
        raise _error("Extra data", text, end)
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """``value`` (dicts with str keys, lists, tuples, str, int, float, bool, None) as
    ``json.dumps(value)`` or ``json.dumps(value, indent=indent)`` writes it."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, indent=indent)
    out: list[str] = []
    _encode(value, out, indent, 0)
    return "".join(out)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (_CONSTANTS["Infinity"], _CONSTANTS["-Infinity"]):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _encode(value: Any, out: list[str], indent: int | None, level: int) -> None:
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, (dict, list, tuple)):
        if level >= _MAX_DEPTH:
            raise ValueError("Circular reference detected, or nested too deep")
        if not value:
            out.append("{}" if isinstance(value, dict) else "[]")
            return
        if indent is None:
            between, first, last = ", ", "", ""
        else:
            first = "\n" + " " * (indent * (level + 1))
            between, last = "," + first, "\n" + " " * (indent * level)
        if isinstance(value, dict):
            out.append("{" + first)
            for i, (key, item) in enumerate(value.items()):
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {type(key).__name__}")
                if i:
                    out.append(between)
                out.append(_json.encode_basestring_ascii(key) + ": ")
                _encode(item, out, indent, level + 1)
            out.append(last + "}")
        else:
            out.append("[" + first)
            for i, item in enumerate(value):
                if i:
                    out.append(between)
                _encode(item, out, indent, level + 1)
            out.append(last + "]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
