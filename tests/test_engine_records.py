"""The engine's container records (nsbind.engine.records) while other processes add and
remove them: `nsbind run --rm` started fifty at once lists the records while others
end and remove theirs."""

from __future__ import annotations

import errno
import os
import pathlib
import threading
import time

import pytest

from nsbind.engine.errors import EngineError
from nsbind.engine.records import RecordStore, now


def _churn(store: RecordStore, stop: threading.Event, made: list[int]) -> None:
    """Make and remove records until ``stop`` is set (a bounded number of them)."""
    for _ in range(20000):
        if stop.is_set():
            return
        cid, name = store.reserve(None)
        store.save({"id": cid, "name": name, "created": now()})
        store.remove(cid)
        made[0] += 1


def test_listing_while_records_come_and_go(tmp_path: pathlib.Path) -> None:
    """ids() and records() never fail on a record removed between finding and reading
    it; they list the records that stay, oldest first."""
    store = RecordStore(str(tmp_path / "state"))
    kept = []
    for _ in range(3):
        cid, name = store.reserve(None)
        store.save({"id": cid, "name": name, "created": now()})
        kept.append(cid)
        time.sleep(0.01)  # distinct ctimes: the order is the records' age
    stop, made = threading.Event(), [0]
    churn = threading.Thread(target=_churn, args=(store, stop, made))
    churn.start()
    try:
        deadline = time.monotonic() + 2.0
        listings = 0
        while time.monotonic() < deadline or listings < 200:
            ids = store.ids()
            assert [i for i in ids if i in kept] == kept
            assert [r["id"] for r in store.records() if r["id"] in kept] == kept
            listings += 1
            if listings > 100000:
                break
    finally:
        stop.set()
        churn.join(30)
    assert not churn.is_alive()
    assert made[0] > 0
    assert store.ids() == kept


def test_what_is_not_a_record_is_not_listed(tmp_path: pathlib.Path) -> None:
    """A reserved container without its record yet, an entry that is not an id, and a
    record.json that is a directory or a symlink are not containers."""
    store = RecordStore(str(tmp_path / "state"))
    cid, name = store.reserve("saved")
    store.save({"id": cid, "name": name, "created": now()})
    reserved, _ = store.reserve("reserved")
    folder = tmp_path / "state" / "containers"
    (folder / "not-an-id").mkdir()
    (folder / "not-an-id" / "record.json").write_text("{}")
    odd_dir, odd_link = "a" * 64, "b" * 64
    (folder / odd_dir / "record.json").mkdir(parents=True)
    (folder / odd_link).mkdir()
    os.symlink(folder / cid / "record.json", folder / odd_link / "record.json")
    (folder / ("c" * 64)).write_text("a file, not a directory")
    assert store.ids() == [cid]
    assert [r["id"] for r in store.records()] == [cid]
    assert reserved not in store.ids()


def test_an_update_racing_a_removal_finds_no_container(tmp_path: pathlib.Path) -> None:
    """A monitor recording an exit (update) while ``nsbind rm -f`` removes the container:
    each update lands before the removal or finds no container (EngineError ENOENT, not
    an OSError), and the record directory never comes back holding a lock file alone."""
    store = RecordStore(str(tmp_path / "state"))
    unexpected: list[BaseException] = []

    def recorder(cid: str, go: threading.Event) -> None:
        go.wait(5)
        for code in range(200):
            try:
                store.update(cid, exitCode=code)
            except EngineError as exc:
                if exc.errno != errno.ENOENT:
                    unexpected.append(exc)
                return
            except BaseException as exc:
                unexpected.append(exc)
                return

    for _ in range(200):
        cid, name = store.reserve(None)
        store.save({"id": cid, "name": name, "created": now()})
        go = threading.Event()
        thread = threading.Thread(target=recorder, args=(cid, go))
        thread.start()
        go.set()
        store.remove(cid)
        thread.join(30)
        assert not thread.is_alive()
        assert not unexpected, unexpected
        assert not os.path.lexists(store.directory(cid))
    assert os.listdir(tmp_path / "state" / "containers") == []
    assert os.listdir(tmp_path / "state" / "names") == []
    with pytest.raises(EngineError, match="No such container"):
        store.update(cid, exitCode=0)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_record_that_is_not_a_file_is_refused(tmp_path: pathlib.Path, kind: str) -> None:
    """A record.json replaced by a symlink, a FIFO (which must not hang the read) or a
    directory is "not a file": an EngineError naming the container, nothing followed."""
    store = RecordStore(str(tmp_path / "state"))
    cid, name = store.reserve("odd")
    store.save({"id": cid, "name": name, "created": now()})
    path = pathlib.Path(store.directory(cid)) / "record.json"
    target = tmp_path / "elsewhere.json"
    target.write_text(f'{{"id": "{cid}"}}')
    path.unlink()
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(EngineError, match=f"container {cid}: its record is"):
        store.load(cid)
    store.remove(cid)
    assert not os.path.lexists(store.directory(cid))
    assert os.listdir(tmp_path / "state" / "names") == []  # the name is free again
    assert target.exists()
