"""Reading the JSON files a runtime is handed (``config.json``, ``exec --process``,
``update --resources``): a file must be a regular file (checked with fstat before a
byte is read: a FIFO cannot hang the runtime) of at most ``limit`` bytes, and its
JSON is parsed strictly (UTF-8, no duplicate keys, no NaN, bounded depth:
:func:`nsbind.jsonvalues.parse_json`).  Every failure is a SpecError naming the file."""

from __future__ import annotations

import os

from nsbind._sys.mount import AT_FDCWD, open_regular, read_capped
from nsbind.errors import InvalidValue
from nsbind.jsonvalues import JsonError, parse_json
from nsbind.oci.schema import SpecError

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["decode_json", "read_json_bytes", "read_json_file"]


def decode_json(data: bytes, what: str) -> Any:
    """``data`` as JSON (strict), or SpecError naming ``what``."""
    try:
        return parse_json(data, what)
    except JsonError as exc:
        raise SpecError(str(exc)) from None


def read_json_file(path: str | os.PathLike[str], limit: int, what: str = "") -> Any:
    """The decoded JSON of the regular file ``path``; SpecError naming ``what`` (a
    word for the caller's option, e.g. ``exec --process``) and the path otherwise."""
    return read_json_bytes(path, limit, what)[1]


def read_json_bytes(path: str | os.PathLike[str], limit: int, what: str = ""
                    ) -> tuple[bytes, Any]:
    """The bytes of the regular file ``path`` and their decoded JSON, as
    :func:`read_json_file` reads them."""
    label = f"{what} {os.fspath(path)}" if what else os.fspath(path)
    try:
        with open_regular(AT_FDCWD, path, what=label) as fd:
            data = read_capped(fd, limit, what=label)
    except InvalidValue as exc:
        raise SpecError(str(exc), exc.errno) from None
    except OSError as exc:
        raise SpecError(f"cannot read {label}: {exc.strerror}", exc.errno) from None
    return data, decode_json(data, label)
