"""Cgroup settings and readings as tables: per logical name, the controller, the
file on cgroup v1 and on cgroup v2, and how a value is checked and converted.

A :class:`Setting` checks a caller's value once (ValueError naming the argument,
before anything is written) and then renders it for the version of the hierarchy
that carries its controller: ``memory_max`` is memory.max on v2 and
memory.limit_in_bytes on v1, where "no limit" is written ``-1`` instead of
``max``.  A :class:`Reading` names the file(s) a statistic comes from on each
version and how the text is parsed.
"""

from __future__ import annotations

# collections.abc's classes, without importing the collections package
from _collections_abc import Mapping, Sequence

from nsbind.cgroupfs import parse_flat
from nsbind.cgroupstats import parse_blkio, parse_io_stat
from nsbind.errors import InvalidValue, LookupFailed
from nsbind.frozen import frozen
from nsbind.lazyre import IGNORECASE, LazyPattern

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Literal, TypeAlias

__all__ = ["READINGS", "SETTINGS", "CpuMax", "HugetlbMax", "IoLimits", "Knob", "Reading",
           "Setting", "check_cpu_list", "check_cpu_shares", "check_cpus", "check_device",
           "check_io_rate", "check_memory_size", "check_page_size", "check_period",
           "check_pids", "check_weight"]

Max: TypeAlias = "Literal['max']"

#: the largest byte count a limit file takes (the kernel parses a signed 64-bit number)
MAX_BYTES = 2**63 - 1
#: pids.max: 0..PID_MAX_LIMIT (4194304 on 64-bit kernels), or "max"
PID_MAX_LIMIT = 4 * 1024 * 1024
#: CFS bandwidth (kernel/sched/core.c): the period is 1 ms..1 s, the quota at least
#: 1 ms and at most 2**44 - 1 us
MIN_PERIOD_US, MAX_PERIOD_US, MIN_QUOTA_US, MAX_QUOTA_US = 1000, 1_000_000, 1000, 2**44 - 1
DEFAULT_PERIOD_US = 100_000
#: v1 cpu.shares (kernel/sched: MIN_SHARES..MAX_SHARES; it clamps a value outside silently)
MIN_SHARES, MAX_SHARES = 2, 262144


def _refuse(arg: str, value: object, rule: str) -> ValueError:
    return ValueError(f"{arg}={value!r}: {rule}")


def _int_in(value: object, low: int, high: int) -> int | None:
    """``value`` if it is an int (not a bool) within low..high, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


# ---------------------------------------------------------------- value checks

_SIZE = LazyPattern(r"([0-9]+)([KMGTPE]?)", IGNORECASE)


def check_memory_size(arg: str, value: object) -> int | Max:
    """Bytes: an int >= 0, a str with an optional K/M/G/T/P/E suffix (powers of 1024,
    as the kernel's memparse), or ``"max"`` (no limit).  Returns an int or "max"."""
    rule = ("must be bytes: an int >= 0, a str like '512M' (K/M/G/T/P/E: powers of "
            "1024) or 'max'")
    if value == "max":
        return "max"
    if isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        size = _int_in(int(m[1]) << (10 * " KMGTPE".index(m[2].upper() or " ")), 0, MAX_BYTES)
    else:
        size = _int_in(value, 0, MAX_BYTES)
    if size is None:
        raise _refuse(arg, value, f"{rule} (at most 2**63 - 1 bytes)")
    return size


def check_pids(arg: str, value: object) -> int | Max:
    """A task count 0..4194304 (PID_MAX_LIMIT), or ``"max"``."""
    if value == "max":
        return "max"
    if (count := _int_in(value, 0, PID_MAX_LIMIT)) is None:
        raise _refuse(arg, value, f"must be an int 0..{PID_MAX_LIMIT} or 'max'")
    return count


def check_cpus(arg: str, value: object, period_us: int = DEFAULT_PERIOD_US) -> float:
    """A positive, finite number of CPUs (0.5: half of one); the quota it makes per
    ``period_us`` must stay within the kernel's 2**44 - 1 us."""
    if (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 < value * period_us <= MAX_QUOTA_US):  # NaN and infinities fail here
        return float(value)
    raise _refuse(arg, value, "must be a positive number of CPUs (0.5: half of one CPU), "
                  f"at most {MAX_QUOTA_US // period_us} with a {period_us} us period")


def check_period(arg: str, value: object) -> int:
    """The CFS period in microseconds: an int 1000..1000000 (1 ms..1 s)."""
    if (period := _int_in(value, MIN_PERIOD_US, MAX_PERIOD_US)) is None:
        raise _refuse(arg, value, f"must be an int {MIN_PERIOD_US}..{MAX_PERIOD_US} (us)")
    return period


def check_weight(arg: str, value: object) -> int:
    """A cgroup v2 weight: an int 1..10000 (100 is the default)."""
    if (weight := _int_in(value, 1, 10000)) is None:
        raise _refuse(arg, value, "must be an int 1..10000 (the default weight is 100)")
    return weight


def check_cpu_shares(arg: str, value: object) -> int:
    """cgroup v1 CPU shares: an int 2..262144 (1024 is the default).  A value outside
    is refused, as runc refuses it, not clamped (the kernel would keep the nearest
    bound silently)."""
    if (shares := _int_in(value, MIN_SHARES, MAX_SHARES)) is None:
        raise _refuse(arg, value, f"must be an int {MIN_SHARES}..{MAX_SHARES} (the default "
                      "cpu.shares is 1024)")
    return shares


_LIST_ITEM = LazyPattern(r"([0-9]+)(?:-([0-9]+)(?::([0-9]+)/([0-9]+))?)?")


def check_cpu_list(arg: str, value: object) -> str:
    """A CPU or memory node list as the kernel's bitmap_parselist reads it:
    ``"0-3,6"``, ``"0-7:2/4"`` (2 of every 4); ranges go upwards.  ``""`` resets
    (on v2: use the parent's set)."""
    rule = "must be a list like '0-3,6' (ascending ranges, ',' between items)"
    if not isinstance(value, str):
        raise _refuse(arg, value, rule)
    if value == "":
        return value
    for item in value.split(","):
        m = _LIST_ITEM.fullmatch(item)
        if m is None:
            raise _refuse(arg, value, f"{rule}; {item!r} is not 'N', 'N-M' or 'N-M:U/G'")
        if m[2] is not None and int(m[2]) < int(m[1]):
            raise _refuse(arg, value, f"{rule}; the range {item!r} goes downwards")
        if m[3] is not None and not 0 < int(m[3]) <= int(m[4]):
            raise _refuse(arg, value, f"{rule}; in {item!r} U/G needs 0 < U <= G")
    return value


_DEVICE = LazyPattern(r"([0-9]+):([0-9]+)")


def check_device(arg: str, value: object) -> str:
    """A block device as ``"MAJ:MIN"`` (major < 4096, minor < 2**20, as dev_t)."""
    m = _DEVICE.fullmatch(value) if isinstance(value, str) else None
    if m is None or int(m[1]) >= 1 << 12 or int(m[2]) >= 1 << 20:
        raise _refuse(arg, value, "must be a block device as 'MAJOR:MINOR' (e.g. '8:0'; "
                      "see /sys/block/<disk>/dev)")
    return m[0]


def check_io_rate(arg: str, value: object) -> int | Max:
    """A throttle rate: an int 1..2**64 - 2 (bytes or IOs per second), or ``"max"``
    (unthrottled; v2 refuses 0)."""
    if value == "max":
        return "max"
    if (rate := _int_in(value, 1, 2**64 - 2)) is None:
        raise _refuse(arg, value, "must be an int 1..2**64 - 2 (per second) or 'max'")
    return rate


_PAGE = LazyPattern(r"[0-9]+(KB|MB|GB)")


def check_page_size(arg: str, value: object) -> str:
    """A huge page size as the hugetlb files name it: ``"2MB"``, ``"1GB"``, ``"64KB"``."""
    if isinstance(value, str) and _PAGE.fullmatch(value):
        return value
    raise _refuse(arg, value, "must be a huge page size like '2MB' or '1GB' "
                  "(see /sys/kernel/mm/hugepages)")


def _check_classid(arg: str, value: object) -> int:
    if (classid := _int_in(value, 0, 0xFFFFFFFF)) is None:
        raise _refuse(arg, value, "must be an int 0..0xFFFFFFFF (0xAAAABBBB: tc class "
                      "AAAA:BBBB)")
    return classid


_IFNAME = LazyPattern(r"[^\s/:]{1,15}")


def _check_priomap(arg: str, value: object) -> dict[str, int]:
    rule = "must be a dict of interface name (1..15 chars, no '/', ':' or space) to an int "
    if not isinstance(value, Mapping):
        raise _refuse(arg, value, rule + "0..2**32 - 1")
    for name, prio in value.items():
        if (not isinstance(name, str) or not _IFNAME.fullmatch(name) or name in (".", "..")
                or _int_in(prio, 0, 2**32 - 1) is None):
            raise _refuse(arg, value, rule + f"0..2**32 - 1; not {name!r}: {prio!r}")
    return dict(value)


def _check_rules(arg: str, value: object) -> list[Any]:
    from nsbind import devicebpf  # bpf(2) code loads when device rules are set

    if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence)
            or not all(isinstance(rule, str) for rule in value)):
        raise _refuse(arg, value, "must be a list of rules like ['c 1:3 rwm']")
    try:
        return [devicebpf.parse_rule(rule) for rule in value]
    except ValueError as exc:
        raise InvalidValue(f"{arg}: {exc}") from None


# ---------------------------------------------------------------- composite values


@frozen
class CpuMax:
    """CFS bandwidth: ``quota`` us of CPU time per ``period`` us (None: no limit)."""

    quota: int | None
    period: int

    @classmethod
    def of(cls, cpus: float | None, period: int) -> CpuMax:
        """The quota for ``cpus`` CPUs (checked), at least the kernel's 1 ms."""
        return cls(None if cpus is None else max(MIN_QUOTA_US, round(cpus * period)), period)


@frozen
class HugetlbMax:
    """A hugetlb limit for one page size."""

    page: str
    limit: int | Max


@frozen
class IoLimits:
    """Throttle rates of one block device, by io.max key (rbps, wbps, riops, wiops)."""

    device: str
    rates: dict[str, int | Max]

    def v1(self, key: str) -> str | None:
        """The blkio.throttle.* line for ``key`` (0 is no limit on v1), if given."""
        rate = self.rates.get(key)
        return None if rate is None else f"{self.device} {0 if rate == 'max' else rate}"


# ---------------------------------------------------------------- the settings table


def _v1_size(value: int | Max) -> str:
    return "-1" if value == "max" else str(value)  # v1 page counters: -1 is no limit


@frozen
class Knob:
    """One file of a setting on one cgroup version and the text a checked value
    becomes there: a str, None (leave the file alone) or a list (one write each:
    files that take one entry per write).  ``file`` may name fields of the value
    (``hugetlb.{v.page}.max``)."""

    file: str
    render: Callable[[Any], str | list[str] | None] = str

    def name(self, value: Any) -> str:
        return self.file.format(v=value)


@frozen
class Setting:
    """A setting: its controller (the first of ``controllers`` the host has), the
    knobs written on v1 and on v2 (none: that version has no such file), and the
    check of a caller's value.  With ``choose``, the knobs are alternatives: the
    first file the cgroup has is written.  ``missing`` says why a file may be
    absent (a kernel option): LookupError with that reason instead of ENOENT."""

    name: str
    controllers: tuple[str, ...]
    check: Callable[[str, Any], Any]
    v1: tuple[Knob, ...]
    v2: tuple[Knob, ...]
    choose: bool = False
    missing: str | None = None

    def writes(self, version: int, value: Any, present: Callable[[str], bool],
               where: str) -> list[tuple[str, str]]:
        """(file, text) to write, in order, for a checked ``value`` on a cgroup of
        ``version`` at ``where``; ``present(file)`` says whether the cgroup has it."""
        knobs = self.v2 if version == 2 else self.v1
        if not knobs:
            raise LookupFailed(f"{self.name} has no cgroup v{version} file "
                               f"({self.controllers[0]} at {where})")
        if self.choose:
            names = [k.name(value) for k in knobs]
            knobs = tuple(k for k in knobs if present(k.name(value)))[:1]
            if not knobs:
                raise LookupFailed(f"no {' or '.join(names)} in {where}: {self.missing}")
        elif self.missing is not None:
            for k in knobs:
                if not present(k.name(value)):
                    raise LookupFailed(f"{k.name(value)} is missing on {where}: "
                                       f"{self.missing}")
        out = []
        for k in knobs:
            text = k.render(value)
            for line in [text] if isinstance(text, str) else text or []:
                out.append((k.name(value), line))
        return out


_NO_SWAP = "this kernel has no swap accounting (CONFIG_MEMCG_SWAP, swapaccount=1)"
_NO_IO_WEIGHT = "no IO scheduler here weighs cgroups (blk-iocost on v2, BFQ)"
_IO_KEYS = {"rbps": "read_bps", "wbps": "write_bps", "riops": "read_iops",
            "wiops": "write_iops"}


def _shares(weight: int) -> str:  # runc's conversion of a v2 weight to v1 cpu.shares
    return str(2 + (weight - 1) * 262142 // 9999)


def _weight(shares: int) -> str:  # runc's conversion of v1 cpu.shares to a v2 weight
    return str(1 + (shares - 2) * 9999 // 262142)


def _blkio_weight(weight: int) -> str:  # runc's conversion to v1 blkio.weight (10..1000)
    return str(10 + (weight - 1) * 990 // 9999)


def _cpu_max(arg: str, value: object) -> CpuMax:
    return CpuMax.of(check_cpus(arg, value), DEFAULT_PERIOD_US)


def _v1_io_knob(key: str) -> Knob:
    return Knob(f"blkio.throttle.{_IO_KEYS[key]}_device", lambda v: v.v1(key))


def _io_max(limits: IoLimits) -> str:
    return f"{limits.device} " + " ".join(f"{k}={v}" for k, v in limits.rates.items())


def _unchecked(arg: str, value: object) -> object:
    return value  # composite values, checked part by part by their setter


_TABLE = (
    Setting("memory_max", ("memory",), check_memory_size,
            v1=(Knob("memory.limit_in_bytes", _v1_size),), v2=(Knob("memory.max"),)),
    Setting("memory_high", ("memory",), check_memory_size,  # v1: only a soft limit
            v1=(Knob("memory.soft_limit_in_bytes", _v1_size),), v2=(Knob("memory.high"),)),
    Setting("memory_swap_max", ("memory",), check_memory_size, missing=_NO_SWAP,
            # v1: memory plus swap (set memory_max first)
            v1=(Knob("memory.memsw.limit_in_bytes", _v1_size),),
            v2=(Knob("memory.swap.max"),)),
    Setting("pids_max", ("pids",), check_pids,
            v1=(Knob("pids.max"),), v2=(Knob("pids.max"),)),
    Setting("cpu_max", ("cpu",), _cpu_max,
            v1=(Knob("cpu.cfs_period_us", lambda v: str(v.period)),
                Knob("cpu.cfs_quota_us", lambda v: str(-1 if v.quota is None else v.quota))),
            v2=(Knob("cpu.max", lambda v: f"{'max' if v.quota is None else v.quota} {v.period}"),)),
    Setting("cpu_weight", ("cpu",), check_weight,
            v1=(Knob("cpu.shares", _shares),), v2=(Knob("cpu.weight"),)),
    Setting("cpu_shares", ("cpu",), check_cpu_shares,  # written as is on v1
            v1=(Knob("cpu.shares"),), v2=(Knob("cpu.weight", _weight),)),
    Setting("cpuset_cpus", ("cpuset",), check_cpu_list,
            v1=(Knob("cpuset.cpus"),), v2=(Knob("cpuset.cpus"),)),
    Setting("cpuset_mems", ("cpuset",), check_cpu_list,
            v1=(Knob("cpuset.mems"),), v2=(Knob("cpuset.mems"),)),
    Setting("io_weight", ("io", "blkio"), check_weight, choose=True, missing=_NO_IO_WEIGHT,
            v1=(Knob("blkio.weight", _blkio_weight), Knob("blkio.bfq.weight", _blkio_weight)),
            v2=(Knob("io.weight", lambda w: f"default {w}"), Knob("io.bfq.weight"))),
    Setting("io_limits", ("io", "blkio"), _unchecked,
            v1=tuple(_v1_io_knob(key) for key in _IO_KEYS), v2=(Knob("io.max", _io_max),)),
    Setting("hugetlb_max", ("hugetlb",), _unchecked,
            v1=(Knob("hugetlb.{v.page}.limit_in_bytes", lambda v: _v1_size(v.limit)),),
            v2=(Knob("hugetlb.{v.page}.max", lambda v: str(v.limit)),)),
    Setting("net_cls_classid", ("net_cls",), _check_classid,
            v1=(Knob("net_cls.classid"),), v2=()),
    Setting("net_prio", ("net_prio",), _check_priomap,
            v1=(Knob("net_prio.ifpriomap",
                     lambda prios: [f"{name} {prio}" for name, prio in prios.items()]),),
            v2=()),
    Setting("devices", ("devices",), _check_rules,  # v2: an eBPF program (devicebpf)
            v1=(Knob("devices.deny", lambda rules: "a"),
                Knob("devices.allow", lambda rules: [str(r) for r in rules])),
            v2=()),
)

#: every setting by name; ``Cgroup.create``'s keywords are the first nine, applied
#: in this order (memory_max before memory_swap_max: v1's memsw limit includes it)
SETTINGS: dict[str, Setting] = {s.name: s for s in _TABLE}


# ---------------------------------------------------------------- the readings table


def _cpu_usage_v2(cpu_stat: str) -> int:
    return parse_flat(cpu_stat)["usage_usec"]


def _cpu_usage_v1(usage_ns: str) -> int:
    return int(usage_ns) // 1000


@frozen
class Reading:
    """A statistic: its controller (the first of ``controllers`` the host has), the
    files read on v1 and on v2, and the parser given their texts in that order."""

    name: str
    controllers: tuple[str, ...]
    v1: tuple[str, ...]
    v2: tuple[str, ...]
    parse_v1: Callable[..., Any]
    parse_v2: Callable[..., Any]

    def source(self, version: int) -> tuple[tuple[str, ...], Callable[..., Any]]:
        """(files, parser) on a cgroup of ``version``."""
        return (self.v2, self.parse_v2) if version == 2 else (self.v1, self.parse_v1)


READINGS: dict[str, Reading] = {r.name: r for r in (
    Reading("memory_current", ("memory",), ("memory.usage_in_bytes",), ("memory.current",),
            int, int),
    Reading("memory_peak", ("memory",), ("memory.max_usage_in_bytes",), ("memory.peak",),
            int, int),
    Reading("memory_stat", ("memory",), ("memory.stat",), ("memory.stat",),
            parse_flat, parse_flat),
    # oom, oom_kill, ...: v1 memory.oom_control has under_oom and oom_kill
    Reading("memory_events", ("memory",), ("memory.oom_control",), ("memory.events",),
            parse_flat, parse_flat),
    Reading("cpu_usage_us", ("cpuacct", "cpu"), ("cpuacct.usage",), ("cpu.stat",),
            _cpu_usage_v1, _cpu_usage_v2),
    Reading("pids_current", ("pids",), ("pids.current",), ("pids.current",), int, int),
    Reading("io", ("io", "blkio"),
            ("blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"), ("io.stat",),
            parse_blkio, parse_io_stat),
)}
