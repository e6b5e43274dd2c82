"""Benchmarks run as root on the real kernel; they are not part of the CI test run."""

from __future__ import annotations

import os

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("nsbind's benchmarks create namespaces: run as root")
