"""The forked child behind ``nsbind doctor``'s probes (:mod:`nsbind.doctorchecks` reads
what it found): it tries what would change the caller — an overlay mount, a user
namespace, an overlay and the feature probes inside that user namespace — and reports
over a pipe; whatever it made is removed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Any

from nsbind import signals
from nsbind.childpipe import answer_and_exit, read_until
from nsbind.ctxlite import suppress

__all__ = ["PROBE_TIMEOUT", "Probe"]

PROBE_TIMEOUT = 5.0  # seconds the probing child may take



@dataclasses.dataclass
class Probe:
    """What a forked child found: ``results`` by step (``[ok, errno, message]``), the
    clone3 error that made it fall back to os.fork (if any), and the features probed
    inside its user namespace."""

    results: dict[str, list[Any]]
    clone3_error: str | None = None
    clone3_errno: int | None = None
    userns_features: dict[str, bool] = dataclasses.field(default_factory=dict)

    def ok(self, step: str) -> bool:
        return bool(self.results.get(step, [False])[0])

    def errno_of(self, step: str) -> int | None:
        got = self.results.get(step)
        return None if got is None else got[1]

    def message(self, step: str) -> str:
        got = self.results.get(step)
        return "not tried" if got is None else str(got[2])

    @classmethod
    def run(cls) -> Probe:
        """Fork (nsbind.clone3, else os.fork) a child that tries the steps; remove what
        it made."""
        import nsbind

        tmp = tempfile.mkdtemp(prefix="nsbind-doctor-")
        try:
            return cls._fork(nsbind, tmp)
        except Exception as exc:
            return cls({"child": [False, None, f"the probing child failed: {exc}"]})
        finally:
            _remove(tmp)

    @classmethod
    def _fork(cls, nsbind: Any, tmp: str) -> Probe:
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        err: Any = None
        try:
            pid, pidfd = nsbind.clone3(nsbind.CloneFlags.PIDFD)
        except OSError as exc:  # NsbindError: ENOSYS, EPERM; UsageError: threads
            err, pidfd = exc, None
            pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            answer_and_exit(rfd, wfd, lambda: json.dumps(_child_steps(tmp)).encode())
        os.close(wfd)
        try:
            data = read_until(rfd, time.monotonic() + PROBE_TIMEOUT)
        finally:
            os.close(rfd)
        if data is None:  # (what a late child wrote is cut short: not read)
            os.kill(pid, signals.SIGKILL)
        if pidfd is not None:
            with pidfd:
                pidfd.wait()
        else:
            os.waitpid(pid, 0)
        raw = json.loads(data or b"{}")
        probe = cls(raw.get("results", {"child": [False, None, "the probing child "
                                                  "reported nothing"]}))
        probe.userns_features = raw.get("features", {})
        if err is not None:
            probe.clone3_error, probe.clone3_errno = str(err), err.errno
        return probe


def _step(results: dict[str, list[Any]], name: str, fn: Any) -> bool:
    try:
        fn()
    except Exception as exc:
        results[name] = [False, getattr(exc, "errno", None), str(exc)]
        return False
    results[name] = [True, None, "ok"]
    return True


def _overlay_in(tmp: str, sub: str) -> None:
    from nsbind.mounts import overlay

    base = os.path.join(tmp, sub)
    for d in ("lower", "upper", "work"):
        os.makedirs(os.path.join(base, d))
    with overlay([os.path.join(base, "lower")], os.path.join(base, "upper"),
                 os.path.join(base, "work")):
        pass  # a detached mount, never attached: gone with its fd


def _child_steps(tmp: str) -> dict[str, Any]:
    """In the child: an overlay in the caller's namespaces, then a user and mount
    namespace of its own, an overlay and the feature probes in there."""
    from nsbind import features
    from nsbind.namespaces import Namespaces

    results: dict[str, list[Any]] = {}
    _step(results, "overlay", lambda: _overlay_in(tmp, "host"))
    found: dict[str, bool] = {}
    if _step(results, "userns", lambda: Namespaces(user=True, mnt=True).unshare()):
        _step(results, "userns overlay", lambda: _overlay_in(tmp, "userns"))
        for name in features.__all__:
            if name != "probe_all":
                try:
                    found[name] = bool(getattr(features, name).__wrapped__())
                except Exception:
                    found[name] = False
    return {"results": results, "features": found}


def _remove(tmp: str) -> None:
    """Remove the probe's dir, overlay's mode-0 ``work/work`` included."""
    for root, dirs, _ in os.walk(tmp):
        for d in dirs:
            with suppress(OSError):
                os.chmod(os.path.join(root, d), 0o700)
    shutil.rmtree(tmp, ignore_errors=True)
