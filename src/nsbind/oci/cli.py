"""``nsbind-oci``: an OCI runtime with runc's command line, for podman, conmon and
containerd's shim.

Global options come before the command, as runc takes them: ``--root DIR`` (the state
directory; ``/run/nsbind-oci`` for root, ``$XDG_RUNTIME_DIR/nsbind-oci`` otherwise),
``--log FILE``, ``--log-format text|json``, ``--systemd-cgroup`` (``cgroupsPath`` in
the ``slice:prefix:name`` form, mapped to cgroupfs as crun maps it without systemd),
``--rootless``, ``--debug``, ``--version``.  A failure prints one line on stderr (and
to the log) and exits with status 1.

Only what a command uses is imported (a command's start time is the runtime's
overhead on every container): this module imports nothing of nsbind, nor typing, and
argparse only for a command line :func:`fast_parse` leaves to it (help, errors).
"""

from __future__ import annotations

import os
import sys
import types

import nsbind  # the package: imported already, as this module's parent
from nsbind.gcpause import resume_unless

TYPE_CHECKING = False  # not typing's: see below
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any

__all__ = ["fast_parse", "main", "parser"]

VERSION = nsbind.__version__  #: the package's: one version for both commands
OCI_VERSION = "1.2.0"
#: the commands a client calls for every container, and run and exec: the garbage
#: collector stays paused (nsbind.gcpause) until they wait for a process, if they do
START_COMMANDS = ("create", "start", "state", "kill", "delete", "run", "exec")

#: an option: its flags (the first long one names it, as argparse names it), its kind
#: ("bool"; "str", "int": one value; "list", "ints": repeatable; "maybe": a value
#: after ``=`` or none; or the tuple of the values it takes), its default, its help
#: (HIDDEN: accepted, not listed)
Option = tuple[tuple[str, ...], "str | tuple[str, ...]", "Any", str]
#: a positional argument: its name, its kind ("one", "opt": optional with the default
#: given, "rest": every argument left) and default
Positional = tuple[str, str, "Any"]

HIDDEN = "(hidden)"

_GLOBALS: tuple[Option, ...] = (
    (("--root",), "str", None, "state directory (default: /run/nsbind-oci, or "
     "$XDG_RUNTIME_DIR/nsbind-oci without root)"),
    (("--log",), "str", None, "log file (default: stderr)"),
    (("--log-format",), ("text", "json"), "text", "the log's format"),
    (("--systemd-cgroup",), "bool", False,
     "cgroupsPath is slice:prefix:name (mapped to cgroupfs)"),
    (("--rootless",), "maybe", "auto", "accepted for runc compatibility"),
    (("--debug",), "bool", False, "write debug messages to the log"),
    (("--criu",), "str", None, HIDDEN),
    (("-v", "--version"), "bool", False, "print the version"),
)

_ID: Positional = ("container_id", "one", None)

_CREATE: tuple[Option, ...] = (
    (("-b", "--bundle"), "str", ".", "the bundle directory"),
    (("--pid-file",), "str", None, "write the process's pid here"),
    (("--console-socket",), "str", None, "send the terminal's master to this socket"),
    (("--no-pivot",), "bool", False, "accepted; nsbind always uses pivot_root"),
    (("--no-new-keyring",), "bool", False, "accepted; nsbind makes no session keyring"),
    (("--preserve-fds",), "int", 0, "pass on fds 3 to 3+N-1"),
)

_EXEC: tuple[Option, ...] = (
    (("-p", "--process"), "str", None, "process.json"),
    (("-d", "--detach"), "bool", False, "do not wait for the process"),
    (("--pid-file",), "str", None, "write the process's pid here"),
    (("--console-socket",), "str", None, "send the terminal's master to this socket"),
    (("-t", "--tty"), "bool", False, "give the process a terminal"),
    (("--cwd",), "str", None, "working directory"),
    (("-e", "--env"), "list", [], "NAME=VALUE"),
    (("-u", "--user"), "str", None, "UID[:GID]"),
    (("--additional-gids", "-g"), "ints", [], "a supplementary group"),
    (("--cap", "-c"), "list", [], "a capability to add"),
    (("--no-new-privs",), "bool", False, "set no_new_privs"),
    (("--preserve-fds",), "int", 0, "pass on fds 3 to 3+N-1"),
    (("--ignore-paused",), "bool", False, "exec even when the container is paused"),
    (("--apparmor",), "str", None, HIDDEN),
    (("--process-label",), "str", None, HIDDEN),
)

_UPDATE: tuple[Option, ...] = (
    (("-r", "--resources"), "str", None, "a JSON file, - for stdin"),
    *(((flag,), "str", None, "") for flag in (
        "--memory", "--memory-swap", "--memory-reservation", "--pids-limit",
        "--cpu-shares", "--cpu-quota", "--cpu-period", "--cpuset-cpus", "--cpuset-mems",
        "--blkio-weight", "--kernel-memory")),
)

_FORMAT: Option = (("-f", "--format"), ("table", "json"), "table", "output format")

#: each command: what it does, its options, its positional arguments
_COMMANDS: dict[str, tuple[str, tuple[Option, ...], tuple[Positional, ...]]] = {
    "create": ("create a container", _CREATE, (_ID,)),
    "start": ("start a created container", (), (_ID,)),
    "state": ("print a container's state", (), (_ID,)),
    "kill": ("send a signal to a container's process",
             ((("-a", "--all"), "bool", False, "signal every process of its cgroup"),),
             (_ID, ("signal", "opt", "TERM"))),
    "delete": ("delete a container",
               ((("-f", "--force"), "bool", False, "kill a running container first"),),
               (_ID,)),
    "run": ("create, start and wait for a container",
            (*_CREATE, (("-d", "--detach"), "bool", False, "do not wait"),
             (("--keep",), "bool", False, "do not delete it afterwards")), (_ID,)),
    "exec": ("run a process in a container", _EXEC, (_ID, ("command", "rest", None))),
    "ps": ("list a container's processes", (_FORMAT,), (_ID, ("ps_args", "rest", None))),
    "list": ("list containers",
             (_FORMAT, (("-q", "--quiet"), "bool", False, "only the ids")), ()),
    "pause": ("freeze a container's processes", (), (_ID,)),
    "resume": ("thaw a paused container", (), (_ID,)),
    "update": ("change a container's cgroup limits", _UPDATE, (_ID,)),
    "spec": ("write a default config.json",
             ((("-b", "--bundle"), "str", ".", "the bundle directory"),
              (("--rootless",), "bool", False, "a config for a rootless container")), ()),
    "features": ("print what this runtime supports (JSON)", (), ()),
}


def _default_root() -> str:
    if os.geteuid() == 0:
        return "/run/nsbind-oci"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}",
                        "nsbind-oci")


def _dest(flags: tuple[str, ...]) -> str:
    return next((f for f in flags if f.startswith("--")), flags[0]).lstrip("-") \
        .replace("-", "_")


def _add(p: argparse.ArgumentParser, options: tuple[Option, ...],
         positionals: tuple[Positional, ...] = ()) -> None:
    import argparse

    for flags, kind, default, text in options:
        kw: dict[str, Any] = {"default": default,
                              "help": argparse.SUPPRESS if text == HIDDEN else text or None}
        if kind == "bool":
            kw["action"] = "store_true"
        elif kind in ("list", "ints"):
            kw["action"] = "append"
        elif kind == "maybe":
            kw.update(nargs="?", const="true")
        elif isinstance(kind, tuple):
            kw["choices"] = kind
        if kind in ("int", "ints"):
            kw["type"] = int
        p.add_argument(*flags, **kw)
    for name, kind, default in positionals:
        if kind == "one":
            p.add_argument(name, metavar="ID" if name == "container_id" else None)
        elif kind == "opt":
            p.add_argument(name, nargs="?", default=default)
        else:
            p.add_argument(name, nargs=argparse.REMAINDER)


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: runc's global options, then a command and its options.
    Given ``argv``, only the commands it names are built (a runtime call pays for one
    sub-parser, not fourteen); all of them when it names none (usage, help)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # one line and status 1, as runc
            from nsbind.errors import UsageError

            raise UsageError(f"{self.prog}: {message}")

    p = Parser(prog="nsbind-oci", description="an OCI runtime on nsbind")
    _add(p, _GLOBALS)
    sub = p.add_subparsers(dest="command_name", metavar="COMMAND")
    named = [a for a in argv or () if a in _COMMANDS]
    for name, (what, options, positionals) in _COMMANDS.items():
        if not named or name in named:
            _add(sub.add_parser(name, help=what, description=what), options, positionals)
    return p


def _take(argv: Sequence[str], i: int, options: dict[str, Option],
          values: dict[str, Any]) -> int:
    """Read the option at ``argv[i]`` into ``values``; the index after it, or -1 when
    it is not one :func:`fast_parse` reads the way argparse would."""
    flag, eq, given = argv[i].partition("=") if argv[i].startswith("--") else \
        (argv[i], "", "")
    option = options.get(flag)
    if option is None:
        return -1
    flags, kind, _, _ = option
    dest = _dest(flags)
    if kind == "bool":
        if eq:
            return -1
        values[dest] = True
        return i + 1
    if not eq:
        if kind == "maybe" or i + 1 >= len(argv) or (argv[i + 1].startswith("-")
                                                        and argv[i + 1] != "-"):
            return -1
        given, i = argv[i + 1], i + 1
    value: Any = given
    if kind in ("int", "ints"):
        try:
            value = int(given)
        except ValueError:
            return -1
    elif isinstance(kind, tuple) and given not in kind:
        return -1
    if kind in ("list", "ints"):
        values[dest] = [*values[dest], value]
    else:
        values[dest] = value
    return i + 1


def _table(options: tuple[Option, ...], values: dict[str, Any]) -> dict[str, Option]:
    for option in options:
        values[_dest(option[0])] = option[2]
    return {flag: option for option in options for flag in option[0]}


def fast_parse(argv: Sequence[str]) -> types.SimpleNamespace | None:
    """``argv`` parsed as :func:`parser` parses it, without importing argparse (a few
    milliseconds of every runtime call), when it is in the plain form clients use:
    global options, a command, its options (``--flag VALUE``, ``--flag=VALUE``, ``-f
    VALUE``) and arguments.  None for anything else (help, an error, an abbreviation,
    grouped short flags, ``exec`` and ``ps`` with their trailing commands): argparse
    parses those."""
    values: dict[str, Any] = {}
    options = _table(_GLOBALS, values)
    i = 0
    while 0 <= i < len(argv) and argv[i].startswith("-"):
        i = _take(argv, i, options, values)
    if not 0 <= i < len(argv) or argv[i] not in _COMMANDS:
        return None
    name = argv[i]
    _, own, positionals = _COMMANDS[name]
    if any(kind == "rest" for _, kind, _ in positionals):
        return None
    options = _table(own, values)
    given: list[str] = []
    i += 1
    optional = any(kind == "opt" for _, kind, _ in positionals)
    while 0 <= i < len(argv):
        if argv[i].startswith("-") and argv[i] != "-":
            if given and optional:  # argparse gives the optional one its default here
                return None
            i = _take(argv, i, options, values)
        else:
            given.append(argv[i])
            i += 1
    required = sum(kind == "one" for _, kind, _ in positionals)
    if i < 0 or not required <= len(given) <= len(positionals):
        return None
    for n, (dest, _, default) in enumerate(positionals):
        values[dest] = given[n] if n < len(given) else default
    values["command_name"] = name
    return types.SimpleNamespace(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit status."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    ns = fast_parse(args_in)
    if ns is None:
        from nsbind.errors import UsageError

        try:
            ns = types.SimpleNamespace(**vars(parser(args_in).parse_args(args_in)))
        except UsageError as exc:
            sys.stderr.write(f"{exc}\n")
            return 1
    if ns.version:
        sys.stdout.write(f"nsbind-oci version {VERSION}\nspec: {OCI_VERSION}\n")
        return 0
    if ns.command_name is None:
        sys.stderr.write("nsbind-oci: a command is needed (see --help)\n")
        return 1
    resume_unless(ns.command_name, START_COMMANDS)
    if ns.root is None:
        ns.root = _default_root()
    from nsbind.oci.runtimelog import RuntimeLog

    log = RuntimeLog(ns.log, ns.log_format, ns.debug)
    log.capture()
    log.debug(f"nsbind-oci {' '.join(args_in)}")
    try:
        from nsbind.oci import clicmds

        handler: Callable[[types.SimpleNamespace, RuntimeLog], int] = getattr(
            clicmds, "cmd_" + ns.command_name)
        return handler(ns, log)
    except KeyboardInterrupt:
        log.error(f"{ns.command_name}: interrupted")
        return 130
    except Exception as exc:
        log.error(_message(ns.command_name, exc))
        return 1


def _message(command: str, exc: BaseException) -> str:
    """One line: the error's own message (nsbind errors name their operation and
    object), or the command and the exception for anything else."""
    from nsbind.errors import MessageError

    text = str(exc).replace("\n", " ").strip()
    if getattr(exc, "step", None) == "exec" and isinstance(exc, OSError):
        # the words runc uses, which podman turns into exit status 127 and 126
        import errno

        if exc.errno == errno.ENOENT:
            return f"{text}: executable file not found in $PATH"
        if exc.errno == errno.EACCES:
            return f"{text}: permission denied"
    if isinstance(exc, MessageError) or (isinstance(exc, OSError) and exc.filename):
        return text
    return f"{command}: {text or type(exc).__name__}"


if __name__ == "__main__":
    sys.exit(main())
