"""The ``nsbind`` command: containers as Docker's command runs them (``nsbind run``,
``ps``, ``logs``, ``stop``, ``kill``, ``rm``, ``exec``, ``inspect``, ``wait``,
``stats``, ``top``, ``network``), images (``nsbind image load|inspect|unpack|flatten|ls|
rm|gc``, ``images`` as ``image ls``, ``pull``, ``push``, ``login``, ``logout``),
``doctor``, the cgroup layout, and a fresh-namespaces demo (the default).

Only the named command's parser is built and only its code imported: a container
command pays Python's start-up and what it uses, nothing more."""

from __future__ import annotations

import sys

from nsbind.gcpause import resume_unless

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main", "parser"]

def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: the first word not a global flag or its value
    (None: none, or only options)."""
    from nsbind.engine.cli import GLOBAL_FLAGS

    valued = {flag for flags, _, kind, _, _ in GLOBAL_FLAGS if kind == "value" for flag in flags}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in valued:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return word
    return None


def _version() -> str:
    from nsbind import __version__

    return f"nsbind version {__version__}"


_REGISTRY = ("pull", "push", "login", "logout")  # nsbind.image.registrycli.COMMANDS
#: the commands that start a container or a process in one: the garbage collector stays
#: paused until they wait for it (nsbind.gcpause)
START_COMMANDS = ("run", "exec")


def parser(argv: list[str]) -> argparse.ArgumentParser:
    """The argparse parser for command line ``argv``: only its command's subparser is
    built (all of them for help or an unknown command).  ``images`` in ``argv`` becomes
    ``image ls``, in place."""
    from nsbind.argparsing import Parser
    from nsbind.engine import cli as engine_cli

    command = _command_of(argv)
    parser = Parser(prog="nsbind", description=__doc__)
    sub = parser.add_subparsers(dest="nsbind_command", parser_class=Parser)
    engine_cli.add_global_arguments(parser)  # --root, --runroot, --json
    parser.add_argument("--version", action="version", version=_version())
    if command == "images":  # Docker's shorthand: the same parser and code as image ls
        at = argv.index(command)
        argv[at:at + 1] = ["image", "ls"]
        command = "image"
    registry = _REGISTRY
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from nsbind.engine import cli as engine_cli  # light: its commands import on use

    command = _command_of(argv)
    resume_unless(command, START_COMMANDS)
    if command == "run":  # its plain forms without argparse (~8 ms with it)
        fast = engine_cli.fast_parse(argv)
        if fast is not None:
            return engine_cli.run(fast)  # type: ignore[arg-type]  # argparse's attributes
    registry = _REGISTRY
    args = parser(argv).parse_args(argv)
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
