"""The commands of ``nsbind-oci`` (:mod:`nsbind.oci.cli` parses the command line): each
``cmd_<name>(args, log)`` imports what it uses, does it and returns the exit status."""

from __future__ import annotations

import os
import sys

from nsbind.jsonlite import dumps

TYPE_CHECKING = False  # not typing's nor argparse's: see nsbind.oci.cli
if TYPE_CHECKING:
    import types
    from typing import Any

    from nsbind.oci.runtimelog import RuntimeLog

__all__ = ["cmd_create", "cmd_delete", "cmd_exec", "cmd_features", "cmd_kill", "cmd_list",
           "cmd_pause", "cmd_ps", "cmd_resume", "cmd_run", "cmd_spec", "cmd_start",
           "cmd_state", "cmd_update", "parse_signal"]


def parse_signal(text: str) -> int:
    """A signal by number (``9``) or name (``KILL``, ``SIGKILL``, ``sigkill``,
    ``RTMIN+3``): :func:`nsbind.signals.parse`."""
    from nsbind import signals
    from nsbind.errors import InvalidValue

    value = signals.parse(text)
    if value is None:
        raise InvalidValue(f"invalid signal {text[:40]!r}")
    return value


def _print_json(value: Any) -> None:
    sys.stdout.write(dumps(value, indent=2) + "\n")


def cmd_create(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.createop import CGROUP_PARENT, create

    create(args.bundle, args.container_id, root=args.root, cgroup_parent=CGROUP_PARENT,
           pid_file=args.pid_file, console_socket=args.console_socket,
           preserve_fds=args.preserve_fds)
    return 0


def cmd_start(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.lifecycle import start

    start(args.root, args.container_id)
    return 0


def cmd_state(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.lifecycle import state

    _print_json(state(args.root, args.container_id))
    return 0


def cmd_kill(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    sig = parse_signal(args.signal)
    if args.all:
        from nsbind.oci.ops import kill_all

        kill_all(args.root, args.container_id, sig)
    else:
        from nsbind.oci.lifecycle import kill

        kill(args.root, args.container_id, sig)
    return 0


def cmd_delete(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    import errno

    from nsbind.oci.lifecycle import delete
    from nsbind.oci.state import LifecycleError

    try:
        delete(args.root, args.container_id, force=args.force)
    except LifecycleError as exc:
        if not (args.force and exc.errno == errno.ENOENT):  # as runc: gone is deleted
            raise
    return 0


def cmd_run(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.runcmd import run_container

    return run_container(args.root, args.container_id, args.bundle, detach=args.detach,
                         keep=args.keep, pid_file=args.pid_file,
                         console_socket=args.console_socket,
                         preserve_fds=args.preserve_fds)


def cmd_exec(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.execproc import ExecOptions, exec_in

    opts = ExecOptions(process=args.process, command=tuple(args.command),
                       detach=args.detach, pid_file=args.pid_file,
                       console_socket=args.console_socket, tty=args.tty, cwd=args.cwd,
                       env=tuple(args.env), user=args.user,
                       additional_gids=tuple(args.additional_gids), caps=tuple(args.cap),
                       no_new_privs=args.no_new_privs, preserve_fds=args.preserve_fds,
                       ignore_paused=args.ignore_paused)
    return exec_in(args.root, args.container_id, opts)


def cmd_ps(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.ops import container_pids

    pids = container_pids(args.root, args.container_id)
    if args.format == "json":
        sys.stdout.write(dumps(pids) + "\n")
        return 0
    import subprocess

    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True,
                         timeout=30).stdout.splitlines()
    if not out:
        return 0
    column = out[0].split().index("PID")
    wanted = {str(p) for p in pids}
    lines = [out[0]] + [line for line in out[1:]
                        if len(line.split()) > column and line.split()[column] in wanted]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_list(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.ops import list_containers

    states = list_containers(args.root)
    if args.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif args.format == "json":
        sys.stdout.write(dumps(states) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"] if s["status"] != "stopped" else 0), s["status"],
                  s["bundle"], s.get("created", ""), "root") for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                             + "\n")
    return 0


def cmd_pause(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.ops import pause

    pause(args.root, args.container_id)
    return 0


def cmd_resume(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.ops import resume

    resume(args.root, args.container_id)
    return 0


def _resources_from_flags(args: types.SimpleNamespace) -> dict[str, Any]:
    def num(v: str | None) -> int | None:
        return None if v is None else int(v)

    res: dict[str, Any] = {}
    mem = {k: num(v) for k, v in (("limit", args.memory), ("swap", args.memory_swap),
                                  ("reservation", args.memory_reservation))
           if v is not None}
    cpu: dict[str, Any] = {k: num(v) for k, v in (("shares", args.cpu_shares),
                                                  ("quota", args.cpu_quota),
                                                  ("period", args.cpu_period))
                           if v is not None}
    cpu.update({k: v for k, v in (("cpus", args.cpuset_cpus), ("mems", args.cpuset_mems))
                if v is not None})
    if mem:
        res["memory"] = mem
    if cpu:
        res["cpu"] = cpu
    if args.pids_limit is not None:
        res["pids"] = {"limit": int(args.pids_limit)}
    if args.blkio_weight is not None:
        res["blockIO"] = {"weight": int(args.blkio_weight)}
    return res


def cmd_update(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.ops import update

    if args.resources == "-":
        from nsbind.oci.jsonfile import decode_json

        resources = decode_json(sys.stdin.buffer.read(1 << 20), "update --resources -")
    elif args.resources is not None:
        from nsbind.oci.jsonfile import read_json_file

        resources = read_json_file(args.resources, 1 << 20, "update --resources")
    else:
        resources = _resources_from_flags(args)
    update(args.root, args.container_id, resources)
    return 0


def cmd_spec(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    import errno

    from nsbind.errors import InvalidValue
    from nsbind.oci.defaults import default_spec

    spec = default_spec(rootless=args.rootless)
    path = os.path.join(args.bundle, "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise InvalidValue(f"spec: {path} exists: remove it first", errno.EEXIST) from None
    with os.fdopen(fd, "wb") as f:
        f.write(spec.to_bytes())
    return 0


def cmd_features(args: types.SimpleNamespace, log: RuntimeLog) -> int:
    from nsbind.oci.featuresdoc import features_document

    _print_json(features_document())
    return 0
