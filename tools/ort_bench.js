// ONNX Runtime (onnxruntime-node 1.30.0) single-threaded latency of the real models, the
// comparison column of docs/PERFORMANCE.md. Usage (from the repo root, after
// `npm install --ignore-scripts onnxruntime-node@1.30.0`):
//   node tools/ort_bench.js [data_dir] [runs]
// Prints one line per model: name, median and min latency in ms over `runs` runs of the
// first reference sample (after warm-up), and the max abs difference to outputs.npy.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const { readNpy } = require('./npy');

const models = [
  ['mnist-8', 'mnist/mnist-8.onnx', null],
  ['resnet8_fp32', 'cifar10/models/resnet8_fp32.onnx', 'resnet8_fp32'],
  ['squeezenet1.1_fp32', 'imagenet/models/squeezenet1.1_fp32.onnx', 'squeezenet1.1_fp32'],
  ['mobilenet_v1_0.25_128_fp32', 'imagenet/models/mobilenet_v1_0.25_128_fp32.onnx', 'mobilenet_v1_0.25_128_fp32'],
  ['mobilenet_v2_1.0_224_fp32', 'imagenet/models/mobilenet_v2_1.0_224_fp32.onnx', 'mobilenet_v2_1.0_224_fp32'],
];

async function main() {
  const dataDir = process.argv[2] || path.join(__dirname, '..', '..', 'shared', 'data');
  const runs = Number(process.argv[3] || 200);
  for (const [name, rel, ref] of models) {
    const session = await ort.InferenceSession.create(path.join(dataDir, rel), {
      intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
    const inName = session.inputNames[0];
    let x, want = null;
    if (ref) {
      const inputs = readNpy(path.join(dataDir, 'reference', ref, 'inputs.npy'));
      const outputs = readNpy(path.join(dataDir, 'reference', ref, 'outputs.npy'));
      const per = inputs.data.length / inputs.shape[0];
      x = new ort.Tensor('float32', inputs.data.slice(0, per), [1, ...inputs.shape.slice(1)]);
      want = outputs.data.slice(0, outputs.data.length / outputs.shape[0]);
    } else {
      const data = new Float32Array(28 * 28);
      for (let i = 0; i < data.length; ++i) data[i] = (i * 37) % 255;
      x = new ort.Tensor('float32', data, [1, 1, 28, 28]);
    }
    const feeds = { [inName]: x };
    for (let i = 0; i < 20; ++i) await session.run(feeds);
    const times = [];
    let out;
    for (let i = 0; i < runs; ++i) {
      const t0 = process.hrtime.bigint();
      out = await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    let maxAbs = NaN;
    if (want) {
      const y = out[session.outputNames[0]].data;
      maxAbs = 0;
      for (let i = 0; i < want.length; ++i) maxAbs = Math.max(maxAbs, Math.abs(y[i] - want[i]));
    }
    console.log(`${name}\tmedian_ms=${times[Math.floor(runs / 2)].toFixed(3)}\tmin_ms=${times[0].toFixed(3)}\tmax_abs_vs_ref=${maxAbs}`);
  }
}
main().catch(e => { console.error(e); process.exit(1); });
