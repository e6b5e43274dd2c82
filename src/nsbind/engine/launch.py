"""From a request to a started container: the record and the storage directory, the
root filesystem, the OCI spec, and the container layer's create and start — the one
path both ``nsbind run`` in the foreground and a detached container's monitor take.

Storage: ``<store>/containers/<id>/`` holds the overlay's ``upper`` and ``work``
directories, the mount point ``rootfs``, ``config.json`` (the bundle is this
directory), the files written for /etc (``hostname``, ``hosts``, ``resolv.conf``)
and, for a detached container, its log.  The overlay is mounted in a private mount
namespace of the process that creates the container (``nsbind run``, or the
monitor): never on the host, so nothing is left mounted when they are gone.
"""

from __future__ import annotations

import errno
import os
import sys

from nsbind import jsonlite, signals
from nsbind.ctxlite import nullcontext, suppress
from nsbind.engine.errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, EngineError
from nsbind.engine.records import RecordStore, now
from nsbind.frozen import field, frozen, replace_fields

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any

    from nsbind.engine.images import RunImage
    from nsbind.engine.networks import NetworkStore
    from nsbind.engine.runopts import RunOptions
    from nsbind.engine.userns import IdShift

__all__ = ["READ_ONLY_TMPFS", "EngineConfig", "Launch", "as_engine_error", "check_userns",
           "connect", "devnull_onto", "disconnect", "mount_root", "prepare",
           "private_mounts", "remove_container", "signal_number", "write_bundle"]

#: tmpfs mounts a read-only root gets where nothing else is mounted (podman's
#: ``--read-only-tmpfs``): programs need somewhere to write
READ_ONLY_TMPFS = ("/tmp", "/var/tmp", "/run")


_RECORD_STORES: dict[str | None, RecordStore] = {}


@frozen
class EngineConfig:
    """Where the engine keeps things: ``store`` the image store and container storage
    (default: the image store's default), ``state`` the records (default:
    ``/run/nsbind`` for root), ``cgroup_parent`` the containers' cgroup parent (None:
    no cgroup, for a rootless caller that was delegated none)."""

    store: str | None = None
    state: str | None = None
    cgroup_parent: str | None = "/nsbind"
    #: the caller is not root: containers run in a user namespace of its own
    #: (:mod:`nsbind.engine.rootless`), in its delegated cgroup subtree if it has one
    rootless: bool = False
    #: rootless with only the caller's own id mapped (no subordinate range)
    single_id: bool = False
    #: the nftables table (``inet``) of bridge networks' NAT: ``$NSBIND_NFT_TABLE``, else
    #: ``nsbind`` (tests and side-by-side engines keep tables of their own)
    nft_table: str = field(
        default_factory=lambda: os.environ.get("NSBIND_NFT_TABLE") or "nsbind")

    def cgroup_of(self, container_id: str) -> str | None:
        """The container's cgroup path (None: it has none)."""
        if self.cgroup_parent is None:
            return None
        return f"{self.cgroup_parent.rstrip('/')}/{container_id}"

    def records(self) -> RecordStore:
        """The record store (made once per process and state root: its directories are
        made then, not at every use)."""
        store = _RECORD_STORES.get(self.state)
        if store is None:
            store = _RECORD_STORES[self.state] = RecordStore(self.state)
        return store

    def store_root(self) -> str:
        from nsbind.image import default_store_path

        return os.path.abspath(self.store or default_store_path())

    def storage_root(self) -> str:
        return os.path.join(self.store_root(), "containers")

    def networks(self) -> NetworkStore:
        """The networks (see :mod:`nsbind.engine.networks`)."""
        from nsbind.engine.networks import NetworkStore

        return NetworkStore(self.store_root(), self.records().root)


@frozen
class Launch:
    """A container on its way: its record, storage and request."""

    config: EngineConfig
    records: RecordStore
    opts: RunOptions
    image: RunImage | None
    container_id: str
    name: str
    storage: str
    hostname: str
    etc_files: dict[str, str]
    #: the id range of the container's own user namespace (``--userns auto``), or None
    shift: IdShift | None = None

    @property
    def rootfs_dir(self) -> str:
        return os.path.join(self.storage, "rootfs")

    @property
    def log_path(self) -> str:
        return os.path.join(self.storage, "container.log")


def signal_number(text: str | int | None, what: str = "stop signal") -> int | None:
    """A signal given as Docker takes it: ``SIGTERM``, ``TERM`` or ``15``
    (:func:`nsbind.signals.parse`)."""
    if text is None or text == "":
        return None
    found = signals.parse(str(text))
    if found is None:
        raise EngineError(f"invalid {what}: {text!r}")
    return found


def prepare(config: EngineConfig, opts: RunOptions) -> Launch:
    """Resolve the image, take the name, make the storage directory and the /etc files,
    and save the record (status ``created``).  Nothing is left when it fails."""
    from nsbind.engine.etcfiles import write_files

    image = None
    if opts.rootfs is None:
        from nsbind.engine.images import resolve_image

        if not opts.image:
            raise EngineError('"nsbind run" requires an image (or --rootfs DIR)')
        image = resolve_image(opts.image, config.store)
    elif not os.path.isdir(opts.rootfs):
        raise EngineError(f"--rootfs {opts.rootfs}: not a directory", err=errno.ENOTDIR)
    if opts.publish:
        from nsbind.engine.netattach import publish_mappings

        publish_mappings(opts.publish)  # refused before anything is made
    check_userns(config, opts)
    records = config.records()
    container_id, name = records.reserve(opts.name)
    storage = os.path.join(config.storage_root(), container_id)
    network = ip = None
    try:
        os.makedirs(config.storage_root(), mode=0o700, exist_ok=True)
        os.mkdir(storage, 0o700)
        for sub in ("upper", "work", "rootfs"):
            os.mkdir(os.path.join(storage, sub), 0o755)
        hostname = opts.hostname or container_id[:12]
        network, ip, extra = _take_address(config, records, opts.network, container_id,
                                           opts.ip)
        etc_files = write_files(storage, hostname, opts.network, address=ip, extra=extra)
        slirp = config.rootless and network is None and ip is not None
        if slirp:
            from nsbind.engine.slirp import RESOLV_CONF

            with open(etc_files["/etc/resolv.conf"], "w") as f:
                f.write(RESOLV_CONF)
        stop = opts.stop_signal
        if stop is None and image is not None:
            stop = signal_number(image.config.stop_signal, "image StopSignal")
        launch = Launch(config, records, opts, image, container_id, name, storage, hostname,
                        etc_files)
        shift = _save_record(launch, {
            "id": container_id, "name": name, "created": now(),
            "image": image.ref if image else f"rootfs:{os.path.abspath(opts.rootfs or '/')}",
            "imageDigest": image.config_digest if image else None,
            "command": list(opts.command), "pid": 0, "startTime": None, "exitCode": None,
            "startedAt": None, "finishedAt": None, "monitorPid": None,
            "detached": opts.detach, "autoRemove": opts.rm, "tty": opts.tty,
            "storage": storage, "log": launch.log_path if opts.detach else None,
            "stopSignal": stop or signals.SIGTERM,
            "stopTimeout": 10 if opts.stop_timeout is None else opts.stop_timeout,
            "cgroup": config.cgroup_of(container_id),
            "hostname": hostname, "net": opts.network, "network": network, "ip": ip,
            "publish": list(opts.publish), "slirp": slirp})
        launch = replace_fields(launch, shift=shift)
        if shift is not None:  # the container's root owns what it may write
            from nsbind.engine.userns import own_storage

            own_storage(shift, config.store_root(), storage,
                        [os.path.join(storage, "upper"), *etc_files.values()])
    except BaseException:
        if network is not None:
            from nsbind.engine.netattach import detach_container

            detach_container(config.networks(), {"id": container_id, "network": network,
                                                 "ip": ip}, config.nft_table)
        _remove_storage(storage)
        records.release_name(name, container_id)
        records.remove(container_id)
        raise
    return launch


def check_userns(config: EngineConfig, opts: RunOptions) -> None:
    """Refuse ``--userns auto`` where it cannot be: rootless (the container is in the
    user's own namespace already) and ``--rootfs`` (a directory is not idmapped: every
    file would show as nobody)."""
    if opts.userns is None:
        return
    if config.rootless:
        raise EngineError("--userns auto: a rootless container always runs in the user's "
                          "own user namespace")
    if opts.rootfs is not None:
        raise EngineError("--userns auto: needs an image (its layers are idmapped); "
                          f"--rootfs {opts.rootfs} is used as it is")


def _save_record(launch: Launch, record: dict[str, Any]) -> IdShift | None:
    """Save the container's first record, with the id range of its own user namespace
    (``--userns auto``) chosen under the allocation lock; that range (an IdShift) or
    None."""
    size = launch.opts.userns
    if size is None:
        launch.records.save(record)
        return None
    from nsbind.engine.userns import allocate, allocation_lock

    records = launch.records
    with allocation_lock(records.root):
        shift = allocate(size, records.records())
        records.save({**record, "idmap": shift.to_json()})
    return shift


def _take_address(config: EngineConfig, records: RecordStore, network: str,
                  container_id: str, want: str | None = None
                  ) -> tuple[str | None, str | None, list[tuple[str, str]]]:
    """For a bridge network: its name, the container's address (taken now, so /etc/hosts
    can hold it) and the other containers on it; else Nones."""
    from nsbind.engine.runopts import uses_bridge

    if not uses_bridge(network):
        return None, None, []
    from nsbind.engine.netattach import network_of, peers
    if config.rootless:
        if network != "bridge":
            raise EngineError(f"--network {network}: named networks need root; rootless "
                              "containers get --network bridge (slirp4netns)")
        from nsbind.engine.slirp import SLIRP_ADDRESS

        return None, SLIRP_ADDRESS, []
    nets = config.networks()
    net = network_of(nets, network)
    try:
        ip = str(nets.ipam(net).allocate(container_id, want))
    except (ValueError, OSError) as exc:
        raise EngineError(f"network {net.name}: {exc}") from None
    return net.name, ip, peers(records, net.name, container_id)


def devnull_onto(*fds: int) -> None:
    """Point ``fds`` of this process (its stdio) at /dev/null."""
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for fd in fds:
        os.dup2(devnull, fd)
    os.close(devnull)


def private_mounts() -> None:
    """Move this process into a mount namespace of its own, ``/`` a slave of the host's:
    what it mounts never reaches the host, and goes when its last user does."""
    import nsbind
    from nsbind import CloneFlags, MountFlags

    nsbind.unshare(CloneFlags.NEWNS)
    nsbind.mount(None, "/", None, MountFlags.REC | MountFlags.SLAVE)


def mount_root(launch: Launch) -> str:
    """Mount the container's root in a mount namespace of this process's own
    (:func:`private_mounts`): the image's layers under overlayfs with the container's
    upper directory, or the ``--rootfs`` directory as it is.  The root's path.  With
    ``--rm`` the overlay is volatile, as podman mounts it: its upper directory is never
    synced (its umount took 1 ms more), and a crash leaves nothing worth keeping."""
    private_mounts()
    if launch.image is None:
        return os.path.realpath(launch.opts.rootfs or "/")
    from nsbind.mounts import overlay

    lower = list(reversed(launch.image.layer_dirs))  # the top layer first
    shift = launch.shift
    layers: AbstractContextManager[list[str]] = nullcontext(lower)
    if shift is not None:  # its own user namespace: the shared layers, idmapped
        from nsbind.engine.userns import idmapped_layers

        layers = idmapped_layers(lower, shift, os.path.join(launch.storage, "layers"))
    with layers as lower:
        try:
            made = overlay(lower, os.path.join(launch.storage, "upper"),
                           os.path.join(launch.storage, "work"), volatile=launch.opts.rm)
        except OSError as exc:
            if shift is None:
                raise
            raise EngineError(f"--userns auto: an overlay of idmapped layers: {exc} "
                              "(overlayfs takes idmapped layers from Linux 5.19)") from None
        with made as mnt:
            mnt.attach(launch.rootfs_dir)
    return launch.rootfs_dir


def _exists_in(root: str, path: str) -> bool:
    """Whether ``path`` is a regular file in ``root`` (not followed out of it): where a
    read-only root can take a bind mount."""
    import stat

    import nsbind
    from nsbind import ResolveFlags

    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        with nsbind.openat2(root_fd, path.lstrip("/"), os.O_PATH | os.O_CLOEXEC,
                            resolve=ResolveFlags.IN_ROOT) as fd:
            return stat.S_ISREG(os.fstat(fd.fileno()).st_mode)
    except OSError:
        return False
    finally:
        os.close(root_fd)


def write_bundle(launch: Launch, rootfs: str) -> dict[str, Any]:
    """The container's OCI spec (see :mod:`nsbind.engine.specgen`), written as the
    bundle's config.json; the spec."""
    from nsbind.engine.specgen import build_spec
    from nsbind.oci.convert import INIT_ANNOTATION

    opts = launch.opts
    read_only = opts.read_only or rootfs == "/"
    etc = launch.etc_files
    if launch.image is None and read_only:  # nothing can be made in it: bind what is there
        etc = {dest: src for dest, src in etc.items() if _exists_in(rootfs, dest)}
    annotations = {"nsbind.name": launch.name}
    if opts.init:
        annotations[INIT_ANNOTATION] = "true"
    spec: dict[str, Any] = build_spec(
        opts, launch.image.config if launch.image else None, rootfs=rootfs,
        container_id=launch.container_id, hostname=launch.hostname, etc_files=etc,
        annotations=annotations)
    if opts.network.startswith("container:"):
        _join_network_of(launch, spec, opts.network.partition(":")[2])
    cgroup = launch.config.cgroup_of(launch.container_id)
    shift = launch.shift
    if shift is not None:
        from nsbind.engine.userns import spec_namespace

        spec_namespace(spec, shift)
    if launch.config.rootless:
        _rootless_spec(spec, launch.config.single_id, opts.network, cgroup)
    if cgroup is not None:
        spec.setdefault("linux", {})["cgroupsPath"] = cgroup
    spec["root"] = {"path": rootfs, "readonly": read_only}
    if read_only:
        taken = {m["destination"] for m in spec.get("mounts", [])}
        spec["mounts"] = spec.get("mounts", []) + [
            {"destination": d, "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777" if "tmp" in d else "mode=755"]}
            for d in READ_ONLY_TMPFS if d not in taken]
    path = os.path.join(launch.storage, "config.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(jsonlite.dumps(spec))  # one line: json's C encoder (a seccomp profile is big)
    return spec


def _join_network_of(launch: Launch, spec: dict[str, Any], ref: str) -> None:
    """``--network container:REF``: the spec joins that running container's network
    namespace (by its pid's nsfs path, checked to be that process still)."""
    from nsbind.engine.records import status_of

    records = launch.records
    other = records.load(records.find(ref))
    if status_of(other) != "running":
        raise EngineError(f"--network container:{ref}: the container is not running")
    path = f"/proc/{int(other['pid'])}/ns/net"
    namespaces = spec.setdefault("linux", {}).setdefault("namespaces", [])
    spec["linux"]["namespaces"] = [n for n in namespaces if n.get("type") != "network"]
    spec["linux"]["namespaces"].append({"type": "network", "path": path})


def _rootless_spec(spec: dict[str, Any], single_id: bool, network: str,
                   cgroup: str | None) -> None:
    """What a rootless container can have, as runc's rootless spec: without a
    delegated ``cgroup`` no limits (refused when asked for); a cgroup mount only on a
    pure cgroup v2 host in a delegated cgroup (v1 hierarchies are never delegated);
    /sys bound from the host when the network namespace is the host's (sysfs needs one
    of its own); devpts without ``gid=5`` when only one id is mapped."""
    linux = spec.setdefault("linux", {})
    resources = linux.get("resources") or {}
    asked = sorted(k for k, v in resources.items() if v and k != "devices")
    if asked and cgroup is None:
        raise EngineError(f"rootless: {', '.join(asked)} limits need a delegated cgroup, "
                          "and this user has none (nsbind doctor tells more)")
    if cgroup is None:
        linux.pop("resources", None)
    else:  # device rules need root's eBPF program; the user namespace keeps nodes inert
        linux["resources"] = {k: v for k, v in resources.items() if k != "devices"}
    linux.pop("cgroupsPath", None)
    from nsbind.engine.specgen import bind_host_sys, drop_tty_group

    if not (cgroup is not None and _pure_v2()):
        spec["mounts"] = [m for m in spec.get("mounts", [])
                          if m.get("type") not in ("cgroup", "cgroup2")]
    if network == "host":
        bind_host_sys(spec)
    if single_id:
        drop_tty_group(spec)


def _pure_v2() -> bool:
    from nsbind.cgrouplayout import cgroup_layout

    return cgroup_layout().mode == "unified"


def as_engine_error(exc: BaseException, what: str) -> EngineError:
    """The error a create or start raised, with Docker's exit status: 127 when the
    command is not in the container, 126 when it cannot be run, 125 otherwise."""
    if isinstance(exc, EngineError):
        return exc
    text = str(exc).replace("\n", " ").strip() or type(exc).__name__
    if getattr(exc, "step", None) == "exec" and isinstance(exc, OSError):
        if exc.errno == errno.ENOENT:
            return EngineError(f"{what}: {text}: executable file not found",
                               EXIT_NOT_FOUND, exc.errno)
        return EngineError(f"{what}: {text}: permission denied", EXIT_CANNOT_INVOKE,
                           exc.errno)
    return EngineError(f"{what}: {text}", err=getattr(exc, "errno", None))


def remove_container(config: EngineConfig, container_id: str) -> None:
    """Remove what the container has left: its process (killed), its cgroup and
    container-layer state, its storage and its record.  Idempotent."""
    from nsbind.oci import LifecycleError, delete

    records = config.records()
    record: dict[str, Any] = {}
    with suppress(EngineError):
        record = records.load(container_id)
    with suppress(LifecycleError, FileNotFoundError):
        delete(records.oci_root, container_id, force=True)
    disconnect(config, record)
    monitor = int(record.get("monitorPid") or 0)
    if monitor and monitor != os.getpid():
        _wait_gone(monitor, record.get("monitorStartTime"))
    storage = os.path.join(config.storage_root(), container_id)
    left = _unmount_below(storage)
    if left:  # removing it would reach through the mount into what it shows
        raise EngineError(f"container {container_id}: {left[0]} is still mounted: its "
                          "storage is left")
    _remove_storage(storage)
    records.remove(container_id)


def _remove_storage(storage: str) -> None:
    """The container's storage directory, removed through directory fds
    (nsbind.image.tree.remove_path): never through a symlink nor into a mount.  What
    cannot be removed stays (as rmtree's ignore_errors left it)."""
    from nsbind.image.tree import remove_path

    with suppress(OSError):
        remove_path(storage)


def _unmount_below(directory: str) -> list[str]:
    """Detach every mount at or below ``directory`` in this process's mount namespace
    (the root it mounted in its own), deepest first: removing the directory must not
    reach through a mount into what it shows.  The mount points still there after."""
    import nsbind
    from nsbind import UmountFlags
    from nsbind.mounts import mount_points

    top = os.path.realpath(directory)

    def below() -> list[str]:
        return [m for m in mount_points() if m == top or m.startswith(top + "/")]

    for point in sorted(below(), key=len, reverse=True):
        with suppress(OSError):
            nsbind.umount2(point, UmountFlags.DETACH)
    return below()


_HELD_FDS: list[int] = []  # slirp4netns's exit fds, open for this process's life


def connect(launch: Launch, pid: int) -> None:
    """The created container ``pid`` onto its bridge network (nothing for the others),
    before it starts; the other containers' /etc/hosts name it."""
    record = launch.records.load(launch.container_id)
    if record.get("slirp"):
        from nsbind.engine.netattach import publish_mappings
        from nsbind.engine.slirp import start_slirp

        # held until this process exits: then slirp4netns does
        _HELD_FDS.append(start_slirp(pid, publish_mappings(record.get("publish") or [])))
        return
    if not record.get("network"):
        return
    from nsbind.engine.netattach import attach_container, refresh_hosts

    if attach_container(launch.config.networks(), record, pid, launch.config.nft_table):
        print("nsbind: turned net.ipv4.ip_forward on: containers on bridge networks need "
              "it", file=sys.stderr)
    refresh_hosts(launch.records, str(record["network"]))


def disconnect(config: EngineConfig, record: dict[str, Any]) -> None:
    """Undo :func:`connect` once the container has exited (idempotent)."""
    if not record.get("network"):
        return
    from nsbind.engine.netattach import detach_container, refresh_hosts

    detach_container(config.networks(), record, config.nft_table)
    refresh_hosts(config.records(), str(record["network"]))


def _wait_gone(pid: int, started: object, timeout: float = 10.0) -> None:
    """Wait (bounded) until the monitor ``pid`` has exited, so the storage it writes
    to is not removed under it."""
    import time

    from nsbind.oci.state import process_alive

    if not isinstance(started, int):
        return
    deadline = time.monotonic() + timeout
    while process_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.005)
