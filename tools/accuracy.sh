#!/usr/bin/env bash
# Re-runs the accuracy table of docs/ACCURACY.md: for every shared model, write its calibration
# split, convert it with each calibration method, and measure top-1 of the float model and of the
# integer program on the evaluation split. Usage: tools/accuracy.sh [BUILD_DIR] [METHODS...]
# A method is a calibration_type, optionally with optimizations after '+' (e.g.
# default+bias_correction, max+per_channel for per-channel activations); "load" converts the model's QDQ version (models without one are
# skipped). BPUQ_ACCURACY_MODELS="resnet8 squeezenet1.1" limits the models.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(default max kl)
data=${BPUQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export BPUQ_DATA_DIR=$data
work=${BPUQ_ACCURACY_WORK:-$build/accuracy}
mkdir -p "$work"
cmake --build "$build" -j"$(nproc)" --target bpuq_convert bpuq_accuracy >/dev/null

# name | model | recipe | input_type_train | norm_type | mean | scale | QDQ model (for load)
all_models=(
  "mnist-8|mnist/mnist-8.onnx|mnist|gray|no_preprocess|||"
  "resnet8|cifar10/models/resnet8_fp32.onnx|resnet8|rgb|no_preprocess|||cifar10/models/resnet8_int8_qdq.onnx"
  "squeezenet1.1|imagenet/models/squeezenet1.1_fp32.onnx|squeezenet|bgr|data_mean|104 117 123||"
  "mobilenet_v1_0.25_128|imagenet/models/mobilenet_v1_0.25_128_fp32.onnx|mobilenet_v1|rgb|data_mean_and_scale|128|0.0078125|imagenet/models/mobilenet_v1_0.25_128_qat_qdq.onnx"
  "mobilenet_v2_1.0_224|imagenet/models/mobilenet_v2_1.0_224_fp32.onnx|mobilenet_v2|rgb|data_mean_and_scale|128|0.0078125|imagenet/models/mobilenet_v2_1.0_224_qat_qdq.onnx"
)
models=()
for entry in "${all_models[@]}"; do
  [ -z "${BPUQ_ACCURACY_MODELS:-}" ] || [[ " $BPUQ_ACCURACY_MODELS " == *" ${entry%%|*} "* ]] && models+=("$entry")
done
for entry in "${models[@]}"; do
  IFS='|' read -r name model recipe type norm mean scale qdq <<<"$entry"
  dir="$work/$name"
  mkdir -p "$dir"
  [ -d "$dir/cal" ] || "$build/examples/bpuq_accuracy" --data "$data" --recipe "$recipe" --split calibration --write-calibration "$dir/cal"
  for method in "${methods[@]}"; do
    ctype=${method%%+*}
    opts=""
    [[ "$method" != *+* ]] || opts=${method#*+}
    if [ "$ctype" = load ]; then
      [ -n "$qdq" ] || continue
      model=$qdq
    fi
    cfg="$dir/$method.yaml"
    {
      echo "model_parameters:"
      echo "  onnx_model: $data/$model"
      echo "  output_model_file_prefix: ${name}_$method"
      echo "  working_dir: out_$method"
      echo "input_parameters:"
      echo "  input_type_train: $type"
      echo "  input_type_rt: $type"
      echo "  norm_type: $norm"
      [ -z "$mean" ] || echo "  mean_value: $mean"
      [ -z "$scale" ] || echo "  scale_value: $scale"
      echo "calibration_parameters:"
      echo "  cal_data_dir: cal"
      echo "  cal_data_type: uint8"
      echo "  calibration_type: $ctype"
      # "per_channel" among the options is the calibration_parameters key, the rest are optimizations
      [[ "+$opts+" != *+per_channel+* ]] || echo "  per_channel: true"
      optim=$(echo "$opts" | tr '+' '\n' | grep -v '^per_channel$' | paste -sd, || true)
      [ -z "$optim" ] || echo "  optimization: $optim"
    } >"$cfg"
    "$build/examples/bpuq_convert" --config "$cfg" >"$dir/$method.convert.txt"
    "$build/examples/bpuq_accuracy" --data "$data" --recipe "$recipe" --split evaluation \
      --onnx "$dir/out_$method/${name}_${method}_original_float_model.onnx" \
      --program "$dir/out_$method/${name}_$method.bpuq" --json "$dir/$method.json" 2>/dev/null | tee "$dir/$method.accuracy.txt"
    grep -E "^Select|enabled|^Load |bias_correction: corrected" "$dir/out_$method/${name}_${method}_convert.log" |
      sed -E 's/^ *bias_correction: (corrected [0-9]+) .*largest shift ([0-9.]+).*/bias_correction \1 layers, largest shift \2./; s/^Load calibration parameters from .*\/([^/]+)\.$/Load \1./' |
      tr '\n' ' ' >"$dir/$method.choice.txt" || true
  done
done
# the table
{
  echo "| model | data (n) | float top-1 | method (chosen) | int8 top-1 | delta |"
  echo "|---|---|---|---|---|---|"
  for entry in "${models[@]}"; do
    IFS='|' read -r name model recipe type norm mean scale qdq <<<"$entry"
    for method in "${methods[@]}"; do
      j="$work/$name/$method.json"
      [ -f "$j" ] || continue
      python3 - "$j" "$name" "$method" "$(cat "$work/$name/$method.choice.txt")" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); name, method, choice = sys.argv[2:5]
vals = list(j["top1"].values()); f, q = vals[0], vals[1]
print(f"| {name} | {j['split']} ({j['samples']}) | {f:.2f}% | {method} ({choice.strip()}) | {q:.2f}% | {q - f:+.2f} |")
PY
    done
  done
} | tee "$work/table.md"
