#!/usr/bin/env bash
# The README's first command: install what bpuq needs, build the drivers, create the default
# example (a small CNN, its calibration set and config — made here, nothing downloaded) and run
# the full conversion on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-deps.sh
cmake -S . -B build-examples -DCMAKE_BUILD_TYPE=Release -DBPUQ_BUILD_TESTS=OFF -DBPUQ_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-examples -j"$(nproc 2>/dev/null || echo 2)" --target bpuq_make_example bpuq_convert
work=build-examples/quickstart
./build-examples/examples/bpuq_make_example "$work"
(cd "$work" && ../examples/bpuq_convert --config shapes_cnn.yaml)
echo
echo "artifacts in $work/model_output:"
ls -l "$work/model_output"
