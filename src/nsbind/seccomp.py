"""Seccomp filters: compiled here by libseccomp, loaded by the spawned child.

A :class:`Filter` is a default action, optional extra architectures and
``SECCOMP_FILTER_FLAG_*`` flags, and rules (an action for a syscall, optionally only
when its arguments compare as given).  libseccomp - the library crun uses - turns it
into a classic BPF program (:meth:`Filter.export`: the ``struct sock_filter[]``
bytes) in this process; :func:`nsbind.spawn` hands the bytes to the C child, which
loads them with ``seccomp(2)`` as its last step before the exec (``seccomp=``).

libseccomp is opened at run time (``libseccomp.so.2``, dlopen'd by nsbind's compiled
core, which declares the few functions used), the first time a filter is compiled:
installing nsbind needs no seccomp headers, and a host without the library fails then
with :class:`SeccompUnavailable` naming the Debian package (``libseccomp2``).
:meth:`Filter.from_oci` reads the OCI runtime spec's
``linux.seccomp`` object, with errors naming the JSON path.

The kernel loads a filter only for a process with ``no_new_privs`` set or
CAP_SYS_ADMIN in its user namespace; the child loads it after its ids and
capabilities changed, so a child that drops to a non-root uid needs
``no_new_privs=True`` (as OCI's ``process.noNewPrivileges``).
"""

from __future__ import annotations

import errno
import os
import time
import types

# collections.abc's class, without importing the collections package
from _collections_abc import Mapping

from nsbind import jsonlite, signals
from nsbind.enumtypes import IntEnum
from nsbind.errors import InvalidValue, Missing
from nsbind.fnlite import lru_cache, partial
from nsbind.frozen import frozen
from nsbind.namedtuples import NamedTuple

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["FLAGS", "LIBRARY", "OCI_ACTIONS", "PACKAGE", "Action", "ArgCmp", "Filter", "Op",
           "Program",
           "SeccompError", "SeccompUnavailable", "as_program", "flag_names", "library",
           "library_version"]

#: the shared library nsbind opens, and the Debian package that ships it
LIBRARY = "libseccomp.so.2"
PACKAGE = "libseccomp2"

# seccomp.h's macros (libseccomp 2.5), by value: ABI, not API, mode has no header
_NR_SCMP_ERROR = -1
_SCMP_FLTATR_CTL_NNP = 3  # enum scmp_filter_attr: only seccomp_load reads it
_SCMP_FLTATR_CTL_OPTIMIZE = 8  # (libseccomp >= 2.5) 1: by priority, 2: a binary tree
_MAX_ARGS = 6             # a syscall's arguments (struct seccomp_data.args)
_U64 = (1 << 64) - 1
_EPERM = errno.EPERM


class SeccompUnavailable(Missing):
    """libseccomp could not be opened (ENOENT): the message names the library and the
    package that ships it."""

    operation = "seccomp"


class SeccompError(InvalidValue):
    """A filter nsbind or libseccomp refuses: an unknown action, operator, architecture
    or syscall, a bad argument comparison (for OCI input, the message starts with the
    JSON path: ``linux.seccomp.syscalls[2].action: ...``)."""

    operation = "seccomp"


def _ffi() -> Any:
    """The compiled core's cffi, which declares libseccomp's functions (opened at run
    time: seccompload.c) and ``struct nsb_scmp_arg_cmp``."""
    from nsbind._native import ffi

    return ffi


@lru_cache(maxsize=4)
def library(name: str = LIBRARY) -> Any:
    """libseccomp, opened once (dlopen by the compiled core: no headers at build time,
    no C parser at run time); :class:`SeccompUnavailable` if it is not on this host."""
    from nsbind._native import ffi, lib

    if lib.nsb_scmp_open(name.encode()) < 0:
        why = ffi.string(lib.nsb_scmp_error())
        why = why.decode(errors="replace") if isinstance(why, bytes) else why
        raise SeccompUnavailable(
            f"seccomp filters need libseccomp ({name}), which could not be loaded: "
            f"{why}; install the "
            f"{PACKAGE} package (Debian/Ubuntu: apt-get install {PACKAGE})")
    return types.SimpleNamespace(**{
        f"seccomp_{fn}": getattr(lib, f"nsb_scmp_{fn}")
        for fn in ("init", "release", "arch_add", "arch_resolve_name", "attr_set",
                   "syscall_resolve_name", "rule_add_array", "export_bpf")})


def library_version() -> tuple[int, int, int]:
    """The version of the libseccomp :func:`library` opened (major, minor, micro)."""
    library()
    from nsbind._native import ffi, lib

    out = ffi.new("unsigned int[3]")
    lib.nsb_scmp_version(out)
    return int(out[0]), int(out[1]), int(out[2])


class Op(IntEnum):
    """``enum scmp_compare``: how an argument is compared (MASKED_EQ: ``arg & value ==
    value_two``)."""

    NE = 1
    LT = 2
    LE = 3
    EQ = 4
    GE = 5
    GT = 6
    MASKED_EQ = 7


class Action(int):
    """A seccomp action (``SCMP_ACT_*``, ``SECCOMP_RET_*``): an int, built by name."""

    KILL_PROCESS = 0x80000000
    KILL_THREAD = 0x00000000
    TRAP = 0x00030000
    ERRNO = 0x00050000
    TRACE = 0x7FF00000
    LOG = 0x7FFC0000
    ALLOW = 0x7FFF0000
    NOTIFY = 0x7FC00000

    @classmethod
    def allow(cls) -> Action:
        return cls(cls.ALLOW)

    @classmethod
    def errno(cls, err: int) -> Action:
        """Fail the syscall with ``err`` (0..65535)."""
        return cls(cls.ERRNO | _data("errno", err))

    @classmethod
    def kill_process(cls) -> Action:
        return cls(cls.KILL_PROCESS)

    @classmethod
    def kill_thread(cls) -> Action:
        return cls(cls.KILL_THREAD)

    @classmethod
    def trap(cls) -> Action:
        """SIGSYS."""
        return cls(cls.TRAP)

    @classmethod
    def log(cls) -> Action:
        """Allow, and log it."""
        return cls(cls.LOG)

    @classmethod
    def trace(cls, msg: int) -> Action:
        """Hand the syscall to a ptrace tracer with ``msg`` (0..65535)."""
        return cls(cls.TRACE | _data("trace value", msg))

    @classmethod
    def named(cls, name: str, err: int = _EPERM) -> Action:
        """The action an OCI name gives (``SCMP_ACT_ERRNO``, ...; ``err`` for ERRNO and
        TRACE): KILL is KILL_THREAD, as in libseccomp."""
        short = name.removeprefix("SCMP_ACT_")
        if short in ("ERRNO", "TRACE"):
            return cls.errno(err) if short == "ERRNO" else cls.trace(err)
        if short == "NOTIFY":
            raise SeccompError(f"{name}: user notification (a listener socket, OCI's "
                               "listenerPath) is not supported")
        value = _ACTION_NAMES.get(short)
        if value is None or not name.startswith("SCMP_ACT_"):
            raise SeccompError(f"unknown seccomp action {name!r} (expected one of "
                               f"{', '.join(_OCI_ACTIONS)})")
        return cls(value)

    def __repr__(self) -> str:
        base = int(self) & 0xFFFF0000
        name = next((k for k, v in _ACTION_NAMES.items() if v == base), f"{base:#x}")
        if base in (self.ERRNO, self.TRACE):
            return f"Action.{name.lower()}({int(self) & 0xFFFF})"
        return f"Action.{name.lower()}()"


_ACTION_NAMES = {"KILL_PROCESS": Action.KILL_PROCESS, "KILL_THREAD": Action.KILL_THREAD,
                 "KILL": Action.KILL_THREAD, "TRAP": Action.TRAP, "ERRNO": Action.ERRNO,
                 "TRACE": Action.TRACE, "LOG": Action.LOG, "ALLOW": Action.ALLOW}
#: the OCI seccomp actions a filter may use (SCMP_ACT_NOTIFY is known and refused)
OCI_ACTIONS = tuple(f"SCMP_ACT_{n}" for n in _ACTION_NAMES)
_OCI_ACTIONS = (*OCI_ACTIONS, "SCMP_ACT_NOTIFY")

#: SECCOMP_FILTER_FLAG_* that a filter may carry (linux/seccomp.h): NEW_LISTENER and
#: TSYNC_ESRCH belong to user notification, which nsbind does not offer
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
         "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}


def _data(what: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise SeccompError(f"seccomp {what} {value!r} is not in 0..65535")
    return value


@frozen
class ArgCmp:
    """Compare argument ``index`` (0..5) with ``value`` (and ``value_two``: MASKED_EQ is
    ``arg & value == value_two``); ``op`` is an :class:`Op`, its name or
    ``SCMP_CMP_<name>``."""

    index: int
    op: Op | int | str
    value: int
    value_two: int = 0

    def checked(self) -> tuple[int, Op, int, int]:
        """(index, op, value, value_two) in range, or SeccompError."""
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not (
                0 <= self.index < _MAX_ARGS):
            raise SeccompError(f"argument index {self.index!r} is not in 0..5")
        try:
            op = (Op[self.op.removeprefix("SCMP_CMP_")] if isinstance(self.op, str)
                  else Op(self.op))
        except (KeyError, ValueError):
            raise SeccompError(f"unknown comparison operator {self.op!r} (expected one of "
                               f"{', '.join('SCMP_CMP_' + o.name for o in Op)})") from None
        for name, v in (("value", self.value), ("value_two", self.value_two)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _U64:
                raise SeccompError(f"argument {name} {v!r} is not a 64-bit unsigned integer")
        return self.index, op, self.value, self.value_two


class Program(NamedTuple):
    """A compiled filter as the child loads it: the BPF bytes and the seccomp(2) flags."""

    bpf: bytes
    flags: int = 0


class _Rule(NamedTuple):
    action: int
    name: str
    nr: int
    cmps: tuple[tuple[int, Op, int, int], ...]
    where: str


class Filter:
    """A seccomp filter built with libseccomp.

    ``default_action``: what any syscall no rule matches gets (an :class:`Action`, or an
    OCI name such as ``"SCMP_ACT_ERRNO"``, which takes ``default_errno``);
    ``architectures``: extra ABIs the filter also judges (``"SCMP_ARCH_X86"``, ``"x32"``;
    the native one is always in), others are killed; ``flags``: SECCOMP_FILTER_FLAG_*
    names or values for seccomp(2); ``tree``: libseccomp lays the syscall checks out as
    a binary tree on the syscall number (its SCMP_FLTATR_CTL_OPTIMIZE 2) instead of one
    check after another.  The verdict for every syscall is the same either way; the
    tree costs O(log n) checks a syscall instead of O(n), and loading is faster too:
    since Linux 5.11 seccomp(2) runs the filter once for every syscall number of each
    architecture to cache the ones it always allows (a long linear filter made that
    1.5 ms of a container's start here).  A libseccomp without the attribute (before
    2.5) builds the linear filter.
    """

    def __init__(self, default_action: Action | int | str, *,
                 architectures: Iterable[str] = (), flags: Iterable[str | int] = (),
                 default_errno: int = errno.EPERM, tree: bool = True) -> None:
        self.lib = library()
        self.tree = tree
        self.default_action = _action(default_action, default_errno)
        self.architectures: list[tuple[str, int]] = [
            (a, self._arch(a)) for a in architectures]
        self.flags = 0
        for flag in flags:
            self.flags |= _flag(flag)
        self.rules: list[_Rule] = []
        #: syscall names from_oci skipped: unknown to libseccomp (as runc and crun do)
        self.skipped: list[str] = []
        self._bpf: bytes | None = None

    def _arch(self, name: str) -> int:
        short = name.removeprefix("SCMP_ARCH_").lower()
        token = int(self.lib.seccomp_arch_resolve_name(short.encode()))
        if token == 0:
            raise SeccompError(f"unknown seccomp architecture {name!r}")
        return token

    def resolve(self, name: str) -> int | None:
        """The native number of syscall ``name`` (negative: a pseudo-number for a syscall
        another ABI has), or None if libseccomp does not know it."""
        nr = int(self.lib.seccomp_syscall_resolve_name(name.encode()))
        return None if nr == _NR_SCMP_ERROR else nr

    def add_rule(self, action: Action | int | str, syscall_name: str,
                 *arg_comparisons: ArgCmp, errno_ret: int = errno.EPERM,
                 where: str | None = None) -> None:
        """``action`` for ``syscall_name`` when every comparison holds (an OCI action name
        takes ``errno_ret``).  A rule with the default action is left out (the filter
        does that anyway); an unknown syscall is a SeccompError."""
        act = _action(action, errno_ret)
        nr = self.resolve(syscall_name)
        label = where or f"rule for {syscall_name}"
        if nr is None:
            raise SeccompError(f"{label}: unknown syscall {syscall_name!r}")
        cmps = tuple(c.checked() for c in arg_comparisons)
        if act != self.default_action:
            self.rules.append(_Rule(act, syscall_name, nr, cmps, label))
            self._bpf = None

    def program(self) -> Program:
        """What :func:`nsbind.spawn` takes as ``seccomp=``: the BPF bytes and flags."""
        return Program(self.export(), self.flags)

    def export(self) -> bytes:
        """The filter as classic BPF, ``struct sock_filter[]`` (8 bytes an instruction):
        the same filter always gives the same bytes."""
        if self._bpf is None:
            self._bpf = self._compile()
        return self._bpf

    def _compile(self) -> bytes:
        """:meth:`_compile_here` in a forked child, given COMPILE_TIMEOUT seconds:
        libseccomp 2.5.4 never returns from seccomp_rule_add for some rule sets (two
        rules of one syscall sharing an ordering comparison, each with another one), and
        a filter comes from a config.json anyone may write."""
        from nsbind.childpipe import answer_and_exit, read_until

        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child: the program, or the error
            answer_and_exit(read_end, write_end, self._compiled_or_error)
        os.close(write_end)
        try:
            data = read_until(read_end, time.monotonic() + COMPILE_TIMEOUT)
        finally:
            os.close(read_end)
            if data is None:
                os.kill(pid, signals.SIGKILL)
            os.waitpid(pid, 0)
        if data is None:
            raise SeccompError(f"libseccomp did not finish compiling the filter in "
                               f"{COMPILE_TIMEOUT:g} s ({len(self.rules)} rules): refused "
                               "(libseccomp 2.5 loops forever on some rule sets)",
                               errno.ETIMEDOUT)
        if data[:1] == b"P" and len(data) > 1:
            return data[1:]
        if data[:1] == b"E":
            message, err = jsonlite.loads(data[1:])
            raise SeccompError(str(message), int(err))
        raise SeccompError("libseccomp failed while compiling the filter (the compiling "
                           "process died)", errno.EIO)

    def _compiled_or_error(self) -> bytes:
        """The compiling child's answer: ``P`` and the program, or ``E`` and the error."""
        try:
            return b"P" + self._compile_here()
        except SeccompError as exc:
            return b"E" + jsonlite.dumps([exc.what, exc.errno]).encode()

    def _compile_here(self) -> bytes:
        lib = self.lib
        ctx = lib.seccomp_init(self.default_action)
        ffi = _ffi()
        if ctx == ffi.NULL:
            raise SeccompError(f"libseccomp refused the default action "
                               f"{Action(self.default_action)!r}")
        try:
            # no_new_privs is the spawn's choice (no_new_privs=), not the filter's
            _call(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0), "set attributes")
            if self.tree:  # an older libseccomp refuses the attribute: linear then
                lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, 2)
            for name, token in self.architectures:
                rc = lib.seccomp_arch_add(ctx, token)
                if rc != -errno.EEXIST:
                    _call(rc, f"add architecture {name}")
            for rule in self.rules:
                arr = ffi.new("struct nsb_scmp_arg_cmp[]", [
                    {"arg": i, "op": int(op), "datum_a": a, "datum_b": b}
                    for i, op, a, b in rule.cmps] or 1)
                _call(lib.seccomp_rule_add_array(ctx, rule.action, rule.nr, len(rule.cmps),
                                                 arr), rule.where)
            return _export(lib, ctx)
        finally:
            lib.seccomp_release(ctx)

    @classmethod
    def from_oci(cls, section: Mapping[str, Any], path: str = "linux.seccomp") -> Filter:
        """The filter an OCI ``linux.seccomp`` object describes.  Syscall names libseccomp
        does not know are skipped (listed in ``skipped``), as runc and crun do; an unknown
        action, operator, architecture or flag is a SeccompError naming its JSON path."""
        sec = _OciReader(path)
        obj = sec.mapping(section, "")
        default_name = sec.string(obj.get("defaultAction"), ".defaultAction")
        default_errno = sec.errno_ret(obj, "defaultErrnoRet", default_name, "")
        new = sec.run(".defaultAction", partial(
            cls, default_name, default_errno=default_errno))
        for i, arch in enumerate(sec.seq(obj.get("architectures"), ".architectures")):
            where = f".architectures[{i}]"
            token = sec.run(where, new._arch, sec.string(arch, where))
            new.architectures.append((arch, token))
        for i, flag in enumerate(sec.seq(obj.get("flags"), ".flags")):
            where = f".flags[{i}]"
            new.flags |= sec.run(where, _flag, sec.string(flag, where))
        for i, rule in enumerate(sec.seq(obj.get("syscalls"), ".syscalls")):
            sec.add_syscalls(new, sec.mapping(rule, f".syscalls[{i}]"), f".syscalls[{i}]")
        sec.run("", new.export)  # libseccomp's own refusals, now rather than at spawn
        return new


class _OciReader:
    """Reads an OCI ``linux.seccomp`` object; every error names its JSON path."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, message: str, err: int | None = None) -> SeccompError:
        return SeccompError(f"{self.path}{where}: {message}", err)

    def run(self, where: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, its SeccompError prefixed with the JSON path."""
        try:
            return fn(*args)
        except SeccompError as exc:
            if exc.what.startswith(self.path):
                raise
            raise self.fail(where, exc.what, exc.errno) from None  # libseccomp's errno kept

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected an object, not {type(value).__name__}")
        return value

    def seq(self, value: object, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"expected an array, not {type(value).__name__}")
        return value

    def string(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, not {value!r}")
        return value

    def integer(self, value: object, where: str, top: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            raise self.fail(where, f"expected an integer in 0..{top}, not {value!r}")
        return value

    def errno_ret(self, obj: Mapping[str, Any], key: str, action: str, where: str) -> int:
        """``errnoRet``/``defaultErrnoRet``: only for ERRNO and TRACE (as crun), default
        EPERM."""
        if obj.get(key) is None:
            return errno.EPERM
        if action not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
            raise self.fail(f"{where}.{key}", f"an errno value needs SCMP_ACT_ERRNO or "
                                              f"SCMP_ACT_TRACE, not {action}")
        return self.integer(obj[key], f"{where}.{key}", 0xFFFF)

    def comparisons(self, rule: Mapping[str, Any], where: str) -> list[ArgCmp]:
        cmps = []
        for k, arg in enumerate(self.seq(rule.get("args"), f"{where}.args")):
            at = f"{where}.args[{k}]"
            arg = self.mapping(arg, at)
            cmp = ArgCmp(self.integer(arg.get("index"), f"{at}.index", _MAX_ARGS - 1),
                         self.string(arg.get("op"), f"{at}.op"),
                         self.integer(arg.get("value"), f"{at}.value", _U64),
                         self.integer(arg.get("valueTwo", 0), f"{at}.valueTwo", _U64))
            self.run(f"{at}.op", cmp.checked)
            cmps.append(cmp)
        return cmps

    def add_syscalls(self, new: Filter, rule: Mapping[str, Any], where: str) -> None:
        """One ``syscalls[]`` entry: its action for each of its names.  Two comparisons
        of the same argument make one rule each (either may match), as runc and crun."""
        name = self.string(rule.get("action"), f"{where}.action")
        err = self.errno_ret(rule, "errnoRet", name, where)
        action = self.run(f"{where}.action", Action.named, name, err)
        cmps = self.comparisons(rule, where)
        indexes = [c.index for c in cmps]
        groups = ([(c,) for c in cmps] if len(set(indexes)) < len(indexes)
                  else [tuple(cmps)])
        names = self.seq(rule.get("names"), f"{where}.names")
        for j, sys_name in enumerate(names):
            at = f"{where}.names[{j}]"
            if new.resolve(self.string(sys_name, at)) is None:
                new.skipped.append(sys_name)
                continue
            for group in groups:
                self.run(at, partial(new.add_rule, action, sys_name, *group,
                                               where=at))


def _action(action: Action | int | str, err: int) -> int:
    if isinstance(action, str):
        return int(Action.named(action, err))
    if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action <= 0xFFFFFFFF:
        raise SeccompError(f"seccomp action {action!r} is not an Action")
    if action & 0xFFFF0000 == Action.NOTIFY:
        raise SeccompError("SCMP_ACT_NOTIFY: user notification is not supported")
    return int(action)


def _flag(flag: str | int) -> int:
    if isinstance(flag, str):
        if flag not in FLAGS:
            raise SeccompError(f"unknown seccomp flag {flag!r} (expected one of "
                               f"{', '.join(FLAGS)})")
        return FLAGS[flag]
    if isinstance(flag, bool) or not isinstance(flag, int) or flag & ~sum(FLAGS.values()):
        raise SeccompError(f"seccomp flag {flag!r} is not one of {', '.join(FLAGS)}")
    return flag


#: seconds libseccomp may take to compile one filter (Docker's profile takes 0.03)
COMPILE_TIMEOUT = 10.0


def _call(rc: int, what: str) -> None:
    if rc < 0:
        raise SeccompError(f"{what}: libseccomp refused it: "
                           f"{errno.errorcode.get(-rc, -rc)} ({os.strerror(-rc)})",
                           -rc)


def _export(lib: Any, ctx: Any) -> bytes:
    """seccomp_export_bpf into a memfd, read back."""
    fd = os.memfd_create("nsbind-seccomp", os.MFD_CLOEXEC)
    try:
        _call(lib.seccomp_export_bpf(ctx, fd), "export the filter")
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def as_program(value: bytes | Filter | Program) -> Program:
    """``spawn(seccomp=...)``'s value as a Program: raw BPF bytes take no flags."""
    if isinstance(value, Program):
        program = value
    elif isinstance(value, Filter):
        program = value.program()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        program = Program(bytes(value), 0)
    else:
        raise InvalidValue(f"seccomp takes a Filter, a Program or BPF bytes, not "
                           f"{type(value).__name__}")
    n = len(program.bpf)
    if n == 0 or n % 8 or n // 8 > 0xFFFF:
        raise InvalidValue(f"a seccomp program is 1..65535 8-byte instructions, not {n} bytes")
    return program


def flag_names(flags: int) -> str:
    """``SECCOMP_FILTER_FLAG_LOG|...`` for the report of a failed load."""
    names = [n.removeprefix("SECCOMP_FILTER_FLAG_") for n, v in FLAGS.items() if flags & v]
    return "|".join(names) or "none"

