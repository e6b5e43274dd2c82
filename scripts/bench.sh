#!/usr/bin/env bash
# Install the peers and run the spawn, namespace and unpack benchmarks side by side, then write
# benchmarks/results.{json,md} and benchmarks/spawn.png.  Needs root.  Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc libc6-dev util-linux bubblewrap crun runc busybox-static umoci >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test,bench]'
python3 -m pytest benchmarks/bench_spawn.py benchmarks/bench_namespaces.py \
    benchmarks/bench_unpack.py --benchmark-only \
    -q --benchmark-json=benchmarks/results.json "$@"
python3 benchmarks/report.py benchmarks/results.json --md benchmarks/results.md \
    --png benchmarks/spawn.png
