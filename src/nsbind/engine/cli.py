"""The docker-like commands of ``nsbind``: run, ps, logs, stop, kill, rm, exec,
inspect, wait, stats, top, network, commit.  Thin: each parses its flags and calls the engine.  A
failure is one line on stderr and a non-zero status (``run`` and ``exec``: 125, 126,
127; the others 1), never a traceback."""

from __future__ import annotations

import sys

from nsbind import jsonlite, signals
from nsbind.engine.errors import EngineError
from nsbind.frozen import replace_fields

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    import argparse
    import types
    from collections.abc import Sequence
    from typing import Any

__all__ = ["CGROUP_PARENT_FLAG", "COMMANDS", "GLOBAL_FLAGS", "add_global_arguments", "add_parsers",
           "fast_parse", "run"]

COMMANDS = ("run", "ps", "logs", "stop", "kill", "rm", "exec", "inspect", "wait", "stats",
            "top", "network", "commit")


#: the nsbind command's global flags (nsbind.engine.runflags.RUN_FLAGS's shape)
GLOBAL_FLAGS = (
    (("--root",), "root", "value", None, "image store and container storage (default: "
     "/var/lib/nsbind for root, ~/.local/share/nsbind otherwise)"),
    (("--runroot",), "runroot", "value", None, "container records (default: /run/nsbind "
     "for root, $XDG_RUNTIME_DIR/nsbind otherwise)"),
    (("--json",), "json", "true", None, "print JSON instead of a table"),
)


def add_global_arguments(parser: argparse.ArgumentParser) -> None:
    """:data:`GLOBAL_FLAGS`: ``--root`` (images and container storage), ``--runroot``
    (records) and ``--json``."""
    from nsbind.engine.runflags import add_flags

    add_flags(parser, GLOBAL_FLAGS)


def add_parsers(sub: Any, only: str | None = None) -> None:
    """Add the container commands (or only the one named ``only``) to an argparse
    subparsers object."""
    for name, build in _PARSERS.items():
        if only is None or only == name:
            build(sub)


#: run's own flag beside docker run's (nsbind.engine.runflags.RUN_FLAGS's shape)
CGROUP_PARENT_FLAG = (("--cgroup-parent",), "cgroup_parent", "value", None,
                      "the cgroup the container's is made in (default /nsbind; rootless: "
                      "nsbind below the cgroup v2 subtree delegated to the user)")
def fast_parse(argv: Sequence[str]) -> types.SimpleNamespace | None:
    """``nsbind [GLOBAL FLAGS] run ...`` parsed as the command's argparse parser parses
    it, without argparse (nsbind.engine.runflags); None for any other command line, or
    a form only argparse reads."""
    import types

    from nsbind.engine.runflags import HOSTNAME_FLAG, RUN_FLAGS, fast_parse_flags, fast_parse_run

    parsed = fast_parse_flags(argv, GLOBAL_FLAGS)
    if parsed is None or parsed[1] >= len(argv) or argv[parsed[1]] != "run":
        return None
    values, i = parsed
    run = fast_parse_run(argv[i + 1:], (CGROUP_PARENT_FLAG, HOSTNAME_FLAG, *RUN_FLAGS))
    if run is None:
        return None
    return types.SimpleNamespace(**values, nsbind_command="run", **run)


def _run_parser(sub: Any) -> None:
    from nsbind.engine.runflags import add_flags, add_run_arguments

    p = sub.add_parser("run", help="run a command in a new container", add_help=False)
    add_flags(p, (CGROUP_PARENT_FLAG,))
    add_run_arguments(p)


def _ps_parser(sub: Any) -> None:
    p = sub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="also the stopped ones")
    p.add_argument("-q", "--quiet", action="store_true", help="only the ids")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--no-trunc", action="store_true")


def _logs_parser(sub: Any) -> None:
    p = sub.add_parser("logs", help="a detached container's output")
    p.add_argument("-f", "--follow", action="store_true", help="keep following")
    p.add_argument("-n", "--tail", help="only the last N lines (or 'all')")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("container")


def _many_parser(name: str, help_: str, *flags: tuple[tuple[str, ...], dict[str, Any]],
                 any_count: bool = False) -> Any:
    def build(sub: Any) -> None:
        p = sub.add_parser(name, help=help_)
        for names, kwargs in flags:
            p.add_argument(*names, **kwargs)
        p.add_argument("containers", nargs="*" if any_count else "+")
    return build


def _exec_parser(sub: Any) -> None:
    p = sub.add_parser("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("container")
    p.add_argument("command", nargs="...")  # argparse.REMAINDER


def _top_parser(sub: Any) -> None:
    p = sub.add_parser("top", help="a container's processes")
    p.add_argument("container")
    p.add_argument("ps_args", nargs="...")  # argparse.REMAINDER


def _network_parser(sub: Any) -> None:
    p = sub.add_parser("network", help="bridge networks: create, ls, inspect, rm")
    nsub = p.add_subparsers(dest="network_command", required=True)
    q = nsub.add_parser("create", help="a new bridge network")
    q.add_argument("--subnet", help="CIDR (default: the next free 10.89.N.0/24)")
    q.add_argument("--gateway", help="the bridge's address (default: the first host)")
    q.add_argument("name")
    q = nsub.add_parser("ls", help="list networks")
    q.add_argument("-q", "--quiet", action="store_true", help="only the names")
    q = nsub.add_parser("inspect", help="a network and its containers, as JSON")
    q.add_argument("names", nargs="+")
    q = nsub.add_parser("rm", help="remove networks no container is on")
    q.add_argument("names", nargs="+")


def _commit_parser(sub: Any) -> None:
    p = sub.add_parser("commit", help="a new image from a container's changes")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="a Dockerfile instruction for the image's config (CMD, ENTRYPOINT, "
                   "ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL); repeatable")
    p.add_argument("-p", "--pause", type=lambda t: t.lower() in ("1", "true", "yes"),
                   nargs="?", const=True, default=True, metavar="BOOL",
                   help="freeze a running container while it is read (default true)")
    p.add_argument("container")
    p.add_argument("name", nargs="?", metavar="NAME[:TAG]", help="the new image's tag")


_PARSERS: dict[str, Any] = {
    "run": _run_parser, "ps": _ps_parser, "logs": _logs_parser,
    "stop": _many_parser("stop", "the stop signal, then SIGKILL after a timeout",
                         (("-t", "--time"), {"type": int, "help": "seconds before SIGKILL"})),
    "kill": _many_parser("kill", "send a signal (default SIGKILL)",
                         (("-s", "--signal"), {"default": "KILL"})),
    "rm": _many_parser("rm", "remove containers",
                       (("-f", "--force"), {"action": "store_true",
                                            "help": "kill a running one first"})),
    "exec": _exec_parser,
    "inspect": _many_parser("inspect", "a container's record and spec, as JSON"),
    "wait": _many_parser("wait", "block until containers exit; print their exit codes"),
    "stats": _many_parser("stats", "CPU, memory, pids and block IO from the cgroup",
                          (("--no-stream",), {"action": "store_true",
                                              "help": "one sample, then exit"}),
                          any_count=True),
    "top": _top_parser, "network": _network_parser, "commit": _commit_parser,
}


def _config(args: argparse.Namespace) -> Any:
    """The engine's configuration; for a caller that is not root, its own paths (made
    explicit here: inside its user namespace it is root)."""
    import os

    from nsbind.engine.launch import EngineConfig

    parent = getattr(args, "cgroup_parent", None) or "/nsbind"
    if os.geteuid() == 0:
        return EngineConfig(store=args.root, state=args.runroot, cgroup_parent=parent)
    from nsbind.engine.records import default_state_root
    from nsbind.engine.rootless import rootless_cgroup_parent
    from nsbind.image import default_store_path

    return EngineConfig(store=args.root or default_store_path(),
                        state=args.runroot or default_state_root(),
                        cgroup_parent=getattr(args, "cgroup_parent", None)
                        or rootless_cgroup_parent(), rootless=True)


def _as_owner(config: Any) -> Any:
    """For a rootless caller: enter its user namespace (see :mod:`nsbind.engine.rootless`)
    before anything is made or removed in its storage; the configuration."""

    if not config.rootless:
        return config
    from nsbind.engine.rootless import enter

    umap = enter()
    return replace_fields(config, single_id=umap.single)


def run(args: argparse.Namespace) -> int:
    """Run the container command ``args.nsbind_command`` (the subparsers' dest: run's and
    exec's own ``command`` is the container's); its exit status (see the module doc)."""
    command = args.nsbind_command
    try:
        return int(_HANDLERS[command](args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from nsbind.errors import MessageError

        status = exc.status if isinstance(exc, EngineError) else 125
        text = str(exc).replace("\n", " ").strip()
        if not isinstance(exc, MessageError) and not (isinstance(exc, OSError)
                                                      and exc.filename):
            text = f"{type(exc).__name__}: {text}"
        print(f"nsbind {command}: {text}", file=sys.stderr)
        return status if command in ("run", "exec") else 1


def _run(args: argparse.Namespace) -> int:
    from nsbind.engine.runner import dry_run
    from nsbind.engine.runner import run as run_container
    from nsbind.engine.runopts import run_options

    opts = run_options(args)
    if args.cgroup_parent and not args.cgroup_parent.startswith("/"):
        raise EngineError(f"--cgroup-parent {args.cgroup_parent!r}: an absolute path "
                          "expected")
    config = _as_owner(_config(args))
    if args.dry_run:
        print(dry_run(config, opts))
        return 0
    return run_container(config, opts)


def _ps(args: argparse.Namespace) -> int:
    from nsbind.engine.manage import ps_rows

    rows = ps_rows(_config(args), args.all)
    if args.quiet:
        for row in rows:
            print(row["Id"] if args.no_trunc else row["ID"])
    elif args.format == "json":
        print(jsonlite.dumps(rows, indent=2))
    else:
        print(f"{'CONTAINER ID':<14}{'IMAGE':<24}{'COMMAND':<24}{'CREATED':<28}"
              f"{'STATUS':<16}NAMES")
        for row in rows:
            cmd = jsonlite.dumps(row["Command"][:20] + ("…" if len(row["Command"]) > 20 else ""))
            print(f"{row['Id'] if args.no_trunc else row['ID']:<14}"
                  f"{_shown(row['Image'])[:23]:<24}{_shown(cmd):<24}{row['CreatedAt'][:19]:<28}"
                  f"{row['Status']:<16}{row['Names']}")
    return 0


def _shown(text: str) -> str:
    """``text`` without control characters (an image's strings are hostile)."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _logs(args: argparse.Namespace) -> int:
    from nsbind.engine.jsonlog import format_entry, read_log
    from nsbind.engine.manage import describe

    config = _config(args)
    info = describe(config, args.container)
    path = info.get("LogPath")
    if not path:
        raise EngineError(f"container {args.container} ran in the foreground: its output "
                          "went to the terminal, there is no log")
    tail = None
    if args.tail not in (None, "all"):
        if not str(args.tail).isdigit():
            raise EngineError(f"--tail {args.tail!r}: a number or 'all' expected")
        tail = int(args.tail)
    records = config.records()
    cid = info["Id"]

    def done() -> bool:
        from nsbind.engine.records import status_of

        try:
            record = records.load(cid)
        except EngineError:
            return True
        return status_of(record) == "exited" and record.get("exitCode") is not None

    out = sys.stdout.buffer
    err = sys.stderr.buffer
    for entry in read_log(path, tail=tail, follow=args.follow, stop=done):
        stream = err if entry.stream == "stderr" else out
        stream.write(format_entry(entry, args.timestamps))
        stream.flush()
    return 0


def _each(args: argparse.Namespace, fn: Any) -> int:
    """Apply ``fn`` to each container named, as Docker does: every one is tried, each
    failure is one line, the status 1 when any failed."""
    status = 0
    for ref in args.containers:
        try:
            print(fn(ref))
        except EngineError as exc:
            print(f"nsbind {args.nsbind_command}: {exc}", file=sys.stderr)
            status = 1
    return status


def _stop(args: argparse.Namespace) -> int:
    from nsbind.engine.manage import stop

    config = _config(args)
    if args.time is not None and args.time < 0:
        raise EngineError(f"--time {args.time}: not a number of seconds")
    return _each(args, lambda ref: (stop(config, ref, args.time), ref)[1])


def _kill(args: argparse.Namespace) -> int:
    from nsbind.engine.launch import signal_number
    from nsbind.engine.manage import kill

    config = _config(args)
    sig = signal_number(args.signal, "signal") or signals.SIGKILL
    return _each(args, lambda ref: (kill(config, ref, sig), ref)[1])


def _rm(args: argparse.Namespace) -> int:
    from nsbind.engine.manage import rm

    config = _as_owner(_config(args))
    return _each(args, lambda ref: (rm(config, ref, args.force), ref)[1])


def _exec(args: argparse.Namespace) -> int:
    from nsbind.engine.manage import exec_command

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.detach and args.tty:
        raise EngineError("exec: -d and -t together need a terminal to hand over: "
                          "not supported")
    return exec_command(_config(args), args.container, command, interactive=args.interactive,
                        tty=args.tty, env=args.env, user=args.user, workdir=args.workdir,
                        detach=args.detach)


def _inspect(args: argparse.Namespace) -> int:
    from nsbind.engine.manage import describe

    config = _config(args)
    found, status = [], 0
    for ref in args.containers:
        try:
            found.append(describe(config, ref))
        except EngineError as exc:
            print(f"nsbind inspect: {exc}", file=sys.stderr)
            status = 1
    print(jsonlite.dumps(found, indent=2))
    return status


def _wait(args: argparse.Namespace) -> int:
    from nsbind.engine.manage import wait

    config = _config(args)
    return _each(args, lambda ref: wait(config, ref))


def _stats(args: argparse.Namespace) -> int:
    import os
    import time

    from nsbind.engine.manage import container_pids, ps_rows
    from nsbind.engine.stats import cpu_percent, format_table, sample

    config = _config(args)
    refs = args.containers or [row["Id"] for row in ps_rows(config)]
    places = [(ref[:12] if len(ref) == 64 else ref, container_pids(config, ref)[0])
              for ref in refs]
    ncpus = os.cpu_count() or 1
    previous = [sample(name, path) for name, path in places]
    while True:
        time.sleep(0.5 if args.no_stream else 1.0)
        current = [sample(name, path) for name, path in places]
        table = format_table([(cur, cpu_percent(prev, cur, ncpus))
                              for prev, cur in zip(previous, current, strict=False)])
        if not args.no_stream and sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        print(table, flush=True)
        if args.no_stream:
            return 0
        previous = current


def _top(args: argparse.Namespace) -> int:
    from nsbind.engine.manage import container_pids
    from nsbind.engine.stats import top

    _, pids = container_pids(_config(args), args.container)
    print(top(pids, args.ps_args), end="")
    return 0


def _network(args: argparse.Namespace) -> int:
    config = _config(args)
    nets = config.networks()
    cmd = args.network_command
    if cmd == "create":
        print(nets.create(args.name, args.subnet, args.gateway).name)
        return 0
    if cmd == "ls":
        if not args.quiet:
            print(f"{'NAME':<24}{'SUBNET':<20}{'GATEWAY':<18}BRIDGE")
        for net in nets.networks():
            print(net.name if args.quiet else
                  f"{net.name:<24}{net.subnet:<20}{net.gateway:<18}{net.bridge}")
        return 0
    status = 0
    found = []
    for name in args.names:
        try:
            if cmd == "rm":
                print(nets.remove(name, config.nft_table).name)
                continue
            net = nets.get(name)
            owners = set(nets.in_use(net))
            found.append({**net.to_json(), "containers": {
                r["id"]: {"name": r["name"], "ip": r.get("ip")}
                for r in config.records().records() if r["id"] in owners}})
        except EngineError as exc:
            print(f"nsbind network {cmd}: {exc}", file=sys.stderr)
            status = 1
    if cmd == "inspect":
        print(jsonlite.dumps(found, indent=2))
    return status


def _commit(args: argparse.Namespace) -> int:
    from nsbind.engine.commit import commit

    img = commit(_config(args), args.container, args.name, changes=args.change,
                 pause=args.pause)
    print(img.config_digest)
    return 0


_HANDLERS = {"run": _run, "ps": _ps, "logs": _logs, "stop": _stop, "kill": _kill, "rm": _rm,
             "exec": _exec, "inspect": _inspect, "wait": _wait, "stats": _stats, "top": _top,
             "network": _network, "commit": _commit}
