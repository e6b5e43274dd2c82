"""``nsbind run``: a container in the foreground (this process creates it, passes
signals on, and exits with its status) or detached (a monitor process creates it and
stays with it: see :mod:`nsbind.engine.monitor`)."""

from __future__ import annotations

import os
import sys

from nsbind import jsonlite, signals
from nsbind.ctxlite import suppress
from nsbind.engine.errors import EngineError
from nsbind.engine.launch import (
    EngineConfig,
    Launch,
    as_engine_error,
    check_userns,
    connect,
    devnull_onto,
    disconnect,
    mount_root,
    prepare,
    private_mounts,
    remove_container,
    write_bundle,
)
from nsbind.engine.records import now

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from nsbind.attachwarm import Warmup
    from nsbind.engine.runopts import RunOptions

__all__ = ["dry_run", "run"]


def dry_run(config: EngineConfig, opts: RunOptions) -> str:
    """The spec ``run`` would hand the container layer, as JSON; nothing is made (the
    image's layers are mounted read-only, in a mount namespace of this process, only
    to resolve the user in them)."""
    import tempfile

    import nsbind
    from nsbind.engine.images import resolve_image
    from nsbind.engine.specgen import build_spec

    check_userns(config, opts)
    image = None if opts.rootfs else resolve_image(opts.image or "", config.store)
    private_mounts()
    with tempfile.TemporaryDirectory(prefix="nsbind-dry-run-") as tmp:
        rootfs = os.path.realpath(opts.rootfs) if opts.rootfs else tmp
        mounted = image is not None and len(image.layer_dirs) > 1
        if image is not None and len(image.layer_dirs) == 1:
            rootfs = image.layer_dirs[0]  # read, never written
        if mounted and image is not None:
            from nsbind.mounts import overlay

            with overlay(list(reversed(image.layer_dirs))) as mnt:
                mnt.attach(tmp)
        try:
            spec = build_spec(opts, image.config if image else None, rootfs=rootfs,
                              container_id="<id>", hostname=opts.hostname or "<id>",
                              etc_files={}, annotations={})
        finally:
            if mounted:
                nsbind.umount2(tmp)
    spec["root"] = {"path": rootfs if opts.rootfs else "<the container's overlay>",
                    "readonly": opts.read_only}
    if opts.userns is not None:  # the range a run would take now (none is taken)
        from nsbind.engine.userns import allocate, spec_namespace

        spec_namespace(spec, allocate(opts.userns, config.records().records()))
    return jsonlite.dumps(spec, indent=2)


def run(config: EngineConfig, opts: RunOptions) -> int:
    """Run the container (see the module doc); the exit status: the container's in the
    foreground (128 + N for signal N), 0 detached (its id printed)."""
    launch = prepare(config, opts)
    if opts.detach:
        from nsbind.engine.monitor import start_monitor

        try:
            start_monitor(launch)
        except BaseException:
            remove_container(config, launch.container_id)
            raise
        print(launch.container_id)
        return 0
    return _foreground(launch)


def _foreground(launch: Launch) -> int:
    # the cgroup attach warm-up (nsbind.attachwarm) first: its first write waits an RCU
    # grace period, which the container layer's imports below then overlap
    from nsbind.attachwarm import warm_attach

    warmup = None if launch.config.cgroup_parent is None else warm_attach()
    try:
        return _run_foreground(launch, warmup)
    finally:
        if warmup is not None:
            warmup.stop()  # (run_container stops it once the container has joined)


def _run_foreground(launch: Launch, warmup: Warmup | None) -> int:
    from nsbind.oci.runcmd import run_container
    from nsbind.oci.state import start_time

    records, cid = launch.records, launch.container_id

    def started(pid: int) -> None:
        records.update(cid, pid=pid, startTime=start_time(pid), startedAt=now())

    code: int | None = None
    try:
        rootfs = mount_root(launch)
        write_bundle(launch, rootfs)
        if not launch.opts.interactive:  # as Docker: no -i, no stdin for the container
            devnull_onto(0)
        try:
            code = run_container(records.oci_root, cid, launch.storage, on_start=started,
                                 escalate=signals.SIGINT,  # Ctrl-C twice: killed
                                 no_cgroup=launch.config.cgroup_parent is None,
                                 on_created=lambda pid: connect(launch, pid),
                                 warmed=True, warmup=warmup)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise as_engine_error(exc, f"container {launch.name}") from None
        return code
    finally:
        if code is not None:
            with suppress(EngineError):
                disconnect(launch.config, records.update(cid, exitCode=code,
                                                         finishedAt=now()))
        if launch.opts.rm or code is None:
            remove_container(launch.config, cid)
        sys.stdout.flush()
