"""Layer unpack throughput: nsbind against GNU tar -x and umoci unpack, in one run.

Run:  bash scripts/bench.sh   (or: python3 -m pytest benchmarks/bench_unpack.py --benchmark-only)
The image (4 gzip layers, about 240 MB unpacked: 12,000 small text files and 40
larger binaries) is built once with umoci.  Every tool unpacks the same layer blobs
into a fresh directory on a tmpfs (/dev/shm), so the figures compare the unpackers,
not this VM's disk.  nsbind checks every blob digest and diff_id while it unpacks;
tar does not.  Compare ratios within one run: the machine is shared.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from nsbind.image import Store, flatten, load

pytestmark = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is missing")


def _fill(root: pathlib.Path, seed: int) -> None:
    """About 60 MB: 3,000 text files of 1-16 KiB and 10 files of 3 MiB (1 MiB random)."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
             for _ in range(2000)]
    for i in range(3000):
        d = root / f"usr/share/pkg{seed}-{i % 60}"
        d.mkdir(parents=True, exist_ok=True)
        n = rnd.randint(1024, 16384)
        (d / f"file{i}.txt").write_bytes(b" ".join(rnd.choice(words) for _ in range(n // 5))[:n])
    big = root / f"usr/lib/big{seed}"
    big.mkdir(parents=True, exist_ok=True)
    for i in range(10):
        (big / f"lib{i}.so").write_bytes(rnd.randbytes(1 << 20) + bytes(2 << 20))


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    base = tmp_path_factory.mktemp("unpack-image")
    layout, bundle = base / "oci", base / "bundle"
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:bench"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", bundle], check=True,
                   capture_output=True)
    for seed in range(4):
        _fill(bundle / "rootfs", seed)
        subprocess.run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:bench",
                        bundle], check=True)
    shutil.rmtree(bundle)
    yield layout
    shutil.rmtree(base)


@pytest.fixture
def scratch() -> Iterator[pathlib.Path]:
    path = pathlib.Path(tempfile.mkdtemp(prefix="nsbind-bench-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path)


def _unpacked_size(layout: pathlib.Path) -> float:
    total = 0
    with load(str(layout), tag="bench") as img:
        for layer in img.layers:
            with layer.open() as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
                total += sum(m.size for m in tar)
    return total / 1e6


def _run(benchmark: BenchmarkFixture, scratch: pathlib.Path, layout: pathlib.Path,
         fn: Callable[[pathlib.Path], None]) -> None:
    out = scratch / "out"

    def setup() -> None:
        shutil.rmtree(out, ignore_errors=True)

    benchmark.extra_info["megabytes"] = _unpacked_size(layout)
    benchmark.pedantic(lambda: fn(out), setup=setup, rounds=5,  # type: ignore[no-untyped-call]
                       iterations=1)


@pytest.mark.benchmark(group="unpack 240 MB, 4 gzip layers")
def test_baseline_gnu_tar_x(benchmark: BenchmarkFixture, image: pathlib.Path,
                            scratch: pathlib.Path) -> None:
    with load(str(image), tag="bench") as img:
        blobs = [image / "blobs" / "sha256" / str(layer.digest).partition(":")[2]
                 for layer in img.layers]

    def tar_x(out: pathlib.Path) -> None:
        for i, blob in enumerate(blobs):
            (out / str(i)).mkdir(parents=True)
            subprocess.run(["tar", "-xzf", blob, "-C", out / str(i)], check=True)

    _run(benchmark, scratch, image, tar_x)


@pytest.mark.benchmark(group="unpack 240 MB, 4 gzip layers")
def test_nsbind_store_unpack(benchmark: BenchmarkFixture, image: pathlib.Path,
                             scratch: pathlib.Path) -> None:
    def unpack(out: pathlib.Path) -> None:
        with load(str(image), tag="bench") as img:
            assert len(Store(str(out)).unpack(img)) == 4

    _run(benchmark, scratch, image, unpack)


@pytest.mark.benchmark(group="unpack 240 MB, 4 gzip layers")
def test_nsbind_flatten(benchmark: BenchmarkFixture, image: pathlib.Path,
                        scratch: pathlib.Path) -> None:
    def flat(out: pathlib.Path) -> None:
        with load(str(image), tag="bench") as img:
            flatten(img, str(out))

    _run(benchmark, scratch, image, flat)


@pytest.mark.benchmark(group="unpack 240 MB, 4 gzip layers")
def test_umoci_unpack(benchmark: BenchmarkFixture, image: pathlib.Path,
                      scratch: pathlib.Path) -> None:
    def umoci(out: pathlib.Path) -> None:
        subprocess.run(["umoci", "unpack", "--image", f"{image}:bench", out], check=True,
                       capture_output=True)

    _run(benchmark, scratch, image, umoci)


# VmHWM of the probe's own address space: ru_maxrss would carry over the parent's
# peak through the vfork+exec that started it
_MEMORY_PROBE = """
import sys
from nsbind.image import Store, load
with load(sys.argv[1], tag="big") as img:
    Store(sys.argv[2]).unpack(img)
with open("/proc/self/status") as f:
    print(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
"""


@pytest.mark.benchmark(group="peak memory, one 1 GiB layer")
def test_nsbind_peak_memory_of_a_1gib_layer(benchmark: BenchmarkFixture,
                                            scratch: pathlib.Path) -> None:
    """Peak RSS of a process that unpacks a 1 GiB gzip layer (target: under 100 MB)."""
    layout, bundle = scratch / "oci", scratch / "bundle"
    subprocess.run(["umoci", "init", "--layout", layout], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:big"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:big", bundle], check=True,
                   capture_output=True)
    with open(bundle / "rootfs" / "big", "wb") as f:
        for _ in range(1024):
            f.write(os.urandom(64 << 10) * 16)  # 1 MiB, compressible 16:1
    subprocess.run(["umoci", "repack", "--image", f"{layout}:big", bundle], check=True)
    shutil.rmtree(bundle)
    peaks: list[int] = []

    def probe() -> None:
        store = scratch / "store"
        shutil.rmtree(store, ignore_errors=True)
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, layout, store],
                             check=True, capture_output=True, text=True).stdout
        peaks.append(int(out) * 1024)

    benchmark.pedantic(probe, rounds=2, iterations=1)  # type: ignore[no-untyped-call]
    benchmark.extra_info["peak_rss_mb"] = max(peaks) / 1e6
    assert max(peaks) < 100e6, f"peak RSS {max(peaks) / 1e6:.0f} MB"
