"""``nsbind image``: inspect, unpack, flatten, ls, rm, gc, and the progress bars."""

from __future__ import annotations

import json
import os
import pathlib
import select
import subprocess
import sys
import threading

import pytest

from nsbind.image.progress import progress

pytestmark = pytest.mark.unprivileged  # every test here runs without root too

IMAGES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "testdata" / "images"


def nsbind(*args: str, code: int = 0) -> str:
    proc = subprocess.run([sys.executable, "-m", "nsbind", "image", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    return proc.stdout if code == 0 else proc.stderr


@pytest.fixture
def repo() -> str:
    path = IMAGES / "regclient-testrepo"
    if not path.exists():
        pytest.skip(f"{path} is missing (the shared test images)")
    return str(path)


def test_inspect_prints_what_the_docker_docs_walk_through(repo: str) -> None:
    out = nsbind("inspect", repo, "--tag", "v3")
    for text in ("Tags:       v3", "Platform:   linux/amd64", 'Cmd:        ["sh"]',
                 "  PATH=/usr/local/sbin", "History:", "COPY layer1.txt /layer1",
                 "Layers (lowest first):", "Label:      version=3", "Volumes:    /volume"):
        assert text in out
    assert sum(1 for line in out.splitlines() if "application/vnd.oci.image.layer" in line) == 5


def test_inspect_json_and_platform_selection(repo: str) -> None:
    info = json.loads(nsbind("inspect", repo, "--tag", "v3", "--platform", "linux/arm64",
                             "--json"))
    assert info["platform"].startswith("linux/arm64")
    assert [h["empty_layer"] for h in info["history"]].count(False) == len(info["layers"]) == 5
    assert info["config"]["cmd"] == ["sh"]
    err = nsbind("inspect", repo, code=1)
    assert err.startswith("nsbind image inspect: ") and "tag" in err


def test_unpack_ls_rm_gc_and_flatten(repo: str, tmp_path: pathlib.Path) -> None:
    store = str(tmp_path / "store")
    out = nsbind("unpack", repo, "--tag", "v3", "--store", store)
    dirs = out.split()
    assert len(dirs) == 5 and all(d.startswith(store + "/layers/sha256/") for d in dirs)
    assert nsbind("unpack", repo, "--tag", "v2", "--store", store, "--quiet") == ""
    listing = nsbind("ls", "--store", store).splitlines()
    assert listing[0].split() == ["IMAGE", "ID", "TAGS", "PLATFORM", "LAYERS"]
    assert len(listing) == 3 and "v3" in "".join(listing)
    assert nsbind("rm", "v3", "--store", store).startswith("removed sha256:")
    assert nsbind("gc", "--store", store).count("removed layer") >= 1
    nsbind("flatten", repo, str(tmp_path / "rootfs"), "--tag", "v3")
    assert sorted(os.listdir(tmp_path / "rootfs")) == ["base.txt", "dir", "layer1", "layer2",
                                                        "layer3"]


def test_images_is_image_ls_with_only_the_ids_or_json(repo: str, tmp_path: pathlib.Path
                                                      ) -> None:
    """``nsbind images`` is Docker's shorthand for ``image ls``: the same table, ``-q``
    the ids alone, ``--json`` (global or the command's) a record per image."""
    store = str(tmp_path / "store")
    nsbind("unpack", repo, "--tag", "v3", "--store", store, "--quiet")

    def top(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "nsbind", *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    table = top("--root", store, "images")
    assert table == nsbind("ls", "--store", store)
    records = json.loads(top("--root", store, "--json", "images"))
    assert records == json.loads(top("images", "--json", "--store", store))
    (record,) = records
    assert record["Id"].startswith("sha256:") and len(record["Layers"]) == 5
    assert any(tag.endswith(":v3") or tag == "v3" for tag in record["RepoTags"])
    assert record["Platform"].startswith("linux/amd64")
    assert top("images", "-q", "--store", store) == record["Id"][7:19] + "\n"
    assert record["Id"][7:19] in table.splitlines()[1]
    assert top("--version").startswith("nsbind version ")


def test_progress_bars_on_a_terminal_only() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty, progress(1000, 2, stream=tty) as bars:
            bars.on_bytes(500)
            bars.on_layer()
        shown = ""
        while select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 65536).decode(errors="replace")
        assert "bytes" in shown and "layers" in shown
        with open(os.devnull, "w") as quiet_out, progress(1000, 2, stream=quiet_out) as bars:
            assert bars._bytes is None  # not a terminal: no bar
        with open(slave, "w", closefd=False) as tty, progress(10, 1, stream=tty,
                                                             quiet=True) as bars:
            assert bars._bytes is None
    finally:
        os.close(master)
        os.close(slave)
    assert threading.active_count() == 1  # tqdm's monitor thread is off
