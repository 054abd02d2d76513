// ONNX Runtime single-threaded latency of one model on the first sample of an .npy batch — the
// side-by-side column for bpuq's integer programs (tools/program_latency.sh). Usage:
//   node tools/ort_latency.js model.onnx inputs.npy [runs]
// inputs.npy: samples on the first axis, uint8 or float32 (fed as float32). All graph
// optimizations are on, so a QDQ model runs ONNX Runtime's int8 kernels (QLinearConv etc.).
// Prints: median_ms=<m> min_ms=<m> runs=<n> level=<graph optimization level used>
'use strict';
const ort = require('onnxruntime-node');
const { readNpy } = require('./npy');

async function main() {
  const [model, inputs, runsArg] = process.argv.slice(2);
  if (!inputs) throw new Error('usage: node tools/ort_latency.js model.onnx inputs.npy [runs]');
  const runs = Number(runsArg || 200);
  // ONNX Runtime 1.30's QDQ fusions fail on some opset-10 QDQ models (they insert a Round, which
  // exists from opset 11): fall back to the next lower optimization level and say so
  let session, level;
  for (level of ['all', 'extended', 'basic', 'disabled']) {
    try {
      session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: level,
      });
      break;
    } catch (e) {
      console.error(`graphOptimizationLevel ${level} failed: ${(e.message || e).split('\n')[0]}`);
    }
  }
  if (!session) throw new Error(model + ': ONNX Runtime could not load it at any optimization level');
  const x = readNpy(inputs);
  const per = x.data.length / x.shape[0];
  const first = Float32Array.from(x.data.subarray(0, per));
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', first, [1, ...x.shape.slice(1)]) };
  for (let i = 0; i < 20; ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < runs; ++i) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(`median_ms=${times[Math.floor(runs / 2)].toFixed(3)} min_ms=${times[0].toFixed(3)} runs=${runs} level=${level}`);
}
main().catch(e => { console.error(e.message || e); process.exit(1); });
