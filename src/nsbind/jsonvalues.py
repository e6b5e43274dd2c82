"""JSON documents nsbind reads (image manifests and configs, OCI config.json): what a
value is called in an error message, and the most bytes a document may have."""

from __future__ import annotations

from nsbind import jsonlite
from nsbind.errors import MessageError

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "JsonError", "kind_of", "parse_json"]

#: the most bytes of a JSON document nsbind parses (a manifest, a config)
MAX_JSON_BYTES = 16 << 20
#: how deep a JSON document may nest (real ones nest 4 or 5 deep)
MAX_JSON_DEPTH = 64


class JsonError(MessageError, ValueError):
    """A JSON document nsbind does not read: the message names it (``errno`` EINVAL)."""

    operation = "parse JSON"


def kind_of(value: object) -> str:
    """What a JSON value is, for messages: "null", "a number", "a list", ..."""
    if value is None:
        return "null"
    for types, name in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
                        (list, "a list"), (dict, "an object")):
        if isinstance(value, types):
            return name
    return type(value).__name__


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(f"duplicate key {key[:80]!r} (parsers disagree on which counts)")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not JSON")


def parse_json(data: bytes, what: str) -> Any:
    """``data`` as JSON, or JsonError naming ``what``: strict UTF-8 (no BOM), no
    duplicate keys, no NaN/Infinity, at most MAX_JSON_BYTES long and MAX_JSON_DEPTH deep."""
    if len(data) > MAX_JSON_BYTES:
        raise JsonError(f"{what} is larger than {MAX_JSON_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonError(f"{what} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = jsonlite.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise JsonError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} deep") from None
    except JsonError as exc:
        raise JsonError(f"{what} is not valid JSON: {exc}") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of too many digits
        raise JsonError(f"{what} is not valid JSON: {exc}") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JsonError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(
            item, list) else ()
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return value
