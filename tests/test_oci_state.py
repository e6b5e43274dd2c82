"""The container state directory of nsbind.oci.state under processes that race for it."""

from __future__ import annotations

import pathlib
import threading

from nsbind.oci.state import LifecycleError, locked, remove_state_dir


def test_the_state_directory_goes_while_others_take_its_lock(tmp_path: pathlib.Path) -> None:
    """delete removes the directory while another process opens its lock (an exit
    monitor, a kill): only create makes the lock file, so none comes back after the
    unlinks; the directory goes, and the other one finds no container once it has."""
    for n in range(40):
        directory = tmp_path / f"c{n}"
        directory.mkdir()
        for name in ("lock", "state.json", "config.json", "exec.fifo"):
            (directory / name).write_text("x")
        stop = threading.Event()
        outcome: list[str] = []

        def take_lock(where: pathlib.Path = directory, stop: threading.Event = stop,
                      outcome: list[str] = outcome) -> None:
            for _ in range(1_000_000):
                if stop.is_set():
                    outcome.append("stopped")
                    return
                try:
                    with locked(str(where), "c"):
                        pass
                except LifecycleError as exc:
                    outcome.append(str(exc))
                    return

        other = threading.Thread(target=take_lock)
        other.start()
        try:
            remove_state_dir(str(directory))
        finally:
            stop.set()
            other.join(30)
        assert not other.is_alive()
        assert not directory.exists()
        assert outcome in (["container c does not exist"], ["stopped"])
    remove_state_dir(str(tmp_path / "gone"))  # a directory already gone: nothing to do
