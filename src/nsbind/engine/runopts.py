"""``nsbind run``'s flags, named and read as Docker's ``docker run`` names and reads them.

:mod:`nsbind.engine.runflags` declares the flags (for argparse, and read without it in
their plain forms); :func:`run_options` turns the parsed namespace into a checked, typed
:class:`RunOptions`.
Every bad value is an :class:`~nsbind.engine.errors.EngineError` (status 125) naming the
flag and the value: ``invalid argument "12x" for "-m, --memory": invalid size``.

The rules, Docker's unless said otherwise:

- sizes: a number (one decimal point at most) with an optional unit b, k, m, g, t, p
  (powers of 1024, case-insensitive, an optional ``i`` and ``b`` after it: ``512m``,
  ``1.5g``, ``100mb``); out of 0..2**63-1 is refused, never truncated.  ``--memory`` is
  at least 6 MiB; ``--memory-swap`` (memory plus swap; -1 unlimited, 0 unset) needs
  ``--memory`` and is at least as large.
- ``--cpus``: a positive decimal, at most the CPUs this process may run on, in steps of
  1e-9, kept as a CFS (quota, period) pair with period 100000 (quota at least 1000).
- ``--cpuset-cpus``: the kernel's list syntax (``0-1,3``), each CPU online.
- ``-e NAME`` and a bare ``NAME`` line of an ``--env-file`` take the caller's value and
  are dropped when it is unset; env files come first, then ``-e``, in order.
- volumes: ``-v SRC:DST[:ro|rw]`` with an absolute, existing SRC (named and anonymous
  volumes are not supported); ``--mount type=bind|tmpfs,...``; ``--tmpfs DST[:opts]``.
  A destination is absolute, has no ``..``, is not ``/`` and is used once; it is kept
  normalized.  tmpfs options are checked against a fixed allowlist (size=, mode= octal,
  uid=, gid=, nr_inodes=, nosuid, nodev, noexec, exec, ro, rw) before any kernel sees
  them.
- capabilities: with or without ``CAP_``, any case, or ``ALL``; kept as ``CAP_X``.
- networks: none, host, loopback (the default: a new network namespace with only its
  loopback), ``bridge`` (the default network, Docker's default), a network's name, or
  ``container:NAME`` (another container's network namespace); ``-p/--publish
  [IP:]HOST:CONTAINER[/tcp|udp]`` (kept as written, parsed where it is used) only
  with a bridge or named network.
"""

from __future__ import annotations

import os

from nsbind.charsets import ALNUM, Word
from nsbind.engine.errors import EngineError, bad_argument
from nsbind.engine.mountopts import MountRequest, mount, parse_size, tmpfs, volume
from nsbind.frozen import frozen
from nsbind.lazyre import LazyPattern

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import Any

__all__ = ["CPU_PERIOD", "MIN_MEMORY", "ULIMITS", "MountRequest", "RunOptions", "Ulimit",
           "parse_size", "run_options"]

#: the CFS period Docker uses for ``--cpus`` (microseconds)
CPU_PERIOD = 100_000
#: the smallest ``--memory`` Docker accepts
MIN_MEMORY = 6 << 20
_I64 = (1 << 63) - 1
_MAX_ID = (1 << 32) - 2
_ENV_FILE_MAX = 4 << 20
_PROFILE_MAX = 4 << 20
_DECIMAL = LazyPattern(r"\d{1,30}(?:\.\d{0,30})?|\.\d{1,30}")
_INT = LazyPattern(r"-?\d{1,30}")
_CPU_LIST = LazyPattern(r"\d{1,5}(?:-\d{1,5})?(?:,\d{1,5}(?:-\d{1,5})?)*")
_NAME = Word(ALNUM, ALNUM + "_.-", min_len=2)  # [a-zA-Z0-9][a-zA-Z0-9_.-]+
#: [A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?
_LABEL = Word(ALNUM + "_", ALNUM + "_-", last=ALNUM + "_")
#: ``--ulimit`` names (Docker's list) -> RLIMIT_*
ULIMITS = {name: f"RLIMIT_{name.upper()}" for name in (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")}
_NETWORKS = ("none", "host", "loopback")
_NETWORK_NAME = LazyPattern(r"(container:)?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")
_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


@frozen
class Ulimit:
    """One ``--ulimit``: an OCI rlimit (``soft``/``hard`` 2**64-1 for unlimited)."""

    name: str  # RLIMIT_NOFILE
    soft: int
    hard: int


@frozen
class RunOptions:
    """Every ``nsbind run`` flag, checked and typed.  ``image`` is None with ``rootfs``
    (then the first positional argument starts ``command``); ``seccomp`` is "default",
    "unconfined" or a Docker/OCI seccomp profile (a JSON object); ``cpus`` is a CFS
    (quota, period) pair; ``memory_swap`` -1 is unlimited; ``pids_limit`` None is
    unlimited; ``entrypoint`` None is the image's, "" clears it."""

    image: str | None = None
    command: tuple[str, ...] = ()
    rootfs: str | None = None
    name: str | None = None
    rm: bool = False
    detach: bool = False
    interactive: bool = False
    tty: bool = False
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    entrypoint: str | None = None
    memory: int | None = None
    memory_swap: int | None = None
    cpus: tuple[int, int] | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    ulimits: tuple[Ulimit, ...] = ()
    read_only: bool = False
    mounts: tuple[MountRequest, ...] = ()
    init: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privileges: bool = False
    seccomp: str | Mapping[str, Any] = "default"
    stop_signal: int | None = None
    stop_timeout: int | None = None
    network: str = "loopback"
    publish: tuple[str, ...] = ()
    ip: str | None = None
    #: the size of the container's own user namespace (``--userns auto``); None: the host's
    userns: int | None = None
    dry_run: bool = False


_bad = bad_argument


def uses_bridge(network: str) -> bool:
    """Whether ``--network network`` puts the container on a bridge network."""
    return network not in _NETWORKS and not network.startswith("container:")


def _strict_int(flag: str, value: str, low: int, high: int) -> int:
    if not _INT.fullmatch(value):
        raise _bad(flag, value, "not an integer")
    number = int(value)
    if not low <= number <= high:
        raise _bad(flag, value, f"out of range ({low}..{high})")
    return number


def _env_entry(flag: str, value: str, environ: Mapping[str, str]) -> str | None:
    name, eq, _ = value.partition("=")
    if not name or "\0" in value:
        raise _bad(flag, value, f"invalid environment variable: {value}")
    if eq:
        return value
    return f"{name}={environ[name]}" if name in environ else None


def _read_env_file(path: str) -> str:
    """The text of the regular file ``path`` (checked with fstat before reading: a FIFO
    cannot hang the command), at most 4 MiB, UTF-8."""
    flag = "--env-file"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _bad(flag, path, f"cannot open it: {exc.strerror}") from None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _bad(flag, path, "not a regular file")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1 << 16):
            total += len(chunk)
            if total > _ENV_FILE_MAX:
                raise _bad(flag, path, f"larger than {_ENV_FILE_MAX} bytes")
            chunks.append(chunk)
    except OSError as exc:
        raise _bad(flag, path, f"cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise _bad(flag, path, f"invalid UTF-8 at byte {exc.start}") from None


def _env_file(path: str, environ: Mapping[str, str]) -> list[str]:
    """Docker's env file: ``#`` comments and blank lines skipped, leading blanks dropped,
    ``NAME=VALUE`` as is, ``NAME`` alone from ``environ`` (dropped when unset)."""
    out: list[str] = []
    for number, raw in enumerate(_read_env_file(path).split("\n"), 1):
        line = raw.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        name = name.lstrip()
        if not name or any(c.isspace() for c in name) or "\0" in line:
            raise _bad("--env-file", path, f"line {number}: variable {name[:80]!r} is empty "
                       "or contains whitespace or NUL")
        if eq:
            out.append(f"{name}={value}")
        elif name in environ:
            out.append(f"{name}={environ[name]}")
    return out


def _ulimit(value: str) -> Ulimit:
    flag = "--ulimit"
    name, eq, limits = value.partition("=")
    if not eq or name not in ULIMITS:
        raise _bad(flag, value, f"invalid ulimit type {name[:40]!r}" if eq
                   else "invalid ulimit argument (NAME=SOFT[:HARD])")
    soft_text, colon, hard_text = limits.partition(":")
    soft = _strict_int(flag, soft_text, -1, _I64)
    hard = _strict_int(flag, hard_text, -1, _I64) if colon else soft
    soft = (1 << 64) - 1 if soft == -1 else soft
    hard = (1 << 64) - 1 if hard == -1 else hard
    if soft > hard:
        raise _bad(flag, value, "ulimit soft limit must be less than or equal to hard limit")
    return Ulimit(ULIMITS[name], soft, hard)


def _cap(flag: str, value: str) -> str:
    from nsbind import Capability

    name = value.strip().upper()
    if name == "ALL":
        return name
    name = name if name.startswith("CAP_") else f"CAP_{name}"
    if name[4:] not in Capability.__members__:
        raise _bad(flag, value, f"unknown capability: {name!r}")
    return name


def _cpus(value: str) -> tuple[int, int]:
    flag = "--cpus"
    if not _DECIMAL.fullmatch(value):
        raise _bad(flag, value, "not a decimal number of CPUs")
    from fractions import Fraction  # (--cpus only: not on every run's import path)

    cpus = Fraction(value)
    nano = cpus * 10**9
    if nano.denominator != 1:
        raise _bad(flag, value, "too precise (at most 9 decimals)")
    available = len(os.sched_getaffinity(0))
    quota = int(nano) * CPU_PERIOD // 10**9
    if quota < 1000 or cpus > available:
        raise _bad(flag, value, f"range of CPUs is from 0.01 to {available}.00, as there "
                   f"are only {available} CPUs available")
    return quota, CPU_PERIOD


def _cpuset(value: str) -> str:
    flag = "--cpuset-cpus"
    if not _CPU_LIST.fullmatch(value):
        raise _bad(flag, value, "not a CPU list like 0-3,5")
    wanted: set[int] = set()
    for part in value.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first > last:
            raise _bad(flag, value, f"range {part} is backwards")
        wanted.update(range(first, last + 1))
    try:
        with open("/sys/devices/system/cpu/online") as file:
            online = set(_cpu_numbers(file.read().strip()))
    except (OSError, ValueError):
        return value
    if not wanted <= online:
        missing = ",".join(str(c) for c in sorted(wanted - online)[:8])
        raise _bad(flag, value, f"requested CPUs are not available: {missing}")
    return value


def _cpu_numbers(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


def _signal(value: str) -> int:
    from nsbind import signals

    flag = "--stop-signal"
    if _INT.fullmatch(value):  # a number out of range is named as such
        return _strict_int(flag, value, 1, signals.SIGRTMAX)
    number = signals.parse(value)
    if number is None:
        raise _bad(flag, value, "invalid signal")
    return number


def _security(values: Sequence[str]) -> tuple[bool, str | Mapping[str, Any]]:
    flag = "--security-opt"
    nnp = False
    seccomp: str | Mapping[str, Any] = "default"
    for value in values:
        key, sep, arg = value.partition("=")
        if not sep:
            key, sep, arg = value.partition(":")  # Docker's older key:value form
        if key == "no-new-privileges":
            if arg.lower() not in {"", *_TRUE, *_FALSE}:
                raise _bad(flag, value, "no-new-privileges takes true or false")
            nnp = arg.lower() in {"", *_TRUE}
        elif key == "seccomp" and arg:
            seccomp = "unconfined" if arg == "unconfined" else _profile(value, arg)
        elif (key, arg) in (("apparmor", "unconfined"), ("label", "disable")):
            pass  # nsbind applies neither AppArmor nor SELinux labels
        else:
            raise _bad(flag, value, "not supported (no-new-privileges[=true|false], "
                       "seccomp=unconfined|FILE)")
    return nnp, seccomp


def _profile(value: str, path: str) -> Mapping[str, Any]:
    from nsbind.oci.jsonfile import read_json_file
    from nsbind.oci.schema import SpecError

    try:
        profile = read_json_file(path, _PROFILE_MAX, "seccomp profile")
    except SpecError as exc:
        raise _bad("--security-opt", value, str(exc)) from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise _bad("--security-opt", value, "a seccomp profile is a JSON object with a "
                   "defaultAction")
    return profile


def _name(value: str) -> str:
    name = value.removeprefix("/")
    if not _NAME.matches(name) or len(name) > 255:
        raise _bad("--name", value, f"Invalid container name ({value}), only "
                   "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


def _hostname(value: str) -> str:
    if len(value) > 64 or not all(_LABEL.matches(p) for p in value.split(".")):
        raise _bad("-h, --hostname", value, "invalid hostname format (letters, digits, "
                   "'-' and '_' in dot-separated labels, at most 64 characters)")
    return value


def _workdir(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise _bad("-w, --workdir", value, f"the working directory {value!r} is invalid, "
                   "it needs to be an absolute path")
    return "/" + "/".join(p for p in value.split("/") if p not in ("", "."))


def _rootfs(value: str) -> str:
    path = os.path.abspath(value)
    import stat

    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as exc:
        raise _bad("--rootfs", value, exc.strerror or "cannot be looked at") from None
    if not is_dir:
        raise _bad("--rootfs", value, "not a directory")
    return path


def _memory(ns: argparse.Namespace) -> tuple[int | None, int | None]:
    memory = swap = None
    if ns.memory is not None:
        memory = parse_size("-m, --memory", ns.memory)
        if memory < MIN_MEMORY:
            raise _bad("-m, --memory", ns.memory, "Minimum memory limit allowed is 6MB")
    if ns.memory_swap is not None:
        flag = "--memory-swap"
        swap = -1 if ns.memory_swap.strip() == "-1" else parse_size(flag, ns.memory_swap)
        if memory is None:
            raise _bad(flag, ns.memory_swap, "you should always set the memory limit (-m) "
                       "when using a memory-swap limit")
        if swap == 0:
            swap = None  # Docker's "unset": twice the memory
        elif swap != -1 and swap < memory:
            raise _bad(flag, ns.memory_swap, "minimum memoryswap limit should be larger "
                       "than memory limit")
    return memory, swap


def _positionals(ns: argparse.Namespace, rootfs: str | None) -> tuple[str | None,
                                                                        tuple[str, ...]]:
    command = list(ns.command or ())
    if command[:1] == ["--"]:
        del command[0]
    image = ns.image
    if rootfs is not None:
        if image is not None:
            command.insert(0, image)
        return None, tuple(command)
    if not image:
        raise EngineError('"nsbind run" requires at least 1 argument (IMAGE, or --rootfs '
                          "DIR)")
    return image, tuple(command)


def run_options(ns: argparse.Namespace, environ: Mapping[str, str] | None = None
                ) -> RunOptions:
    """The checked :class:`RunOptions` of a namespace parsed with
    :func:`add_run_arguments`'s flags; ``environ`` (default ``os.environ``) gives the
    values of ``-e NAME``.  Bad input raises EngineError (125) naming the flag."""
    environ = os.environ if environ is None else environ
    rootfs = _rootfs(ns.rootfs) if ns.rootfs is not None else None
    image, command = _positionals(ns, rootfs)
    env: list[str] = []
    for path in ns.env_file or ():
        env += _env_file(path, environ)
    for value in ns.env or ():
        entry = _env_entry("-e, --env", value, environ)
        if entry is not None:
            env.append(entry)
    mounts = [*(volume(v) for v in ns.volume or ()), *(mount(v) for v in ns.mount or ()),
              *(tmpfs(v) for v in ns.tmpfs or ())]
    seen: set[str] = set()
    for m in mounts:
        if m.destination in seen:
            raise EngineError(f"Duplicate mount point: {m.destination}")
        seen.add(m.destination)
    ulimits: dict[str, Ulimit] = {}
    for value in ns.ulimit or ():
        limit = _ulimit(value)
        ulimits[limit.name] = limit  # a later one for the same name wins
    memory, swap = _memory(ns)
    pids = None
    if ns.pids_limit is not None:
        pids = _strict_int("--pids-limit", ns.pids_limit, -(1 << 63), _I64)
        pids = pids if pids > 0 else None
    timeout = None
    if ns.stop_timeout is not None:
        timeout = _strict_int("--stop-timeout", ns.stop_timeout, -1, (1 << 31) - 1)
    network = ns.network if ns.network is not None else "loopback"
    if network not in _NETWORKS and not _NETWORK_NAME.fullmatch(network):
        raise _bad("--network", network, "none, host, loopback, bridge, a network's name "
                   "or container:NAME expected")
    publish = tuple(ns.publish or ())
    ip = None
    if ns.ip is not None:
        import ipaddress

        try:
            ip = str(ipaddress.ip_address(ns.ip))
        except ValueError:
            raise _bad("--ip", ns.ip, "not an IP address") from None
        if network in _NETWORKS or network in ("bridge",) or network.startswith("container:"):
            raise _bad("--ip", ns.ip, "an address is chosen on a user-defined network only "
                       f"(not --network {network}), as Docker does")
    if publish and (network in _NETWORKS or network.startswith("container:")):
        raise _bad("--publish", publish[0], f"ports are published on a bridge or named "
                   f"network, not with --network {network}")
    userns = None
    if ns.userns not in (None, "", "host"):  # (the module only when one is asked for)
        from nsbind.engine.userns import parse_userns

        userns = parse_userns(ns.userns)
    nnp, seccomp = _security(ns.security_opt or ())
    return RunOptions(
        image=image, command=command, rootfs=rootfs,
        name=_name(ns.name) if ns.name is not None else None,
        rm=ns.rm, detach=ns.detach, interactive=ns.interactive, tty=ns.tty, env=tuple(env),
        workdir=_workdir(ns.workdir) if ns.workdir else None,
        user=ns.user or None,
        hostname=_hostname(ns.hostname) if ns.hostname else None,
        entrypoint=ns.entrypoint,
        memory=memory, memory_swap=swap,
        cpus=_cpus(ns.cpus) if ns.cpus is not None else None,
        cpuset_cpus=_cpuset(ns.cpuset_cpus) if ns.cpuset_cpus is not None else None,
        pids_limit=pids, ulimits=tuple(ulimits.values()), read_only=ns.read_only,
        mounts=tuple(mounts), init=ns.init,
        cap_add=tuple(_cap("--cap-add", c) for c in ns.cap_add or ()),
        cap_drop=tuple(_cap("--cap-drop", c) for c in ns.cap_drop or ()),
        no_new_privileges=nnp, seccomp=seccomp,
        stop_signal=_signal(ns.stop_signal) if ns.stop_signal is not None else None,
        stop_timeout=timeout, network=network, publish=publish, ip=ip, userns=userns,
        dry_run=ns.dry_run)
