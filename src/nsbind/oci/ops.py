"""The OCI runtime operations around the lifecycle, as runc has them: ``ps``, ``list``,
``pause``, ``resume``, ``update`` and ``kill --all``.

Each holds the container's lock (:func:`nsbind.oci.state.locked`) and refuses, changing
nothing, what runc refuses: pause of a container that is not running, resume of one
that is not paused, update of a stopped one.  ``paused`` is the stored status while the
container's cgroup is frozen (the v2 ``cgroup.freeze``, or the v1 freezer).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from nsbind import signals
from nsbind.cgroups import Cgroup
from nsbind.ctxlite import closing, suppress
from nsbind.oci.resconv import convert_resources
from nsbind.oci.schema import build
from nsbind.oci.spec import Resources
from nsbind.oci.state import (
    LifecycleError,
    container_cgroup,
    container_dir,
    locked,
    read_state,
    report,
    write_state,
)

__all__ = ["container_pids", "kill_all", "list_containers", "pause", "resume", "update"]


def _cgroup(data: dict[str, Any]) -> Cgroup:
    try:
        return container_cgroup(data)
    except FileNotFoundError:
        raise LifecycleError(f"container {data['id']}: its cgroup "
                             f"{data['nsbind']['cgroup']} is gone", errno.ENOENT) from None


def container_pids(root: str | os.PathLike[str], container_id: str) -> list[int]:
    """The pids (host numbers) of every process in the container's cgroup."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        cg = _cgroup(data)
        with closing(cg):
            return sorted(cg.procs())


def kill_all(root: str | os.PathLike[str], container_id: str, sig: int) -> None:
    """Send ``sig`` to every process of the container's cgroup (``kill --all``)."""
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        cg = _cgroup(data)
        with closing(cg):
            pids = cg.procs()
            if not pids:
                raise LifecycleError("container not running", errno.ESRCH)
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if sig == signals.SIGKILL or report(data)["status"] != "paused":
                return
            cg.thaw()  # a frozen process only takes its signal once it runs again
            data["status"] = "running"
            write_state(directory, data)


def _set_paused(root: str | os.PathLike[str], container_id: str, pause_it: bool) -> None:
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        status = report(data)["status"]
        wanted = "running" if pause_it else "paused"
        if status != wanted:
            verb = "pause" if pause_it else "resume"
            raise LifecycleError(f"cannot {verb} container {container_id}: it is {status}, "
                                 f"not {wanted}", errno.EINVAL)
        cg = _cgroup(data)
        with closing(cg):
            if pause_it:
                cg.freeze()
            else:
                cg.thaw()
        data["status"] = "paused" if pause_it else "running"
        write_state(directory, data)


def pause(root: str | os.PathLike[str], container_id: str) -> None:
    """Freeze a running container's every process; status ``paused``."""
    _set_paused(root, container_id, True)


def resume(root: str | os.PathLike[str], container_id: str) -> None:
    """Thaw a paused container; status ``running``."""
    _set_paused(root, container_id, False)


def update(root: str | os.PathLike[str], container_id: str, resources: object) -> None:
    """Set a created, running or paused container's cgroup limits from an OCI
    ``linux.resources`` object (decoded JSON; SpecError naming the path when bad)."""
    settings = convert_resources(build(Resources, resources, "resources"))
    directory = container_dir(root, container_id)
    with locked(directory, container_id):
        data = read_state(directory, container_id)
        if report(data)["status"] == "stopped":
            raise LifecycleError(f"cannot update container {container_id}: it is stopped",
                                 errno.EINVAL)
        cg = _cgroup(data)
        with closing(cg):
            settings.update(cg)


def list_containers(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The OCI state of every container under ``root`` (none when it does not exist)."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        with suppress(LifecycleError):  # deleted meanwhile, or not a container
            directory = container_dir(root, name)
            with locked(directory, name):
                out.append(report(read_state(directory, name)))
    return out
