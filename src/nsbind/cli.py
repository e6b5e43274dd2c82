"""The ``nsbind`` command: containers as Docker's command runs them (``nsbind run``,
``ps``, ``logs``, ``stop``, ``kill``, ``rm``, ``exec``, ``inspect``, ``wait``,
``stats``, ``top``), images (``nsbind image load|inspect|unpack|flatten|ls|rm|gc``),
``doctor``, the cgroup layout, and a fresh-namespaces demo (the default)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import nsbind
from nsbind import CloneFlags, MountFlags
from nsbind.cgroups import cgroup_layout
from nsbind.errors import NsbindError

DEMO_FLAGS = (CloneFlags.NEWPID | CloneFlags.NEWNET | CloneFlags.NEWUTS | CloneFlags.NEWIPC
              | CloneFlags.NEWNS | CloneFlags.NEWCGROUP | CloneFlags.PIDFD)


def _view() -> dict[str, object]:
    """What the calling process sees of the system."""
    with open("/proc/self/net/dev") as f:
        interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    with open("/proc/self/mountinfo") as f:
        mounts = sum(1 for _ in f)
    return {
        "pid": os.getpid(),
        "hostname": os.uname().nodename,
        "processes visible": sum(1 for name in os.listdir("/proc") if name.isdigit()),
        "network interfaces": ", ".join(interfaces),
        "mounts": mounts,
        **{f"{ns.value} namespace": os.readlink(f"/proc/self/ns/{ns.value}").split(":")[1]
           for ns in nsbind.Namespace if ns is not nsbind.Namespace.TIME},
    }


def _fresh_view(wfd: int) -> int:
    """Child side: make the new mount namespace private, mount a fresh /proc, report."""
    nsbind.mount(None, "/", None, MountFlags.REC | MountFlags.PRIVATE)
    nsbind.mount("proc", "/proc", "proc", MountFlags.NOSUID | MountFlags.NODEV | MountFlags.NOEXEC)
    nsbind.sethostname("nsbind-demo")
    os.write(wfd, json.dumps(_view()).encode())
    return 0


def demo(as_json: bool = False) -> int:
    """Start a child in new pid, net, uts, ipc, mnt and cgroup namespaces; compare views."""
    host = _view()
    rfd, wfd = os.pipe()
    try:
        pid, pidfd = nsbind.clone3(DEMO_FLAGS)
    except NsbindError as exc:
        print(f"nsbind: {exc}", file=sys.stderr)
        if isinstance(exc, PermissionError):
            print("nsbind: creating namespaces needs root (CAP_SYS_ADMIN)", file=sys.stderr)
        return 1
    if pid == 0:
        code = 1
        try:
            os.close(rfd)
            code = _fresh_view(wfd)
        except BaseException as exc:  # report, never return into the parent's code
            os.write(wfd, json.dumps({"error": str(exc)}).encode())
        finally:
            os._exit(code)
    os.close(wfd)
    assert pidfd is not None
    with pidfd, os.fdopen(rfd, "rb") as reader:
        fresh = json.loads(reader.read() or b"{}")
        pidfd.wait()
    if "error" in fresh:
        print(f"nsbind: in the new namespaces: {fresh['error']}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"this process": host, "fresh namespaces": fresh}, indent=2))
        return 0
    width = max(len(k) for k in host)
    print(f"{'':{width}}  {'this process':<24}  fresh namespaces (nsbind.clone3)")
    for key, value in host.items():
        print(f"{key:{width}}  {value!s:<24}  {fresh.get(key, '')}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as Docker reports them: one line, exit status 125."""

    def error(self, message: str) -> NoReturn:
        self.exit(125, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="nsbind", description=__doc__)
    sub = parser.add_subparsers(dest="nsbind_command", parser_class=_Parser)
    demo_parser = sub.add_parser("demo", help="show what a fresh set of namespaces sees "
                                 "(the default)")
    cg_parser = sub.add_parser("cgroups", help="show this host's cgroup layout")
    for p in (parser, demo_parser, cg_parser):
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    from nsbind import doctor
    from nsbind.engine import cli as engine_cli  # each command loads its code on use
    from nsbind.image import cli as image_cli

    engine_cli.add_global_arguments(parser)
    engine_cli.add_parsers(sub)
    image_cli.add_parser(sub)
    doctor.add_parser(sub)
    args = parser.parse_args(argv)
    if args.nsbind_command in engine_cli.COMMANDS:
        return engine_cli.run(args)
    if args.nsbind_command == "image":
        if getattr(args, "store", None) is None:  # nsbind --root STORE image ...
            args.store = args.root
        return image_cli.run(args)
    if args.nsbind_command == "doctor":
        return doctor.run(args)
    if args.nsbind_command == "cgroups":
        return show_cgroups(as_json=args.json)
    return demo(as_json=args.json)


def show_cgroups(as_json: bool = False) -> int:
    """Print the cgroup layout: mode, hierarchies, where each controller lives."""
    layout = cgroup_layout()
    if as_json:
        print(json.dumps(layout.to_dict(), indent=2))
        return 0
    print(f"cgroup layout: {layout.mode}")
    for h in layout.hierarchies:
        what = ",".join(sorted(h.controllers)) or (f"name={h.name}" if h.name else "-")
        print(f"  v{h.version}  {h.mountpoint:<28} {what:<24} own: {h.own or '?'}")
    if layout.unmounted:
        print(f"  not mounted: {', '.join(sorted(layout.unmounted))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
