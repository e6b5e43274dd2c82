"""``nsbind run``'s flags, declared once: :func:`add_run_arguments` gives them to an
argparse parser (made with ``add_help=False``: ``-h`` is ``--hostname``, as in Docker;
``--help`` still works), and :func:`fast_parse_run` reads their plain forms without
importing argparse.  :func:`nsbind.engine.runopts.run_options` checks the values."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see nsbind.lazyimport
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

__all__ = ["HOSTNAME_FLAG", "RUN_FLAGS", "add_flags", "add_run_arguments", "fast_parse_flags",
           "fast_parse_run", "run_parser"]

#: ``docker run``'s flags that nsbind has, in their help order: (option strings, dest,
#: kind, metavar, help).  Kinds: ``value`` (a string), ``true`` (store_true), ``append``
#: (a list).  :func:`add_run_arguments` gives them to argparse; :func:`fast_parse_run`
#: parses the plain forms without it.
RUN_FLAGS: tuple[tuple[tuple[str, ...], str, str, str | None, str], ...] = (
    (("--name",), "name", "value", None, "the container's name"),
    (("--rm",), "rm", "true", None, "remove the container when it exits"),
    (("-d", "--detach"), "detach", "true", None, "run in the background, print its id"),
    (("-i", "--interactive"), "interactive", "true", None, "keep stdin open"),
    (("-t", "--tty"), "tty", "true", None, "allocate a terminal"),
    (("-e", "--env"), "env", "append", "NAME[=VALUE]",
     "set an environment variable (NAME alone: the caller's value)"),
    (("--env-file",), "env_file", "append", "FILE",
     "read environment variables from FILE (NAME=VALUE lines)"),
    (("-w", "--workdir"), "workdir", "value", None, "the working directory (absolute)"),
    (("-u", "--user"), "user", "value", None, "user[:group], names or ids"),
    (("--entrypoint",), "entrypoint", "value", None,
     "replace the image's entrypoint (and drop its command)"),
    (("-m", "--memory"), "memory", "value", None, "memory limit (e.g. 512m, 1g)"),
    (("--memory-swap",), "memory_swap", "value", "SIZE",
     "memory plus swap limit; -1 unlimited"),
    (("--cpus",), "cpus", "value", None, "CPUs (decimal, e.g. 1.5)"),
    (("--cpuset-cpus",), "cpuset_cpus", "value", "LIST", "CPUs to run on (0-3,5)"),
    (("--pids-limit",), "pids_limit", "value", "N", "process limit (-1 or 0: unlimited)"),
    (("--ulimit",), "ulimit", "append", "NAME=SOFT[:HARD]", "a resource limit"),
    (("--read-only",), "read_only", "true", None, "mount the root filesystem read-only"),
    (("-v", "--volume"), "volume", "append", "SRC:DST[:ro|rw]",
     "bind-mount the absolute host path SRC"),
    (("--mount",), "mount", "append", "type=bind|tmpfs,...", "add a mount"),
    (("--tmpfs",), "tmpfs", "append", "DST[:OPTIONS]", "mount a tmpfs"),
    (("--init",), "init", "true", None,
     "run an init that reaps zombies and forwards signals"),
    (("--cap-add",), "cap_add", "append", "CAP", "add a capability (or ALL)"),
    (("--cap-drop",), "cap_drop", "append", "CAP", "drop a capability (or ALL)"),
    (("--security-opt",), "security_opt", "append", "OPT",
     "no-new-privileges[=true|false], seccomp=unconfined|FILE"),
    (("--stop-signal",), "stop_signal", "value", "SIGNAL",
     "the signal that stops the container"),
    (("--stop-timeout",), "stop_timeout", "value", "SECONDS",
     "seconds before the container is killed"),
    (("--net", "--network"), "network", "value", "NETWORK",
     "none, host, loopback (the default), bridge, a network's name, or container:NAME"),
    (("-p", "--publish"), "publish", "append", "[IP:]HOST:CONTAINER[/PROTO]",
     "publish a container port on the host (bridge and named networks)"),
    (("--ip",), "ip", "value", "ADDRESS", "the container's address on a named network"),
    (("--userns",), "userns", "value", "MODE",
     "host (the default), or auto[:size=N]: a user namespace of the container's own, its "
     "ids from the subordinate ranges of the user 'containers'"),
    (("--rootfs",), "rootfs", "value", "DIR", "run in DIR instead of an image"),
    (("--dry-run",), "dry_run", "true", None, "print the OCI spec; run nothing"),
)
#: -h is --hostname, as in docker run (help is --help only)
HOSTNAME_FLAG = (("-h", "--hostname"), "hostname", "value", None, "the container's host name")


def add_flags(parser: argparse.ArgumentParser,
              table: Sequence[tuple[tuple[str, ...], str, str, str | None, str]]) -> None:
    """Add the flags of a table shaped as :data:`RUN_FLAGS` to ``parser``."""
    actions = {"value": "store", "append": "append"}
    for flags, dest, kind, metavar, help_ in table:
        if kind == "true":  # (a switch takes no metavar)
            parser.add_argument(*flags, dest=dest, action="store_true", help=help_)
        else:
            parser.add_argument(*flags, dest=dest, action=actions[kind], help=help_,
                                metavar=metavar)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``docker run``'s flags (those nsbind has), ``--rootfs``, ``--dry-run``, and the
    positional IMAGE and COMMAND [ARG...] (everything after IMAGE is the command's).
    ``parser`` must be made with ``add_help=False``; ``--help`` is added here."""
    import argparse

    try:
        add_flags(parser, (HOSTNAME_FLAG,))
    except argparse.ArgumentError:
        raise ValueError("add_run_arguments needs a parser made with add_help=False: "
                         "-h is --hostname, as in docker run") from None
    parser.add_argument("--help", action="help", help="show this help and exit")
    add_flags(parser, RUN_FLAGS)
    parser.add_argument("image", nargs="?", metavar="IMAGE",
                        help="the image (absent with --rootfs)")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                        help="the command and its arguments")


def run_parser(prog: str = "nsbind run") -> argparse.ArgumentParser:
    """A parser with :func:`add_run_arguments`'s flags."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=prog, add_help=False, description="Run a command in a new container.")
    add_run_arguments(parser)
    return parser


def _negative_number(arg: str) -> bool:
    """What argparse takes for a negative number (a value, not a flag, in a parser
    without flags that look like one)."""
    whole, dot, frac = arg[1:].partition(".")
    if not arg[1:].isascii() or (whole and not whole.isdecimal()):
        return False
    return frac.isdecimal() if dot else bool(whole)


def fast_parse_flags(argv: Sequence[str],
                     table: Sequence[tuple[tuple[str, ...], str, str, str | None, str]]
                     ) -> tuple[dict[str, Any], int] | None:
    """The leading flags of ``argv`` parsed as argparse parses them with ``table``'s
    (every dest at its default, then what is given), and the index of the first word
    that is not a flag; without importing argparse (gettext and locale come with it),
    when they are in a plain form: each flag whole (``--flag VALUE``, ``--flag=VALUE``,
    ``-f VALUE``), short switches grouped (``-it``).  None for anything else (``--help``,
    an abbreviation, a value that looks like a flag, an error): argparse parses those."""
    flags = {flag: entry for entry in table for flag in entry[0]}
    values: dict[str, Any] = {}
    for _, dest, kind, _, _ in table:
        values[dest] = False if kind == "true" else None
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        arg = argv[i]
        name, eq, attached = arg.partition("=")
        if arg.startswith("--"):
            entry = flags.get(name)
        elif len(arg) > 2:  # a group of short switches, each of them store_true
            for c in arg[1:]:
                switch = flags.get(f"-{c}")
                if switch is None or switch[2] != "true":
                    return None
                values[switch[1]] = True
            i += 1
            continue
        else:
            entry, eq = flags.get(arg), ""
        if entry is None:
            return None
        _, dest, kind, _, _ = entry
        if kind == "true":
            if eq:
                return None
            values[dest] = True
            i += 1
            continue
        if eq:
            value, i = attached, i + 1
            if value == "--":  # argparse drops a "--" even there
                return None
        else:
            if i + 1 >= len(argv):
                return None
            value, i = argv[i + 1], i + 2
            if value.startswith("-") and not _negative_number(value):
                return None
        if kind == "append":
            values[dest] = [*(values[dest] or ()), value]
        else:
            values[dest] = value
    return values, i


def fast_parse_run(argv: Sequence[str],
                   table: Sequence[tuple[tuple[str, ...], str, str, str | None, str]]
                   ) -> dict[str, Any] | None:
    """``argv`` (what follows ``run``) parsed as argparse parses it with ``table``'s flags
    (:func:`fast_parse_flags`) and IMAGE, COMMAND [ARG...] (:func:`add_run_arguments`):
    some 8 ms of every ``nsbind run`` less.  None where argparse must read it (also
    ``--`` anywhere)."""
    parsed = fast_parse_flags(argv, table)
    if parsed is None:
        return None
    values, i = parsed
    rest = list(argv[i:])
    if "--" in rest or (rest and rest[0].startswith("-")):
        return None
    values["image"] = rest[0] if rest else None
    values["command"] = rest[1:]
    return values
