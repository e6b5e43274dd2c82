"""The ``nsbind`` command: containers as Docker's command runs them (``nsbind run``,
``ps``, ``logs``, ``stop``, ``kill``, ``rm``, ``exec``, ``inspect``, ``wait``,
``stats``, ``top``, ``network``), images (``nsbind image load|inspect|unpack|flatten|ls|
rm|gc``, ``images`` as ``image ls``, ``pull``, ``push``, ``login``, ``logout``),
``doctor``, the cgroup layout, and a fresh-namespaces demo (the default).

Only the named command's parser is built and only its code imported: a container
command pays Python's start-up and what it uses, nothing more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any, NoReturn
__all__ = ["main"]

#: the global options that take a value (the command is the first other word)
_VALUED = ("--root", "--runroot")


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


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, as wide as argparse makes it (the terminal's width less
    2), without shutil: argparse imports shutil to size each formatter, and it makes one
    for every argument it checks; shutil imports bz2 and lzma (3 ms a command)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """Usage errors as Docker reports them: one line, exit status 125."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(125, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (None: none, or only options)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in _VALUED:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return word
    return None


def _version() -> str:
    from nsbind import __version__

    return f"nsbind version {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from nsbind.engine import cli as engine_cli  # light: its commands import on use

    parser = _Parser(prog="nsbind", description=__doc__)
    sub = parser.add_subparsers(dest="nsbind_command", parser_class=_Parser)
    engine_cli.add_global_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--version", action="version", version=_version())
    command = _command_of(argv)
    if command == "images":  # Docker's shorthand: the same parser and code as image ls
        at = argv.index(command)
        argv[at:at + 1] = ["image", "ls"]
        command = "image"
    registry = ("pull", "push", "login", "logout")  # nsbind.image.registrycli.COMMANDS
    everything = command not in (*engine_cli.COMMANDS, *registry, "image", "doctor", "demo",
                                 "cgroups")
    if everything or command in ("demo", "cgroups"):
        for name, help_ in (("demo", "show what a fresh set of namespaces sees (the "
                             "default)"), ("cgroups", "show this host's cgroup layout")):
            p = sub.add_parser(name, help=help_)
            p.add_argument("--json", action="store_true", help="print JSON, not a table")
    if everything or command in engine_cli.COMMANDS:
        engine_cli.add_parsers(sub, only=None if everything else command)
    if everything or command == "image":
        from nsbind.image import cli as image_cli

        image_cli.add_parser(sub)
    if everything or command in registry:
        from nsbind.image import registrycli

        registrycli.add_parsers(sub)
    if everything or command == "doctor":
        from nsbind import doctor

        doctor.add_parser(sub)
    args = parser.parse_args(argv)
    if args.nsbind_command in engine_cli.COMMANDS:
        return engine_cli.run(args)
    if args.nsbind_command == "image":
        from nsbind.image import cli as image_cli

        if getattr(args, "store", None) is None:  # nsbind --root STORE image ...
            args.store = args.root
        return image_cli.run(args)
    if args.nsbind_command in registry:
        from nsbind.image import registrycli

        args.command = args.nsbind_command
        return registrycli.run(args)
    if args.nsbind_command == "doctor":
        from nsbind import doctor

        return doctor.run(args)
    from nsbind.demo import demo, show_cgroups

    if args.nsbind_command == "cgroups":
        return show_cgroups(as_json=args.json)
    return demo(as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
