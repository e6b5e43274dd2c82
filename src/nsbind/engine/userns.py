"""``nsbind run --userns``: the user namespace of a container that root starts.

- ``host`` (the default, and Docker's only value): the host's; root in the container is
  the host's root, with the capabilities the container keeps.
- ``auto`` or ``auto:size=N`` (podman's form): a user namespace of the container's own,
  whose ids 0..N-1 (N from 1 to 65536, default 65536) map to a range of host ids that no
  other container of this engine holds, taken first-fit from the subordinate ranges
  ``/etc/subuid`` and ``/etc/subgid`` give the user ``containers`` (podman's
  ``root-auto-userns-user``; a line ``containers:1000000:1000000`` in each makes them,
  no such user is needed).  Root in the container is an unprivileged id on the host.

The image's layers are shared by every container, so they are not chowned: each is
bound idmapped below the container's overlay (``MOUNT_ATTR_IDMAP``; overlayfs takes
idmapped layers from Linux 5.19, on filesystems that support idmapped mounts), and their
files show their own owners inside.  The upper directory and the engine's /etc files
belong to the container's root; what the container writes is stored under its host ids,
and :func:`unshifted_upper` reads them back as the container's ids (commit).

A rootless caller's containers always run in its own user namespace: ``auto`` is
refused there, as ``keep-id``, ``nomap`` and ``ns:PATH`` are everywhere.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

from nsbind.engine.errors import EngineError, bad_argument
from nsbind.frozen import frozen

__all__ = ["AUTO_USER", "DEFAULT_SIZE", "IdShift", "allocate", "allocation_lock",
           "idmapped_layers", "own_storage", "parse_userns", "spec_namespace",
           "unshifted_upper"]

AUTO_USER = "containers"  #: whose subordinate ranges ``auto`` takes ids from
DEFAULT_SIZE = 65536
MAX_SIZE = 65536


@frozen
class IdShift:
    """A container's ids 0..size-1 are host uids from ``uid`` and gids from ``gid``."""

    uid: int
    gid: int
    size: int

    def to_json(self) -> dict[str, int]:
        return {"uid": self.uid, "gid": self.gid, "size": self.size}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> IdShift | None:
        """The shift a container record holds (None: the host's user namespace);
        EngineError naming the container when it is not one nsbind could have written
        (ints, never bools, floats or strings; host ids 1..2**32-2; size 1..65536)."""
        found = record.get("idmap")
        if found is None:
            return None
        values = [found.get(k) if isinstance(found, dict) else None
                  for k in ("uid", "gid", "size")]
        uid, gid, size = (v if type(v) is int else -1 for v in values)
        if -1 in (uid, gid, size):
            raise EngineError(f"container {record.get('id', '?')}: its record's idmap is "
                              f"not three integers: {str(found)[:100]}")
        if not (1 <= size <= MAX_SIZE and all(v >= 1 and v + size - 1 <= 2**32 - 2
                                               for v in (uid, gid))):
            raise EngineError(f"container {record.get('id', '?')}: its record's idmap "
                              f"{uid}/{gid}+{size} is out of range")
        return cls(uid, gid, size)


def parse_userns(text: str | None) -> int | None:
    """``--userns``: None for the host's user namespace, else the size of a new one."""
    if text in (None, "", "host"):
        return None
    assert text is not None
    mode, _, options = text.partition(":")
    if mode != "auto":
        why = ("rootless containers always run in the user's own user namespace"
               if mode in ("keep-id", "nomap") else "host or auto[:size=N] expected")
        raise bad_argument("--userns", text, why)
    size = DEFAULT_SIZE
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        if key != "size" or not (value.isascii() and value.isdigit()):
            raise bad_argument("--userns", text, f"unknown option {option!r} (size=N)")
        size = int(value)
        if not 1 <= size <= MAX_SIZE:
            raise bad_argument("--userns", text, f"size {value} is not in 1..{MAX_SIZE}")
    return size


def _ranges(path: str) -> list[tuple[int, int]]:
    """Every (start, count) ``path`` gives :data:`AUTO_USER`, checked."""
    from nsbind.engine.rootless import subordinate_ranges

    return [(r.start, r.count) for r in subordinate_ranges(path, AUTO_USER, None)]


def allocation_lock(state_root: str) -> contextlib.AbstractContextManager[None]:
    """Held while a range is chosen and the record that holds it is saved."""
    from nsbind.engine.records import flocked

    return flocked(os.path.join(state_root, "userns.lock"))


def _first_fit(ranges: list[tuple[int, int]], taken: list[tuple[int, int]],
               size: int) -> int | None:
    """The first start (ranges in file order, each from its lowest id) of ``size`` ids
    inside one of ``ranges`` that overlaps none of ``taken`` ((start, count) each);
    None when none is left.  Adjacent ranges are not joined: one must hold them all."""
    for start, count in ranges:
        here = start
        for used, length in sorted(taken):
            if used + length <= here:
                continue
            if here + size <= used:
                break
            here = max(here, used + length)
        if here + size <= start + count:
            return here
    return None


def allocate(size: int, records: Iterable[dict[str, Any]]) -> IdShift:
    """A range of ``size`` uids and gids no container in ``records`` holds (hold
    :func:`allocation_lock` until the record that takes it is saved)."""
    shifts = [s for s in (IdShift.from_record(r) for r in records) if s is not None]
    found = []
    for path, taken in (("/etc/subuid", [(s.uid, s.size) for s in shifts]),
                        ("/etc/subgid", [(s.gid, s.size) for s in shifts])):
        ranges = _ranges(path)
        if not ranges:
            raise EngineError(f"--userns auto: {path} gives the user {AUTO_USER!r} no "
                              f"subordinate range (add a line such as "
                              f"{AUTO_USER}:1000000:1000000 to /etc/subuid and /etc/subgid)")
        start = _first_fit(ranges, taken, size)
        if start is None:
            raise EngineError(f"--userns auto: no {size} free ids are left in the ranges "
                              f"{path} gives {AUTO_USER!r} (other containers hold them)")
        found.append(start)
    return IdShift(found[0], found[1], size)


def own_storage(shift: IdShift, store: str, storage: str, paths: Iterable[str]) -> None:
    """Let the container's root reach its root directory and own what it may write.
    Every directory above the store (its real path) must already be passable by others
    (an EngineError names one that is not; nothing is changed then); the store and its
    ``containers`` folder become 0711 (passable, not listable, as Docker's
    /var/lib/docker with user namespaces; what is below keeps its modes), the
    container's ``storage`` 0710 with the group of the container's root, so no other
    user reaches its files (CVE-2021-41091), and ``paths`` (the upper directory, the
    engine's /etc files) are given to the container's root, no link followed."""
    here = os.path.dirname(os.path.realpath(store))
    while True:
        if not os.stat(here).st_mode & 0o001:
            raise EngineError(f"--userns auto: the container's root cannot reach its root "
                              f"directory in the store {store}: {here} may not be passed "
                              "by other users (chmod o+x, or keep the store elsewhere)")
        if here == "/":
            break
        here = os.path.dirname(here)
    for directory in (store, os.path.dirname(storage)):
        os.chmod(directory, 0o711)
    os.chown(storage, 0, shift.gid, follow_symlinks=False)
    os.chmod(storage, 0o710)
    for path in paths:
        os.chown(path, shift.uid, shift.gid, follow_symlinks=False)


def spec_namespace(spec: dict[str, Any], shift: IdShift) -> None:
    """Add the user namespace and its maps to ``spec``; /sys is bound from the host when
    the network namespace is not the container's own (sysfs needs one it owns)."""
    linux = spec.setdefault("linux", {})
    kinds = {n.get("type") for n in linux.get("namespaces", []) if "path" not in n}
    linux.setdefault("namespaces", []).insert(0, {"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": shift.uid, "size": shift.size}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": shift.gid, "size": shift.size}]
    from nsbind.engine.specgen import bind_host_sys, drop_tty_group

    if shift.size <= 5:  # gid 5 (tty) unmapped: devpts refuses gid=5
        drop_tty_group(spec)
    if "network" not in kinds:
        bind_host_sys(spec)


def _mapping_userns(uid_map: list[tuple[int, int, int]],
                    gid_map: list[tuple[int, int, int]]) -> Any:
    from nsbind.oci.idmapmount import mapping_userns

    return mapping_userns(uid_map, gid_map)


@contextlib.contextmanager
def idmapped_layers(layers: list[str], shift: IdShift, under: str) -> Iterator[list[str]]:
    """Bind each of ``layers`` idmapped by ``shift``, read-only, nosuid and nodev (the
    overlay never writes a lower layer), on a directory of its own below ``under`` (in
    the caller's mount namespace, a private one); gives the directories, in order, for
    the overlay's ``lowerdir``.  Once the overlay is made they are unmounted and the
    directories removed one by one, never recursively (overlayfs holds private clones
    of its layers): no mount of a shared layer stays below the container's storage,
    where removing the storage would reach into it."""
    import nsbind
    from nsbind import MountAttr, OpenTreeFlags, UmountFlags, open_tree

    attr = MountAttr.IDMAP | MountAttr.RDONLY | MountAttr.NOSUID | MountAttr.NODEV
    os.makedirs(under, mode=0o700, exist_ok=True)
    userns = _mapping_userns([(0, shift.uid, shift.size)], [(0, shift.gid, shift.size)])
    made: list[str] = []  # recorded before its mount is attached: undone in any case
    try:
        with userns:
            for i, layer in enumerate(layers):
                target = os.path.join(under, str(i))
                os.mkdir(target, 0o700)
                made.append(target)
                with open_tree(layer, OpenTreeFlags.CLONE) as tree:
                    try:
                        tree.setattr(attr, userns=userns)
                    except OSError as exc:
                        raise EngineError(f"--userns auto: an idmapped mount of the image's "
                                          f"layer {layer}: {exc} (Linux 5.12 and a "
                                          "filesystem that supports idmapped mounts)"
                                          ) from None
                    tree.attach(target)
        yield made
    finally:
        for target in reversed(made):
            with contextlib.suppress(OSError):  # (EINVAL: never attached)
                nsbind.umount2(target, UmountFlags.DETACH)
            with contextlib.suppress(OSError):  # a mount still there: left, never entered
                os.rmdir(target)
        with contextlib.suppress(OSError):
            os.rmdir(under)


@contextlib.contextmanager
def unshifted_upper(upper: str, shift: IdShift, under: str) -> Iterator[str]:
    """``upper`` bound read-only, nosuid, nodev and noexec on ``under`` (in the caller's
    private mount namespace) so that its files show the container's ids, not the host's
    (the inverse of the shift); gives ``under``, unmounted and removed afterwards."""
    import nsbind
    from nsbind import MountAttr, OpenTreeFlags, UmountFlags, open_tree

    attr = (MountAttr.IDMAP | MountAttr.RDONLY | MountAttr.NOSUID | MountAttr.NODEV
            | MountAttr.NOEXEC)
    os.makedirs(under, mode=0o700, exist_ok=True)
    try:
        userns = _mapping_userns([(shift.uid, 0, shift.size)], [(shift.gid, 0, shift.size)])
        with userns, open_tree(upper, OpenTreeFlags.CLONE) as tree:
            tree.setattr(attr, userns=userns)
            tree.attach(under)
        try:
            yield under
        finally:
            nsbind.umount2(under, UmountFlags.DETACH)
    finally:
        with contextlib.suppress(OSError):  # (the error that got here is the one to see)
            os.rmdir(under)
