"""Errors name the operation and the object and are the builtin OSError subclass."""

from __future__ import annotations

import errno
import pickle

import pytest

from nsbind import errors
from nsbind.errors import NsbindError, error_for


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
