"""Filter(tree=True) and Filter(tree=False) give every syscall the same verdict.

libseccomp lays a filter out either as a binary tree on the syscall number or as one
check after another.  The programs differ; what they return must not.  A classic BPF
interpreter here (checked against the kernel below) runs both over every syscall
number of each ABI the filter judges (x86-64, i386, x32, and one it does not), and,
where a program looks at the arguments at all, over argument vectors made from the
rules' own values and their edges: for the podman profile, hand-made filters with each
comparison operator on 64-bit values, and generated filters.
"""

from __future__ import annotations

import errno
import itertools
import json
import pathlib
import platform
import random
import re
import signal
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clients
import nsbind.oci
from nsbind import PIPE, SpawnError, spawn
from nsbind.seccomp import Action, ArgCmp, Filter, Op, SeccompError, SeccompUnavailable, library

try:
    library()
except SeccompUnavailable as exc:  # no libseccomp here: nothing below can run
    pytest.skip(str(exc), allow_module_level=True)
if platform.machine() != "x86_64":  # syscall numbers and ABIs below are x86-64's
    pytest.skip("the syscall numbers and ABIs checked are x86-64's", allow_module_level=True)

SECCOMP_JSON = pathlib.Path("/usr/share/containers/seccomp.json")

U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1

# ---------------------------------------------------------------- classic BPF

# linux/bpf_common.h, linux/filter.h
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W, BPF_IMM, BPF_ABS, BPF_MEM, BPF_LEN = 0x00, 0x00, 0x20, 0x60, 0x80
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_LSH, BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR = 0x60, 0x70, 0x80, 0x90, 0xA0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_TAX, BPF_TXA = 0x00, 0x80
BPF_MEMWORDS = 16
BPF_MAXINSNS = 4096
SECCOMP_DATA_SIZE = 64  # struct seccomp_data

LD_ABS = BPF_LD | BPF_W | BPF_ABS
LD_LEN = BPF_LD | BPF_W | BPF_LEN
LD_IMM = BPF_LD | BPF_IMM
LD_MEM = BPF_LD | BPF_MEM
LDX_IMM = BPF_LDX | BPF_IMM
LDX_MEM = BPF_LDX | BPF_MEM
LDX_LEN = BPF_LDX | BPF_W | BPF_LEN
RET_K = BPF_RET | BPF_K
RET_A = BPF_RET | BPF_A
TAX = BPF_MISC | BPF_TAX
TXA = BPF_MISC | BPF_TXA
JA = BPF_JMP | BPF_JA
#: the ALU operations seccomp takes: not BPF_MOD, which bpf_check_classic knows but
#: seccomp_check_filter does not list (Linux 6.18 refuses it with EINVAL, see below)
ALU_OPS = (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH)
COND_JUMPS = frozenset(BPF_JMP | op | src for op in (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET)
                       for src in (BPF_K, BPF_X))
#: what seccomp_check_filter lets through (after bpf_check_classic): nothing else
SECCOMP_OPCODES = frozenset({
    LD_ABS, LD_LEN, LD_IMM, LD_MEM, LDX_IMM, LDX_MEM, LDX_LEN, BPF_ST, BPF_STX,
    RET_K, RET_A, TAX, TXA, JA, BPF_ALU | BPF_NEG, *COND_JUMPS,
    *(BPF_ALU | op | src for op in ALU_OPS for src in (BPF_K, BPF_X))})

# seccomp(2)'s return values (linux/seccomp.h) and arches (linux/audit.h)
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_THREAD = 0x00000000
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000
NR_MKDIR, NR_GETPID, NR_PERSONALITY, NR_MKDIRAT = 83, 39, 135, 258  # x86-64


class BpfError(ValueError):
    """A program the kernel's seccomp(2) refuses with EINVAL."""


class Insn(NamedTuple):
    """One ``struct sock_filter``."""

    code: int
    jt: int
    jf: int
    k: int


def insn(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    """One instruction as the kernel reads it (native endian)."""
    return struct.pack("=HBBI", code, jt, jf, k & U32)


def check_program(prog: Sequence[Insn]) -> None:
    """What bpf_check_classic and seccomp_check_filter refuse at load, refused here:
    the length, opcodes seccomp does not take, constant division by zero and shifts past
    31, scratch words past 15, jumps out of the program, absolute loads outside
    struct seccomp_data or not 4-byte aligned, a last instruction other than a return,
    and a load from a scratch word some path has not stored."""
    n = len(prog)
    if not 0 < n <= BPF_MAXINSNS:
        raise BpfError(f"a program is 1..{BPF_MAXINSNS} instructions, not {n}")
    for pc, (code, jt, jf, k) in enumerate(prog):
        if code not in SECCOMP_OPCODES:
            raise BpfError(f"instruction {pc}: opcode {code:#06x} is not one seccomp takes")
        if code in (BPF_ALU | BPF_DIV | BPF_K, BPF_ALU | BPF_MOD | BPF_K) and k == 0:
            raise BpfError(f"instruction {pc}: division by constant zero")
        if code in (BPF_ALU | BPF_LSH | BPF_K, BPF_ALU | BPF_RSH | BPF_K) and k >= 32:
            raise BpfError(f"instruction {pc}: shift by {k}")
        if code in (LD_MEM, LDX_MEM, BPF_ST, BPF_STX) and k >= BPF_MEMWORDS:
            raise BpfError(f"instruction {pc}: scratch word {k}")
        if code == JA and k >= n - pc - 1:
            raise BpfError(f"instruction {pc}: jump by {k} leaves the program")
        if code in COND_JUMPS and max(jt, jf) + pc + 1 >= n:
            raise BpfError(f"instruction {pc}: jump by {max(jt, jf)} leaves the program")
        if code == LD_ABS and (k >= SECCOMP_DATA_SIZE or k & 3):
            raise BpfError(f"instruction {pc}: load at offset {k} of seccomp_data")
    if prog[-1].code not in (RET_K, RET_A):
        raise BpfError("the last instruction is no return")
    # check_load_and_stores: a word valid on every path into an instruction
    masks = [0xFFFF] * n
    valid = 0
    for pc, (code, jt, jf, k) in enumerate(prog):
        valid &= masks[pc]
        if code in (BPF_ST, BPF_STX):
            valid |= 1 << k
        elif code in (LD_MEM, LDX_MEM):
            if not valid & (1 << k):
                raise BpfError(f"instruction {pc}: scratch word {k} read before it is set")
        elif code == JA:
            masks[pc + 1 + k] &= valid
            valid = 0xFFFF
        elif code in COND_JUMPS:
            masks[pc + 1 + jt] &= valid
            masks[pc + 1 + jf] &= valid
            valid = 0xFFFF


def decode(bpf: bytes) -> tuple[Insn, ...]:
    """``struct sock_filter[]`` bytes as instructions, checked as seccomp(2) does."""
    if len(bpf) % 8:
        raise BpfError(f"{len(bpf)} bytes are no whole number of instructions")
    prog = tuple(Insn(*fields) for fields in struct.iter_unpack("=HBBI", bpf))
    check_program(prog)
    return prog


def seccomp_data(nr: int, arch: int, args: Sequence[int] = (0,) * 6, ip: int = 0) -> bytes:
    """``struct seccomp_data`` (int nr; u32 arch; u64 instruction_pointer; u64 args[6]),
    little-endian as on x86-64."""
    return struct.pack("<iIQ6Q", nr, arch, ip, *args)


def execute(prog: Sequence[Insn], data: bytes) -> tuple[int, int]:
    """Run a checked program over ``data`` (64 bytes): its 32-bit return value, and the
    32-bit words of ``data`` it loaded (bit i: bytes 4i..4i+3).  A and X start at 0;
    arithmetic is on u32; division by X == 0 ends the program returning 0 (as the
    kernel's cBPF); shifts by X use X's low five bits (x86-64's JIT and interpreter)."""
    words = struct.unpack("<16I", data)
    mem = [0] * BPF_MEMWORDS
    a = x = pc = seen = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == LD_ABS:
            a = words[k >> 2]
            seen |= 1 << (k >> 2)
        elif code == BPF_JMP | BPF_JEQ | BPF_K:
            pc += jt if a == k else jf
        elif code == BPF_JMP | BPF_JGT | BPF_K:
            pc += jt if a > k else jf
        elif code == BPF_JMP | BPF_JGE | BPF_K:
            pc += jt if a >= k else jf
        elif code == BPF_JMP | BPF_JSET | BPF_K:
            pc += jt if a & k else jf
        elif code == RET_K:
            return k, seen
        elif code == RET_A:
            return a, seen
        elif code == JA:
            pc += k
        elif code == BPF_ALU | BPF_AND | BPF_K:
            a &= k
        elif code == LD_MEM:
            a = mem[k]
        elif code == BPF_ST:
            mem[k] = a
        elif code in COND_JUMPS:  # the X forms
            op = code & 0xF0
            taken = (a == x if op == BPF_JEQ else a > x if op == BPF_JGT
                     else a >= x if op == BPF_JGE else a & x != 0)
            pc += jt if taken else jf
        elif code & 0x07 == BPF_ALU:
            op = code & 0xF0
            if op == BPF_NEG:
                a = -a & U32
                continue
            src = x if code & BPF_X else k
            if op == BPF_ADD:
                a = (a + src) & U32
            elif op == BPF_SUB:
                a = (a - src) & U32
            elif op == BPF_MUL:
                a = (a * src) & U32
            elif op in (BPF_DIV, BPF_MOD):
                if src == 0:
                    return 0, seen
                a = a // src if op == BPF_DIV else a % src
            elif op == BPF_AND:
                a &= src
            elif op == BPF_OR:
                a |= src
            elif op == BPF_XOR:
                a ^= src
            elif op == BPF_LSH:
                a = (a << (src & 31)) & U32
            elif op == BPF_RSH:
                a >>= src & 31
            else:
                raise BpfError(f"instruction {pc - 1}: unknown ALU opcode {code:#06x}")
        elif code == LD_IMM:
            a = k
        elif code == LDX_IMM:
            x = k
        elif code == LDX_MEM:
            x = mem[k]
        elif code == BPF_STX:
            mem[k] = x
        elif code == LD_LEN:
            a = SECCOMP_DATA_SIZE
        elif code == LDX_LEN:
            x = SECCOMP_DATA_SIZE
        elif code == TAX:
            x = a
        elif code == TXA:
            a = x
        else:
            raise BpfError(f"instruction {pc - 1}: unknown opcode {code:#06x}")


def run(prog: Sequence[Insn], data: bytes) -> int:
    """The program's return value for ``data``."""
    return execute(prog, data)[0]


# ---------------------------------------------------------------- the interpreter


def _prog(*insns: bytes) -> tuple[Insn, ...]:
    return decode(b"".join(insns))


@pytest.mark.unprivileged
def test_interpreter_alu_jumps_and_scratch_words() -> None:
    data = seccomp_data(7, AUDIT_ARCH_X86_64, (0xFFFFFFFF00000010, 3, 0, 0, 0, 0))
    cases: list[tuple[list[bytes], int]] = [
        ([insn(LD_ABS, 0), insn(RET_A)], 7),
        ([insn(LD_ABS, 4), insn(RET_A)], AUDIT_ARCH_X86_64),
        ([insn(LD_ABS, 16), insn(RET_A)], 0x10),
        ([insn(LD_ABS, 20), insn(RET_A)], 0xFFFFFFFF),
        ([insn(LD_LEN), insn(RET_A)], 64),
        ([insn(LDX_LEN), insn(TXA), insn(RET_A)], 64),
        ([insn(LD_IMM, 5), insn(BPF_ALU | BPF_SUB | BPF_K, 6), insn(RET_A)], U32),
        ([insn(LD_IMM, 0x80000000), insn(BPF_ALU | BPF_MUL | BPF_K, 2), insn(RET_A)], 0),
        ([insn(LD_IMM, 1), insn(BPF_ALU | BPF_NEG), insn(RET_A)], U32),
        ([insn(LD_IMM, 1), insn(BPF_ALU | BPF_LSH | BPF_K, 31), insn(RET_A)], 1 << 31),
        ([insn(LD_IMM, 100), insn(BPF_ALU | BPF_DIV | BPF_K, 7), insn(RET_A)], 14),
        ([insn(LD_IMM, 0xF0), insn(BPF_ALU | BPF_XOR | BPF_K, 0xFF), insn(RET_A)], 0x0F),
        ([insn(LD_IMM, 0xF0), insn(BPF_ALU | BPF_OR | BPF_K, 0x0F), insn(RET_A)], 0xFF),
        ([insn(LD_IMM, 0xF0), insn(BPF_ALU | BPF_RSH | BPF_K, 4), insn(RET_A)], 0x0F),
        # X forms; a division by X == 0 returns 0
        ([insn(LDX_IMM, 3), insn(LD_IMM, 10), insn(BPF_ALU | BPF_DIV | BPF_X), insn(RET_A)],
         3),
        ([insn(LDX_IMM, 0), insn(LD_IMM, 10), insn(BPF_ALU | BPF_DIV | BPF_X),
          insn(RET_K, 9)], 0),
        ([insn(LDX_IMM, 33), insn(LD_IMM, 1), insn(BPF_ALU | BPF_LSH | BPF_X), insn(RET_A)],
         2),
        # scratch words, TAX/TXA
        ([insn(LD_IMM, 4), insn(BPF_ST, 15), insn(LD_IMM, 0), insn(LDX_MEM, 15),
          insn(TXA), insn(BPF_ALU | BPF_ADD | BPF_X), insn(RET_A)], 8),
        ([insn(LDX_IMM, 6), insn(BPF_STX, 0), insn(LD_MEM, 0), insn(TAX), insn(TXA),
          insn(RET_A)], 6),
        # jumps: K and X, taken and not
        ([insn(LD_ABS, 0), insn(BPF_JMP | BPF_JEQ | BPF_K, 7, 1, 0), insn(RET_K, 1),
          insn(RET_K, 2)], 2),
        ([insn(LD_ABS, 0), insn(BPF_JMP | BPF_JGT | BPF_K, 7, 1, 0), insn(RET_K, 1),
          insn(RET_K, 2)], 1),
        ([insn(LD_ABS, 0), insn(BPF_JMP | BPF_JGE | BPF_K, 7, 1, 0), insn(RET_K, 1),
          insn(RET_K, 2)], 2),
        ([insn(LD_ABS, 0), insn(BPF_JMP | BPF_JSET | BPF_K, 8, 1, 0), insn(RET_K, 1),
          insn(RET_K, 2)], 1),
        ([insn(LDX_IMM, 7), insn(LD_ABS, 0), insn(BPF_JMP | BPF_JEQ | BPF_X, 0, 1, 0),
          insn(RET_K, 1), insn(RET_K, 2)], 2),
        ([insn(LDX_IMM, 6), insn(LD_ABS, 0), insn(BPF_JMP | BPF_JGT | BPF_X, 0, 1, 0),
          insn(RET_K, 1), insn(RET_K, 2)], 2),
        ([insn(LDX_IMM, 8), insn(LD_ABS, 0), insn(BPF_JMP | BPF_JGE | BPF_X, 0, 1, 0),
          insn(RET_K, 1), insn(RET_K, 2)], 1),
        ([insn(LDX_IMM, 8), insn(LD_ABS, 0), insn(BPF_JMP | BPF_JSET | BPF_X, 0, 1, 0),
          insn(RET_K, 1), insn(RET_K, 2)], 1),
        ([insn(JA, 1), insn(RET_K, 1), insn(RET_K, 2)], 2),
    ]
    for insns, want in cases:
        assert run(_prog(*insns), data) == want, insns
    # BPF_MOD: classic BPF's, run if handed unchecked (seccomp refuses it at load)
    mod_k = (Insn(LD_IMM, 0, 0, 100), Insn(BPF_ALU | BPF_MOD | BPF_K, 0, 0, 7),
             Insn(RET_A, 0, 0, 0))
    assert run(mod_k, data) == 2
    mod_x = (Insn(LDX_IMM, 0, 0, 0), Insn(BPF_ALU | BPF_MOD | BPF_X, 0, 0, 0),
             Insn(RET_K, 0, 0, 9))
    assert run(mod_x, data) == 0


@pytest.mark.unprivileged
def test_interpreter_records_the_words_it_loads() -> None:
    prog = _prog(insn(LD_ABS, 0), insn(LD_ABS, 28), insn(RET_A))
    assert execute(prog, seccomp_data(1, AUDIT_ARCH_X86_64))[1] == (1 << 0) | (1 << 7)


@pytest.mark.unprivileged
@pytest.mark.parametrize(("insns", "message"), [
    ([], "1..4096 instructions"),
    ([insn(RET_K, 0)] * (BPF_MAXINSNS + 1), "1..4096 instructions"),
    ([insn(BPF_LD | 0x08 | BPF_ABS, 0), insn(RET_A)], "opcode 0x0028"),  # LD H ABS
    ([insn(BPF_LD | BPF_W | 0x40, 0), insn(RET_A)], "opcode 0x0040"),  # LD W IND
    ([insn(BPF_ALU | BPF_NEG | BPF_X), insn(RET_A)], "opcode 0x008c"),
    ([insn(BPF_RET | BPF_X), insn(RET_A)], "opcode 0x000e"),
    ([insn(0xFFFF), insn(RET_A)], "opcode 0xffff"),
    ([insn(LD_ABS, 2), insn(RET_A)], "offset 2"),
    ([insn(LD_ABS, 64), insn(RET_A)], "offset 64"),
    ([insn(BPF_ALU | BPF_DIV | BPF_K, 0), insn(RET_A)], "constant zero"),
    ([insn(BPF_ALU | BPF_MOD | BPF_K, 3), insn(RET_A)], "opcode 0x0094"),
    ([insn(BPF_ALU | BPF_MOD | BPF_X), insn(RET_A)], "opcode 0x009c"),
    ([insn(BPF_ALU | BPF_LSH | BPF_K, 32), insn(RET_A)], "shift by 32"),
    ([insn(BPF_ST, 16), insn(RET_A)], "scratch word 16"),
    ([insn(JA, 1), insn(RET_A)], "leaves the program"),
    ([insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), insn(RET_A)], "leaves the program"),
    ([insn(BPF_JMP | BPF_JSET | BPF_X, 0, 2, 0), insn(RET_A), insn(RET_A)],
     "leaves the program"),
    ([insn(RET_A), insn(LD_IMM, 1)], "no return"),
    ([insn(LD_MEM, 3), insn(RET_A)], "scratch word 3 read before"),
    # stored on one path only
    ([insn(LD_ABS, 0), insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1), insn(BPF_ST, 1),
      insn(LDX_MEM, 1), insn(RET_A)], "scratch word 1 read before"),
], ids=["empty", "too-long", "ld-h-abs", "ld-ind", "neg-x", "ret-x", "unknown",
        "unaligned", "past-data", "div-0", "mod-k", "mod-x", "lsh-32", "mem-16", "ja-out", "jt-out",
        "jf-out", "last-not-ret", "mem-unset", "mem-one-path"])
def test_interpreter_refuses_what_seccomp_refuses(insns: list[bytes], message: str) -> None:
    with pytest.raises(BpfError, match=message):
        decode(b"".join(insns))


@pytest.mark.unprivileged
def test_interpreter_refuses_an_unknown_opcode_it_is_handed_unchecked() -> None:
    with pytest.raises(BpfError, match="unknown opcode 0x0028"):
        execute((Insn(0x28, 0, 0, 0), Insn(RET_A, 0, 0, 0)), seccomp_data(0, 0))
    with pytest.raises(BpfError, match="no whole number"):
        decode(b"\0" * 12)


# ---------------------------------------------------------------- tree against linear


class _LinearFilter(Filter):
    """A Filter that always asks for the linear layout: from_oci builds through it."""

    def __init__(self, default_action: Any, **kwargs: Any) -> None:
        super().__init__(default_action, **{**kwargs, "tree": False})


#: every x86-64 syscall number (under 470 today), the x32 ones (512..547), and more
NR_TOP = 640
#: numbers no table has, at the edges of the int and of the x32 bit
ODD_NRS = (-1, -2, -10240, -(1 << 31), (1 << 31) - 1, X32_SYSCALL_BIT - 1, 0x3FFFFFFF,
           0x7FFFFFFE)
#: (what, audit arch, the numbers checked)
ABIS: tuple[tuple[str, int, Sequence[int]], ...] = (
    ("x86_64", AUDIT_ARCH_X86_64, (*range(NR_TOP), *ODD_NRS)),
    ("x32", AUDIT_ARCH_X86_64, (*(X32_SYSCALL_BIT | n for n in range(NR_TOP)),
                                X32_SYSCALL_BIT | 0x3FFFFFFF, -(1 << 31) | X32_SYSCALL_BIT)),
    ("i386", AUDIT_ARCH_I386, (*range(NR_TOP), *ODD_NRS)),
    ("aarch64", AUDIT_ARCH_AARCH64, (*range(NR_TOP), *ODD_NRS)),
)
ARG_WORDS = ~0b11 & 0xFFFF  # words 2..15 of seccomp_data: instruction_pointer and args


def _edges(v: int) -> set[int]:
    """``v``, one either side, the same low word under other high words and the same
    high word over other low words."""
    hi, lo = v >> 32, v & U32
    out = {v, lo, hi << 32, (hi << 32) | U32, (U32 << 32) | lo, v ^ (1 << 63)}
    for d in (1, -1, 1 << 32, -(1 << 32)):
        out.add((v + d) & U64)
    return out


def _cmp_values(op: Op, a: int, b: int) -> set[int]:
    """Values that land on either side of the comparison and on its edges (for
    MASKED_EQ also the wanted bits with others set, and one bit of the mask flipped:
    the lowest and highest of each word)."""
    out = _edges(a)
    if op == Op.MASKED_EQ:  # arg & a == b
        out |= _edges(b) | {b | (~a & U64), a, b ^ a}
        for word in (a & U32, a & (U32 << 32)):
            if word:
                out |= {b ^ (word & -word), b ^ (1 << (word.bit_length() - 1))}
    return out


def _satisfying(op: Op, a: int, b: int) -> int:
    """A value the comparison holds for (its datum when none does)."""
    return {Op.NE: a ^ 1, Op.LT: (a - 1) & U64, Op.LE: a, Op.EQ: a, Op.GE: a,
            Op.GT: (a + 1) & U64, Op.MASKED_EQ: b & a}[op]


def _vector(values: dict[int, int]) -> tuple[int, ...]:
    return tuple(values.get(j, 0) for j in range(6))


def arg_vectors(f: Filter, seed: int = 0, mixes: int = 256) -> list[tuple[int, ...]]:
    """Argument vectors for ``f``'s comparisons: each interesting value of an argument
    alone; each rule satisfied, then one and two of its arguments at a time moved
    through their comparisons' values; every rule of a syscall satisfied together and
    two at a time; and ``mixes`` random mixes of all the values."""
    per_index: list[set[int]] = [{0, 1, U32, U64, 1 << 32} for _ in range(6)]
    rules = [r for r in f.rules if r.cmps]
    for rule in rules:
        for i, op, a, b in rule.cmps:
            per_index[i] |= _cmp_values(op, a, b)
    out: set[tuple[int, ...]] = {(0,) * 6, (U64,) * 6}
    for i, vs in enumerate(per_index):
        out.update(_vector({i: v}) for v in vs)
    fits: list[tuple[str, dict[int, int]]] = []
    for rule in rules:
        fit: dict[int, int] = {}
        own: dict[int, set[int]] = {}
        for i, op, a, b in rule.cmps:
            fit.setdefault(i, _satisfying(op, a, b))
            own.setdefault(i, set()).update(_cmp_values(op, a, b))
        fits.append((rule.name, fit))
        out.add(_vector(fit))
        for i in own:
            out.update(_vector({**fit, i: v}) for v in own[i])
        for i, j in itertools.combinations(own, 2):
            out.update(_vector({**fit, i: v, j: w})
                       for v, w in itertools.product(own[i], own[j]))
    for name in {n for n, _ in fits}:
        mine = [fit for n, fit in fits if n == name]
        for fit1, fit2 in itertools.combinations(mine, 2):
            out.add(_vector({**fit2, **fit1}))
        every: dict[int, int] = {}
        for fit in reversed(mine):
            every.update(fit)
        out.add(_vector(every))
    rnd = random.Random(seed)
    values = [sorted(v) for v in per_index]
    out.update(tuple(rnd.choice(vs) for vs in values) for _ in range(mixes))
    return sorted(out)


class Sweep(NamedTuple):
    """What a comparison covered: inputs run, (abi, nr) pairs whose verdict looked at the
    arguments, and the distinct verdicts seen."""

    inputs: int
    arg_dependent: list[tuple[str, int]]
    verdicts: set[int]


def _disagreement(what: str, abi: str, nr: int, arch: int, args: Sequence[int],
                  tree: int, linear: int) -> str:
    return (f"{what}: {abi} nr {nr} (arch {arch:#x}) args "
            f"[{', '.join(hex(a) for a in args)}]: tree returns {tree:#010x}, "
            f"linear {linear:#010x}")


def compare_layouts(what: str, tree: Filter, linear: Filter,
                    vectors: Sequence[tuple[int, ...]] | None = None) -> Sweep:
    """Run both programs over every (abi, nr) of ABIS; where either program's verdict
    for zero arguments loaded an argument word, over ``vectors`` too.  (Where neither
    did, the verdict cannot depend on the arguments: a program's path depends only on
    the words it loads.)  Fails listing every input they disagree on."""
    assert tree.tree and not linear.tree
    t_bytes, l_bytes = tree.export(), linear.export()
    t_prog, l_prog = decode(t_bytes), decode(l_bytes)
    if vectors is None:
        vectors = arg_vectors(tree)
    zero = (0,) * 6
    bad: list[str] = []
    dependent: list[tuple[str, int]] = []
    verdicts: set[int] = set()
    inputs = 0
    for abi, arch, nrs in ABIS:
        for nr in nrs:
            data = seccomp_data(nr, arch)
            t, t_seen = execute(t_prog, data)
            lin, l_seen = execute(l_prog, data)
            inputs += 1
            verdicts.add(t)
            if t != lin:
                bad.append(_disagreement(what, abi, nr, arch, zero, t, lin))
            if not (t_seen | l_seen) & ARG_WORDS:
                continue
            dependent.append((abi, nr))
            for args in vectors:
                data = seccomp_data(nr, arch, args)
                t, lin = run(t_prog, data), run(l_prog, data)
                inputs += 1
                verdicts.add(t)
                if t != lin:
                    bad.append(_disagreement(what, abi, nr, arch, args, t, lin))
    assert not bad, f"{len(bad)} disagreements:\n" + "\n".join(bad[:40])
    return Sweep(inputs, dependent, verdicts)


def _pair(build: Callable[[bool], Filter]) -> tuple[Filter, Filter]:
    """``build(tree)`` for each layout."""
    return build(True), build(False)


# ---------------------------------------------------------------- the podman profile


#: the clone rules of Docker's and later containers-common's profiles: clone without
#: namespace flags (CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP), no clone3
CLONE_RULES = [
    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
]


def _spec_caps() -> set[str]:
    return set(nsbind.oci.default_spec_json()["process"]["capabilities"]["bounding"])


def _podman_section(variant: str) -> dict[str, Any]:
    if not SECCOMP_JSON.exists():
        pytest.skip(f"{SECCOMP_JSON} is missing (Debian package golang-github-containers-"
                    "common): no podman seccomp profile")
    profile = json.loads(SECCOMP_JSON.read_text())
    caps = set() if variant == "no-caps" else _spec_caps()
    section = clients.podman_seccomp(profile, caps)
    if variant == "clone-masked":  # clone only by its MASKED_EQ rule
        for rule in section["syscalls"]:
            rule["names"] = [n for n in rule["names"] if n not in ("clone", "clone3")]
        section["syscalls"] += CLONE_RULES
    return section


def _podman_pair(variant: str) -> tuple[Filter, Filter]:
    section = _podman_section(variant)
    return Filter.from_oci(section), _LinearFilter.from_oci(section)


@pytest.mark.unprivileged
@pytest.mark.parametrize("variant", ["spec-caps", "no-caps", "clone-masked"])
def test_podman_profile_same_verdicts_either_layout(variant: str) -> None:
    """The profile for runc's default capabilities (personality's EQ rules), for none
    (socket's EQ and NE rules on two arguments) and with Docker's clone MASKED_EQ."""
    tree, linear = _podman_pair(variant)
    assert tree.architectures and len(tree.rules) > 300
    sweep = compare_layouts(f"podman profile ({variant})", tree, linear)
    # the sweep reached the argument comparisons on each ABI, and more than one verdict
    abis = {abi for abi, _ in sweep.arg_dependent}
    assert {"x86_64", "x32", "i386"} <= abis
    assert (("x86_64", NR_PERSONALITY) in sweep.arg_dependent)
    assert {RET_ALLOW, RET_ERRNO | errno.ENOSYS, RET_ERRNO | errno.EPERM} <= sweep.verdicts
    if variant == "clone-masked":
        assert ("x86_64", 56) in sweep.arg_dependent  # clone
        clone3 = seccomp_data(435, AUDIT_ARCH_X86_64)
        assert run(decode(tree.export()), clone3) == RET_ERRNO | errno.ENOSYS
    if variant == "no-caps":
        assert ("x86_64", 41) in sweep.arg_dependent  # socket


@pytest.mark.unprivileged
def test_podman_profile_tree_is_another_program() -> None:
    """The attribute took: the layouts differ, so the comparison above is not of one
    program with itself (test_podman_tree_program_loads_... loads the tree one)."""
    tree, linear = _podman_pair("spec-caps")
    assert tree.export() != linear.export()
    assert decode(tree.export()) != decode(linear.export())


# ---------------------------------------------------------------- hand-made filters

BIG = 0x8000_0001_0000_0002  # high word set: a 64-bit comparison in two halves


def _each_op(tree: bool, default: Action) -> Filter:
    f = Filter(default, architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32"], tree=tree)
    deny = Action.errno(errno.EACCES)
    f.add_rule(deny, "read", ArgCmp(0, Op.NE, BIG))
    f.add_rule(deny, "write", ArgCmp(1, Op.LT, BIG))
    f.add_rule(deny, "openat", ArgCmp(2, Op.LE, BIG))
    f.add_rule(deny, "close", ArgCmp(0, Op.EQ, BIG))
    f.add_rule(deny, "lseek", ArgCmp(1, Op.GE, BIG))
    f.add_rule(deny, "mmap", ArgCmp(3, Op.GT, BIG))
    f.add_rule(deny, "ioctl", ArgCmp(1, Op.MASKED_EQ, 0xFFFF_0000_0000_FF00, 0x1234_0000_0000_5400))
    # several rules for one syscall: different actions, arguments, and a rule on more
    # than one argument
    f.add_rule(Action.errno(errno.EPERM), "prctl", ArgCmp(0, Op.EQ, 1 << 40))
    f.add_rule(Action.trap(), "prctl", ArgCmp(0, Op.GT, U32), ArgCmp(1, Op.LE, 7))
    f.add_rule(Action.log(), "prctl", ArgCmp(2, Op.MASKED_EQ, 0xF0, 0x10))
    f.add_rule(Action.kill_process(), "prctl", ArgCmp(0, Op.EQ, 0x59616D61))
    f.add_rule(Action.allow(), "kill", ArgCmp(1, Op.EQ, 0), ArgCmp(0, Op.GE, 1 << 32))
    f.add_rule(Action.trace(7), "kill", ArgCmp(1, Op.LT, 64), ArgCmp(0, Op.NE, 1))
    f.add_rule(Action.errno(errno.ENOSYS), "getpid")
    f.add_rule(Action.allow(), "exit_group")
    f.add_rule(Action.kill_thread(), "personality", ArgCmp(0, Op.GE, 0xFFFF_FFFF_0000_0000))
    return f


@pytest.mark.unprivileged
@pytest.mark.parametrize("default", [Action.errno(errno.EROFS), Action.kill_process(),
                                     Action.kill_thread(), Action.allow()],
                         ids=["errno", "kill-process", "kill-thread", "allow"])
def test_each_operator_on_64_bit_values_same_verdicts(default: Action) -> None:
    tree, linear = _pair(lambda t: _each_op(t, default))
    assert tree.export() != linear.export()
    sweep = compare_layouts(f"each operator, default {default!r}", tree, linear)
    assert ("x86_64", 157) in sweep.arg_dependent  # prctl
    assert len(sweep.verdicts) >= 6


@pytest.mark.unprivileged
@pytest.mark.parametrize("default", [Action.allow(), Action.errno(errno.EPERM),
                                     Action.kill_process()],
                         ids=["allow", "errno", "kill-process"])
def test_no_rules_same_verdicts(default: Action) -> None:
    """No rule at all (libseccomp before 2.5.4 lost the default action of such a tree)."""
    tree, linear = _pair(lambda t: Filter(default, architectures=["SCMP_ARCH_X86"], tree=t))
    sweep = compare_layouts(f"no rules, default {default!r}", tree, linear)
    assert sweep.verdicts == {int(default), RET_KILL_THREAD}  # the others: a bad arch


def _one_syscall(tree: bool) -> Filter:
    f = Filter(Action.errno(errno.EPERM), tree=tree)
    for op in Op:
        value = 0x1_0000_0000 * (op + 1) + op
        cmp = (ArgCmp(0, op, U64 << 32 & U64, value & (U64 << 32))
               if op == Op.MASKED_EQ else ArgCmp(0, op, value))
        f.add_rule(Action.errno(op), "personality", cmp)
    f.add_rule(Action.allow(), "personality", ArgCmp(0, Op.EQ, U32), ArgCmp(1, Op.NE, 0))
    return f


@pytest.mark.unprivileged
def test_several_rules_for_one_syscall_same_verdicts() -> None:
    tree, linear = _pair(_one_syscall)
    sweep = compare_layouts("rules for personality", tree, linear)
    assert ("x86_64", NR_PERSONALITY) in sweep.arg_dependent
    assert len(sweep.verdicts) >= 5


# ---------------------------------------------------------------- generated filters

NAMES = ("read", "write", "openat", "close", "mmap", "ioctl", "personality", "socket",
         "clone", "kill", "prctl", "getpid", "mkdir", "mkdirat", "execve", "setns",
         "arch_prctl", "process_vm_readv", "futex", "exit_group")
VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 0xFF, U32 - 1, U32, 1 << 32, (1 << 32) + 1, U64 - 1, U64,
                     1 << 63]),
    st.integers(0, 0xFFFF),
    st.integers(0, U32),
    st.integers(0, U64))
ACTIONS = st.one_of(
    st.sampled_from([Action.allow(), Action.kill_process(), Action.kill_thread(),
                     Action.trap(), Action.log()]),
    st.integers(0, 4094).map(Action.errno),  # libseccomp refuses 4095 (MAX_ERRNO)
    st.integers(0, 0xFFFF).map(Action.trace))
CMPS = st.builds(lambda i, op, a, b: ArgCmp(i, op, a, b & a if op == Op.MASKED_EQ else 0),
                 st.integers(0, 5), st.sampled_from(list(Op)), VALUES, VALUES)


def _libseccomp_completes(rules: Sequence[tuple[Action, str, list[ArgCmp]]]) -> bool:
    """False for rule sets libseccomp 2.5.4's seccomp_rule_add never returns from, with
    either layout: two rules for one syscall that share an ordering comparison
    (NE LT LE GE GT, same argument and value) and differ in another argument, e.g.
    personality with (arg1 > 5, arg0 <= 246) and (arg5 >= 255, arg0 <= 246).  Kept
    out (a few more than needed) so that a generated filter gets compiled at all."""
    seen: dict[tuple[str, ArgCmp], int] = {}
    for n, (_, name, cmps) in enumerate(rules):
        for c in cmps:
            ordering = c.checked()[1] in (Op.NE, Op.LT, Op.LE, Op.GE, Op.GT)
            if ordering and seen.setdefault((name, c), n) != n:
                return False
    return True


RULES = st.lists(st.tuples(ACTIONS, st.sampled_from(NAMES),
                           st.lists(CMPS, max_size=3, unique_by=lambda c: c.index)),
                 min_size=1, max_size=12).filter(_libseccomp_completes)
ARCHES = st.sampled_from([(), ("SCMP_ARCH_X86",), ("SCMP_ARCH_X32",),
                          ("SCMP_ARCH_X86", "SCMP_ARCH_X32")])


def _generated(tree: bool, default: Action, arches: Sequence[str],
               rules: Iterable[tuple[Action, str, list[ArgCmp]]]) -> Filter:
    f = Filter(default, architectures=arches, tree=tree)
    for action, name, cmps in rules:
        f.add_rule(action, name, *cmps)
    return f


@pytest.mark.unprivileged
@settings(max_examples=50, deadline=5000, database=None,  # ms: ~0.3 s an example here
          suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS, ARCHES, RULES)
def test_generated_filters_same_verdicts(
        default: Action, arches: tuple[str, ...],
        rules: list[tuple[Action, str, list[ArgCmp]]]) -> None:
    try:
        tree, linear = _pair(lambda t: _generated(t, default, arches, rules))
        tree.export()
    except SeccompError as exc:  # libseccomp refuses some rule sets (EEXIST: a rule
        # with another action for the same comparisons): then both layouts, alike
        with pytest.raises(SeccompError, match=re.escape(str(exc))):
            _generated(False, default, arches, rules).export()
        return
    what = (f"Filter({default!r}, architectures={list(arches)}) with rules "
            f"{[(a, n, c) for a, n, c in rules]}")
    compare_layouts(what, tree, linear, arg_vectors(tree, seed=len(rules), mixes=64))


# ---------------------------------------------------------------- against the kernel


def _syscall_probe(calls: Sequence[tuple[int, Sequence[int]]]) -> list[str]:
    """A Python child that makes each raw syscall (nr, six arguments) and prints its
    errno, or ``ok``."""
    code = ("import ctypes, json, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.syscall.restype = ctypes.c_long\n"
            "for nr, args in json.loads(sys.argv[1]):\n"
            "    ctypes.set_errno(0)\n"
            "    rc = libc.syscall(ctypes.c_long(nr), *map(ctypes.c_ulong, args))\n"
            "    print(ctypes.get_errno() if rc == -1 else 'ok', flush=True)\n")
    return [sys.executable, "-c", code, json.dumps([[nr, list(a)] for nr, a in calls])]


def _run(args: list[str], seccomp: bytes) -> tuple[str, str, int]:
    with spawn(args, stdout=PIPE, stderr=PIPE, seccomp=seccomp) as proc:
        out, err = proc.communicate(timeout=60)
    assert out is not None and err is not None and proc.returncode is not None
    return out.decode(), err.decode(), proc.returncode


def _expected(verdict: int) -> str:
    """What the probe prints for a verdict (an allowed call here does not fail)."""
    if verdict & 0xFFFF0000 == RET_ERRNO:
        return str(verdict & 0xFFFF)
    assert verdict == RET_ALLOW, hex(verdict)
    return "ok"


def test_interpreter_agrees_with_the_kernel_on_libseccomp_filters(
        tmp_path: pathlib.Path) -> None:
    """mkdir refused with EPERM, getpid allowed, personality by its argument: as the
    interpreter says, so the kernel does, for both layouts."""
    def build(tree: bool) -> Filter:
        f = Filter(Action.allow(), tree=tree)
        for name in ("mkdir", "mkdirat"):
            f.add_rule(Action.errno(errno.EPERM), name)
        f.add_rule(Action.errno(errno.EROFS), "personality", ArgCmp(0, Op.EQ, 0xFFFFFFFF))
        f.add_rule(Action.errno(errno.EXDEV), "personality", ArgCmp(0, Op.GT, 1 << 32))
        return f

    calls = [(NR_GETPID, (0,) * 6), (NR_PERSONALITY, (U32, 0, 0, 0, 0, 0)),
             (NR_PERSONALITY, ((1 << 32) + 1, 0, 0, 0, 0, 0)),
             (NR_PERSONALITY, (1 << 32, 0, 0, 0, 0, 0))]
    for f in _pair(build):
        prog = decode(f.export())
        assert run(prog, seccomp_data(NR_MKDIR, AUDIT_ARCH_X86_64)) == RET_ERRNO | errno.EPERM
        assert run(prog, seccomp_data(NR_MKDIRAT, AUDIT_ARCH_X86_64)) == (
            RET_ERRNO | errno.EPERM)
        assert run(prog, seccomp_data(NR_GETPID, AUDIT_ARCH_X86_64)) == RET_ALLOW
        target = tmp_path / f"made-{f.tree}"
        _, err, code = _run(["/bin/mkdir", str(target)], f.export())
        assert code == 1 and "Operation not permitted" in err and not target.exists()
        _, _, code = _run(["/bin/true"], f.export())
        assert code == 0
        want = [_expected(run(prog, seccomp_data(nr, AUDIT_ARCH_X86_64, a)))
                for nr, a in calls]
        assert want == ["ok", str(errno.EROFS), str(errno.EXDEV), "ok"]
        out, err, code = _run(_syscall_probe(calls), f.export())
        assert (out.split(), code) == (want, 0), err


MAGIC_NR = 1000  # no syscall: the program below computes its errno from the arguments


def _alu_program() -> tuple[bytes, int]:
    """A program that lets every syscall but MAGIC_NR through and fails that with an
    errno computed from its arguments: A = args[0], X = args[1] (low words), the
    operation args[2] picks (each ALU operation with X and with K, NEG, each jump with
    X and K, LEN, the scratch words, TAX/TXA, a high word), then errno 1 + A % 2048.
    Returns the bytes and how many operations there are."""
    jx = [BPF_JMP | op | BPF_X for op in (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET)]
    jk = [BPF_JMP | op | BPF_K for op in (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET)]
    blocks: list[list[bytes]] = [
        *([insn(BPF_ALU | op | BPF_X)] for op in ALU_OPS),
        *([insn(BPF_ALU | op | BPF_K, k)] for op, k in zip(
            ALU_OPS, (0x12345, 7, 3, 3, 0xF0F, 0x100, 0x5A5, 3, 5), strict=True)),
        [insn(BPF_ALU | BPF_NEG)],
        *([insn(j, 0, 0, 1), insn(LD_IMM, 100), insn(JA, 1), insn(LD_IMM, 200)]
          for j in jx),
        *([insn(j, 0x1000, 0, 1), insn(LD_IMM, 300), insn(JA, 1), insn(LD_IMM, 400)]
          for j in jk),
        [insn(LD_LEN)],
        [insn(LDX_LEN), insn(TXA)],
        [insn(BPF_STX, 2), insn(LD_MEM, 2)],
        [insn(LDX_MEM, 0), insn(TXA), insn(BPF_ALU | BPF_ADD | BPF_X)],
        [insn(TAX), insn(LD_IMM, 5), insn(BPF_ALU | BPF_SUB | BPF_X)],
        [insn(LD_ABS, 20)],  # args[0]'s high word
    ]
    head = [insn(LD_ABS, 4), insn(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
            insn(RET_K, RET_ALLOW), insn(LD_ABS, 0),
            insn(BPF_JMP | BPF_JEQ | BPF_K, MAGIC_NR, 1, 0), insn(RET_K, RET_ALLOW),
            insn(LD_ABS, 24), insn(TAX), insn(LD_ABS, 16), insn(BPF_ST, 0),
            insn(LD_ABS, 32)]
    n = len(blocks)
    bodies = [[insn(LD_MEM, 0), *b] for b in blocks]
    tail = [insn(BPF_ALU | BPF_AND | BPF_K, 0x7FF), insn(BPF_ALU | BPF_ADD | BPF_K, 1),
            insn(BPF_ALU | BPF_OR | BPF_K, RET_ERRNO), insn(RET_A)]
    # dispatch: n JEQs then a return for an unknown selector, each body then a JA
    out = list(head)
    starts, at = [], n + 1
    for body in bodies:
        starts.append(at)
        at += len(body) + 1
    tail_at = at
    for i in range(n):
        out.append(insn(BPF_JMP | BPF_JEQ | BPF_K, i, starts[i] - i - 1, 0))
    out.append(insn(RET_K, RET_ERRNO | 4000))
    for body, start in zip(bodies, starts, strict=True):
        out += body
        out.append(insn(JA, tail_at - (start + len(body)) - 1))
    out += tail
    return b"".join(out), n


def test_interpreter_agrees_with_the_kernel_on_every_instruction_kind() -> None:
    """A hand-written program using every instruction seccomp takes, over arguments at
    the edges (overflow, underflow, shifts by 31 and 33, a high word): the errno the
    kernel returns is the one the interpreter computes; a division by X == 0 kills."""
    bpf, n = _alu_program()
    prog = decode(bpf)
    pairs = [(0, 1), (7, 3), (0xFFFFFFFF, 2), (0x80000000, 0x80000001), (5, 31), (9, 33),
             (0x1000, 0x1000), (0x12340000_00000FFF, 0xFFFF_FFFF_0000_0011)]
    calls: list[tuple[int, Sequence[int]]] = [
        (MAGIC_NR, (a, x, op, 0, 0, 0)) for op in (*range(n), n + 5) for a, x in pairs]
    calls.append((NR_GETPID, (0,) * 6))
    want = [_expected(run(prog, seccomp_data(nr, AUDIT_ARCH_X86_64, a))) for nr, a in calls]
    assert len(set(want)) > 40
    out, err, code = _run(_syscall_probe(calls), bpf)
    assert code == 0, err
    got = out.split()
    mismatch = [(c, w, g) for c, w, g in zip(calls, want, got, strict=True) if w != g]
    assert not mismatch, mismatch[:10]
    # a division by X == 0 returns 0, SECCOMP_RET_KILL_THREAD: the lone thread dies
    div = ALU_OPS.index(BPF_DIV)
    zero = (MAGIC_NR, (10, 0, div, 0, 0, 0))
    assert run(prog, seccomp_data(zero[0], AUDIT_ARCH_X86_64, zero[1])) == RET_KILL_THREAD
    out, _, code = _run(_syscall_probe([(NR_GETPID, (0,) * 6), zero]), bpf)
    assert (out.split(), code) == (["ok"], -signal.SIGSYS)


def test_kernel_refuses_what_the_interpreter_refuses() -> None:
    for bad in ([insn(LD_ABS, 2), insn(RET_K, RET_ALLOW)],
                [insn(BPF_ALU | BPF_MOD | BPF_K, 3), insn(RET_K, RET_ALLOW)],
                [insn(BPF_ALU | BPF_MOD | BPF_X), insn(RET_K, RET_ALLOW)],
                [insn(JA, 1), insn(RET_K, RET_ALLOW)],
                [insn(LD_MEM, 3), insn(RET_K, RET_ALLOW)]):
        with pytest.raises(BpfError):
            decode(b"".join(bad))
        with pytest.raises(SpawnError, match=r"^load the seccomp filter: EINVAL"):
            spawn(["/bin/true"], seccomp=b"".join(bad))


def test_podman_tree_program_loads_and_judges_as_interpreted() -> None:
    """The tree program for the podman profile loads; personality by its argument and
    a call the profile refuses by capability come out as the interpreter says."""
    tree, _ = _podman_pair("spec-caps")
    prog = decode(tree.export())
    calls: list[tuple[int, Sequence[int]]] = [
        (NR_GETPID, (0,) * 6), (NR_PERSONALITY, (U32, 0, 0, 0, 0, 0)),
        (NR_PERSONALITY, (1, 0, 0, 0, 0, 0)), (163, (0,) * 6),  # acct
        (MAGIC_NR, (0,) * 6)]
    want = [_expected(run(prog, seccomp_data(nr, AUDIT_ARCH_X86_64, a))) for nr, a in calls]
    assert want == ["ok", "ok", str(errno.ENOSYS), str(errno.EPERM), str(errno.ENOSYS)]
    out, err, code = _run(_syscall_probe(calls), tree.export())
    assert (out.split(), code) == (want, 0), err

