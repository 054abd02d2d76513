// QDQ model in ONNX Runtime (graph optimizations disabled) vs bpuq's integer program, element by
// element in quantization steps of the compared (int8) output. Called by tools/ort_agreement.sh;
// needs `npm install --ignore-scripts onnxruntime-node@1.30.0` in the repo root. Usage:
//   node tools/ort_agreement.js quantized_model.onnx inputs.npy program_outputs.npy calibration.json output_name
// inputs.npy: the samples (first axis), uint8 or float32 raw model inputs; program_outputs.npy: the
// program's int8 outputs for them (bpuq_infer). Prints one JSON line with the counts.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

const { readNpy } = require('./npy');

async function main() {
  const [modelPath, inputsPath, programPath, calPath, outName] = process.argv.slice(2);
  if (!outName) throw new Error('usage: node tools/ort_agreement.js model.onnx inputs.npy program_outputs.npy calibration.json output_name');
  const cal = JSON.parse(fs.readFileSync(calPath, 'utf8'));
  const q = cal.activations[outName];
  if (!q || q.scales.length !== 1) throw new Error(calPath + ': no per-tensor parameters for ' + outName);
  const scale = q.scales[0], zp = q.zero_points[0];
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'disabled',
  });
  const inputs = readNpy(inputsPath), prog = readNpy(programPath);
  if (!(prog.data instanceof Int8Array)) throw new Error(programPath + ': expected the program\'s int8 outputs');
  const n = inputs.shape[0], per = inputs.data.length / n, outPer = prog.data.length / prog.shape[0];
  if (prog.shape[0] !== n) throw new Error('inputs and program outputs differ in sample count');
  let total = 0, same = 0, worst = 0;
  const hist = {};
  for (let s = 0; s < n; ++s) {
    const x = Float32Array.from(inputs.data.subarray(s * per, (s + 1) * per));
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', x, [1, ...inputs.shape.slice(1)]) };
    const out = (await session.run(feeds))[outName];
    if (!out) throw new Error('the model has no output ' + outName + ' (outputs: ' + session.outputNames.join(', ') + ')');
    if (out.data.length !== outPer) throw new Error('output sizes differ: ORT ' + out.data.length + ', program ' + outPer);
    for (let i = 0; i < outPer; ++i) {
      const a = Math.round(out.data[i] / scale) + zp, b = prog.data[s * outPer + i];
      const d = Math.abs(a - b);
      ++total;
      if (d === 0) ++same;
      worst = Math.max(worst, d);
      hist[d] = (hist[d] || 0) + 1;
    }
  }
  console.log(JSON.stringify({ model: modelPath, output: outName, samples: n, elements: total, identical: same,
    identical_pct: 100 * same / total, max_steps: worst, histogram_steps: hist }));
}

main().catch(e => { console.error('ort_agreement: ' + e.message); process.exit(1); });
