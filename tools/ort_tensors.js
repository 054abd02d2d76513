// Tensor-by-tensor comparison of ONNX Runtime (graph optimizations disabled) running a QDQ model with
// bpuq's integer program — where the first differing element arises and whether it sits next to a
// rounding boundary (docs/ACCURACY.md, ORT agreement). Prepare with bpuq_expose_tensors:
//   bpuq_expose_tensors out/m_quantized_model.onnx /tmp/m_all.onnx
//   bpuq_expose_tensors out/m.bpuq /tmp/m_all.bpuq
//   bpuq_infer --model /tmp/m_all.bpuq --input eval.npy --output-dir /tmp/m_prog
//   node tools/ort_tensors.js /tmp/m_all.onnx eval.npy /tmp/m_prog [N]
// Prints per quantized tensor (graph order) the elements compared, how many differ, the largest
// difference in steps, and how many differing elements have ONNX Runtime's float value within 1e-4
// of a half step ("near_half": a float32 rounding root; the others have differing inputs). The first
// few differences are printed with ONNX Runtime's float value / scale.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

const { readNpy } = require('./npy');
// bpuq_infer --output-dir file names; bpuq_expose_tensors keeps the last 200 characters of long names
const fileSafe = s => (s.length > 200 ? s.slice(-200) : s).replace(/[^A-Za-z0-9_.-]/g, '_');

async function main() {
  const [model, inputs, progDir, nArg] = process.argv.slice(2);
  if (!progDir) throw new Error('usage: node tools/ort_tensors.js exposed.onnx inputs.npy program_dump_dir [N]');
  const meta = JSON.parse(fs.readFileSync(model + '.json', 'utf8'));
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, graphOptimizationLevel: 'disabled' });
  const x = readNpy(inputs), per = x.data.length / x.shape[0];
  const n = Math.min(Number(nArg || x.shape[0]), x.shape[0]);
  const stats = {}, cache = {};
  let shown = 0;
  for (let s = 0; s < n; ++s) {
    const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', Float32Array.from(x.data.subarray(s * per, (s + 1) * per)), [1, ...x.shape.slice(1)]) };
    const out = await session.run(feeds);
    for (const name of Object.keys(meta)) {
      const [scale, , floatIn] = meta[name];
      const base = name.endsWith('_float_quantized') ? name.slice(0, -'_float_quantized'.length) : name;
      let file = path.join(progDir, fileSafe(base) + '.npy');
      if (!fs.existsSync(file)) file = path.join(progDir, fileSafe(base + '_quantized') + '.npy');
      const st = stats[name] || (stats[name] = { elements: 0, differ: 0, max_steps: 0, near_half: 0, first_sample: -1 });
      if (!fs.existsSync(file)) { st.missing = true; continue; }
      const prog = cache[file] || (cache[file] = readNpy(file));
      const a = out[name].data, k = a.length, b = prog.data.subarray(s * k, (s + 1) * k);
      const f = floatIn && out[floatIn] ? out[floatIn].data : null;
      for (let i = 0; i < k; ++i) {
        const d = Math.abs(a[i] - b[i]);
        ++st.elements;
        if (!d) continue;
        ++st.differ;
        st.max_steps = Math.max(st.max_steps, d);
        if (st.first_sample < 0) st.first_sample = s;
        if (f) {
          const v = f[i] / scale, frac = Math.abs(v - Math.trunc(v));
          if (Math.abs(frac - 0.5) < 1e-4) ++st.near_half;
          if (shown++ < 10) console.log(JSON.stringify({ tensor: name, sample: s, index: i, ort: a[i], program: b[i], ort_float_over_scale: v }));
        }
      }
    }
  }
  for (const name of Object.keys(meta)) console.log(JSON.stringify({ tensor: name, ...stats[name] }));
}

main().catch(e => { console.error('ort_tensors: ' + e.message); process.exit(1); });
