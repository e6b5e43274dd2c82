"""``nsbind-oci``: an OCI runtime with runc's command line, for podman, conmon and
containerd's shim.

Global options come before the command, as runc takes them: ``--root DIR`` (the state
directory; ``/run/nsbind-oci`` for root, ``$XDG_RUNTIME_DIR/nsbind-oci`` otherwise),
``--log FILE``, ``--log-format text|json``, ``--systemd-cgroup`` (``cgroupsPath`` in
the ``slice:prefix:name`` form, mapped to cgroupfs as crun maps it without systemd),
``--rootless``, ``--debug``, ``--version``.  A failure prints one line on stderr (and
to the log) and exits with status 1.

Only what a command uses is imported (a command's start time is the runtime's
overhead on every container): this module imports argparse and nothing of nsbind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main", "parser"]

VERSION = "0.1.0"
OCI_VERSION = "1.2.0"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line and status 1, as runc
        from nsbind.errors import UsageError

        raise UsageError(f"{self.prog}: {message}")


def _default_root() -> str:
    if os.geteuid() == 0:
        return "/run/nsbind-oci"
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}",
                        "nsbind-oci")


def _globals(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="state directory (default: "
                   "/run/nsbind-oci, or $XDG_RUNTIME_DIR/nsbind-oci without root)")
    p.add_argument("--log", default=None, help="log file (default: stderr)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="cgroupsPath is slice:prefix:name (mapped to cgroupfs)")
    p.add_argument("--rootless", default="auto", nargs="?", const="true",
                   help="accepted for runc compatibility")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true", help="print the version")


def _id(p: argparse.ArgumentParser) -> None:
    p.add_argument("container_id", metavar="ID")


def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bundle", default=".")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--console-socket", default=None)
    p.add_argument("--no-pivot", action="store_true",
                   help="accepted; nsbind always uses pivot_root")
    p.add_argument("--no-new-keyring", action="store_true",
                   help="accepted; nsbind makes no session keyring")
    p.add_argument("--preserve-fds", type=int, default=0)
    _id(p)


def _exec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--process", default=None, help="process.json")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--console-socket", default=None)
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--cwd", default=None)
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user", default=None, help="UID[:GID]")
    p.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    p.add_argument("--cap", "-c", action="append", default=[])
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--ignore-paused", action="store_true")
    p.add_argument("--apparmor", default=None, help=argparse.SUPPRESS)
    p.add_argument("--process-label", default=None, help=argparse.SUPPRESS)
    _id(p)
    p.add_argument("command", nargs=argparse.REMAINDER)


def _update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", "--resources", default=None, help="a JSON file, - for stdin")
    for flag in ("--memory", "--memory-swap", "--memory-reservation", "--pids-limit",
                 "--cpu-shares", "--cpu-quota", "--cpu-period", "--cpuset-cpus",
                 "--cpuset-mems", "--blkio-weight", "--kernel-memory"):
        p.add_argument(flag, default=None)
    _id(p)


def _delete_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    _id(p)


def _kill_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    _id(p)
    p.add_argument("signal", nargs="?", default="TERM")


def _ps_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    _id(p)
    p.add_argument("ps_args", nargs=argparse.REMAINDER)


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("-q", "--quiet", action="store_true")


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bundle", default=".")
    p.add_argument("--rootless", action="store_true")


def _run_args(p: argparse.ArgumentParser) -> None:
    _create_args(p)
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--keep", action="store_true")


_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "create": ("create a container", _create_args),
    "start": ("start a created container", _id),
    "state": ("print a container's state", _id),
    "kill": ("send a signal to a container's process", _kill_args),
    "delete": ("delete a container", _delete_args),
    "run": ("create, start and wait for a container", _run_args),
    "exec": ("run a process in a container", _exec_args),
    "ps": ("list a container's processes", _ps_args),
    "list": ("list containers", _list_args),
    "pause": ("freeze a container's processes", _id),
    "resume": ("thaw a paused container", _id),
    "update": ("change a container's cgroup limits", _update_args),
    "spec": ("write a default config.json", _spec_args),
    "features": ("print what this runtime supports (JSON)", lambda p: None),
}


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: runc's global options, then a command and its options.
    Given ``argv``, only the commands it names are built (a runtime call pays for one
    sub-parser, not fourteen); all of them when it names none (usage, help)."""
    p = _Parser(prog="nsbind-oci", description="an OCI runtime on nsbind")
    _globals(p)
    sub = p.add_subparsers(dest="command_name", metavar="COMMAND")
    named = [a for a in argv or () if a in _COMMANDS]
    for name, (what, add) in _COMMANDS.items():
        if not named or name in named:
            add(sub.add_parser(name, help=what, description=what))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit status."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    from nsbind.errors import UsageError

    try:
        ns = parser(args_in).parse_args(args_in)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    if ns.version:
        sys.stdout.write(f"nsbind-oci version {VERSION}\nspec: {OCI_VERSION}\n")
        return 0
    if ns.command_name is None:
        sys.stderr.write("nsbind-oci: a command is needed (see --help)\n")
        return 1
    if ns.root is None:
        ns.root = _default_root()
    from nsbind.oci.runtimelog import RuntimeLog

    log = RuntimeLog(ns.log, ns.log_format, ns.debug)
    log.capture()
    log.debug(f"nsbind-oci {' '.join(args_in)}")
    try:
        from nsbind.oci import clicmds

        handler: Callable[[argparse.Namespace, RuntimeLog], int] = getattr(
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
