"""The compiled core: built from the headers, typed by its stub, Linux only."""

from __future__ import annotations

import ast
import functools
import os
import pathlib
import subprocess
import sys
import threading

import pytest

import nsbind
from helpers import child_exit
from nsbind import CloneFlags
from nsbind._native import ffi, lib

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

NATIVE = pathlib.Path(nsbind.__file__).parent / "_native"


def _stub_names() -> set[str]:
    tree = ast.parse((NATIVE / "_nsbind.pyi").read_text())
    lib_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Lib")
    names = set()
    for node in lib_class.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return names


def test_stub_declares_exactly_what_the_extension_exports() -> None:
    assert _stub_names() == set(dir(lib))


def test_constants_come_from_the_kernel_headers() -> None:
    # Values fixed by the kernel ABI; the build took them from the headers.
    assert lib.CLONE_NEWNET == 0x40000000
    assert lib.CLONE_NEWTIME == 0x80
    assert lib.CLONE_INTO_CGROUP == 0x200000000
    assert lib.MS_BIND == 4096
    assert lib.MOUNT_ATTR_IDMAP == 0x00100000
    assert lib.RESOLVE_IN_ROOT == 0x10
    assert lib.P_PIDFD == 3
    assert lib.AT_RECURSIVE == 0x8000
    assert lib.CLOSE_RANGE_CLOEXEC == 4
    assert lib.CAP_SYS_ADMIN == 21


def test_struct_layouts_match_the_kernel() -> None:
    assert ffi.sizeof("struct clone_args") == lib.CLONE_ARGS_SIZE_VER2
    assert ffi.sizeof("struct mount_attr") == lib.MOUNT_ATTR_SIZE_VER0
    assert ffi.sizeof("struct open_how") == 24


def test_import_on_another_os_raises_importerror_that_says_why() -> None:
    code = "import sys; sys.platform = 'darwin'; import nsbind"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ImportError: nsbind works on Linux only (this is darwin)" in proc.stderr


def test_report_buffers_and_exit_status_are_the_named_constants() -> None:
    size = lib.NSB_REPORT_MSG_SIZE
    for name in ("struct nsb_mount_report", "struct nsb_spawn_report"):
        fields = dict(ffi.typeof(name).fields)
        assert ffi.sizeof(fields["msg"].type) == size, name
    assert lib.NSB_EXIT_FAILED == 127  # what a shell's failed exec gives


def test_spawn_sub_steps_are_distinct_within_each_step() -> None:
    # the report's index names these sub-steps; spawnplan words them in this order
    pivot = [lib.NSB_SUB_PIVOT_ENTER, lib.NSB_SUB_PIVOT_ROOT, lib.NSB_SUB_PIVOT_DETACH,
             lib.NSB_SUB_PIVOT_CHDIR]
    assert pivot == [0, 1, 2, 3]
    loopback = [lib.NSB_SUB_LOOPBACK_SOCKET, lib.NSB_SUB_LOOPBACK_GETFLAGS,
                lib.NSB_SUB_LOOPBACK_SETFLAGS]
    assert len(set(loopback)) == 3
    assert lib.NSB_SUB_SETUID_ID != lib.NSB_SUB_SETUID_KEEPCAPS
    assert lib.NSB_SUB_CAPSET_SETS != lib.NSB_SUB_CAPSET_CLEAR_INHERITABLE
    assert lib.NSB_SUB_AMBIENT_CLEAR < 0  # never a capability number
    assert lib.NSB_SUB_SIGNALS_MASK == 0  # never a signal number


_FORKS: list[str] = []


@functools.cache
def _watch_forks() -> None:
    # once per session: handlers cannot be unregistered (they only append to a list)
    os.register_at_fork(before=lambda: _FORKS.append("before"),
                        after_in_parent=lambda: _FORKS.append("parent"),
                        after_in_child=lambda: _FORKS.append("child"))


def test_clone3_runs_the_fork_handlers_and_leaves_the_child_a_working_interpreter() -> None:
    """nsb_clone3_python does os.fork's work in C: the handlers run around the clone,
    and the child's interpreter is reset for its one thread (it can start threads)."""
    _watch_forks()
    _FORKS.clear()
    pid, pidfd = nsbind.clone3(CloneFlags.PIDFD)
    if pid == 0:

        def child() -> int:
            if _FORKS != ["before", "child"]:
                return 1
            ran: list[int] = []
            worker = threading.Thread(target=lambda: ran.append(threading.get_ident()))
            worker.start()
            worker.join()
            return 0 if len(ran) == 1 and threading.active_count() == 1 else 2

        child_exit(child)
    assert pidfd is not None
    with pidfd:
        assert pidfd.wait().returncode == 0
    assert _FORKS == ["before", "parent"]
