"""nsbind.signals against the signal module: the same names and numbers, and handlers,
masks and pidfd signals that act on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from nsbind import signals

pytestmark = pytest.mark.unprivileged


def test_names_and_numbers_are_the_signal_modules() -> None:
    for member in signal.Signals:
        assert signals.signal_name(int(member)) == member.name
        assert signals.describe(int(member)) == member.name
    for name, member in signal.Signals.__members__.items():  # aliases too: SIGIOT, SIGCLD
        assert signals.signal_number(name) == int(member)
    for name in ("SIG_DFL", "SIG_IGN", "SIG_BLOCK", "NSIG", "sigterm", "TERM", "", "SIGNOPE"):
        assert signals.signal_number(name) is None
    assert signals.signal_name(signal.SIGRTMIN + 1) is None
    assert signals.describe(signal.SIGRTMIN + 1) == f"signal {signal.SIGRTMIN + 1}"
    for name in signals.__all__:
        if name.startswith("SIG") or name == "NSIG":
            assert getattr(signals, name) == int(getattr(signal, name)), name


def test_a_handler_set_here_is_the_one_that_runs_and_is_given_back() -> None:
    seen: list[int] = []
    previous = signals.set_handler(signals.SIGUSR1, lambda sig, _frame: seen.append(sig))
    try:
        os.kill(os.getpid(), signals.SIGUSR1)
        assert seen == [signals.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
    finally:
        back = signals.set_handler(signals.SIGUSR1, previous)
    assert callable(back)
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_block_all_blocks_every_signal_and_set_mask_restores_the_mask() -> None:
    result: dict[str, object] = {}

    def in_thread() -> None:  # a thread of its own: the test runner's mask stays as it was
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        old = signals.block_all()
        result["blocked"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        result["returned"] = old == {int(s) for s in before}
        signals.set_mask(old)
        result["after"] = signal.pthread_sigmask(signal.SIG_BLOCK, []) == before

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(10)
    assert result["blocked"] == signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    assert result["returned"] and result["after"]


def test_pidfd_send_signal_reaches_the_process_it_holds() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        fd = os.pidfd_open(proc.pid)
        try:
            signals.pidfd_send_signal(fd, signals.SIGTERM)
        finally:
            os.close(fd)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_parse_takes_what_docker_and_runc_take_and_nothing_else() -> None:
    for name, member in signal.Signals.__members__.items():
        value = int(member)
        for text in (name, name.lower(), name[3:], name[3:].lower()):
            assert signals.parse(text) == value, text
    for number in range(1, signal.SIGRTMAX + 1):
        assert signals.parse(str(number)) == number
    low, high = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    assert signals.parse("RTMIN+3") == signals.parse("sigrtmin+3") == low + 3
    assert signals.parse("SIGRTMAX-2") == high - 2
    assert signals.parse(f"RTMIN+{high - low}") == high
    for text in ("0", str(high + 1), "-9", "", "SIG", "SIGSIGTERM", "TERM ", "RTMIN+",
                 f"RTMIN+{high - low + 1}", f"RTMAX-{high - low + 1}", "RTMIN-1",
                 "\u0661\u0665", "SIG_DFL", "_DFL", "1e1", "9" * 5000, "RTMIN+" + "9" * 5000,
                 "RTMAX-" + "1" * 5000, "1" + "0" * 4):
        assert signals.parse(text) is None, text  # (int() raises on 5,000 digits)
    assert signals.parse("0009") == 9 and signals.parse("RTMIN+" + "0" * 500 + "1") == low + 1
