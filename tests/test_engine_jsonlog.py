"""The json-file log: Docker's line format, partial and long lines, the size cap,
tail from the end, follow until stopped, and the refusals (symlink, FIFO)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import threading
import time

import pytest

from nsbind.engine.errors import EngineError
from nsbind.engine.jsonlog import MAX_LINE, LogEntry, LogWriter, format_entry, read_log

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def lines(path: pathlib.Path) -> list[dict[str, str]]:
    return [json.loads(x) for x in path.read_bytes().splitlines()]


def test_lines_are_written_exactly_as_docker_does(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log)) as w:
        w.write("stdout", b"hello\nwor")
        w.write("stderr", b"oops\n")
        w.write("stdout", b"ld\n")
    raw = log.read_bytes().splitlines()
    assert re.fullmatch(rb'\{"log":"hello\\n","stream":"stdout","time":"[^"]+"\}', raw[0])
    got = [(d["stream"], d["log"]) for d in lines(log)]
    assert got == [("stdout", "hello\n"), ("stderr", "oops\n"), ("stdout", "world\n")]
    assert all(TIME.match(d["time"]) for d in lines(log))
    assert os.stat(log).st_mode & 0o777 == 0o640


def test_escaping_matches_go_and_bad_utf8_is_replaced(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log)) as w:
        w.write("stdout", b"<a&b>\t\"q\" \xff caf\xc3\xa9\x00\n")
    raw = log.read_bytes()
    assert b'"log":"\\u003ca\\u0026b\\u003e\\t\\"q\\" \xef\xbf\xbd caf\xc3\xa9\\u0000\\n"' in raw
    assert lines(log)[0]["log"] == "<a&b>\t\"q\" \ufffd caf\u00e9\x00\n"


def test_partial_line_is_flushed_as_is_and_long_lines_split(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log)) as w:
        w.write("stdout", b"x" * (MAX_LINE * 2 + 5) + b"\n")
        w.write("stdout", b"no newline")
        assert len(lines(log)) == 3
        w.flush()
        w.write("stdout", b"a" + "é".encode() * MAX_LINE)  # cut on a char boundary
    texts = [d["log"] for d in lines(log)]
    assert texts[:4] == ["x" * MAX_LINE, "x" * MAX_LINE, "xxxxx\n", "no newline"]
    assert all("\ufffd" not in t for t in texts)
    assert "".join(texts[4:]) == "a" + "é" * MAX_LINE


def test_cap_writes_one_notice_then_drops(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log), max_bytes=4096) as w:
        for i in range(200):
            w.write("stdout", f"line {i}\n".encode())
        assert w.full
    assert log.stat().st_size <= 4096
    entries = lines(log)
    assert entries[-1]["stream"] == "stderr" and "log file full" in entries[-1]["log"]
    assert sum("log file full" in d["log"] for d in entries) == 1
    # reopening a full log does not add a second notice
    with LogWriter(str(log), max_bytes=4096) as w:
        w.write("stdout", b"more\n")
    assert len(lines(log)) == len(entries)


def test_symlink_and_fifo_are_refused(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "real.log"
    target.write_bytes(b"")
    (tmp_path / "link.log").symlink_to(target)
    with pytest.raises(EngineError, match="symbolic link"):
        LogWriter(str(tmp_path / "link.log"))
    with pytest.raises(EngineError, match="symbolic link"):
        list(read_log(str(tmp_path / "link.log")))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(EngineError, match="not a regular file"):
        list(read_log(str(tmp_path / "fifo")))  # must not hang waiting for a writer
    with pytest.raises(EngineError, match="not a regular file"):
        LogWriter(str(tmp_path / "fifo"))


def test_read_skips_malformed_and_torn_lines(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log)) as w:
        w.write("stdout", b"one\n")
    with open(log, "ab") as f:
        f.write(b"not json\n[1]\n" + b"{" * 100 + b"\n")
    with LogWriter(str(log)) as w:
        w.write("stderr", b"two\n")
    with open(log, "ab") as f:
        f.write(b'{"log":"torn')
    got = [(e.stream, e.text) for e in read_log(str(log))]
    assert got == [("stdout", "one\n"), ("stderr", "two\n")]
    assert [e.text for e in read_log(str(log), tail=1)] == ["two\n"]


def test_tail_reads_from_the_end(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    with LogWriter(str(log)) as w:
        for i in range(20000):  # > several 64 KiB blocks
            w.write("stdout", f"{i}\n".encode())
    assert [e.text for e in read_log(str(log), tail=3)] == ["19997\n", "19998\n", "19999\n"]
    assert list(read_log(str(log), tail=0)) == []
    assert len(list(read_log(str(log), tail=50000))) == 20000
    assert len(list(read_log(str(log)))) == 20000


def test_follow_yields_appended_lines_until_stopped(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "c.log"
    done = threading.Event()
    with LogWriter(str(log)) as w:
        w.write("stdout", b"before\n")

        def writer() -> None:
            for i in range(5):
                time.sleep(0.02)
                w.write("stdout", f"after {i}\n".encode())
            w.write("stdout", b"last")  # a partial line, flushed right before the stop
            w.flush()
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        try:
            got = [e.text for e in read_log(str(log), tail=1, follow=True, stop=done.is_set)]
        finally:
            t.join()
    assert got == ["before\n", *[f"after {i}\n" for i in range(5)], "last"]


def test_format_entry() -> None:
    e = LogEntry("stdout", "hi\n", "2026-11-30T19:40:01.123456789Z")
    assert format_entry(e) == b"hi\n"
    assert format_entry(e, timestamps=True) == b"2026-11-30T19:40:01.123456789Z hi\n"
