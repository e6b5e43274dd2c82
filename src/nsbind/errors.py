"""Exceptions: every error nsbind raises on purpose is an :class:`NsbindError`.

A failed kernel call raises the NsbindError subclass that is also the builtin
:class:`OSError` subclass Python would pick for its errno (``PermissionError``
for EPERM/EACCES, ``FileNotFoundError`` for ENOENT, ...), so ``except
PermissionError`` works, and its message names the operation and the object,
e.g. ``mount proc on /proc: EPERM (Operation not permitted)``.

An error nsbind finds itself (a malformed image, a call_in child that died, a
namespace the kernel's rules do not allow here) is a :class:`MessageError`:
``str()`` is its message, and it is also the builtin exception callers would
expect (``ImageError`` is a ``ValueError``, ``CallInError`` a ``RuntimeError``).
So ``except nsbind.NsbindError`` catches every one of them.
"""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False  # not typing's: a runtime's start must not import typing
if TYPE_CHECKING:
    from typing import Any, ClassVar, NoReturn

__all__ = [
    "AlreadyExists",
    "BrokenPipe",
    "Busy",
    "ConnectionAborted",
    "ConnectionRefused",
    "ConnectionReset",
    "Expired",
    "Forbidden",
    "InUse",
    "Interrupted",
    "InvalidArgument",
    "InvalidType",
    "InvalidValue",
    "IsADirectory",
    "LookupFailed",
    "MessageError",
    "Missing",
    "NamespaceRuleError",
    "NoChildProcess",
    "NoSuchProcess",
    "NotADirectory",
    "NotFound",
    "NsbindError",
    "PermissionDenied",
    "TimedOut",
    "Unsupported",
    "UsageError",
    "WouldBlock",
    "check",
    "error_for",
]


class NsbindError(OSError):
    """A kernel operation failed.

    Attributes: ``errno`` and ``strerror`` (as for OSError), ``syscall`` (the call
    that failed, e.g. ``"mount"``), ``target`` (the path or object, or None;
    also ``filename``), ``what`` (the operation as written in the message) and
    ``detail`` (extra text, e.g. the kernel's own messages from an fs context).
    """

    syscall: str
    target: str | None
    what: str
    detail: str | None

    def __init__(
        self,
        err: int,
        syscall: str,
        target: str | None = None,
        what: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(err, os.strerror(err), target)
        self.syscall = syscall
        self.target = target
        self.what = what if what is not None else (f"{syscall} {target}" if target else syscall)
        self.detail = detail

    @property
    def errno_name(self) -> str:
        """The symbolic errno, e.g. ``"EPERM"``."""
        err = self.errno or 0
        return _errno.errorcode.get(err, f"errno {err}")

    def __str__(self) -> str:
        text = f"{self.what}: {self.errno_name} ({self.strerror})"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # the class and its constructor's arguments: nothing else is needed to rebuild
        # it (call_in's children send errors back this way)
        return (type(self), (self.errno, self.syscall, self.target, self.what, self.detail))


class PermissionDenied(NsbindError, PermissionError):
    """EPERM or EACCES: the caller lacks a privilege or permission."""


class NotFound(NsbindError, FileNotFoundError):
    """ENOENT: a path or object does not exist."""


class AlreadyExists(NsbindError, FileExistsError):
    """EEXIST."""


class NotADirectory(NsbindError, NotADirectoryError):
    """ENOTDIR."""


class IsADirectory(NsbindError, IsADirectoryError):
    """EISDIR."""


class NoSuchProcess(NsbindError, ProcessLookupError):
    """ESRCH: the process has exited (or never existed)."""


class NoChildProcess(NsbindError, ChildProcessError):
    """ECHILD: nothing to wait for (not our child, or already reaped)."""


class WouldBlock(NsbindError, BlockingIOError):
    """EAGAIN, EALREADY, EINPROGRESS: try again later."""


class Interrupted(NsbindError, InterruptedError):
    """EINTR."""


class TimedOut(NsbindError, TimeoutError):
    """ETIMEDOUT."""


class BrokenPipe(NsbindError, BrokenPipeError):
    """EPIPE or ESHUTDOWN."""


class ConnectionAborted(NsbindError, ConnectionAbortedError):
    """ECONNABORTED."""


class ConnectionRefused(NsbindError, ConnectionRefusedError):
    """ECONNREFUSED."""


class ConnectionReset(NsbindError, ConnectionResetError):
    """ECONNRESET."""


class InvalidArgument(NsbindError):
    """EINVAL: the kernel rejected an argument or a combination of flags."""


class Busy(NsbindError):
    """EBUSY: the object is in use (a mount point, a cgroup with members, ...)."""


class Unsupported(NsbindError):
    """ENOSYS, EOPNOTSUPP: this kernel lacks the call or the feature."""


class MessageError(NsbindError):
    """An error nsbind finds itself rather than one a kernel call returned.

    Made from one message, which is ``str(exc)``, ``what`` and ``args[0]``.
    ``errno`` is the errno that fits the class (``default_errno``, or ``err`` when
    given), ``syscall`` names the part of nsbind that raised it (``operation``);
    ``target`` and ``detail`` are None.  Subclasses also derive from the builtin
    exception callers would catch (``ValueError``, ``RuntimeError``, ...).
    """

    default_errno: ClassVar[int] = _errno.EINVAL
    operation: ClassVar[str] = "nsbind"

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(self.default_errno if err is None else err, self.operation,
                         what=message)
        self.args = (message,)

    def __str__(self) -> str:
        return self.what

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.errno))


class InvalidValue(MessageError, ValueError):
    """A value nsbind refuses before any kernel call (EINVAL; the kernel's own EINVAL
    is :class:`InvalidArgument`)."""


class InvalidType(MessageError, TypeError):
    """An argument of a type nsbind cannot use (EINVAL)."""


class Missing(MessageError, FileNotFoundError):
    """Something nsbind needs is not on this host, e.g. no cgroup2 hierarchy (ENOENT)."""

    default_errno = _errno.ENOENT


class Forbidden(MessageError, PermissionError):
    """The caller may not do this here, e.g. no delegated cgroup (EPERM)."""

    default_errno = _errno.EPERM


class Expired(MessageError, TimeoutError):
    """A wait ran out of time (ETIMEDOUT)."""

    default_errno = _errno.ETIMEDOUT


class InUse(MessageError):
    """The object is still in use, e.g. a cgroup with members (EBUSY)."""

    default_errno = _errno.EBUSY


class UsageError(MessageError, RuntimeError):
    """An object used in a way its state does not allow (entered twice, ...)."""


class LookupFailed(MessageError, LookupError):
    """Something looked up by name is not there, e.g. a user in a rootfs's /etc/passwd
    (ENOENT)."""

    default_errno = _errno.ENOENT


class NamespaceRuleError(MessageError, RuntimeError):
    """A namespace request that the kernel's rules do not allow in this situation.

    The message names the rule (per-thread, single-threaded process, one-way
    user namespace, ...) and what to do instead.  ``errno`` is EPERM.
    """

    default_errno = _errno.EPERM
    operation = "namespaces"


_BY_BUILTIN: dict[type[OSError], type[NsbindError]] = {
    cls.__bases__[1]: cls
    for cls in (PermissionDenied, NotFound, AlreadyExists, NotADirectory, IsADirectory,
                NoSuchProcess, NoChildProcess, WouldBlock, Interrupted, TimedOut, BrokenPipe,
                ConnectionAborted, ConnectionRefused, ConnectionReset)
}
_BY_ERRNO: dict[int, type[NsbindError]] = {
    _errno.EINVAL: InvalidArgument,
    _errno.EBUSY: Busy,
    _errno.ENOSYS: Unsupported,
    _errno.EOPNOTSUPP: Unsupported,
}


def error_for(
    err: int,
    syscall: str,
    target: str | None = None,
    *,
    what: str | None = None,
    detail: str | None = None,
) -> NsbindError:
    """Build the right :class:`NsbindError` subclass for ``err``."""
    cls = _BY_ERRNO.get(err)
    if cls is None:
        # OSError's constructor knows which builtin subclass an errno maps to.
        cls = _BY_BUILTIN.get(type(OSError(err, "")), NsbindError)
    return cls(err, syscall, target, what, detail)


def check(
    rc: int,
    syscall: str,
    target: str | None = None,
    *,
    what: str | None = None,
    detail: str | None = None,
) -> int:
    """Return ``rc``, or raise the error for the errno of the native call just made."""
    if rc < 0:
        from nsbind._native import ffi  # here: nsbind-oci state never loads the core

        raise_errno(ffi.errno, syscall, target, what=what, detail=detail)
    return rc


def raise_errno(
    err: int,
    syscall: str,
    target: str | None = None,
    *,
    what: str | None = None,
    detail: str | None = None,
) -> NoReturn:
    """Raise the :class:`NsbindError` for ``err``."""
    raise error_for(err, syscall, target, what=what, detail=detail)
