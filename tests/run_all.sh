#!/usr/bin/env bash
# The README's test command: install dependencies, build everything (Release), run every test,
# then rebuild the dependency-free layers' tests with ASan+UBSan and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

bash .ci/install-deps.sh

echo "== Release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"

echo "== Tests"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== ASan + UBSan build of the sanitize-labelled suites"
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DBPUQ_SANITIZE=ON \
      -DBPUQ_BUILD_EXAMPLES=OFF -DBPUQ_BUILD_BENCHMARKS=OFF
cmake --build build-sanitize -j"$jobs" --target bpuq_sanitize_tests
(cd build-sanitize && ctest --output-on-failure -j"$jobs" -L sanitize)
