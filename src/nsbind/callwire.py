"""What travels between :func:`nsbind.call_in` and its child, and its errors.

To the child: the callable and its arguments, pickled (:class:`Call`); functions of
the running script (``__main__``) by value, with the script globals they use, since
the child never runs the caller's script; classes of the script cannot travel.

Back: the answer, as data.  The child is not trusted (it may run in namespaces a
container controls), so by default :func:`load_answer` accepts only plain values
(None, bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set,
frozenset, range, slice, nested) and builtin or nsbind exceptions: a pickle naming
anything else (``os.system``, any class) is refused before it runs.  ``trusted=True``
unpickles whatever comes: only for code you trust.
"""

from __future__ import annotations

import builtins
import dis
import errno
import importlib
import io
import marshal
import pickle
import sys
import types
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

from nsbind.errors import MessageError, NsbindError
from nsbind.fnlite import lru_cache

__all__ = ["Call", "CallInError", "PendingCall", "RemoteError", "RemoteTraceback",
           "load_answer", "remote_exception"]


class CallInError(MessageError, RuntimeError):
    """The child of a :func:`call_in` died, timed out, could not be started, or sent an
    answer call_in refuses.  ``errno``: ETIMEDOUT for a timeout, EBADMSG for a refused
    answer, EINVAL for a callable that cannot be sent, else EIO."""

    default_errno = errno.EIO
    operation = "call_in"


class RemoteError(CallInError):
    """The :func:`call_in` child raised an exception that does not come back as itself:
    not a builtin or nsbind exception (unless ``trusted=True``), not an Exception
    (SystemExit, KeyboardInterrupt), or one that would not pickle.

    ``type_name`` is its qualified type (``mymodule.MyError``), ``remote_message``
    its ``str()``, ``remote_traceback`` the child's traceback text.
    """

    def __init__(self, type_name: str, remote_message: str, remote_traceback: str = "") -> None:
        super().__init__(f"the call_in child raised {type_name}: {remote_message}")
        self.type_name = type_name
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.remote_message, self.remote_traceback))


class RemoteTraceback(MessageError):
    """The traceback text of an exception raised in a :func:`call_in` child (the
    ``__cause__`` of what call_in raises for it)."""

    operation = "call_in"

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\n(traceback in the call_in child)\n{self.text}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.text,))


class Call:
    """fn, args and kwargs; pickled on their own (while the zygote request is built, so
    fds in them still travel) with script functions by value, and unpickled by the
    child inside its error handling."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __reduce__(self) -> tuple[Any, ...]:
        buf = io.BytesIO()
        _CallPickler(buf, pickle.HIGHEST_PROTOCOL).dump((self.fn, self.args, self.kwargs))
        return (PendingCall, (buf.getvalue(),))


class PendingCall:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def load(self) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        fn, args, kwargs = pickle.loads(self.data)
        return fn, args, kwargs


class _CallPickler(ForkingPickler):
    """Functions of ``__main__`` by value (the child has no script to find them in)."""

    def reducer_override(self, obj: Any) -> Any:
        if getattr(obj, "__module__", None) == "__main__":
            if isinstance(obj, types.FunctionType):
                return _reduce_script_function(obj)
            if isinstance(obj, type):
                raise pickle.PicklingError(
                    f"{obj.__qualname__} is a class defined in the script (__main__): the "
                    "call_in child does not run the script, so it cannot make one; define "
                    "the class in a module the script imports")
        if isinstance(obj, types.ModuleType):  # a module a script function uses
            return (importlib.import_module, (obj.__name__,))
        return NotImplemented


def _reduce_script_function(fn: types.FunctionType) -> tuple[Any, ...]:
    code = fn.__code__
    cells = fn.__closure__ or ()
    state = {
        "globals": {name: fn.__globals__[name] for name in _global_names(code)
                    if name in fn.__globals__},
        "defaults": fn.__defaults__,
        "kwdefaults": fn.__kwdefaults__,
        "cells": [_cell_value(cell) for cell in cells],
        "dict": fn.__dict__,
        "doc": fn.__doc__,
    }
    # the function first (so that it can be in its own globals and cells), then its state
    return (_script_function, (marshal.dumps(code), fn.__name__, fn.__qualname__, len(cells)),
            state, None, None, _fill_script_function)


class _EmptyCell:
    """A closure cell with nothing in it yet (pickled by name: one object everywhere)."""

    def __reduce__(self) -> str:
        return "_EMPTY_CELL"


_EMPTY_CELL = _EmptyCell()


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY_CELL


@lru_cache(maxsize=512)
def _global_names(code: types.CodeType) -> frozenset[str]:
    """The global names ``code`` (and the code nested in it) reads or writes."""
    names = {str(ins.argval) for ins in dis.get_instructions(code)
             if ins.opname in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return frozenset(names)


def _script_namespace() -> dict[str, Any]:
    """In the child: the globals of the script's functions, a ``__main__`` of their own."""
    main = sys.modules.get("__main__")
    if getattr(main, "__nsbind_script__", False):
        return vars(main)
    module = types.ModuleType("__main__")
    module.__dict__.update(__builtins__=builtins, __nsbind_script__=True)
    sys.modules["__main__"] = module
    return module.__dict__


def _script_function(code: bytes, name: str, qualname: str, ncells: int) -> types.FunctionType:
    fn = types.FunctionType(marshal.loads(code), _script_namespace(), name, None,
                            tuple(types.CellType() for _ in range(ncells)) or None)
    fn.__qualname__ = qualname
    return fn


def _fill_script_function(fn: types.FunctionType, state: dict[str, Any]) -> None:
    fn.__globals__.update(state["globals"])
    fn.__defaults__ = state["defaults"]
    fn.__kwdefaults__ = state["kwdefaults"]
    for cell, value in zip(fn.__closure__ or (), state["cells"], strict=True):
        if value is not _EMPTY_CELL:
            cell.cell_contents = value
    fn.__dict__.update(state["dict"])
    fn.__doc__ = state["doc"]


def remote_exception(type_name: str, message: str, text: str, pickled: bytes | None,
                      trusted: bool) -> BaseException:
    """The child's exception as itself if it may come back so, else a RemoteError."""
    exc: Any = None
    if pickled is not None:
        try:
            exc = load_answer(pickled, trusted)
        except CallInError:
            exc = None  # a type that is not allowed back (or not known here): named below
    if isinstance(exc, Exception):
        return exc
    module, _, name = type_name.rpartition(".")
    builtin = getattr(builtins, name, None) if module == "builtins" else None
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        return builtin(message)  # its arguments would not pickle: the message stands in
    return RemoteError(type_name, message, text)


# What an untrusted child's answer may name (pickle's own opcodes make None, bool, int,
# float, str, bytes, bytearray, tuple, list, dict, set and frozenset without a name).
# No constructor that takes a size or an iterable: an answer cannot make this process
# allocate more than it sent.
_PLAIN_BUILTINS = frozenset({"complex", "range", "slice"})
_PLAIN = ("None, bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set, "
          "frozenset, range, slice and builtin or nsbind exceptions")


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data and builtin or nsbind exceptions; refuses every other name
    (``os.system``, ``subprocess.Popen``, any class), so loading runs no code."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins":
            obj = getattr(builtins, name, None) if "." not in name else None
            if name in _PLAIN_BUILTINS or (isinstance(obj, type)
                                           and issubclass(obj, BaseException)):
                return obj
        elif (module == "nsbind" or module.startswith("nsbind.")) and module in sys.modules:
            obj = vars(sys.modules[module]).get(name)  # only modules already imported here
            if isinstance(obj, type) and issubclass(obj, NsbindError):
                return obj
        raise CallInError(f"call_in refused the child's answer: it names {module}.{name}, "
                          f"which is not plain data (by default only {_PLAIN} come back); "
                          "call_in(..., trusted=True) accepts any pickle: only for code you "
                          "trust", errno.EBADMSG)


def load_answer(data: bytes, trusted: bool) -> Any:
    try:
        if trusted:
            return pickle.loads(data)
        return _PlainUnpickler(io.BytesIO(data)).load()
    except CallInError:
        raise
    except Exception as exc:
        raise CallInError(f"call_in could not read the child's answer: "
                          f"{type(exc).__name__}: {exc}", errno.EBADMSG) from None
