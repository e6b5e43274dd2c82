"""Reading a JSON file a client names (``exec --process``, ``update --resources``): it
must be a regular file (checked with fstat before a byte is read: a FIFO cannot hang
the runtime), at most ``limit`` bytes, and JSON."""

from __future__ import annotations

import json
import os
from typing import Any

from nsbind._sys.mount import AT_FDCWD, open_regular, read_capped
from nsbind.oci.schema import SpecError

__all__ = ["read_json_file"]


def read_json_file(path: str | os.PathLike[str], limit: int, what: str) -> Any:
    """The decoded JSON of ``path``; SpecError naming ``what`` and the path otherwise."""
    try:
        with open_regular(AT_FDCWD, path, what=f"{what} {os.fspath(path)}") as fd:
            data = read_capped(fd, limit, what=f"{what} {os.fspath(path)}")
    except OSError as exc:
        raise SpecError(str(exc), exc.errno) from None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise SpecError(f"{what} {os.fspath(path)}: not JSON: {exc}") from None
