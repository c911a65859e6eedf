#!/usr/bin/env node
// onnx_ort.js - ONNX Runtime (npm onnxruntime-node) runs the ONNX files that
// tl_model_save_onnx() wrote and its outputs are compared with libtl's
// predictions: tests/test_onnx_save.c writes the files, a manifest, the
// input images and libtl's outputs, and runs this script on the manifest.
//
// Usage: NODE_PATH=<folder>/node_modules node onnx_ort.js MANIFEST
// Each manifest line: FILE INPUT N D1 D2 D3 EXPECTED WIDTH LAYOUT FOLD OPSET BNS
// (INPUT: N*D1*D2*D3 little-endian float32 in the graph's layout; EXPECTED:
// N*WIDTH floats, libtl's tl_model_predict()). Passes when
// max |ORT - libtl| <= 1e-4 * max |libtl| for every file.
// Exit status 77 when onnxruntime-node cannot be loaded, 1 on any failure.
'use strict';
const fs = require('fs');
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.log('onnx_ort.js: skipped: cannot load onnxruntime-node (' + e.message.split('\n')[0] + ')');
  process.exit(77);
}
const TOL = 1e-4;

function floats(path) {
  const b = fs.readFileSync(path);
  const v = new Float32Array(b.length / 4);
  for (let i = 0; i < v.length; i++) v[i] = b.readFloatLE(4 * i);
  return v;
}

(async () => {
  const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter((l) => l.trim());
  let ok = true;
  for (const line of lines) {
    const f = line.split(/\s+/);
    const [file, input, n, d1, d2, d3, expected, width] = [f[0], f[1], +f[2], +f[3], +f[4], +f[5], f[6], +f[7]];
    const name = file.split('/').pop();
    try {
      const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1, interOpNumThreads: 1,
        graphOptimizationLevel: 'all', executionMode: 'sequential' });
      const x = new ort.Tensor('float32', floats(input), [n, d1, d2, d3]);
      const r = await s.run({ [s.inputNames[0]]: x });
      const y = r[s.outputNames[0]].data, want = floats(expected);
      if (y.length !== n * width || want.length !== n * width)
        throw new Error(`ORT gave ${y.length} values, libtl ${want.length}, expected ${n * width}`);
      let diff = 0, scale = 0;
      for (let i = 0; i < y.length; i++) {
        diff = Math.max(diff, Math.abs(y[i] - want[i]));
        scale = Math.max(scale, Math.abs(want[i]));
      }
      const rel = scale > 0 ? diff / scale : diff;
      const pass = rel <= TOL && Number.isFinite(rel);
      ok = ok && pass;
      console.log(`onnx_ort: ${name}: ORT ${ort.env.versions.common}, max |ORT - libtl| / max |libtl| = ` +
        `${rel.toExponential(2)} (max |libtl| ${scale.toPrecision(4)}) ${pass ? 'ok' : 'FAILED (> 1e-4)'}`);
    } catch (e) {
      ok = false;
      console.log(`onnx_ort: ${name}: FAILED: ${e.message}`);
    }
  }
  process.exit(ok ? 0 : 1);
})();
