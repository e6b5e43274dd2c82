"""``nsbind run``'s mount flags and Docker's size syntax, checked before any kernel sees
them: ``-v/--volume SRC:DST[:ro|rw]`` (SRC an absolute, existing host path: named and
anonymous volumes are not supported), ``--mount type=bind|tmpfs,...`` (Docker's keys
and their aliases) and ``--tmpfs DST[:opts]``.  A destination is absolute, has no
``..``, is not ``/``; tmpfs options come from a fixed allowlist (size=, mode= octal,
uid=, gid=, nr_inodes=, nosuid, nodev, noexec, exec, ro, rw).  Bad input is an
EngineError (125) naming the flag."""

from __future__ import annotations

import os

from nsbind.engine.errors import EngineError, bad_argument
from nsbind.frozen import frozen
from nsbind.lazyre import IGNORECASE, LazyPattern

__all__ = ["MountRequest", "mount", "parse_size", "tmpfs", "volume"]

_MAX_ID = (1 << 32) - 2
_I64 = (1 << 63) - 1
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = LazyPattern(r"(\d{1,30}(?:\.\d{1,30})?) ?(?:([kmgtp])i?)?b?", IGNORECASE)
_TMPFS_FLAGS = frozenset({"nosuid", "nodev", "noexec", "exec", "ro", "rw"})
_TMPFS_SIZE = LazyPattern(r"\d{1,20}[kmgtpe]?|\d{1,3}%", IGNORECASE)
_NR_INODES = LazyPattern(r"\d{1,20}[kmg]?", IGNORECASE)
_OCTAL = LazyPattern(r"[0-7]{1,5}")
_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


@frozen
class MountRequest:
    """A ``-v``, ``--mount`` or ``--tmpfs``: ``kind`` "bind" (``source`` the host path,
    ``options`` rbind or bind, then ro/rw) or "tmpfs" (``source`` "tmpfs", ``options``
    the checked tmpfs options, without Docker's nosuid,nodev,noexec defaults)."""

    kind: str
    source: str
    destination: str
    options: tuple[str, ...] = ()


def _destination(flag: str, spec: str, dest: str) -> str:
    """``dest`` normalized: absolute, no ``..``, no NUL, not ``/``."""
    if not dest.startswith("/"):
        raise bad_argument(flag, spec, f"the destination {dest!r} is not an absolute path")
    if "\0" in dest or ".." in dest.split("/"):
        raise bad_argument(flag, spec, f"the destination {dest!r} contains '..' or a NUL")
    clean = "/" + "/".join(part for part in dest.split("/") if part not in ("", "."))
    if clean == "/":
        raise bad_argument(flag, spec, "the destination can't be '/'")
    return clean


def _bind_source(flag: str, spec: str, source: str) -> str:
    if not source.startswith("/"):
        raise bad_argument(flag, spec, f"named volumes are not supported ({source!r}): the "
                   "source must be an absolute host path")
    if "\0" in source:
        raise bad_argument(flag, spec, "the source contains a NUL")
    try:
        os.lstat(source)
    except OSError:
        raise EngineError(f"invalid volume: bind source path does not exist: {source}") \
            from None
    return source


def volume(spec: str) -> MountRequest:
    flag = "-v, --volume"
    parts = spec.split(":")
    if len(parts) == 1:
        raise bad_argument(flag, spec, "anonymous volumes are not supported: give SRC:DST with an "
                   "absolute host path SRC")
    if len(parts) > 3 or not parts[0]:
        raise bad_argument(flag, spec, "invalid volume specification (SRC:DST[:ro|rw])")
    source = _bind_source(flag, spec, parts[0])
    dest = _destination(flag, spec, parts[1])
    options = ["rbind"]
    for mode in parts[2].split(",") if len(parts) == 3 else ():
        if mode in ("ro", "rw"):
            options.append(mode)
        elif mode not in ("private", "rprivate"):
            raise bad_argument(flag, spec, f"mode {mode!r} is not supported (ro or rw)")
    return MountRequest("bind", source, dest, tuple(options))


def _tmpfs_option(flag: str, spec: str, opt: str) -> str:
    """``opt`` if the tmpfs allowlist has it (see the module doc), else EngineError."""
    name, eq, value = opt.partition("=")
    ok = {"size": _TMPFS_SIZE, "nr_inodes": _NR_INODES, "mode": _OCTAL}
    if not eq and opt in _TMPFS_FLAGS:
        return opt
    if eq and name in ok and ok[name].fullmatch(value):
        if name == "mode" and int(value, 8) > 0o7777:
            raise bad_argument(flag, spec, f"tmpfs option {opt!r}: mode above 7777")
        return opt
    if (eq and name in ("uid", "gid") and value.isascii() and value.isdigit()
            and len(value) <= 10 and int(value) <= _MAX_ID):
        return opt
    raise bad_argument(flag, spec, f"tmpfs option {opt[:80]!r} is not supported (size=, mode= "
               "octal, uid=, gid=, nr_inodes=, nosuid, nodev, noexec, exec, ro, rw)")


def tmpfs(spec: str) -> MountRequest:
    flag = "--tmpfs"
    dest, _, opts = spec.partition(":")
    dest = _destination(flag, spec, dest)
    options = tuple(_tmpfs_option(flag, spec, o) for o in opts.split(",") if o) if opts \
        else ()
    return MountRequest("tmpfs", "tmpfs", dest, options)


def _csv_fields(flag: str, spec: str) -> list[str]:
    import csv

    try:
        rows = list(csv.reader([spec]))
    except csv.Error as exc:
        raise bad_argument(flag, spec, str(exc)) from None
    return rows[0] if rows else []


def mount(spec: str) -> MountRequest:
    """``--mount``: comma-separated key=value (CSV quoting), Docker's keys and aliases."""
    flag = "--mount"
    keys: dict[str, str] = {}
    aliases = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}
    for field in _csv_fields(flag, spec):
        key, eq, value = field.partition("=")
        key = aliases.get(key.strip().lower(), key.strip().lower())
        if key == "readonly" and not eq:
            value = "true"
        elif key not in ("type", "source", "target", "readonly", "bind-propagation",
                         "bind-recursive", "tmpfs-size", "tmpfs-mode", "consistency"):
            if key.startswith("volume-"):
                raise bad_argument(flag, spec, "named volumes are not supported")
            raise bad_argument(flag, spec, f"unexpected key {key[:40]!r}")
        elif not eq:
            raise bad_argument(flag, spec,
                               f"invalid field {field[:40]!r}: must be a key=value pair")
        keys[key] = value
    kind = keys.get("type", "volume")
    if kind not in ("bind", "tmpfs"):
        raise bad_argument(flag, spec, f"mount type {kind!r} is not supported (bind or tmpfs; "
                   "named volumes are not supported)")
    if "target" not in keys:
        raise bad_argument(flag, spec, "target is required")
    dest = _destination(flag, spec, keys["target"])
    readonly = keys.get("readonly", "false").lower()
    if readonly not in _TRUE | _FALSE:
        raise bad_argument(flag, spec, f"invalid value for readonly: {readonly!r}")
    options: list[str] = []
    if kind == "bind":
        if "source" not in keys:
            raise bad_argument(flag, spec, "source is required for a bind mount")
        if any(k.startswith("tmpfs-") for k in keys):
            raise bad_argument(flag, spec, "tmpfs options are for type=tmpfs only")
        if keys.get("bind-propagation", "rprivate") not in ("private", "rprivate"):
            raise bad_argument(flag, spec,
                               "bind-propagation other than rprivate is not supported yet")
        recursive = keys.get("bind-recursive", "enabled")
        if recursive not in ("enabled", "disabled"):
            raise bad_argument(flag, spec, f"bind-recursive {recursive!r} is not supported "
                       "(enabled or disabled)")
        source = _bind_source(flag, spec, keys["source"])
        options.append("rbind" if recursive == "enabled" else "bind")
    else:
        if "source" in keys or any(k.startswith("bind-") for k in keys):
            raise bad_argument(flag, spec, "source and bind options are not supported for tmpfs")
        source = "tmpfs"
        if "tmpfs-size" in keys:
            options.append(f"size={parse_size(flag, keys['tmpfs-size'])}")
        if "tmpfs-mode" in keys:
            mode = keys["tmpfs-mode"]
            if not _OCTAL.fullmatch(mode) or int(mode, 8) > 0o7777:
                raise bad_argument(flag, spec, f"tmpfs-mode {mode!r} is not an octal mode")
            options.append(f"mode={int(mode, 8):o}")
    if readonly in _TRUE:
        options.append("ro")
    return MountRequest(kind, source, dest, tuple(options))


def parse_size(flag: str, value: str) -> int:
    """Docker's size syntax (see the module doc) in bytes, or EngineError naming ``flag``."""
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise bad_argument(flag, value, "invalid size")
    from fractions import Fraction  # (a size given: not on every run's import path)

    number = Fraction(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    size = int(number)  # whole bytes, as Docker's int64(size * unit)
    if size > _I64:
        raise bad_argument(flag, value, "size out of range")
    return size
