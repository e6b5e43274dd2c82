"""``nsbind doctor``: what this host allows the caller, and why not.

:func:`checks` asks the kernel (never a version table): root or not, user namespaces
and the sysctls that govern them, subordinate ids and newuidmap/newgidmap, the cgroup
layout and the controllers the caller may use, overlayfs (also in a user namespace),
the new mount API, clone3 and a seccomp filter that may block them, libseccomp, the
propagation of ``/``, the kernel version and every :mod:`nsbind.features` probe.

What could change the caller (a user namespace, a mount) is tried in a forked child
that reports over a pipe; what it makes lives in a temp dir that is removed after.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from nsbind import doctorchecks as dc
from nsbind.ctxlite import suppress
from nsbind.doctorchecks import Check
from nsbind.frozen import as_dict

__all__ = ["Check", "add_parser", "checks", "main", "run"]


def checks() -> list[Check]:
    """Every check, in report order; a check that itself fails says so as its detail."""
    probe = dc.Probe.run()
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("user", dc.user),
        ("kernel", dc.kernel),
        ("seccomp", lambda: dc.seccomp(probe)),
        ("user namespaces", lambda: dc.user_namespaces(probe)),
        ("subordinate ids", dc.subordinate_ids),
        ("newuidmap/newgidmap", dc.id_map_tools),
        ("rootless network", dc.rootless_network),
        ("cgroup layout", dc.cgroup_layout_check),
        ("cgroup controllers", dc.cgroup_controllers),
        ("overlayfs", lambda: dc.overlay(probe)),
        ("overlayfs in a user namespace", lambda: dc.overlay_userns(probe)),
        ("mount API", lambda: dc.mount_api(probe)),
        ("clone3", lambda: dc.clone3(probe)),
        ("libseccomp", dc.libseccomp),
        ("propagation of /", dc.root_propagation),
    ]
    found = [_guarded(name, fn) for name, fn in steps]
    try:
        found += dc.feature_checks(probe)
    except Exception as exc:
        found.append(Check("features", False, f"the check failed: {_what(exc)}", None))
    return found


def _what(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _guarded(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as exc:
        return Check(name, False, f"the check itself failed: {_what(exc)}", None)


MARK = {True: "ok", None: "--", False: "NO"}


def report(found: list[Check], as_json: bool = False) -> str:
    """The report as text: one line per check (and a ``fix:`` line), or JSON."""
    if as_json:
        return json.dumps([as_dict(c) for c in found], indent=2)
    width = max((len(c.name) for c in found), default=0)
    lines = []
    for c in found:
        lines.append(f"{MARK[c.ok]}  {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"{'':<{width + 6}}fix: {c.fix}")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    """Add the ``doctor`` command to an argparse subparsers object."""
    p = sub.add_parser("doctor", help="what this host allows the caller, and why not")
    _arguments(p)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {name, ok, detail, fix}")


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 when nothing needed is missing, 1 otherwise."""
    found = checks()
    with suppress(BrokenPipeError):
        print(report(found, as_json=bool(getattr(args, "json", False))), flush=True)
    return 1 if any(c.ok is False for c in found) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m nsbind.doctor [--json]``."""
    p = argparse.ArgumentParser(prog="nsbind doctor", description=__doc__.split("\n")[0])
    _arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
