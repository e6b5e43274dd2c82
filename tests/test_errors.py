"""Errors name the operation and the object and are the builtin OSError subclass; every
error nsbind raises on purpose is an NsbindError."""

from __future__ import annotations

import errno
import io
import os
import pathlib
import pickle
import tarfile

import pytest

import nsbind.image
from nsbind import Namespaces, errors
from nsbind.errors import NsbindError, error_for
from nsbind.image import ImageError


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
