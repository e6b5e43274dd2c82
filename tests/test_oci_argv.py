"""nsbind-oci's command line read without argparse (nsbind.oci.cli.fast_parse): the
client forms podman, conmon and containerd's shim send are read to exactly what the
argparse parser reads, and anything else is left to argparse."""

from __future__ import annotations

import argparse

import pytest

from helpers import argparse_reading
from nsbind.oci.cli import fast_parse, parser

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

ROOTS = ["--root", "/run/containerd/runc/k8s.io", "--log", "/run/x/log.json",
         "--log-format", "json"]
PODMAN = ["--root", "/run/runc", "--systemd-cgroup", "--log-format=json", "--log",
          "/var/lib/containers/storage/overlay-containers/abc/userdata/oci-log"]

#: command lines clients send (the shim, conmon and podman): all read without argparse
CLIENT_FORMS = [
    [*ROOTS, "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "c1"],
    [*ROOTS, "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "--console-socket",
     "/tmp/pty.sock", "c1"],
    [*PODMAN, "create", "--bundle", "/b", "--pid-file", "/b/pidfile", "--no-new-keyring",
     "--preserve-fds", "2", "c1"],
    [*ROOTS, "start", "c1"],
    [*ROOTS, "state", "c1"],
    [*ROOTS, "kill", "c1", "9"],
    [*ROOTS, "kill", "--all", "c1", "SIGKILL"],
    [*ROOTS, "kill", "c1"],
    [*ROOTS, "delete", "c1"],
    [*ROOTS, "delete", "--force", "c1"],
    [*PODMAN, "delete", "c1", "--force"],
    ["--root", "/r", "run", "-b", "/b", "--keep", "-d", "c1"],
    ["--debug", "--rootless=true", "--root=/r", "pause", "c1"],
    ["--root", "/r", "resume", "c1"],
    ["--root", "/r", "list", "--format", "json", "-q"],
    ["--root", "/r", "update", "--resources", "-", "c1"],
    ["--root", "/r", "update", "--memory=1000000", "--pids-limit", "5", "c1"],
    ["spec", "--rootless", "-b", "/b"],
    ["features"],
]

#: command lines left to argparse: help, errors, abbreviations, grouped or attached short
#: flags, "--", a command with a trailing command, and argparse's own quirks
LEFT_TO_ARGPARSE = [
    [], ["--version"], ["--help"], ["state", "--help"], ["-h"],
    ["--bund", "/b", "create", "c1"], ["create", "--bund", "/b", "c1"],
    ["--root"], ["--root", "/r"], ["nosuch", "c1"], ["state"], ["state", "a", "b"],
    ["delete", "-fq", "c1"], ["create", "-b/b", "c1"], ["state", "--", "c1"],
    ["--log-format", "xml", "state", "c1"], ["create", "--preserve-fds", "x", "c1"],
    ["--debug=1", "state", "c1"], ["--rootless", "state", "c1"],
    ["kill", "c1", "--all", "9"],  # argparse gives "signal" its default before --all
    ["exec", "c1", "ls", "-l"], ["ps", "c1"], ["--root", "/r", "state", "-x"],
    ["list", "extra"], ["create", "--pid-file", "--bundle", "c1"],
]


def _argparse(argv: list[str]) -> dict[str, object] | str:
    try:
        return argparse_reading(parser, argv)
    except Exception as exc:  # (argparse's quirks on odd input)
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("argv", CLIENT_FORMS, ids=" ".join)
def test_client_command_lines_read_as_argparse_reads_them(argv: list[str]) -> None:
    fast = fast_parse(argv)
    assert fast is not None, "left to argparse"
    assert vars(fast) == _argparse(argv)


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE, ids=" ".join)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert fast_parse(argv) is None
    assert _argparse(argv) != {}  # argparse reads it, or says what is wrong


def test_list_options_are_fresh_per_parse() -> None:
    # the table's default lists are never appended to in place
    defaults = parser(["exec"]).parse_args(["exec", "c1", "true"])
    assert defaults.env == [] and isinstance(defaults, argparse.Namespace)
    first = fast_parse(["--root", "/r", "update", "--memory", "1", "c1"])
    assert first is not None and first.memory == "1"
