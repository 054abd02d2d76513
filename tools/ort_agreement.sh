#!/usr/bin/env bash
# Measures SPEC §2's agreement of bpuq's QDQ export run by ONNX Runtime (graph optimizations
# disabled) with the integer program (docs/ACCURACY.md): each shared model is converted with
# calibration_type default, cut at its logits (the last quantized tensor) with
# set_model_output_int8, then both run the first N evaluation images and the int8 logits are
# compared element by element. Usage: tools/ort_agreement.sh [BUILD_DIR] [N]
# Needs `npm install --ignore-scripts onnxruntime-node@1.30.0` in the repo root (node_modules is
# git-ignored). BPUQ_ACCURACY_MODELS="resnet8 ..." limits the models.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
n=${2:-100}
data=${BPUQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
work=${BPUQ_AGREEMENT_WORK:-$build/ort_agreement}
mkdir -p "$work"
cmake --build "$build" -j"$(nproc)" --target bpuq_convert bpuq_accuracy bpuq_infer >/dev/null

# name | model | recipe | input_type_train | norm_type | mean | scale | logits tensor
all_models=(
  "resnet8|cifar10/models/resnet8_fp32.onnx|resnet8|rgb|no_preprocess|||model_dense_MatMul;model_dense_BiasAdd_36"
  "squeezenet1.1|imagenet/models/squeezenet1.1_fp32.onnx|squeezenet|bgr|data_mean|104 117 123||pool10_1"
  "mobilenet_v1_0.25_128|imagenet/models/mobilenet_v1_0.25_128_fp32.onnx|mobilenet_v1|rgb|data_mean_and_scale|128|0.0078125|MobilenetV1_Logits_SpatialSqueeze1_87"
  "mobilenet_v2_1.0_224|imagenet/models/mobilenet_v2_1.0_224_fp32.onnx|mobilenet_v2|rgb|data_mean_and_scale|128|0.0078125|MobilenetV2_Logits_Squeeze1_172"
)
for entry in "${all_models[@]}"; do
  [ -z "${BPUQ_ACCURACY_MODELS:-}" ] || [[ " $BPUQ_ACCURACY_MODELS " == *" ${entry%%|*} "* ]] || continue
  IFS='|' read -r name model recipe type norm mean scale logits <<<"$entry"
  dir="$work/$name"
  mkdir -p "$dir"
  [ -d "$dir/cal" ] || "$build/examples/bpuq_accuracy" --data "$data" --recipe "$recipe" --split calibration --write-calibration "$dir/cal" >/dev/null
  [ -d "$dir/eval" ] || "$build/examples/bpuq_accuracy" --data "$data" --recipe "$recipe" --split evaluation --limit "$n" --write-calibration "$dir/eval" >/dev/null
  # the evaluation samples as one uint8 .npy, samples on the first axis
  python3 - "$dir/eval" "$dir/eval.npy" <<'PY'
import os, struct, sys
src, dst = sys.argv[1:3]
files = sorted(f for f in os.listdir(src) if f.endswith('.npy'))
payload, shape = b'', None
for f in files:
    b = open(os.path.join(src, f), 'rb').read()
    hl = struct.unpack('<H', b[8:10])[0]
    h = b[10:10 + hl].decode('latin1')
    assert "'|u1'" in h, f + ': expected uint8 samples'
    shape = tuple(int(x) for x in h.split("'shape': (")[1].split(')')[0].split(',') if x.strip())
    payload += b[10 + hl:]
dims = shape[1:] if len(shape) == 4 else shape
hdr = "{'descr': '|u1', 'fortran_order': False, 'shape': (%s), }" % ', '.join(str(d) for d in (len(files),) + tuple(dims))
hdr += ' ' * (63 - (len(hdr) + 10) % 64) + '\n'
open(dst, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode('latin1') + payload)
PY
  cfg="$dir/agreement.yaml"
  {
    echo "model_parameters:"
    echo "  onnx_model: $data/$model"
    echo "  output_model_file_prefix: $name"
    echo "  working_dir: out"
    echo "  output_nodes: [\"$logits\"]"
    echo "input_parameters:"
    echo "  input_type_train: $type"
    echo "  input_type_rt: $type"
    echo "  norm_type: $norm"
    [ -z "$mean" ] || echo "  mean_value: $mean"
    [ -z "$scale" ] || echo "  scale_value: $scale"
    echo "calibration_parameters:"
    echo "  cal_data_dir: cal"
    echo "  cal_data_type: uint8"
    echo "  calibration_type: default"
    echo "  optimization: set_model_output_int8"
  } >"$cfg"
  "$build/examples/bpuq_convert" --config "$cfg" >"$dir/convert.txt"
  "$build/examples/bpuq_infer" --model "$dir/out/$name.bpuq" --input "$dir/eval.npy" --output "$dir/program_out.npy" >/dev/null
  node tools/ort_agreement.js "$dir/out/${name}_quantized_model.onnx" "$dir/eval.npy" "$dir/program_out.npy" \
    "$dir/out/${name}_calibration.json" "$logits" | tee "$dir/agreement.json"
done
