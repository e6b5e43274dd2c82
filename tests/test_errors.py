"""Errors name the operation and the object and are the builtin OSError subclass; every
error nsbind raises on purpose is an NsbindError."""

from __future__ import annotations

import errno
import importlib
import io
import os
import pathlib
import pickle
import pkgutil
import tarfile
import time

import pytest

import nsbind
import nsbind.image
from nsbind import Namespaces, errors
from nsbind.callin import CallInError, RemoteError, RemoteTraceback, call_in
from nsbind.errors import NsbindError, error_for
from nsbind.image import ImageError

pytestmark = pytest.mark.unprivileged  # every test here runs without root too


@pytest.mark.parametrize(
    ("err", "builtin", "ours"),
    [
        (errno.EPERM, PermissionError, errors.PermissionDenied),
        (errno.EACCES, PermissionError, errors.PermissionDenied),
        (errno.ENOENT, FileNotFoundError, errors.NotFound),
        (errno.EEXIST, FileExistsError, errors.AlreadyExists),
        (errno.ENOTDIR, NotADirectoryError, errors.NotADirectory),
        (errno.EISDIR, IsADirectoryError, errors.IsADirectory),
        (errno.ESRCH, ProcessLookupError, errors.NoSuchProcess),
        (errno.ECHILD, ChildProcessError, errors.NoChildProcess),
        (errno.EAGAIN, BlockingIOError, errors.WouldBlock),
        (errno.EINTR, InterruptedError, errors.Interrupted),
        (errno.ETIMEDOUT, TimeoutError, errors.TimedOut),
        (errno.EPIPE, BrokenPipeError, errors.BrokenPipe),
        (errno.EINVAL, OSError, errors.InvalidArgument),
        (errno.EBUSY, OSError, errors.Busy),
        (errno.ENOSYS, OSError, errors.Unsupported),
        (errno.EXDEV, OSError, NsbindError),
    ],
)
def test_errno_maps_to_builtin_and_library_class(
    err: int, builtin: type[OSError], ours: type[NsbindError]
) -> None:
    exc = error_for(err, "mount", "/proc", what="mount proc on /proc")
    assert type(exc) is ours
    assert isinstance(exc, builtin)
    assert isinstance(exc, NsbindError)
    assert exc.errno == err


def test_message_names_operation_object_and_errno() -> None:
    exc = error_for(errno.EPERM, "mount", "/proc", what="mount proc on /proc")
    assert str(exc) == "mount proc on /proc: EPERM (Operation not permitted)"
    assert exc.syscall == "mount"
    assert exc.target == exc.filename == "/proc"


def test_message_without_what_uses_syscall_and_target() -> None:
    assert str(error_for(errno.ENOENT, "open", "/x")).startswith("open /x: ENOENT")
    assert str(error_for(errno.EBADF, "close_range")).startswith("close_range: EBADF")


def test_detail_is_appended() -> None:
    exc = error_for(errno.EINVAL, "fsconfig", detail="overlay: bad option")
    assert str(exc).endswith(": overlay: bad option")


def test_errors_survive_pickling() -> None:
    exc = error_for(errno.EBUSY, "umount2", "/mnt", what="umount /mnt", detail="busy")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.Busy
    assert str(back) == str(exc)
    assert (back.errno, back.syscall, back.target) == (errno.EBUSY, "umount2", "/mnt")


# ---------------------------------------------------------------- errors nsbind finds itself

MESSAGE_ERRORS = [
    (errors.InvalidValue, ValueError, errno.EINVAL),
    (errors.LookupFailed, LookupError, errno.ENOENT),
    (errors.NamespaceRuleError, RuntimeError, errno.EPERM),
    (ImageError, ValueError, errno.EINVAL),
]


@pytest.mark.parametrize(("cls", "builtin", "err"), MESSAGE_ERRORS,
                         ids=[c[0].__name__ for c in MESSAGE_ERRORS])
def test_message_errors_are_nsbind_errors_made_from_one_message(
        cls: type[errors.MessageError], builtin: type[Exception], err: int) -> None:
    exc = cls("layer 3: bad digest")
    assert isinstance(exc, NsbindError) and isinstance(exc, builtin)
    assert str(exc) == exc.what == exc.args[0] == "layer 3: bad digest"
    assert (exc.errno, exc.strerror) == (err, os.strerror(err))
    assert exc.target is None and exc.detail is None
    assert repr(exc) == f"{cls.__name__}('layer 3: bad digest')"
    with pytest.raises(builtin, match=r"^layer 3: bad digest$"):
        raise exc


@pytest.mark.parametrize(("cls", "builtin", "err"), MESSAGE_ERRORS,
                         ids=[c[0].__name__ for c in MESSAGE_ERRORS])
def test_message_errors_survive_pickling(cls: type[errors.MessageError],
                                         builtin: type[Exception], err: int) -> None:
    for exc in (cls("the message"), cls("the message", errno.E2BIG)):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is cls
        assert (str(back), back.errno, back.syscall, back.args) == (
            str(exc), exc.errno, exc.syscall, exc.args)


def test_except_nsbind_error_catches_an_image_error_from_a_corrupt_image(
        tmp_path: pathlib.Path) -> None:
    corrupt = tmp_path / "image.tar"
    with tarfile.open(corrupt, "w") as tar:
        data = b"this is not JSON"
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    try:
        nsbind.image.load(str(corrupt))
    except NsbindError as exc:
        caught: NsbindError = exc
    assert type(caught) is ImageError
    assert str(caught).startswith(f"{corrupt}: manifest.json is not valid JSON")


def test_except_nsbind_error_catches_a_namespace_rule_error() -> None:
    try:
        with Namespaces(user=True):
            pass
    except NsbindError as exc:
        caught: NsbindError = exc
    assert type(caught) is errors.NamespaceRuleError
    assert "a user namespace cannot be left again" in str(caught)


# ---------------------------------------------------------------- every exception class

NEW_BUILTIN_BASES = {  # the classes that were plain builtin exceptions before the hierarchy
    "nsbind.image.model.ImageError": ValueError,
    "nsbind.callwire.CallInError": RuntimeError,
    "nsbind.errors.NamespaceRuleError": RuntimeError,
    "nsbind.errors.InvalidValue": ValueError,
    "nsbind.errors.LookupFailed": LookupError,
    "nsbind.errors.InvalidType": TypeError,
    "nsbind.errors.Missing": FileNotFoundError,
    "nsbind.errors.Forbidden": PermissionError,
    "nsbind.errors.Expired": TimeoutError,
    "nsbind.errors.UsageError": RuntimeError,
}


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    names = ["nsbind"] + [m.name for m in pkgutil.walk_packages(nsbind.__path__, "nsbind.")]
    for name in names:
        if name == "nsbind._native.build":  # the cffi build script, not part of the library
            continue
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, BaseException)
                    and obj.__module__ == name):
                found[f"{name}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_class_nsbind_defines_is_an_nsbind_error() -> None:
    classes = _exception_classes()
    assert set(NEW_BUILTIN_BASES) <= set(classes)
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, NsbindError))
    assert outside == []
    for name, builtin in NEW_BUILTIN_BASES.items():
        assert issubclass(classes[name], builtin), name


def test_every_message_error_pickles_and_keeps_its_message() -> None:
    for name, cls in _exception_classes().items():
        if not issubclass(cls, errors.MessageError) or cls.__init__ is not \
                errors.MessageError.__init__:
            continue
        exc = cls("the message")
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is cls and str(back) == "the message" == str(exc), name
        assert back.errno == exc.errno == cls.default_errno, name


def test_call_in_errors_pickle() -> None:
    exc = RemoteError("mod.MyError", "boom", "Traceback ...")
    back = pickle.loads(pickle.dumps(exc))
    assert (type(back), str(back), back.type_name, back.remote_message, back.remote_traceback) \
        == (RemoteError, "the call_in child raised mod.MyError: boom", "mod.MyError", "boom",
            "Traceback ...")
    assert isinstance(back, CallInError) and isinstance(back, RuntimeError)
    trace = pickle.loads(pickle.dumps(RemoteTraceback("line 1")))
    assert trace.text == "line 1" and "line 1" in str(trace)


def sleep_long() -> None:
    time.sleep(60)


def test_except_nsbind_error_catches_a_call_in_timeout() -> None:
    try:
        call_in(Namespaces(), sleep_long, timeout=0.2)
    except NsbindError as exc:
        caught: NsbindError = exc
    assert type(caught) is CallInError
    assert isinstance(caught, RuntimeError)
    assert caught.errno == errno.ETIMEDOUT
    assert str(caught) == "call_in timed out after 0.2 s; the child was killed"
