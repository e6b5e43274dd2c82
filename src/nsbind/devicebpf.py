"""Device access rules for cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices.allow file: the kernel asks an eBPF program attached to
the cgroup (Linux 4.15) for every open and mknod of a device node.  This module
turns allow rules in the v1 syntax (``"c 1:3 rwm"``, ``"b 8:* r"``, ``"a"``) into
such a program - a deny-by-default list, the way runc's devicefilter does - loads
it with bpf(2) and attaches it to a cgroup directory fd.  Needs CAP_SYS_ADMIN (or
CAP_BPF) and CONFIG_CGROUP_BPF.  The program also acts on a hybrid host: it
judges the members of the v2 cgroup, whatever the v1 devices hierarchy says.
"""

from __future__ import annotations

import struct

from nsbind._native import ffi, lib
from nsbind._sys.fd import OwnedFd
from nsbind.errors import InvalidValue, check, raise_errno
from nsbind.frozen import frozen

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DeviceRule", "attach", "detach", "load", "parse_rule", "program"]

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }:
# access_type = (access << 16) | type (ABI values of linux/bpf.h)
_TYPE = {"b": 1, "c": 2}                 # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}       # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_BPF_F_ALLOW_MULTI = 2


@frozen
class DeviceRule:
    """One allow rule: type ``a``/``b``/``c``, major and minor (None: any), access."""

    kind: str
    major: int | None
    minor: int | None
    access: str

    def __str__(self) -> str:
        def num(n: int | None) -> str:
            return "*" if n is None else str(n)

        return f"{self.kind} {num(self.major)}:{num(self.minor)} {self.access}"


def parse_rule(text: str) -> DeviceRule:
    """``"c 1:3 rwm"``, ``"b 8:* r"``, ``"c *:* m"`` or ``"a"`` (everything)."""
    fields = text.split()
    if fields == ["a"] or (fields[:1] == ["a"] and fields[1:2] in (["*:*"], [])):
        return DeviceRule("a", None, None, fields[2] if len(fields) > 2 else "rwm")
    try:
        kind, numbers, access = fields
        major_s, minor_s = numbers.split(":")
        major = None if major_s == "*" else int(major_s)
        minor = None if minor_s == "*" else int(minor_s)
    except ValueError:
        raise InvalidValue(f"device rule {text!r}: expected 'TYPE MAJOR:MINOR ACCESS' "
                           "(e.g. 'c 1:3 rwm')") from None
    if kind not in ("a", "b", "c") or not access or set(access) - set(_ACCESS):
        raise InvalidValue(f"device rule {text!r}: type is a, b or c; access is of r, w, m")
    return DeviceRule(kind, major, minor, access)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


_LDX_W, _AND_K, _RSH_K, _MOV_X, _MOV_K = 0x61, 0x57, 0x77, 0xBF, 0xB7
_JNE_K, _JNE_X, _EXIT = 0x55, 0x5D, 0x95


def program(rules: Sequence[DeviceRule]) -> bytes:
    """The program's instructions: allow what a rule allows, deny everything else."""
    out = [_insn(_LDX_W, 2, 1, 0), _insn(_AND_K, 2, imm=0xFFFF),   # r2 = type
           _insn(_LDX_W, 3, 1, 0), _insn(_RSH_K, 3, imm=16),       # r3 = access
           _insn(_LDX_W, 4, 1, 4),                                 # r4 = major
           _insn(_LDX_W, 5, 1, 8)]                                 # r5 = minor
    for rule in rules:
        # each test jumps past the block when it does not match ("next" = -1 here)
        block: list[tuple[int, int, int, int, int]] = []
        if rule.kind != "a":
            block.append((_JNE_K, 2, 0, -1, _TYPE[rule.kind]))
        mask = sum(_ACCESS[a] for a in set(rule.access))
        if mask != 7:  # the request must be a subset of the allowed access
            block += [(_MOV_X, 1, 3, 0, 0), (_AND_K, 1, 0, 0, mask), (_JNE_X, 1, 3, -1, 0)]
        if rule.major is not None:
            block.append((_JNE_K, 4, 0, -1, rule.major))
        if rule.minor is not None:
            block.append((_JNE_K, 5, 0, -1, rule.minor))
        block += [(_MOV_K, 0, 0, 0, 1), (_EXIT, 0, 0, 0, 0)]
        for i, (code, dst, src, off, imm) in enumerate(block):
            out.append(_insn(code, dst, src, len(block) - i - 1 if off == -1 else off, imm))
        if len(block) == 2:  # allows everything: what follows could never run (and
            return b"".join(out)  # the verifier refuses unreachable instructions)
    out += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(out)


class DeviceProgram(OwnedFd):
    """A loaded device program (its fd); closing it does not detach it."""


def load(rules: Sequence[DeviceRule | str]) -> DeviceProgram:
    """Load the program for ``rules``; the verifier's log is in the error's detail."""
    parsed = [r if isinstance(r, DeviceRule) else parse_rule(r) for r in rules]
    code = program(parsed)
    buf = ffi.from_buffer(code)
    fd = lib.nsb_bpf_load_cgroup_device(buf, len(code) // 8, ffi.NULL, 0)
    if fd < 0:
        err = ffi.errno
        log = ffi.new("char[]", 65536)
        lib.nsb_bpf_load_cgroup_device(buf, len(code) // 8, log, 65536)
        raw = ffi.string(log)
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        detail = text.strip()[-500:] or None
        what = f"load a cgroup device program for {', '.join(map(str, parsed)) or 'no rule'}"
        raise_errno(err, "bpf", None, what=what, detail=detail)
    return DeviceProgram(fd)


def attach(prog: DeviceProgram, cgroup_fd: int, cgroup: str) -> None:
    """Attach to a cgroup v2 directory (BPF_F_ALLOW_MULTI: ancestors' programs still run)."""
    check(lib.nsb_bpf_attach_cgroup_device(prog.fileno(), cgroup_fd, _BPF_F_ALLOW_MULTI),
          "bpf", cgroup, what=f"attach a device program to {cgroup}")


def detach(prog: OwnedFd, cgroup_fd: int, cgroup: str) -> None:
    check(lib.nsb_bpf_detach_cgroup_device(prog.fileno(), cgroup_fd),
          "bpf", cgroup, what=f"detach a device program from {cgroup}")
