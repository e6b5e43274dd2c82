"""``nsbind stats`` and ``nsbind top``: a container's cgroup read as ``docker stats``
shows it, and its processes listed as ``docker top`` does.

Rules (Docker's):

- Memory usage is the cgroup's usage minus its inactive page cache (``inactive_file``
  on v2, ``total_inactive_file`` on v1); the limit is the cgroup's memory limit, or the
  host's MemTotal when it has none or a larger one.
- CPU % is CPU time used over wall time elapsed between two samples, times 100: one
  busy CPU is 100 %, so it ranges up to 100 x the number of CPUs.
- Sizes: memory in binary units with 4 significant digits (``1.5MiB / 7.775GiB``),
  block I/O in decimal units with 3 (``12.3MB / 0B``); an unknown value is ``--``.
- ``top`` runs procps ``ps`` (no shell) and keeps only the container's pids; without
  ``ps`` it reads /proc itself, in ``ps -ef``'s columns.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nsbind.engine.errors import EngineError
from nsbind.frozen import frozen

if TYPE_CHECKING:
    from nsbind.cgrouplayout import CgroupLayout

__all__ = ["TOP_COLUMNS", "Sample", "cpu_percent", "format_table", "human_size",
           "human_size_decimal", "sample", "top"]

#: what ``top`` asks ps for by default: ``ps -ef``'s columns, the command not cut
TOP_COLUMNS = ("-ww", "-o", "user=UID", "-o", "pid,ppid,c,stime", "-o", "tty=TTY", "-o", "time,cmd")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_PS_TIMEOUT = 30.0
_CONTROLS = {c: " " for c in [*range(32), 127]}  # NUL between arguments, and no row breaks


@frozen
class Sample:
    """One reading of a container's cgroup; ``time`` is ``time.monotonic()`` when it was
    taken, a field is None where the host lacks the controller."""

    name: str
    cpu_usage_us: int | None
    memory_usage: int | None
    memory_limit: int | None
    pids: int | None
    io_read: int
    io_write: int
    time: float


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _memory_limit(layout: CgroupLayout, path: str) -> int | None:
    """The memory limit of the cgroup at ``path`` (memory.max / memory.limit_in_bytes),
    None if it has none or the host no memory controller."""
    from nsbind.cgrouplayout import cgroup_path_parts, open_in_hierarchy

    h = layout.controllers.get("memory")
    if h is None:
        return None
    found = open_in_hierarchy(h, cgroup_path_parts(path, allow_root=False))
    if found is None:
        return None
    parent, leaf = found
    try:
        text = leaf.read("memory.max" if h.version == 2 else "memory.limit_in_bytes").strip()
    except FileNotFoundError:
        return None
    finally:
        leaf.close()
        parent.close()
    return None if text == "max" else int(text)


def sample(name: str, cgroup_path: str) -> Sample:
    """Read the cgroup at ``cgroup_path`` (a path inside the hierarchies, as
    :class:`nsbind.cgroups.Cgroup` takes it) for the container called ``name``."""
    from nsbind.cgroups import Cgroup  # on use: ``nsbind top`` never needs it

    try:
        cg = Cgroup.open(cgroup_path)
    except (FileNotFoundError, ValueError) as exc:
        raise EngineError(f"cannot read the cgroup of {name}: {exc}") from None
    try:
        now = time.monotonic()
        st = cg.stats()
        raw_limit = _memory_limit(cg.layout, cg.path)
    finally:
        cg.close()
    usage = st.memory_current
    if usage is not None:
        key = "total_inactive_file" if "total_inactive_file" in st.memory_stat \
            else "inactive_file"
        inactive = st.memory_stat.get(key, 0)
        if inactive < usage:
            usage -= inactive
    total = _mem_total()
    limit = raw_limit
    if total is not None and (limit is None or limit > total):
        limit = total
    io_read = sum(dev.get("rbytes", 0) for dev in st.io.values())
    io_write = sum(dev.get("wbytes", 0) for dev in st.io.values())
    return Sample(name, st.cpu_usage_us, usage, limit, st.pids_current, io_read, io_write,
                  now)


def cpu_percent(prev: Sample, cur: Sample, ncpus: int) -> float:
    """CPU use between two samples in percent (0 to 100 x ``ncpus``); 0.0 when it
    cannot be told (no CPU controller, no time elapsed)."""
    if prev.cpu_usage_us is None or cur.cpu_usage_us is None:
        return 0.0
    wall_us = (cur.time - prev.time) * 1e6
    used_us = cur.cpu_usage_us - prev.cpu_usage_us
    if wall_us <= 0 or used_us <= 0:
        return 0.0
    return min(used_us / wall_us * 100.0, 100.0 * max(ncpus, 1))


def _g(value: float, digits: int) -> str:
    return f"{value:.{digits}g}"


def human_size(size: float) -> str:
    """Binary units, 4 significant digits, as Docker's ``units.BytesSize``: ``1.5MiB``."""
    i = 0
    while size >= 1024 and i < len(_BINARY) - 1:
        size /= 1024
        i += 1
    return _g(size, 4) + _BINARY[i]


def human_size_decimal(size: float, digits: int = 3) -> str:
    """Decimal units as Docker's ``units.HumanSizeWithPrecision``: ``12.3MB``."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL) - 1:
        size /= 1000
        i += 1
    return _g(size, digits) + _DECIMAL[i]


def _row(s: Sample, cpu: float) -> list[str]:
    usage = "--" if s.memory_usage is None else human_size(s.memory_usage)
    limit = "--" if s.memory_limit is None else human_size(s.memory_limit)
    if s.memory_usage is not None and s.memory_limit:
        mem_pct = f"{s.memory_usage / s.memory_limit * 100:.2f}%"
    else:
        mem_pct = "--"
    cpu_text = "--" if s.cpu_usage_us is None else f"{cpu:.2f}%"
    return [s.name, cpu_text, f"{usage} / {limit}", mem_pct,
            f"{human_size_decimal(s.io_read)} / {human_size_decimal(s.io_write)}",
            "--" if s.pids is None else str(s.pids)]


def _table(rows: Sequence[Sequence[str]]) -> str:
    """Columns as Go's tabwriter lays out Docker's tables (min width 10, padding 3)."""
    widths = [max(10, *(len(r[i]) + 3 for r in rows)) for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1] + "\n"
                   for r in rows)


def format_table(rows: Sequence[tuple[Sample, float]]) -> str:
    """``docker stats``' table: CONTAINER, CPU %, MEM USAGE / LIMIT, MEM %, BLOCK I/O,
    PIDS; one row per (sample, CPU %)."""
    header = ["CONTAINER", "CPU %", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O", "PIDS"]
    return _table([header, *(_row(s, cpu) for s, cpu in rows)])


# ---------------------------------------------------------------- top


def top(pids: Sequence[int], ps_args: Sequence[str] = ()) -> str:
    """The container's processes (``pids``, host pids) as ``docker top`` lists them:
    ``ps`` with ``ps -ef``'s columns for those pids, or ``ps <ps_args>`` filtered to
    the rows whose PID is one of them (EngineError if its output has no PID column)."""
    wanted = sorted({int(p) for p in pids})
    if any(p <= 0 for p in wanted):
        raise ValueError(f"pids must be positive, not {list(pids)}")
    import shutil  # on use, as subprocess: stats alone needs neither

    ps = shutil.which("ps")
    if ps is None:
        return _top_from_proc(wanted)
    if not ps_args:
        if not wanted:  # ps -p needs one pid at least: print the header alone
            return _run_ps(ps, [*TOP_COLUMNS, "-p", "1"]).splitlines(keepends=True)[0]
        return _run_ps(ps, [*TOP_COLUMNS, "-p", ",".join(map(str, wanted))])
    out = _run_ps(ps, list(ps_args)).splitlines(keepends=True)
    if not out:
        raise EngineError(f"ps {' '.join(ps_args)} printed nothing")
    header = out[0].split()
    if "PID" not in header:
        raise EngineError(f"could not find the PID field in the output of "
                          f"ps {' '.join(ps_args)}")
    col, keep = header.index("PID"), set(wanted)
    rows = [line for line in out[1:]
            if len(f := line.split()) > col and f[col].isdigit() and int(f[col]) in keep]
    return "".join([out[0], *rows])


def _run_ps(ps: str, args: list[str]) -> str:
    import subprocess

    # the caller's terminal width would cut the command column
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        res = subprocess.run([ps, *args], stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=_PS_TIMEOUT, check=False, env=env)
    except subprocess.TimeoutExpired:
        raise EngineError(f"ps {' '.join(args)} did not finish in {_PS_TIMEOUT:g}s") from None
    out = res.stdout.decode("utf-8", "replace")
    if res.returncode != 0 and len(out.splitlines()) == 0:
        err = res.stderr.decode("utf-8", "replace").strip()
        raise EngineError(f"ps {' '.join(args)} failed: {err or f'exit {res.returncode}'}")
    return out  # exit 1 with a header: none of the pids is left


def _tty_name(nr: int) -> str:
    major, minor = (nr >> 8) & 0xFFF, (nr & 0xFF) | ((nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    return "?"


def _clock(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{hms}" if days else hms


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return time.time() - time.monotonic()


def _proc_row(pid: int, hz: int, btime: float, now: float) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        uid = os.stat(f"/proc/{pid}").st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None  # gone meanwhile
    comm = raw[raw.index(b"(") + 1:raw.rindex(b")")].decode("utf-8", "replace")
    fields = raw[raw.rindex(b")") + 2:].split()  # fields[0] is stat's 3rd: state
    ppid, tty_nr = int(fields[1]), int(fields[4])
    cpu_s = (int(fields[11]) + int(fields[12])) / hz
    started = btime + int(fields[19]) / hz
    elapsed = max(now - started, 1e-9)
    local = time.localtime(started)
    stime = (time.strftime("%H:%M", local) if local[:3] == time.localtime(now)[:3]
             else time.strftime("%b%d", local))
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    cmd = cmdline.rstrip(b"\0").decode("utf-8", "replace").translate(_CONTROLS) or f"[{comm}]"
    return [user, str(pid), str(ppid), str(min(int(cpu_s * 100 / elapsed), 99)), stime,
            _tty_name(tty_nr), _clock(int(cpu_s)), cmd]


def _top_from_proc(pids: list[int]) -> str:
    """``ps -ef``'s columns read from /proc (a host without procps)."""
    hz = os.sysconf("SC_CLK_TCK")
    btime, now = _boot_time(), time.time()
    rows = [["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]]
    for pid in pids:
        row = _proc_row(pid, hz, btime, now)
        if row is not None:
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    right = {1, 2, 3}  # numbers are right-aligned, as ps does
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=False))]
        lines.append(" ".join([*cells, r[-1]]) + "\n")
    return "".join(lines)
