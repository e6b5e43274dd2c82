"""``nsbind run``'s command line read without argparse (nsbind.engine.cli.fast_parse):
the forms Docker users type are read to exactly what the argparse parser reads, and
anything else is left to argparse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import argparse_reading
from nsbind.cli import parser
from nsbind.engine.cli import CGROUP_PARENT_FLAG, GLOBAL_FLAGS, fast_parse
from nsbind.engine.runflags import HOSTNAME_FLAG, RUN_FLAGS

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

IMG = "localhost/busybox:test"

#: command lines read without argparse
PLAIN_FORMS = [
    ["run", IMG],
    ["run", "--rm", IMG, "true"],
    ["--root", "/s", "--runroot", "/r", "run", "--rm", IMG, "sh", "-c", "echo $$"],
    ["--root=/s", "--json", "run", "-it", "--name", "web", IMG],
    ["--runroot", "-1", "--json", "--root=", "run", IMG],
    ["run", "-d", "-e", "A=1", "-e", "B", "--env=C=3", "-v", "/x:/y:ro", IMG, "ls", "-l"],
    ["run", "--rm", "-m", "512m", "--memory-swap", "-1", "--cpus", "1.5", "--pids-limit",
     "-1", "--ulimit", "nofile=10:20", "--read-only", "--tmpfs", "/t:size=1m", IMG],
    ["run", "-h", "box", "-w", "/tmp", "-u", "1:2", "--entrypoint", "sh", IMG, "-c", "id"],
    ["run", "--cgroup-parent", "/test", "--network", "none", "--net=host", IMG, "--rm"],
    ["run", "--rootfs", "/", "--dry-run", "--stop-signal", "USR1", "--stop-timeout", "3"],
    ["run", "--cap-add", "NET_ADMIN", "--cap-drop=ALL", "--security-opt",
     "no-new-privileges", "--init", "--userns", "auto", "--mount", "type=tmpfs,dst=/m",
     "-p", "8080:80", "--ip", "10.0.0.2", "--env-file", "/e", "-dit", IMG, "x"],
    ["run", "--name=", "--memory-swap", "-.5", IMG, "-"],
]

#: command lines left to argparse: help, errors, abbreviations, attached or grouped
#: short flags that take a value, "--", values that look like flags
LEFT_TO_ARGPARSE = [
    ["run", "--help"], ["run", "--rm", "--help", IMG], ["--version", "run", IMG],
    ["run", "--na", "x", IMG], ["run", "-eA=1", IMG], ["run", "-ie", "A", IMG],
    ["run", "--", IMG], ["run", "--rm", "--", IMG], ["run", "--name", "-x", IMG],
    ["run", "--rm=1", IMG], ["run", "--bogus", IMG], ["run", "--name"],
    ["--root", "run", "x"], ["--bogus", "run", IMG], ["ps"], [], ["run", "-", IMG],
    ["run", "-h"], ["--root", "-x", "run", IMG], ["run", "-e", "-1x", IMG],
    ["run", IMG, "--", "x"], ["run", "--name=--", IMG],
]


@pytest.mark.parametrize("argv", PLAIN_FORMS, ids=" ".join)
def test_plain_run_command_lines_read_as_argparse_reads_them(argv: list[str]) -> None:
    fast = fast_parse(argv)
    assert fast is not None and vars(fast) == argparse_reading(parser, argv)


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=" ".join)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert fast_parse(argv) is None


_TABLE = (CGROUP_PARENT_FLAG, HOSTNAME_FLAG, *RUN_FLAGS)
_WORDS = st.sampled_from(["x", "-1", "-x", "--", "-", "a=b", "", "--rm", "-it", IMG, "-.5",
                          "--name", "1.5"])


def _flags(draw: st.DrawFn, table: tuple[tuple[tuple[str, ...], str, str, str | None, str], ...],
           most: int) -> list[str]:
    words: list[str] = []
    for flags, _, kind, _, _ in draw(st.lists(st.sampled_from(table), max_size=most)):
        flag = draw(st.sampled_from(flags))
        if kind == "true":
            words.append(flag)
        elif draw(st.booleans()) and flag.startswith("--"):
            words.append(f"{flag}={draw(_WORDS)}")
        else:
            words += [flag, draw(_WORDS)]
    return words


@st.composite
def _run_lines(draw: st.DrawFn) -> list[str]:
    """Global flags, ``run``, its flags, then words: from the flag tables."""
    tail = draw(st.lists(_WORDS, max_size=4))
    return [*_flags(draw, GLOBAL_FLAGS, 2), "run", *_flags(draw, _TABLE, 6), *tail]


@settings(max_examples=300, deadline=None)
@given(_run_lines())
def test_any_run_line_reads_as_argparse_reads_it_or_is_left_to_it(argv: list[str]) -> None:
    fast = fast_parse(argv)
    if fast is not None:
        assert vars(fast) == argparse_reading(parser, argv)
