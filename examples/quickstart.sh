#!/usr/bin/env bash
# The README's first command: install what bpuq needs, build the example drivers, run the main job
# on the default that ships with the project.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
cmake -S . -B build-examples -DCMAKE_BUILD_TYPE=Release -DBPUQ_BUILD_TESTS=OFF -DBPUQ_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-examples -j"$(nproc 2>/dev/null || echo 2)"
./build-examples/examples/bpuq_demo
