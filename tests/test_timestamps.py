"""nsbind.timestamps: Go's RFC 3339 with nanoseconds, in UTC, as runc, Docker's json-file
log and containerd write it."""

from __future__ import annotations

import datetime
import re

import pytest

from nsbind.timestamps import rfc3339

pytestmark = pytest.mark.unprivileged  # every test here runs without root too


def test_nanoseconds_in_utc_as_go_writes_them() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    now = rfc3339()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", now)
    parsed = datetime.datetime.strptime(now[:26] + "Z", "%Y-%m-%dT%H:%M:%S.%fZ")
    utc = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs(parsed - utc).total_seconds() < 60
