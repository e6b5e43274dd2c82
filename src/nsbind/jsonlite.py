"""JSON for the runtime's light commands, without importing the json package.

``import json`` imports re, and re imports enum, functools and the regular expression
compiler: some 8 ms of a ``state``, ``start`` or ``delete`` call that otherwise takes
about 15, and podman and containerd make several such calls a container (``nsbind
run`` reads and writes JSON too).  Here :func:`loads` runs json's own C scanner (the
``_json`` accelerator, what ``json.loads`` runs), with json's ``object_pairs_hook`` and
``parse_constant`` if given, and :func:`dumps` writes what ``json.dumps`` writes (ASCII,
NaN and infinities as JavaScript's) with ``indent``, ``separators`` and ``sort_keys`` as
json's: on one line through json's C encoder, indented as json's Python encoder does.
Without the accelerator (another Python), both are json's own.

Errors are json's: ``loads`` raises ``json.JSONDecodeError`` (a ValueError; the json
package is imported then), ``dumps`` a TypeError for a value JSON has no form for, or
a ValueError for a container that holds itself."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see nsbind.lazyimport
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeAlias

try:
    import _json
except ImportError:  # pragma: no cover - CPython has it
    _json = None  # type: ignore[assignment]

__all__ = ["dumps", "loads"]

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_MAX_DEPTH = 200  # nesting dumps follows (json.dumps stops at the recursion limit)


class _Decoder:
    """What the C scanner reads of a ``json.JSONDecoder``: json.loads's defaults, or
    the hooks given."""

    strict = True
    object_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None,
                 parse_constant: Callable[[str], Any] | None) -> None:
        self.object_pairs_hook = object_pairs_hook
        self.parse_constant = parse_constant or _CONSTANTS.__getitem__


_Scanner: TypeAlias = "Callable[[str, int], tuple[Any, int]]"
#: scanners by (object_pairs_hook, parse_constant): a process uses one or two
_scanners: dict[tuple[object, object], _Scanner] = {}


def _scanner(object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None,
             parse_constant: Callable[[str], Any] | None) -> _Scanner:
    key = (object_pairs_hook, parse_constant)
    scan = _scanners.get(key)
    if scan is None:
        decoder = _Decoder(object_pairs_hook, parse_constant)
        scan = _scanners[key] = _json.make_scanner(decoder)  # type: ignore[arg-type]
    return scan


def _error(message: str, text: str, at: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(message, text, at)


def loads(text: str | bytes, *,
          object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
          parse_constant: Callable[[str], Any] | None = None) -> Any:
    """The JSON value ``text`` holds (whitespace around it allowed), as ``json.loads``
    with the same arguments.  Bytes are UTF-8 unless json's detection finds a BOM or
    UTF-16/32 (json reads those)."""
    if isinstance(text, (bytes, bytearray)):
        if text[:3] == b"\xef\xbb\xbf" or text[:2] in (b"\xff\xfe", b"\xfe\xff") \
                or b"\x00" in text[:4]:
            import json

            return json.loads(text, object_pairs_hook=object_pairs_hook,
                              parse_constant=parse_constant)
        text = text.decode("utf-8", "surrogatepass")
    if _json is None:  # pragma: no cover
        import json

        return json.loads(text, object_pairs_hook=object_pairs_hook,
                          parse_constant=parse_constant)
    if text.startswith("\ufeff"):
        raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    scan = _scanner(object_pairs_hook, parse_constant)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = scan(text, start)
    except StopIteration as stop:
        raise _error("Expecting value", text, stop.value) from None
    except SystemError:
        # the scanner reports most malformed documents with json.decoder's exception,
        # which it looks up in sys.modules only: json, imported now, says what is wrong
        import json

        return json.loads(text, object_pairs_hook=object_pairs_hook,
                          parse_constant=parse_constant)
    end = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if end != len(text):
        raise _error("Extra data", text, end)
    return value


def dumps(value: Any, indent: int | str | None = None, *,
          separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """``value`` (dicts with str keys, lists, tuples, str, int, float, bool, None) as
    ``json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys)``
    writes it."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys)
    if indent is None:  # json's C encoder, as json.dumps calls it
        item, key = separators or (", ", ": ")
        encode = _json.make_encoder({}, _unserializable, _json.encode_basestring_ascii,
                                    None, key, item, sort_keys, False, True)
        return "".join(encode(value, 0))
    out: list[str] = []
    step = " " * indent if isinstance(indent, int) else indent
    item, key = separators or (",", ": ")
    _encode(value, out, (step, item, key, sort_keys), 0)
    return "".join(out)


def _unserializable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (_CONSTANTS["Infinity"], _CONSTANTS["-Infinity"]):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


#: how indented JSON is laid out: the indent step, the item and key separators, and
#: whether keys are sorted
_Layout: TypeAlias = "tuple[str, str, str, bool]"


def _key(key: object) -> str:
    """A dict key as json writes it: str as is; int, float, bool and None as their JSON."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return _scalar(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _scalar(value: bool | int | float | None) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    return _float(value)


def _encode(value: Any, out: list[str], layout: _Layout, level: int) -> None:
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None or isinstance(value, (bool, int, float)):
        out.append(_scalar(value))
    elif isinstance(value, (dict, list, tuple)):
        if level >= _MAX_DEPTH:
            raise ValueError("Circular reference detected, or nested too deep")
        if not value:
            out.append("{}" if isinstance(value, dict) else "[]")
            return
        step, item_sep, key_sep, sort_keys = layout
        first = "\n" + step * (level + 1)
        between, last = item_sep + first, "\n" + step * level
        if isinstance(value, dict):
            out.append("{" + first)
            items = sorted(value.items()) if sort_keys else value.items()
            for i, (key, item) in enumerate(items):
                if i:
                    out.append(between)
                out.append(_json.encode_basestring_ascii(_key(key)) + key_sep)
                _encode(item, out, layout, level + 1)
            out.append(last + "}")
        else:
            out.append("[" + first)
            for i, item in enumerate(value):
                if i:
                    out.append(between)
                _encode(item, out, layout, level + 1)
            out.append(last + "]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
