"""An OCI spec's ``linux.resources`` as :class:`nsbind.Cgroup` settings.

What the Cgroup API can express is mapped as runc maps it; anything it cannot (a value
that would be written differently than runc writes it, a knob the API lacks) is a
SpecError naming the JSON path: nothing is dropped.

* memory: ``limit`` -> memory_max (-1: no limit); ``reservation`` -> the v1 soft limit
  (memory_high; on v2 runc writes memory.low, which the API lacks: refused); ``swap``
  (memory plus swap, as on v1) -> memory_swap_max (memsw on v1; on v2 minus the limit,
  as runc converts it).  swappiness, disableOOMKiller, checkBeforeUpdate: refused.
* cpu: ``shares`` -> cpu_shares (cpu.shares as is on v1, runc's shares->weight
  conversion on v2; outside 2..262144 refused, as runc refuses it; 0: unset);
  ``quota`` and ``period`` -> cpu_max; ``cpus``/``mems`` -> cpuset; realtime and idle:
  refused.
* pids ``limit`` (<= -1: max; 0: unset, as runc); hugepageLimits; blockIO throttles
  (per device); network classID and priorities (v1 net_cls/net_prio).
* devices: a leading deny-all rule then allow rules (runc's default allowed devices
  appended, as runc does) -> ``set_devices``; any other deny rule is refused.
* ``unified``: each cgroup v2 file written as given, after its name (a file of a
  controller the v2 hierarchy has; not one the lifecycle owns, like cgroup.procs) and
  value (one line) are checked.
* blockIO weights: refused.
"""

from __future__ import annotations

from nsbind.cgroups import Cgroup, cgroup_layout
from nsbind.cgroupsettings import check_cpu_shares
from nsbind.frozen import field, frozen
from nsbind.lazyre import LazyPattern
from nsbind.oci.schema import SpecError
from nsbind.oci.spec import BlockIO, Cpu, DeviceRule, Memory, Resources

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["RUNC_ALLOWED_DEVICES", "CgroupSettings", "convert_resources"]

#: the device rules runc always adds after the spec's (libcontainer/specconv)
RUNC_ALLOWED_DEVICES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm",
                        "c 5:0 rwm", "c 1:5 rwm", "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm",
                        "c 5:2 rwm", "c 10:200 rwm")


@frozen
class CgroupSettings:
    """What to create and set: ``create`` are keywords of :meth:`Cgroup.create`, the
    rest is set with the Cgroup's setters after it (:meth:`apply`)."""

    create: dict[str, Any] = field(default_factory=dict)
    cpu_period: int | None = None  # set_cpu_max(cpu_max, cpu_period) when not None
    cpu_max: float | None = None
    devices: tuple[str, ...] | None = None
    hugetlb: tuple[tuple[str, int], ...] = ()
    io_limits: tuple[tuple[str, dict[str, int]], ...] = ()
    net_cls_classid: int | None = None
    net_prio: dict[str, int] | None = None
    unified: tuple[tuple[str, str], ...] = ()

    def apply(self, cg: Cgroup) -> None:
        """Set what ``Cgroup.create`` did not."""
        if self.cpu_period is not None:
            cg.set_cpu_max(self.cpu_max, self.cpu_period)
        for size, limit in self.hugetlb:
            cg.set_hugetlb_max(size, limit)
        for device, rates in self.io_limits:
            cg.set_io_limits(device, **rates)
        if self.net_cls_classid is not None:
            cg.set_net_cls_classid(self.net_cls_classid)
        if self.net_prio:
            cg.set_net_prio(self.net_prio)
        if self.devices is not None:
            cg.set_devices(list(self.devices))
        if self.unified:
            v2 = cg.v2
            if v2 is None:
                raise SpecError("linux.resources.unified: this cgroup has no cgroup v2 "
                                "directory to write to")
            for key, value in self.unified:
                v2.write(key, value)

    def update(self, cg: Cgroup) -> None:
        """Set everything on an existing cgroup (``runc update``): the create keywords
        through the matching setters, then :meth:`apply`."""
        values = dict(self.create)
        for key, setter in (("memory_max", cg.set_memory_max),
                            ("memory_high", cg.set_memory_high),
                            ("memory_swap_max", cg.set_memory_swap_max),
                            ("pids_max", cg.set_pids_max),
                            ("cpu_weight", cg.set_cpu_weight),
                            ("cpu_shares", cg.set_cpu_shares)):
            if key in values:
                setter(values.pop(key))
        if "cpu_max" in values and self.cpu_period is None:
            cg.set_cpu_max(values.pop("cpu_max"))
        if "cpuset_cpus" in values or "cpuset_mems" in values:
            cg.set_cpuset(cpus=values.pop("cpuset_cpus", None),
                          mems=values.pop("cpuset_mems", None))
        self.apply(cg)


def _version(controller: str) -> int:
    h = cgroup_layout().controllers.get(controller)
    return 2 if h is None else h.version


def _refuse(path: str, what: str) -> SpecError:
    return SpecError(f"linux.resources.{path}: {what}")


def _memory(mem: Memory, out: dict[str, Any]) -> None:
    for name in ("swappiness", "disable_oom_killer", "check_before_update"):
        if getattr(mem, name) not in (None, False):
            json_name = {"swappiness": "swappiness", "disable_oom_killer": "disableOOMKiller",
                         "check_before_update": "checkBeforeUpdate"}[name]
            raise _refuse(f"memory.{json_name}", "not supported yet (no Cgroup setting)")
    for name, value in (("limit", mem.limit), ("reservation", mem.reservation),
                        ("swap", mem.swap)):
        if value is not None and value < -1:
            raise _refuse(f"memory.{name}", f"{value} is below -1")
    if mem.limit is not None:
        out["memory_max"] = "max" if mem.limit == -1 else mem.limit
    if mem.reservation is not None:
        if _version("memory") == 2:
            raise _refuse("memory.reservation", "memory.low (what runc writes on cgroup v2) "
                          "is not supported yet")
        out["memory_high"] = "max" if mem.reservation == -1 else mem.reservation
    if mem.swap is not None:
        if mem.swap == -1:
            out["memory_swap_max"] = "max"
        elif _version("memory") == 1:
            out["memory_swap_max"] = mem.swap
        elif mem.limit is None or mem.limit == -1 or mem.swap < mem.limit:
            raise _refuse("memory.swap", "on cgroup v2 it needs a memory.limit no larger "
                          "than it (swap is memory plus swap)")
        else:
            out["memory_swap_max"] = mem.swap - mem.limit


def _cpu(cpu: Cpu, out: dict[str, Any]) -> tuple[int | None, float | None]:
    """Fill ``out``; return the period and CPUs for set_cpu_max (period None: none)."""
    for name, value in (("realtimeRuntime", cpu.realtime_runtime),
                        ("realtimePeriod", cpu.realtime_period), ("idle", cpu.idle)):
        if value:
            raise _refuse(f"cpu.{name}", "not supported yet (no Cgroup setting)")
    if cpu.shares:  # 0: unset, as runc
        try:
            out["cpu_shares"] = check_cpu_shares("shares", cpu.shares)
        except ValueError as exc:
            raise _refuse("cpu.shares", f"{exc} (runc refuses it too)") from None
    period = cpus = None
    if cpu.quota is not None or cpu.period is not None:
        period = cpu.period or 100_000
        if cpu.quota is not None and cpu.quota > 0:
            cpus = cpu.quota / period
            if round(cpus * period) != cpu.quota:
                raise _refuse("cpu.quota", f"{cpu.quota} is not exactly {cpus} CPUs of "
                              f"{period} us")
    if cpu.cpus:
        out["cpuset_cpus"] = cpu.cpus
    if cpu.mems:
        out["cpuset_mems"] = cpu.mems
    return period, cpus


def _devices(rules: tuple[DeviceRule, ...]) -> tuple[str, ...] | None:
    allow: list[str] = []
    for i, r in enumerate(rules):
        everything = r.type in (None, "a") and r.major in (None, -1) and r.minor in (None, -1)
        if not r.allow:
            if i != 0 or not everything or set(r.access or "rwm") != set("rwm"):
                raise _refuse(f"devices[{i}]", "deny rules other than a leading deny-all "
                              "are not supported yet")
            continue
        if everything and r.type in (None, "a"):
            allow.append("a")
            continue
        major = "*" if r.major in (None, -1) else str(r.major)
        minor = "*" if r.minor in (None, -1) else str(r.minor)
        allow.append(f"{r.type or 'a'} {major}:{minor} {r.access or 'rwm'}")
    if not rules or rules[0].allow:
        if allow and allow != ["a"] * len(allow):
            raise _refuse("devices", "allow rules without a leading deny-all rule are not "
                          "supported yet")
        return None  # everything allowed, as the parent cgroup allows
    return (*allow, *RUNC_ALLOWED_DEVICES)


def _block_io(bio: BlockIO) -> tuple[tuple[str, dict[str, int]], ...]:
    for name, value in (("weight", bio.weight), ("leafWeight", bio.leaf_weight),
                        ("weightDevice", bio.weight_device)):
        if value:
            raise _refuse(f"blockIO.{name}", "not supported yet (the Cgroup API takes a v2 "
                          "io.weight, which runc converts differently)")
    limits: dict[str, dict[str, int]] = {}
    for key, devs in (("read_bps", bio.throttle_read_bps_device),
                      ("write_bps", bio.throttle_write_bps_device),
                      ("read_iops", bio.throttle_read_iops_device),
                      ("write_iops", bio.throttle_write_iops_device)):
        for d in devs or ():
            limits.setdefault(f"{d.major}:{d.minor}", {})[key] = d.rate
    return tuple(limits.items())


_UNIFIED_KEY = LazyPattern(r"[a-z][a-z0-9_]*\.[a-z0-9_.]+")
#: files the lifecycle owns: membership, the tree below, freezing and killing
_UNIFIED_OWNED = frozenset({"cgroup.procs", "cgroup.threads", "cgroup.subtree_control",
                            "cgroup.freeze", "cgroup.kill", "cgroup.type"})


def _unified(unified: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """``unified`` (cgroup v2 file -> value), checked: a file name of this cgroup's own
    directory, of a controller the v2 hierarchy has; a value of one line."""
    v2 = next((h for h in cgroup_layout().hierarchies if h.version == 2), None)
    out = []
    for key, value in unified.items():
        where = f"unified[{key[:80]!r}]"
        if not _UNIFIED_KEY.fullmatch(key) or key in _UNIFIED_OWNED:
            raise _refuse(where, "not a cgroup v2 file a container's limits may set")
        controller = key.partition(".")[0]
        if v2 is None or (controller != "cgroup" and controller not in v2.controllers):
            raise _refuse(where, f"the {controller} controller is not on this host's cgroup "
                          "v2 hierarchy")
        if "\0" in value or "\n" in value.rstrip("\n") or len(value) > 4096:
            raise _refuse(where, "the value must be one line (at most 4096 bytes)")
        out.append((key, value))
    return tuple(out)


def convert_resources(res: Resources | None) -> CgroupSettings:
    """``linux.resources`` as :class:`CgroupSettings` (see the module doc)."""
    if res is None:
        return CgroupSettings()
    create: dict[str, Any] = {}
    if res.memory is not None:
        _memory(res.memory, create)
    period, cpus = _cpu(res.cpu, create) if res.cpu is not None else (None, None)
    if res.pids is not None and res.pids.limit != 0:
        create["pids_max"] = "max" if res.pids.limit < 0 else res.pids.limit
    classid = prio = None
    if res.network is not None:
        classid = res.network.class_id
        if res.network.priorities:
            prio = {p.name: p.priority for p in res.network.priorities}
    return CgroupSettings(
        create=create, cpu_period=period, cpu_max=cpus,
        devices=_devices(res.devices or ()),
        hugetlb=tuple((h.page_size, h.limit) for h in res.hugepage_limits or ()),
        io_limits=_block_io(res.block_io) if res.block_io is not None else (),
        net_cls_classid=classid, net_prio=prio, unified=_unified(res.unified or {}))
