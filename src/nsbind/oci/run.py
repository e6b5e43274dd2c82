"""Run an OCI bundle once, in the foreground, as ``runc run`` / ``crun run`` do.

:func:`run_bundle` reads and validates the bundle's ``config.json``, converts it
(:func:`nsbind.oci.convert.to_spawn`: whatever nsbind cannot run yet is a SpecError
naming the JSON path, raised before anything is made), creates the cgroup from
``linux.resources``, spawns the command with stdio inherited, waits, and removes the
cgroup (killing anything left in it) and the root's pinned state.

The cgroup: ``linux.cgroupsPath`` absolute is that path; relative, or the systemd
form ``slice:prefix:name`` (mapped to its cgroupfs path,
:func:`nsbind.oci.systemd_cgroup_path`), is below ``cgroup_parent``; absent, it is
``cgroup_parent/container_id``.  Parent directories this run had to make are removed
again afterwards (deepest first, only when empty).

PID 1: as runc and crun, the command itself is PID 1 of a new pid namespace
(unless the ``nsbind.init`` annotation asks for nsbind's init): it gets no signal it
has no handler for from inside the container, and when it exits the kernel kills the
rest of the namespace.  The exit status is the
command's, ``128 + N`` when signal N killed it (as runc reports it).
"""

from __future__ import annotations

import os

from nsbind.cgroups import Cgroup, cgroup_layout
from nsbind.ctxlite import suppress
from nsbind.oci import namedcg
from nsbind.oci.convert import SpawnArgs, to_spawn
from nsbind.oci.idmapmount import IdmapBind
from nsbind.oci.mountconv import CgroupMount, CopyUpTmpfs
from nsbind.oci.schema import SpecError
from nsbind.oci.spec import load_spec
from nsbind.process import spawn
from nsbind.rootfs import RootFS

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["build_root", "missing_parents", "run_bundle", "run_spawn_args"]


def build_root(args: SpawnArgs, cgroup_path: str) -> RootFS:
    """The RootFS of converted arguments: the root, its mounts (cgroup mounts for the
    container's cgroup ``cgroup_path``; a tmpcopyup tmpfs made and filled here, attached
    by the child: the RootFS is for one spawn then), masked and read-only paths."""
    root = RootFS(args.root, readonly=args.root_readonly, defaults=False)
    try:
        for item in args.mounts:
            if isinstance(item, CopyUpTmpfs):
                step, mnt = item.make(root.path)
                root.keep(mnt).add(step)
            elif isinstance(item, IdmapBind):
                step, userns = item.make()
                root.keep(userns).add(step)
            else:
                root.add(item.steps(cgroup_path) if isinstance(item, CgroupMount) else item)
        root.mask(*args.masked)
        root.readonly(*args.readonly)
    except BaseException:
        root.close()
        raise
    return root


def missing_parents(parent: str) -> list[str]:
    """The directories of ``parent`` and its ancestors that do not exist yet in some
    hierarchy nsbind makes cgroups in (Cgroup.create makes them), deepest first."""
    parts = [p for p in parent.split("/") if p]
    paths = ["/" + "/".join(parts[:i]) for i in range(len(parts), 0, -1)]
    dirs = [h.path_of(p) for p in paths for h in cgroup_layout().hierarchies
            if h.holds_cgroups]
    return [d for d in dirs if not os.path.isdir(d)]


def run_spawn_args(args: SpawnArgs, *, container_id: str) -> int:
    """Run converted arguments (see :func:`run_bundle`)."""
    if args.needs_lifecycle:
        raise SpecError(f"{args.needs_lifecycle}: run_bundle starts the process at once; "
                        "this needs the lifecycle (create, then start: nsbind-oci run)")
    if args.spawn_kwargs.get("terminal"):
        raise SpecError("process.terminal: run_bundle runs the process on the caller's "
                        "stdio; a terminal needs the lifecycle (create with a console "
                        "socket, or nsbind-oci run)")
    name = args.cgroup_name or container_id
    made = missing_parents(args.cgroup_parent)
    try:
        return _run_in_cgroup(args, name)
    finally:
        for path in made:  # the parents Cgroup.create made for this run (empty again)
            with suppress(OSError):  # gone, or in use by another run
                os.rmdir(path)


def _run_in_cgroup(args: SpawnArgs, name: str) -> int:
    cg = Cgroup.create(name, parent=args.cgroup_parent or None, **args.cgroup.create)
    named: list[str] = []
    try:
        args.cgroup.apply(cg)
        named = namedcg.make(cg.path)
        with build_root(args, cg.path) as root:
            kwargs: dict[str, Any] = dict(args.spawn_kwargs)
            proc = spawn(list(args.args), rootfs=root, cgroup=cg, init=args.init, **kwargs)
            namedcg.join(cg.path, proc.pid)  # a moment after its start: placement only
            try:
                code = proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    proc.wait()
    finally:
        cg.remove()
        namedcg.remove(named)
    return 128 - code if code < 0 else code


def run_bundle(bundle: str | os.PathLike[str], *, container_id: str,
               cgroup_parent: str) -> int:
    """Run the bundle's command to its end; its exit status (128 + N for signal N)."""
    args = to_spawn(load_spec(bundle), cgroup_parent=cgroup_parent)
    return run_spawn_args(args, container_id=container_id)
