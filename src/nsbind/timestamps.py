"""Times as Go's RFC 3339 writes them in UTC (``time.RFC3339Nano``, nine fraction
digits): what runc's state and logs, Docker's json-file log and containerd write, and so
what their clients parse.  Made with the time module: importing datetime is a
millisecond of every runtime call."""

from __future__ import annotations

import time

__all__ = ["rfc3339"]


def rfc3339(ns: int | None = None) -> str:
    """``ns`` (nanoseconds since the epoch; now by default) as
    ``2006-01-02T15:04:05.999999999Z``."""
    secs, frac = divmod(time.time_ns() if ns is None else ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
