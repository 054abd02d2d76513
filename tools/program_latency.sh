#!/usr/bin/env bash
# Integer-program latency vs ONNX Runtime int8 on bpuq's own QDQ export, single thread, side by
# side (issue #5, docs/PERFORMANCE.md). Reuses the conversions of tools/ort_agreement.sh (runs it
# when they are missing): the same calibration_type default conversion, cut at the logits.
# Usage: tools/program_latency.sh [BUILD_DIR] [RUNS]. Needs node_modules/onnxruntime-node and
# Debian's python3-numpy (/usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${2:-200}
work=${BPUQ_AGREEMENT_WORK:-$build/ort_agreement}
cmake --build "$build" -j"$(nproc)" --target bpuq_infer >/dev/null
printf '%-24s %12s %12s %12s %12s %10s %s\n' model bpuq_median bpuq_min ort_median ort_min ort/bpuq ort_level
for name in resnet8 squeezenet1.1 mobilenet_v1_0.25_128 mobilenet_v2_1.0_224; do
  [ -z "${BPUQ_ACCURACY_MODELS:-}" ] || [[ " $BPUQ_ACCURACY_MODELS " == *" $name "* ]] || continue
  dir="$work/$name"
  [ -f "$dir/out/$name.bpuq" ] || BPUQ_ACCURACY_MODELS="$name" tools/ort_agreement.sh "$build" 10 >/dev/null
  # the first evaluation sample alone, so that bpuq_infer times one image
  /usr/bin/python3 -c 'import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1])[:1])' "$dir/eval.npy" "$dir/first.npy"
  bpuq=$("$build/examples/bpuq_infer" --model "$dir/out/$name.bpuq" --input "$dir/first.npy" --output "$dir/first_out.npy" \
           --repeat "$runs" | sed -n 's/.*: \([0-9.]*\) ms (min \([0-9.]*\) ms).*/\1 \2/p')
  ort=$(node tools/ort_latency.js "$dir/out/${name}_quantized_model.onnx" "$dir/first.npy" "$runs" |
          sed -n 's/median_ms=\([0-9.]*\) min_ms=\([0-9.]*\) runs=[0-9]* level=\(.*\)/\1 \2 \3/p')
  read -r bm bn <<<"$bpuq"
  read -r om on level <<<"$ort"
  printf '%-24s %10s ms %10s ms %10s ms %10s ms %10s %s\n' "$name" "$bm" "$bn" "$om" "$on" \
    "$(awk -v a="$om" -v b="$bm" 'BEGIN { printf "%.2f", a / b }')" "$level"
done
