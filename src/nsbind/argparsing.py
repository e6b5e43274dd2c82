"""The ``nsbind`` command's argparse parser class: usage errors as Docker reports them,
and help as wide as argparse makes it without shutil.  Imported only when a command line
needs argparse (``nsbind run`` in its plain forms does not: nsbind.engine.cli.fast_parse)."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # not typing's: see nsbind.lazyimport
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["Formatter", "Parser"]


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size gives it: $COLUMNS, else the
    width of this process's stdout terminal, else 80."""
    import os

    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class Formatter(argparse.HelpFormatter):
    """argparse's help formatter, as wide as argparse makes it (the terminal's width less
    2), without shutil: argparse imports shutil to size each formatter, and it makes one
    for every argument it checks; shutil imports bz2 and lzma (3 ms a command)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """Usage errors as Docker reports them: one line, exit status 125."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(125, f"{self.prog}: {message} (see '{self.prog} --help')\n")
